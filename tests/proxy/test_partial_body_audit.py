"""A client that leaves before its request is complete still leaves its audit row.

The rule: every request the proxy began to receive gets exactly one row. One
that was never dispatched (the client closed during its head or body, or it
was complete but still queued behind a pipelined one) is recorded as 499,
decision C{rejected}, error C{client_disconnected}, like the 408 of a client
that stalls. A connection closed between requests (no byte of a next one)
records nothing.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from support.daemon import Daemon, eventually, http_json, running

from .conftest import NO_LIMITS, access_lines

TOKEN = "partial-body-admin-token"
CHAT = b"/proxy/openai/v1/chat/completions"
BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'


@pytest.fixture(scope="module")
def hanging_upstream() -> Iterator[str]:
    """An upstream that accepts connections (in the backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, fake_provider: str, hanging_upstream: str) -> Iterator[Daemon]:
    workdir: Path = tmp_path_factory.mktemp("partial-body")
    args = ["--upstream", f"openai={fake_provider}", "--upstream", f"anthropic={hanging_upstream}",
            "--admin-token", TOKEN, "--analytics-flush-interval", "0.1"]
    # A short client timeout, so the 408 of a stalled client comes quickly.
    with running(Daemon(workdir, args, {**NO_LIMITS, "CLIENT_TIMEOUT": "1.5"})) as d:
        yield d


def _events(daemon: Daemon) -> list[dict[str, Any]] | None:
    status, _, body = http_json("GET", daemon.admin_url + "/api/v1/events?limit=100",
                                headers={"authorization": f"Bearer {TOKEN}"})
    if status == 503:
        # The store opens in the background after start.
        return None
    assert status == 200, body
    return body["events"]


def _wait_rows(daemon: Daemon, *rids: str) -> dict[str, list[dict[str, Any]]]:
    def found() -> dict[str, list[dict[str, Any]]] | None:
        events = _events(daemon) or []
        by_rid = {rid: [e for e in events if e["request_id"] == rid] for rid in rids}
        return by_rid if all(by_rid.values()) else None

    return eventually(found, what=f"audit rows of {rids}")


def _ids(daemon: Daemon) -> set[str]:
    """The request ids of every row so far (once the store is open)."""
    def events() -> list[list[dict[str, Any]]] | None:
        found = _events(daemon)
        return None if found is None else [found]

    return {e["request_id"] for e in eventually(events, what="the event store")[0]}


def _new_rows(daemon: Daemon, before: set[str]) -> list[dict[str, Any]]:
    return [e for e in _events(daemon) or [] if e["request_id"] not in before]


