"""A client that leaves before its request is complete still leaves its audit row.

The rule: every request the proxy began to receive gets exactly one row. One
that was never dispatched (the client closed during its head or body, or it
was complete but still queued behind a pipelined one) is recorded as 499,
decision C{rejected}, error C{client_disconnected}, like the 408 of a client
that stalls. A connection closed between requests (no byte of a next one)
records nothing.

The tests drive the shell in memory (proxilion.testing.InMemoryProxilion): a
close is a close on the in-memory transport, a stall a clock advance. One
daemon smoke test keeps a real socket's close honest.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxilion.analytics.event import AuditEvent
from proxilion.testing import ClientConnection, InMemoryProxilion
from support.daemon import Daemon, eventually, http_json, running

from .conftest import NO_LIMITS, access_lines

TOKEN = "partial-body-admin-token"
CHAT = b"/proxy/openai/v1/chat/completions"
BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[InMemoryProxilion]:
    proxilion = InMemoryProxilion(data_dir=tmp_path, settings={"client_timeout": 1.5})
    proxilion.start()
    yield proxilion
    proxilion.stop()


def _send_and_close(harness: InMemoryProxilion, data: bytes, read: bool = False) -> ClientConnection:
    """Send C{data} and close the connection (after its answer, if C{read})."""
    connection = harness.connect()
    connection.send(data)
    harness.settle()
    if read:
        assert connection.answers, "no answer came"
    connection.close()
    harness.settle()
    return connection


def _rows(harness: InMemoryProxilion, rid: str) -> list[AuditEvent]:
    return [row for row in harness.audit() if row.request_id == rid]


def _assert_disconnected(harness: InMemoryProxilion, row: AuditEvent, rid: str, decision: str = "rejected") -> None:
    assert (row.status, row.decision, row.error) == (499, decision, "client_disconnected")
    lines = harness.access_lines(request_id=rid)
    assert [(line["status"], line["error"]) for line in lines] == [(499, "client_disconnected")]


def test_partial_content_length_body(harness: InMemoryProxilion) -> None:
    rid = "partial-cl-0001"
    sent = b'{"model":'
    _send_and_close(harness, b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-ID: %s\r\n"
                    b"Content-Length: 1000\r\n\r\n%s" % (CHAT, rid.encode(), sent))
    (row,) = _rows(harness, rid)
    _assert_disconnected(harness, row, rid)
    assert (row.method, row.provider, row.bytes_in) == ("POST", "openai", len(sent))
    # Nothing more comes of it later (a timer, a second close).
    harness.advance(5)
    assert len(_rows(harness, rid)) == 1


def test_partial_chunked_body(harness: InMemoryProxilion) -> None:
    rid = "partial-chunked-0001"
    _send_and_close(harness, b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-ID: %s\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n9\r\n{\"model\":\r\n20\r\n\"gpt" % (CHAT, rid.encode()))
    (row,) = _rows(harness, rid)
    _assert_disconnected(harness, row, rid)
    assert row.bytes_in == 9 + 4


def test_idle_keep_alive_close_records_only_the_complete_request(harness: InMemoryProxilion) -> None:
    rid = "keepalive-done-0001"
    # A complete request, its answer read, then close.
    connection = _send_and_close(harness, b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-ID: %s\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (CHAT, rid.encode(), len(BODY), BODY), read=True)
    assert connection.answers[0].status == 200
    # The same with a stray CRLF after the body (some clients send one).
    connection = _send_and_close(harness, b"POST %s HTTP/1.1\r\nHost: x\r\nX-Request-ID: keepalive-crlf-0001\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                 % (CHAT, len(BODY), BODY), read=True)
    assert connection.answers[0].status == 200
    # And a connection that sends nothing at all.
    harness.connect().close()
    harness.advance(5)
    rows = harness.audit()
    assert sorted((row.request_id, row.status) for row in rows) == [("keepalive-crlf-0001", 200), (rid, 200)]


def test_partial_head_after_request_line(harness: InMemoryProxilion) -> None:
    rid = "partial-head-0001"
    _send_and_close(harness, b"POST %s?key=planted-secret HTTP/1.1\r\nHost: x\r\nX-Request-ID: %s\r\nContent-Ty"
                    % (CHAT, rid.encode()))
    (row,) = _rows(harness, rid)
    _assert_disconnected(harness, row, rid)
    assert (row.method, row.provider, row.bytes_in) == ("POST", "openai", 0)
    assert "planted-secret" not in repr(row)
    assert "planted-secret" not in repr(harness.access_lines(request_id=rid))


def test_partial_request_line(harness: InMemoryProxilion) -> None:
    """Any byte of a request makes it one (the same rule as the 408 of a stalled client)."""
    _send_and_close(harness, b"PO")
    _send_and_close(harness, b"POST /proxy/open")
    rows = harness.audit()
    assert sorted(row.method for row in rows) == ["OTHER", "POST"]
    for row in rows:
        assert (row.status, row.decision, row.error) == (499, "rejected", "client_disconnected")


def test_pipelined_requests_behind_a_pending_one(harness: InMemoryProxilion) -> None:
    """The dispatched request is recorded by its exchange, the queued one by the connection: one row each."""
    first, second = "pipelined-first-0001", "pipelined-queued-0001"
    request = (b"POST /proxy/anthropic/v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"x-fake-delay: 30\r\nX-Request-ID: %s\r\nContent-Length: %d\r\n\r\n%s")
    _send_and_close(harness, request % (first.encode(), len(BODY), BODY) + request % (second.encode(), len(BODY), BODY))
    (first_row,) = _rows(harness, first)
    (second_row,) = _rows(harness, second)
    # The first was forwarded (allowed) when its client left; the queued one never was.
    _assert_disconnected(harness, first_row, first, decision="allow")
    _assert_disconnected(harness, second_row, second)
    assert second_row.bytes_in == len(BODY)
    # The audit row of the one in front comes first (accounting finishes before the next is touched).
    assert [row.request_id for row in harness.audit()] == [first, second]


def test_refused_then_closed_is_recorded_once(harness: InMemoryProxilion) -> None:
    """A refusal (413 here) already recorded the request: the close that follows adds nothing."""
    rid = "refused-then-closed-0001"
    connection = _send_and_close(harness, b"POST %s HTTP/1.1\r\nHost: x\r\nX-Request-ID: %s\r\nContent-Length: 999999999999\r\n\r\n{"
                                 % (CHAT, rid.encode()))
    assert connection.answers[0].status == 413
    assert [(row.status, row.error) for row in _rows(harness, rid)] == [(413, "request_too_large")]
    # The store keeps one row per request id whatever it is sent: the access log shows what was recorded.
    assert [line["status"] for line in harness.access_lines(request_id=rid)] == [413]


def test_stalled_then_closed_is_recorded_once(harness: InMemoryProxilion) -> None:
    """A stalled partial body gets its 408 row; the client's close after it adds no 499."""
    rid = "stalled-then-closed-0001"
    connection = harness.connect()
    connection.send(b"POST %s HTTP/1.1\r\nHost: x\r\nX-Request-ID: %s\r\nContent-Length: 100\r\n\r\n{" % (CHAT, rid.encode()))
    harness.advance(1.4)
    assert connection.answers == []
    harness.advance(0.2)
    assert connection.answers[0].status == 408
    connection.close()
    harness.settle()
    assert [(row.status, row.error) for row in _rows(harness, rid)] == [(408, "request_timeout")]
    assert [line["status"] for line in harness.access_lines(request_id=rid)] == [408]


