"""Analytics writer throughput into PostgreSQL and SQLite, and reactor health while the database hangs.

    python bench/analytics_bench.py [--rows 200000] [--dsn postgresql://...] [--skip-pause]

Without --dsn a throwaway PostgreSQL cluster (fsync on, defaults otherwise)
is started on a free loopback port and removed at the end; as root it runs as
the postgres user. Each run records pre-built events into a fresh database as
fast as the reactor allows and reports rows/s from the first record() to the
last committed row, the mean record() cost, and the longest reactor stall
seen by a 10 ms heartbeat.

The pause run streams 5,000 rows/s, SIGSTOPs every server process for 3 s
(a hung database, not a refused one), resumes it, and reports heartbeat and
record() latency before and during the pause and whether every row landed.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from twisted.internet import defer, task  # noqa: E402

from proxilion.analytics.event import AuditEvent  # noqa: E402
from proxilion.analytics.store import PostgresStore, SQLiteStore  # noqa: E402
from proxilion.analytics.writer import AnalyticsWriter  # noqa: E402
from proxilion.config import load_settings  # noqa: E402
from proxilion.metrics import Metrics  # noqa: E402


def _bindir() -> str:
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(os.path.realpath(found))
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]))
    if not candidates:
        sys.exit("initdb not found: apt-get install postgresql, or pass --dsn")
    return os.path.dirname(candidates[-1])


class Cluster:
    def __init__(self) -> None:
        self.bindir = _bindir()
        self.root = tempfile.mkdtemp(prefix="proxilion-bench-pg-")
        self.data = os.path.join(self.root, "data")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8")
        options = f"-p {self.port} -k {self.root} -h 127.0.0.1"
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.root, "log"), "-w", "-o", options, "start")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.prefix, os.path.join(self.bindir, tool), *args], check=True, stdout=subprocess.DEVNULL)

    def pids(self) -> list[int]:
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            postmaster = int(f.readline())
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        return [postmaster, *map(int, children)]

    def close(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def create_database(dsn: str, name: str) -> str:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return dsn.rsplit("/", 1)[0] + "/" + name


def events(count: int, prefix: str) -> list[AuditEvent]:
    return [
        AuditEvent(
            time=1_700_000_000.0 + i * 0.001,
            request_id=f"{prefix}-{i:09d}",
            instance_id="bench",
            identity=f"key:{i % 1000:08x}",
            tenant=None,
            provider="openai",
            model="gpt-4o-mini",
            method="POST",
            path="/v1/chat/completions",
            status=200,
            decision="redact" if i % 10 == 0 else "allow",
            findings={"email": 1} if i % 10 == 0 else {},
            bytes_in=1024,
            bytes_out=2048,
            streamed=i % 2 == 0,
            duration_total=0.2,
            duration_upstream=0.19,
            duration_overhead=0.001,
            tokens_in=100,
            tokens_out=200,
            client_ip="10.0.0.1",
            error=None,
        )
        for i in range(count)
    ]


class Heartbeat:
    """The longest gap between 10 ms ticks: how long the reactor was kept from running."""

    def __init__(self, reactor) -> None:
        self.reactor = reactor
        self.gaps: list[float] = []
        self._last = reactor.seconds()
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = reactor
        self._loop.start(0.01)

    def _tick(self) -> None:
        now = self.reactor.seconds()
        self.gaps.append(now - self._last - 0.01)
        self._last = now

    def stop(self) -> float:
        self._loop.stop()
        return max(self.gaps, default=0.0)


def settings_for(data_dir: str, dsn: str | None, **extra):
    options = {"data_dir": data_dir, "analytics_dsn": dsn, "analytics_retention_days": 0, "instance_id": "bench"}
    options.update(extra)
    return load_settings(options=options, environ={})


async def throughput(reactor, name: str, store, data_dir: str, rows: int, batch: int) -> None:
    settings = settings_for(data_dir, None, analytics_queue_size=max(100, rows), analytics_batch_size=batch)
    writer = AnalyticsWriter(settings, Metrics(), reactor, store=store)
    writer.startService()
    while not writer._opened:
        await task.deferLater(reactor, 0.01, lambda: None)
    pending = events(rows, name)
    heartbeat = Heartbeat(reactor)
    start = time.perf_counter()
    record_time = 0.0
    for offset in range(0, rows, 2000):
        t0 = time.perf_counter()
        for event in pending[offset : offset + 2000]:
            writer.record(event)
        record_time += time.perf_counter() - t0
        await task.deferLater(reactor, 0, lambda: None)
    while writer.status()["rows_written"] < rows:
        await task.deferLater(reactor, 0.005, lambda: None)
    elapsed = time.perf_counter() - start
    stall = heartbeat.stop()
    status = writer.status()
    await writer.stopService()
    print(
        f"{name:<26} batch {batch:>5} {rows / elapsed:>9,.0f} rows/s   record() {record_time / rows * 1e6:5.2f} us/call   "
        f"longest reactor stall {stall * 1e3:6.1f} ms   spooled {status['rows_spooled']} dropped {status['rows_dropped']}"
    )


async def paused(reactor, cluster: Cluster, dsn: str, data_dir: str) -> None:
    settings = settings_for(data_dir, dsn, analytics_batch_size=500)
    writer = AnalyticsWriter(settings, Metrics(), reactor, stall_timeout=1.0)
    writer.startService()
    while not writer._opened:
        await task.deferLater(reactor, 0.01, lambda: None)
    stream = events(40_000, "pause")
    record_costs: dict[str, list[float]] = {"running": [], "paused": []}
    phase = "running"
    sent = 0

    def tick() -> None:
        nonlocal sent
        for event in stream[sent : sent + 50]:
            t0 = time.perf_counter()
            writer.record(event)
            record_costs[phase].append(time.perf_counter() - t0)
        sent += 50

    loop = task.LoopingCall(tick)
    loop.clock = reactor
    loop.start(0.01)
    heartbeat = Heartbeat(reactor)
    await task.deferLater(reactor, 3, lambda: None)
    running_gap = max(heartbeat.gaps)
    heartbeat.gaps.clear()
    pids = cluster.pids()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    phase = "paused"
    try:
        await task.deferLater(reactor, 3, lambda: None)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    state_during = writer.health()
    paused_gap = heartbeat.stop()
    loop.stop()
    deadline = reactor.seconds() + 60
    while (writer.status()["spool_bytes"] or writer.status()["queue_depth"] or writer.health() != "ok") and reactor.seconds() < deadline:
        await task.deferLater(reactor, 0.05, lambda: None)
    await writer.stopService()
    import psycopg

    with psycopg.connect(dsn) as conn:
        stored = conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]

    def p99(values: list[float]) -> float:
        values = sorted(values)
        return values[int(0.99 * (len(values) - 1))] * 1e6

    print(
        f"paused DB 3 s at 5,000 rows/s: state during pause {state_during!r}; "
        f"longest reactor stall running {running_gap * 1e3:.1f} ms, paused {paused_gap * 1e3:.1f} ms; "
        f"record() p99 running {p99(record_costs['running']):.1f} us, paused {p99(record_costs['paused']):.1f} us; "
        f"rows stored {stored}/{sent}, dropped {writer.status()['rows_dropped']}"
    )


async def main(reactor, args) -> None:
    cluster = None if args.dsn else Cluster()
    base = args.dsn or f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
    work = tempfile.mkdtemp(prefix="proxilion-bench-")
    try:
        for batch in args.batch:
            for mode in ("copy", "executemany"):
                dsn = create_database(base, f"bench_{mode}")
                store = PostgresStore(reactor, dsn, insert_mode=mode)
                await throughput(reactor, f"postgresql ({mode})", store, os.path.join(work, f"{mode}{batch}"), args.rows, batch)
            lite = os.path.join(work, f"lite{batch}")
            store = SQLiteStore(reactor, os.path.join(lite, "a.db"))
            await throughput(reactor, "sqlite (WAL, sync FULL)", store, lite, args.rows, batch)
        if not args.skip_pause and cluster is not None:
            await paused(reactor, cluster, create_database(base, "bench_pause"), os.path.join(work, "pause"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[500], help="ANALYTICS_BATCH_SIZE values to run")
    parser.add_argument("--dsn", help="an existing PostgreSQL server (databases bench_* are dropped and created)")
    parser.add_argument("--skip-pause", action="store_true", help="skip the SIGSTOP run (needs the throwaway cluster)")
    parsed = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, parsed)))
