"""Fixtures for analytics tests: a real PostgreSQL server, settings, events and waiting helpers."""

from __future__ import annotations

import glob
import itertools
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from typing import Any, Callable

import pytest
from twisted.internet import reactor, task

from proxilion.analytics.event import AuditEvent
from proxilion.config import load_settings
from proxilion.metrics import Metrics


def _pg_bindir() -> str | None:
    """Where initdb lives: on PATH, else the newest /usr/lib/postgresql/<version>/bin (Debian's apt layout)."""
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(os.path.realpath(found))
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not candidates:
        return None
    newest = max(candidates, key=lambda p: [int(x) for x in re.findall(r"\d+", p.split("/")[-3])])
    return os.path.dirname(newest)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A throwaway PostgreSQL cluster in a temporary directory, listening on loopback."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.root = tempfile.mkdtemp(prefix="proxilion-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = free_port()
        # PostgreSQL refuses to run as root.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        self._databases = itertools.count()

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.as_user, os.path.join(self.bindir, tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -h 127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200"
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.root, "log"), "-w", "-o", options, "start")

    def watch(self) -> None:
        """Stop and remove the cluster if this test process dies without tearing down (killed by a timeout)."""
        stop = " ".join(shlex.quote(part) for part in [*self.as_user, os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "immediate", "stop"])
        script = f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {shlex.quote(self.root)}"
        subprocess.Popen(["sh", "-c", script], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"t{next(self._databases)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not found (apt install postgresql)")
    server = PostgresServer(bindir)
    server.start()
    server.watch()
    yield server
    server.destroy()


@pytest.fixture
def pg_dsn(postgres) -> str:
    return postgres.create_database()


def make_settings(data_dir: Any, dsn: str | None = None, **options: Any) -> Any:
    values = {
        "data_dir": str(data_dir),
        "analytics_dsn": dsn,
        "analytics_flush_interval": 0.05,
        "instance_id": "test-1",
        "analytics_retention_days": 0,
    }
    values.update(options)
    return load_settings(options=values, environ={})


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


_DECISIONS = ["allow", "redact", "block", "ratelimited", "allow", "error", "log", "alert"]
_PROVIDERS = ["openai", "anthropic", "gemini", "cohere", "azure", "bedrock", "unknown"]


def make_event(i: int, **overrides: Any) -> AuditEvent:
    """A deterministic, varied event: allowed, redacted, blocked, rate-limited, streamed, errors."""
    decision = _DECISIONS[i % len(_DECISIONS)]
    values: dict[str, Any] = dict(
        time=1_700_000_000.0 + i * 0.25,
        request_id=f"req-{i:06d}",
        instance_id="test-1",
        identity=f"key:{i % 5:04x}ab12",
        tenant=None if i % 3 else f"tenant-{i % 2}",
        provider=_PROVIDERS[i % len(_PROVIDERS)],
        model=None if decision == "ratelimited" else f"model-{i % 4}",
        method="POST",
        path=f"/v1/chat/completions?n={i}",
        status={"block": 403, "ratelimited": 429, "error": 504}.get(decision, 200),
        decision=decision,
        findings={"email": i % 3, "aws_key": 1} if decision in ("redact", "block") else {},
        bytes_in=100 + i,
        bytes_out=0 if decision in ("block", "ratelimited") else 1000 + 7 * i,
        streamed=i % 4 == 0,
        duration_total=0.001 * (i % 97) + 0.0005,
        duration_upstream=None if decision in ("block", "ratelimited") else 0.001 * (i % 89),
        duration_overhead=0.0001 * (i % 7),
        tokens_in=None if decision != "allow" else 10 + i % 13,
        tokens_out=None if decision != "allow" else 20 + i % 17,
        client_ip=f"10.0.{i % 256}.{(i * 7) % 256}",
        error="upstream_timeout" if decision == "error" else None,
        rule={"block": "block-credentials", "redact": "redact-pii"}.get(decision),
    )
    values.update(overrides)
    return AuditEvent(**values)


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Spin the real reactor until C{predicate()} holds."""
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await task.deferLater(reactor, 0.02, lambda: None)


@pytest.fixture
def new_writer():
    """Build writers that are stopped at teardown even when the test fails (their pool threads would hang exit)."""
    import pytest_twisted

    from proxilion.analytics.writer import AnalyticsWriter

    made: list[AnalyticsWriter] = []

    def build(*args: Any, **kwargs: Any) -> AnalyticsWriter:
        writer = AnalyticsWriter(*args, **kwargs)
        made.append(writer)
        return writer

    yield build
    for writer in made:
        if writer.running:
            pytest_twisted.blockon(writer.stopService())