# -- the daemon smoke test: a real socket closed mid-body --------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, fake_provider: str) -> Iterator[Daemon]:
    workdir: Path = tmp_path_factory.mktemp("partial-body")
    args = ["--upstream", f"openai={fake_provider}", "--admin-token", TOKEN, "--analytics-flush-interval", "0.1"]
    with running(Daemon(workdir, args, NO_LIMITS)) as d:
        yield d


def _events(daemon: Daemon) -> list[dict[str, Any]] | None:
    status, _, body = http_json("GET", daemon.admin_url + "/api/v1/events?limit=100",
                                headers={"authorization": f"Bearer {TOKEN}"})
    if status == 503:
        # The store opens in the background after start.
        return None
    assert status == 200, body
    return body["events"]


def test_daemon_records_a_real_client_closing_mid_body(daemon: Daemon) -> None:
    rid = "daemon-partial-cl-0001"
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nX-Request-ID: %s\r\nContent-Length: 1000\r\n\r\n{" % (CHAT, rid.encode()))
        # Give the proxy the bytes before the close, as a real client would.
        time.sleep(0.2)
    rows = eventually(lambda: [e for e in _events(daemon) or [] if e["request_id"] == rid] or None, what=f"the row of {rid}")
    assert [(r["status"], r["decision"], r["error"], r["bytes_in"]) for r in rows] == [(499, "rejected", "client_disconnected", 1)]
    lines = eventually(lambda: access_lines(daemon, request_id=rid), what=f"access line of {rid}")
    assert [(line["status"], line["error"]) for line in lines] == [(499, "client_disconnected")]
