"""Three replicas sharing one CA behind HAProxy in TCP mode: a client that trusts only that CA reaches
every replica through HTTPS_PROXY, and a rolling restart of all three fails none of its requests.

HAProxy passes the CONNECT and the TLS inside it through untouched (mode tcp), checking each replica's
/health; a replica stopping drains (its /health says 503 for DRAIN_GRACE) before it closes its port.
The SDK keeps its default retries: a tunnel cut by a draining replica is retried, as it would be in an
application, and only a request the application sees fail counts as failed.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import openai
import pytest

from support.daemon import Daemon, free_port

from .conftest import daemon_env, upstreams

HAPROXY = "/usr/sbin/haproxy"
REPLICAS = 3


def _haproxy_config(port: int, servers: list[int]) -> str:
    lines = [
        "defaults", "  mode tcp", "  timeout connect 2s", "  timeout client 30s", "  timeout server 30s",
        "  retries 3", "  option redispatch",
        "frontend proxy", f"  bind 127.0.0.1:{port}", "  default_backend proxilion",
        "backend proxilion", "  balance roundrobin", "  option httpchk GET /health", "  http-check expect status 200",
        "  default-server check inter 200ms fall 2 rise 2",
    ]
    lines += [f"  server p{i} 127.0.0.1:{server}" for i, server in enumerate(servers)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def cluster(tmp_path: Path, ca_dir: Path, upstream_ca_dir: Path, fake_tls: str) -> Iterator[tuple[int, list[Daemon]]]:
    env = daemon_env(ca_dir, upstream_ca_dir, RATE_LIMIT_PER_MINUTE="0", DRAIN_GRACE="1.0")
    daemons = [Daemon(tmp_path / f"replica-{i}", upstreams(fake_tls), env) for i in range(REPLICAS)]
    port = free_port()
    (tmp_path / "haproxy.cfg").write_text(_haproxy_config(port, [d.port for d in daemons]))
    haproxy = None
    try:
        for d in daemons:
            d.start()
        haproxy = subprocess.Popen([HAPROXY, "-db", "-f", str(tmp_path / "haproxy.cfg")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # two health checks: every replica up
        yield port, daemons
    finally:
        if haproxy is not None:
            haproxy.terminate()
            haproxy.wait(10)
        for d in daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()


def _client(retries: int) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-replicas-test", max_retries=retries, timeout=20)


@pytest.fixture
def through_haproxy(cluster: tuple[int, list[Daemon]], ca_dir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[Daemon]]:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{cluster[0]}")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_dir / "ca.crt"))
    return cluster


def _ask(client: openai.OpenAI) -> str:
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
    return reply.choices[0].message.content or ""


def test_one_ca_serves_every_replica(through_haproxy: tuple[int, list[Daemon]]) -> None:
    _, daemons = through_haproxy
    for _ in range(3 * REPLICAS):
        client = _client(retries=0)  # a new tunnel each time, so round robin reaches each replica
        try:
            assert _ask(client)
        finally:
            client.close()
    for d in daemons:
        assert d.metric("proxilion_connect_requests_total", decision="intercept") >= 1, d.log()


def test_rolling_restart_fails_no_request(through_haproxy: tuple[int, list[Daemon]]) -> None:
    _, daemons = through_haproxy
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            client = _client(retries=2)
            try:
                for _ in range(5):
                    try:
                        assert _ask(client)
                        answered[0] += 1
                    except Exception as e:  # noqa: BLE001 - every failure the application would see is counted
                        failures.append(repr(e)[:200])
            finally:
                client.close()

    workers = [threading.Thread(target=load) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        for i, d in enumerate(daemons):
            d.stop()  # SIGTERM: /health 503 for DRAIN_GRACE, then the port closes and in-flight requests finish
            replacement = Daemon(d.workdir, d.args, d.env, port=d.port)
            replacement.start()
            daemons[i] = replacement
            time.sleep(1.0)  # HAProxy sees it up (rise 2 at 200 ms) before the next replica goes
    finally:
        stop.set()
        for w in workers:
            w.join(30)
    assert answered[0] > 20
    assert failures == [], failures[:5]
