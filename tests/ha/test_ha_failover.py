"""Failover: three daemons behind the shipped HAProxy config, one Redis, one PostgreSQL, under steady load.

The HAProxy config is packaging/haproxy/haproxy.cfg with only addresses, the
certificate, the stats socket and the check timings changed (checks every
200 ms instead of 5 s, so the tests take seconds). DRAIN_GRACE (1.5 s) covers
the time HAProxy needs to see /health fail twice.

Numbers (counts, the longest wait a client saw, RTO) are printed; run with -s.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from analytics.conftest import PostgresServer, _pg_bindir
from ratelimit.rl_support import RedisServer
from support.daemon import REPO, Daemon, free_port, haproxy_stat, http_json

from .conftest import AUTH, LIMITS, Load, Outcome, daemon_args, wait_until

HAPROXY = "/usr/sbin/haproxy"
SERVERS = ("proxilion-1", "proxilion-2", "proxilion-3")
DRAIN_GRACE = 1.5
KILL_ROW_WINDOW = 0.5  # ANALYTICS_FLUSH_INTERVAL 0.1 s, with room: rows a kill -9 may take with it


def haproxy_config(shipped: str, port: int, servers: dict[str, int], stats: Path) -> str:
    """The shipped config for loopback: plain HTTP bind, our ports, fast checks."""
    cfg = shipped.replace("stats socket /run/haproxy/admin.sock", f"stats socket {stats}")
    # 50000 connections need more descriptors than a test sandbox may raise to.
    cfg = cfg.replace("maxconn 50000", "maxconn 2000")
    cfg = cfg.replace("bind *:443 ssl crt /etc/ssl/proxy.pem", f"bind 127.0.0.1:{port}")
    cfg = cfg.replace("default-server fastinter 1s downinter 5s", "default-server fastinter 100ms downinter 200ms")
    for name, server_port in servers.items():
        cfg, n = re.subn(rf"server {name} \S+:8787 check inter 5s fall 3 rise 2", f"server {name} 127.0.0.1:{server_port} check inter 200ms fall 2 rise 2", cfg)
        assert n == 1, f"{name} not found in haproxy.cfg"
    # Which server answered: lets the analytics check attribute rows a kill -9 lost.
    cfg = cfg.replace("    option httpchk GET /health", "    http-response set-header X-Served-By %s\n    option httpchk GET /health")
    for kept in ("option httpchk GET /health", "http-check expect status 200", "balance leastconn", "option redispatch", "retries 3"):
        assert kept in cfg, kept
    return cfg


class Cluster:
    def __init__(self, root: Path, fake: str, policy: Path, redis_url: str, dsn: str) -> None:
        self.root = root
        self.args = daemon_args(fake, policy)
        self.ports = {name: free_port() for name in SERVERS}
        self.redis_url, self.dsn = redis_url, dsn
        self.daemons: dict[str, Daemon] = {}
        self.generation = 0
        self.outcomes: list[Outcome] = []
        self.lost_to_kill: dict[str, Any] = {}
        self.port = free_port()
        self.stats = root / "haproxy.sock"
        cfg = haproxy_config((REPO / "packaging/haproxy/haproxy.cfg").read_text(), self.port, self.ports, self.stats)
        (root / "haproxy.cfg").write_text(cfg)
        check = subprocess.run([HAPROXY, "-c", "-f", root / "haproxy.cfg"], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.haproxy_log = open(root / "haproxy.log", "wb")
        self.haproxy = subprocess.Popen([HAPROXY, "-db", "-f", root / "haproxy.cfg"], stdout=self.haproxy_log, stderr=subprocess.STDOUT)
        wait_until(lambda: self.stats.exists() or self.haproxy.poll() is not None, what="HAProxy's stats socket")
        assert self.haproxy.poll() is None, (root / "haproxy.log").read_text()

    def start(self, name: str) -> Daemon:
        self.generation += 1
        env = {
            **LIMITS,
            "RATE_LIMIT_STORE": "redis",
            "REDIS_URL": self.redis_url,
            "ANALYTICS_DSN": self.dsn,
            "ANALYTICS_FLUSH_INTERVAL": "0.1",
            "INSTANCE_ID": f"{name}-g{self.generation}",
            "DRAIN_GRACE": str(DRAIN_GRACE),
            "DRAIN_TIMEOUT": "10",
            "TRUSTED_PROXIES": "127.0.0.1/32",
        }
        daemon = Daemon(self.root / f"{name}-g{self.generation}", self.args, env, port=self.ports[name]).start()
        self.daemons[name] = daemon
        return daemon

    def states(self) -> dict[str, str]:
        """Server name -> HAProxy's view (UP, DOWN, NOLB, MAINT, with check transitions like 'UP 1/2')."""
        rows = haproxy_stat(self.stats)
        return {r["svname"]: r["status"] for r in rows if r["pxname"] == "proxilion_back" and r["svname"] in SERVERS}

    def wait_state(self, name: str, state: str, timeout: float = 10.0) -> float:
        """Wait until HAProxy reports C{state} for C{name}; return when (monotonic)."""
        wait_until(lambda: self.states().get(name) == state, timeout=timeout, what=f"HAProxy to see {name} {state}", interval=0.01)
        return time.monotonic()

    def load(self, name: str) -> Load:
        return Load("127.0.0.1", self.port, threads=4, stream_every=5, pause=0.02, name=name)

    def close(self) -> None:
        for daemon in self.daemons.values():
            if daemon.proc is not None and daemon.proc.poll() is None:
                try:
                    daemon.stop(timeout=20)
                except Exception:  # noqa: BLE001 - nothing may outlive the tests
                    daemon.kill()
        self.haproxy.terminate()
        self.haproxy.wait(10)
        self.haproxy_log.close()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not found (apt install postgresql)")
    server = PostgresServer(bindir)
    server.start()
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, fake: str, policy_file: Path, postgres: PostgresServer) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("ha-cluster")
    redis = RedisServer(root / "redis").start()
    c = Cluster(root, fake, policy_file, redis.url, postgres.create_database())
    try:
        for name in SERVERS:
            c.start(name)
        for name in SERVERS:
            c.wait_state(name, "UP")
        yield c
    finally:
        c.close()
        redis.kill()