def _send_and_close(daemon: Daemon, data: bytes, read: bool = False) -> bytes:
    """Send C{data} and close the connection (after reading a reply if C{read})."""
    received = b""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        sock.sendall(data)
        if read:
            while b"\r\n\r\n" not in received:
                received += sock.recv(65536)
            head, _, rest = received.partition(b"\r\n\r\n")
            length = int([line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")][0])
            while len(rest) < length:
                rest += sock.recv(65536)
        else:
            # Give the proxy the bytes before the close, as a real client would.
            time.sleep(0.2)
    return received


def _sentinel(daemon: Daemon, rid: str) -> None:
    """A request of our own, recorded after anything the earlier connections left behind."""
    time.sleep(0.3)
    reply = _send_and_close(daemon, b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-ID: %s\r\n"
                            b"Content-Length: %d\r\n\r\n%s" % (CHAT, rid.encode(), len(BODY), BODY), read=True)
    assert reply.startswith(b"HTTP/1.1 200")
    _wait_rows(daemon, rid)


def _assert_disconnected(daemon: Daemon, row: dict[str, Any], rid: str, decision: str = "rejected") -> None:
    assert row["status"] == 499
    assert row["decision"] == decision
    assert row["error"] == "client_disconnected"
    lines = eventually(lambda: access_lines(daemon, request_id=rid), what=f"access line of {rid}")
    assert len(lines) == 1
    assert lines[0]["status"] == 499
    assert lines[0]["error"] == "client_disconnected"


def test_partial_content_length_body(daemon: Daemon) -> None:
    rid = "partial-cl-0001"
    sent = b'{"model":'
    _send_and_close(daemon, b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-ID: %s\r\n"
                    b"Content-Length: 1000\r\n\r\n%s" % (CHAT, rid.encode(), sent))
    rows = _wait_rows(daemon, rid)[rid]
    assert len(rows) == 1
    _assert_disconnected(daemon, rows[0], rid)
    assert rows[0]["method"] == "POST"
    assert rows[0]["provider"] == "openai"
    assert rows[0]["bytes_in"] == len(sent)
    _sentinel(daemon, "partial-cl-sentinel")
    assert len(_wait_rows(daemon, rid)[rid]) == 1


def test_partial_chunked_body(daemon: Daemon) -> None:
    rid = "partial-chunked-0001"
    _send_and_close(daemon, b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-ID: %s\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n9\r\n{\"model\":\r\n20\r\n\"gpt" % (CHAT, rid.encode()))
    rows = _wait_rows(daemon, rid)[rid]
    assert len(rows) == 1
    _assert_disconnected(daemon, rows[0], rid)
    assert rows[0]["bytes_in"] == 9 + 4


def test_idle_keep_alive_close_records_only_the_complete_request(daemon: Daemon) -> None:
    rid = "keepalive-done-0001"
    before = _ids(daemon)
    # A complete request, its answer read, a stray CRLF (some clients send one after a body), then close.
    reply = _send_and_close(daemon, b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-ID: %s\r\n"
                            b"Content-Length: %d\r\n\r\n%s" % (CHAT, rid.encode(), len(BODY), BODY), read=True)
    assert reply.startswith(b"HTTP/1.1 200")
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nX-Request-ID: keepalive-crlf-0001\r\nContent-Length: %d\r\n\r\n%s\r\n"
                     % (CHAT, len(BODY), BODY))
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(0.2)
    # And a connection that sends nothing at all.
    socket.create_connection(("127.0.0.1", daemon.port), timeout=5).close()
    _sentinel(daemon, "keepalive-sentinel")
    rows = _wait_rows(daemon, rid, "keepalive-crlf-0001")
    assert [r["status"] for r in rows[rid]] == [200]
    assert [r["status"] for r in rows["keepalive-crlf-0001"]] == [200]
    # The two requests and the sentinel: nothing for the idle closes.
    assert sorted(e["request_id"] for e in _new_rows(daemon, before)) == sorted([rid, "keepalive-crlf-0001", "keepalive-sentinel"])


def test_partial_head_after_request_line(daemon: Daemon) -> None:
    rid = "partial-head-0001"
    _send_and_close(daemon, b"POST %s?key=planted-secret HTTP/1.1\r\nHost: x\r\nX-Request-ID: %s\r\nContent-Ty"
                    % (CHAT, rid.encode()))
    rows = _wait_rows(daemon, rid)[rid]
    assert len(rows) == 1
    _assert_disconnected(daemon, rows[0], rid)
    assert rows[0]["method"] == "POST"
    assert rows[0]["provider"] == "openai"
    assert "planted-secret" not in str(rows[0])
    assert rows[0]["bytes_in"] == 0


def test_partial_request_line(daemon: Daemon) -> None:
    """Any byte of a request makes it one (the same rule as the 408 of a stalled client)."""
    before = _ids(daemon)
    _send_and_close(daemon, b"PO")
    _send_and_close(daemon, b"POST /proxy/open")
    _sentinel(daemon, "request-line-sentinel")
    new = [e for e in _new_rows(daemon, before) if e["request_id"] != "request-line-sentinel"]
    assert len(new) == 2
    assert sorted(e["method"] for e in new) == ["OTHER", "POST"]
    for event in new:
        assert (event["status"], event["decision"], event["error"]) == (499, "rejected", "client_disconnected")


def test_pipelined_requests_behind_a_pending_one(daemon: Daemon) -> None:
    """The dispatched request is recorded by its exchange, the queued one by the connection: one row each."""
    first, second = "pipelined-first-0001", "pipelined-queued-0001"
    request = (b"POST /proxy/anthropic/v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"X-Request-ID: %s\r\nContent-Length: %d\r\n\r\n%s")
    _send_and_close(daemon, request % (first.encode(), len(BODY), BODY) + request % (second.encode(), len(BODY), BODY))
    _sentinel(daemon, "pipelined-sentinel")
    rows = _wait_rows(daemon, first, second)
    assert len(rows[first]) == len(rows[second]) == 1
    # The first was forwarded (allowed) when its client left; the queued one never was.
    _assert_disconnected(daemon, rows[first][0], first, decision="allow")
    _assert_disconnected(daemon, rows[second][0], second)
    assert rows[second][0]["bytes_in"] == len(BODY)


def test_refused_then_closed_is_recorded_once(daemon: Daemon) -> None:
    """A refusal (413 here) already recorded the request: the close that follows adds nothing."""
    rid = "refused-then-closed-0001"
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nX-Request-ID: %s\r\nContent-Length: 999999999999\r\n\r\n{"
                     % (CHAT, rid.encode()))
        assert sock.recv(65536).startswith(b"HTTP/1.1 413")
    _sentinel(daemon, "refused-sentinel")
    rows = _wait_rows(daemon, rid)[rid]
    assert [(r["status"], r["error"]) for r in rows] == [(413, "request_too_large")]


def test_stalled_then_closed_is_recorded_once(daemon: Daemon) -> None:
    """A stalled partial body gets its 408 row; the client's close after it adds no 499."""
    rid = "stalled-then-closed-0001"
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nX-Request-ID: %s\r\nContent-Length: 100\r\n\r\n{" % (CHAT, rid.encode()))
        assert sock.recv(65536).startswith(b"HTTP/1.1 408")
    _sentinel(daemon, "stalled-sentinel")
    rows = _wait_rows(daemon, rid)[rid]
    assert [(r["status"], r["error"]) for r in rows] == [(408, "request_timeout")]
