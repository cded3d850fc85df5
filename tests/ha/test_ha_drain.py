"""Drain on one real daemon: SIGTERM/SIGINT, a second signal, --reuse-port.

The drain's own logic (its deadline, a request still uploading, the admin drain) is
tested in memory, in tests/proxy/test_inmemory_exchange.py.
"""

from __future__ import annotations

import re
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from support.daemon import Daemon, free_port, http_json, running

from .conftest import LIMITS, Client, Load, Outcome, daemon_args, wait_until

STOP_ORDER = ["stopped proxy", "stopped scanpool", "stopped policy", "stopped ratelimit", "stopped analytics", "stopped admin"]


def stream_in_thread(daemon: Daemon, chunks: int = 20, chunk_delay: float = 0.1) -> tuple[threading.Thread, list[Outcome]]:
    result: list[Outcome] = []
    client = Client("127.0.0.1", daemon.port, "stream")
    thread = threading.Thread(target=lambda: result.append(client.request(stream=True, chunks=chunks, chunk_delay=chunk_delay)))
    thread.start()
    # The stream is in flight once the daemon counts it.
    wait_until(lambda: http_json("GET", daemon.admin_url + "/status")[2]["inflight"] >= 1, what="the stream in flight")
    return thread, result


def idle_keepalive(daemon: Daemon) -> socket.socket:
    """A connection that has had one answer and stays open, idle."""
    sock = socket.create_connection(("127.0.0.1", daemon.port))
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    return sock


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


def stop_messages(daemon: Daemon) -> list[tuple[str, str]]:
    return [(e["time"], e["message"]) for e in daemon.log_events() if re.fullmatch(r"stopped \w+", str(e.get("message", "")))]


def audit_ids(daemon: Daemon) -> set[str]:
    with sqlite3.connect(daemon.workdir / "data" / "analytics.db") as db:
        return {row[0] for row in db.execute("SELECT request_id FROM audit_events")}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_runs_the_stop_sequence(tmp_path: Path, fake: str, policy_file: Path, sig: int) -> None:
    grace = 1.0
    daemon = Daemon(tmp_path, daemon_args(fake, policy_file), {**LIMITS, "DRAIN_GRACE": str(grace), "DRAIN_TIMEOUT": "10"})
    with running(daemon):
        idle = idle_keepalive(daemon)
        before = Client("127.0.0.1", daemon.port, "before").request(stream=False)
        assert before.ok, before.error
        thread, streamed = stream_in_thread(daemon)
        signalled = time.monotonic()
        daemon.signal(sig)

        # At once: every health endpoint reports draining.
        for url in (daemon.url, daemon.admin_url):
            for path in ("/health", "/ready"):
                status, _, body = http_json("GET", url + path)
                assert (status, body["status"]) == (503, "draining"), (url, path, body)
        # During the grace period new requests are still served, each closing its connection.
        during = Client("127.0.0.1", daemon.port, "grace")
        answer = during.request(stream=False)
        assert answer.ok, answer.error
        assert during.conn is None, "the answer during the drain did not carry Connection: close"
        assert time.monotonic() - signalled < grace

        # Then the port closes and the idle keep-alive connection is closed.
        wait_until(lambda: refuses(daemon.port), timeout=grace + 2, what="the proxy port to close")
        assert time.monotonic() - signalled >= grace * 0.9
        assert closed_by_server(idle, timeout=2), "the idle keep-alive connection was left open"
        idle.close()

        # The stream that was in flight finishes, whole.
        thread.join(10)
        assert streamed and streamed[0].ok, streamed
        stream_done = time.monotonic()
        assert daemon.proc.wait(15) == 0
        assert time.monotonic() - stream_done < 2.0

    messages = stop_messages(daemon)
    assert [m for _, m in messages] == STOP_ORDER, messages
    # Nothing stopped before the stream had finished (the proxy's stop is the drain).
    log = daemon.log_events()
    drained = next(e["time"] for e in log if e.get("message") == "drained")
    assert messages[0][0] >= drained
    assert audit_ids(daemon) == {before.request_id, streamed[0].request_id, answer.request_id}


def test_second_sigterm_does_not_skip_the_analytics_flush(tmp_path: Path, fake: str, policy_file: Path) -> None:
    # A long flush interval keeps every row in memory until the stop sequence flushes it.
    env = {**LIMITS, "DRAIN_GRACE": "0.5", "DRAIN_TIMEOUT": "10", "ANALYTICS_FLUSH_INTERVAL": "60"}
    daemon = Daemon(tmp_path, daemon_args(fake, policy_file), env)
    with running(daemon):
        client = Client("127.0.0.1", daemon.port, "flush")
        answered = [client.request(stream=False) for _ in range(150)]
        client.close()
        assert all(o.ok for o in answered), [o.error for o in answered if not o.ok][:3]
        thread, streamed = stream_in_thread(daemon, chunks=10, chunk_delay=0.1)
        daemon.signal(signal.SIGTERM)
        time.sleep(0.2)
        daemon.signal(signal.SIGTERM)
        time.sleep(0.2)
        daemon.signal(signal.SIGTERM)
        assert daemon.proc.wait(15) == 0
        thread.join(5)
    assert streamed[0].ok, streamed[0].error
    assert audit_ids(daemon) == {o.request_id for o in answered} | {streamed[0].request_id}
    assert not any(p.stat().st_size for p in (tmp_path / "data" / "spool").glob("*")), "rows went to the spool instead of the database"
    assert [m for _, m in stop_messages(daemon)] == STOP_ORDER


def test_reuse_port_handover(tmp_path: Path, fake: str, policy_file: Path) -> None:
    port = free_port()
    env = {**LIMITS, "DRAIN_GRACE": "0.5", "DRAIN_TIMEOUT": "10"}
    args = [*daemon_args(fake, policy_file), "--reuse-port"]
    old = Daemon(tmp_path / "old", args, env, port=port)
    new = Daemon(tmp_path / "new", args, env, port=port)
    with running(old), running(new):
        # Fresh connections (no keep-alive), so every request is a new accept on the shared port.
        load = Load("127.0.0.1", port, threads=3, stream_every=5, pause=0.0, name="rp", keep_alive=False)
        with load:
            time.sleep(0.5)
            old.signal(signal.SIGTERM)
            assert old.proc.wait(15) == 0
            time.sleep(0.5)
        summary = load.summary()
        assert summary["failed"] == 0, (summary, load.failures()[:5])
        served_old = len(audit_ids(old))
        assert served_old > 0
        assert new.metric("proxilion_http_requests_total") > 0
        assert served_old + new.metric("proxilion_http_requests_total") == summary["requests"]