def report(what: str, load: Load, **extra: Any) -> dict[str, Any]:
    summary = {**load.summary(), **extra}
    print(f"\n[ha] {what}: {summary}")
    return summary


def assert_all_ok(load: Load) -> None:
    failures = load.failures()
    assert not failures, [(f.kind, f.error) for f in failures[:5]]
    assert sum(o.kind == "stream" for o in load.snapshot()) >= 4


def test_rolling_restart(cluster: Cluster) -> None:
    downs = []
    with cluster.load("roll") as load:
        time.sleep(1.0)
        for name in SERVERS:
            daemon = cluster.daemons[name]
            daemon.signal(signal.SIGTERM)
            signalled = time.monotonic()
            downs.append(round(cluster.wait_state(name, "DOWN") - signalled, 3))
            assert daemon.proc.wait(20) == 0, daemon.log()[-2000:]
            cluster.start(name)
            cluster.wait_state(name, "UP")
        time.sleep(0.5)
    cluster.outcomes += load.snapshot()
    report("rolling restart", load, seconds_to_leave_pool=downs)
    assert_all_ok(load)


def test_drain_via_admin_endpoint(cluster: Cluster) -> None:
    name = "proxilion-2"
    daemon = cluster.daemons[name]
    with cluster.load("drain") as load:
        time.sleep(1.0)
        status, _, body = http_json("POST", daemon.admin_url + "/api/v1/drain", headers=AUTH)
        assert status == 202
        started = time.monotonic()
        left = cluster.wait_state(name, "DOWN") - started
        wait_until(lambda: http_json("GET", daemon.admin_url + "/status")[2]["inflight"] == 0, what="the drained instance's streams")
        finished = time.monotonic() - started
        served = daemon.metric("proxilion_http_requests_total")
        time.sleep(1.0)
        # Out of the pool: nothing new reaches it, and it has not exited.
        assert daemon.metric("proxilion_http_requests_total") == served
        assert daemon.proc.poll() is None
        assert http_json("GET", daemon.admin_url + "/status")[2]["status"] == "draining"
        assert daemon.stop() == 0
        cluster.start(name)
        cluster.wait_state(name, "UP")
        time.sleep(0.5)
    cluster.outcomes += load.snapshot()
    report("drain via admin", load, seconds_to_leave_pool=round(left, 3), seconds_to_finish_inflight=round(finished, 3))
    assert_all_ok(load)


def test_kill_9(cluster: Cluster) -> None:
    name = "proxilion-1"
    daemon = cluster.daemons[name]
    with cluster.load("kill") as load:
        time.sleep(1.5)
        killed = time.monotonic()
        daemon.proc.kill()
        down = cluster.wait_state(name, "DOWN")
        time.sleep(2.0)
        in_flight_at_kill = [o for o in load.snapshot() if o.started < killed and o.ended > killed]
    daemon.proc.wait(5)
    outcomes = load.snapshot()
    cluster.outcomes += outcomes
    failures = [o for o in outcomes if not o.ok]
    last_failure = max((o.ended for o in failures), default=killed)
    report(
        "kill -9",
        load,
        in_flight_at_kill=len(in_flight_at_kill),
        rto_haproxy_down_s=round(down - killed, 3),
        rto_last_failure_s=round(last_failure - killed, 3),
    )
    # Only requests in flight at the kill fail (those on the killed instance); none sent later.
    assert all(o.started < killed for o in failures), [(o.started - killed, o.error) for o in failures]
    assert len(failures) <= len(in_flight_at_kill)
    assert down - killed < 2.0
    # Rows the killed process had not yet written: answers it gave just before dying.
    cluster.lost_to_kill = {"name": name, "at": killed}
    cluster.start(name)
    cluster.wait_state(name, "UP")


def test_analytics_rows_equal_answered_requests(cluster: Cluster) -> None:
    import psycopg

    # Every live instance flushes on its way out.
    for daemon in cluster.daemons.values():
        if daemon.proc.poll() is None:
            assert daemon.stop() == 0
    with psycopg.connect(cluster.dsn) as db:
        rows = {rid: instance for rid, instance in db.execute("SELECT request_id, instance_id FROM audit_events")}
    answered = {o.tag: o for o in cluster.outcomes if o.ok}
    failed = {o.tag for o in cluster.outcomes if not o.ok}
    assert answered and set(rows) <= set(answered) | failed
    assert not set(rows) & failed, "a request the client saw fail was recorded as answered elsewhere"
    missing = [answered[t] for t in set(answered) - set(rows)]
    kill = cluster.lost_to_kill
    for o in missing:
        assert kill and o.served_by == kill["name"] and kill["at"] - KILL_ROW_WINDOW < o.ended <= kill["at"], (o, kill)
    print(f"\n[ha] analytics: answered={len(answered)} rows={len(rows)} lost_to_kill_9={len(missing)} failed={len(failed)}")
