"""Requests refused before they were complete (413, 431) still leave their audit row."""

from __future__ import annotations

import socket
from pathlib import Path

from support.daemon import Daemon, eventually, running

from .conftest import TOKEN, admin, upstream_args


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _request_id(reply: bytes) -> str:
    for line in reply.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-request-id":
            return value.strip().decode()
    raise AssertionError(f"no X-Request-ID in {reply[:300]!r}")


def test_refused_requests_have_audit_rows(tmp_path: Path, fake: str) -> None:
    args = [*upstream_args(fake), "--admin-token", TOKEN, "--max-body-size", "1024", "--max-headers", "10",
            "--analytics-flush-interval", "0.1"]
    with running(Daemon(tmp_path, args, {"RATE_LIMIT_PER_MINUTE": "0"})) as daemon:
        too_large = _raw(daemon.port, b"POST /proxy/openai/v1/chat/completions?key=planted-secret HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n")
        assert too_large.startswith(b"HTTP/1.1 413")
        headers = b"".join(b"X-H%d: v\r\n" % i for i in range(20))
        too_many = _raw(daemon.port, b"GET /proxy/openai/v1/models HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        assert too_many.startswith(b"HTTP/1.1 431")
        expected = {_request_id(too_large): 413, _request_id(too_many): 431}

        def rows() -> dict[str, dict]:
            status, _, body = admin(daemon, "GET", "/api/v1/events?decision=rejected&limit=10")
            if status == 503:
                # The store opens (and migrates) in the background after start.
                return {}
            assert status == 200, body
            found = {event["request_id"]: event for event in body["events"]}
            return found if set(expected) <= set(found) else {}

        found = eventually(rows, what="audit rows of refused requests")
        for rid, status in expected.items():
            assert found[rid]["status"] == status
            assert found[rid]["decision"] == "rejected"
            assert "planted-secret" not in str(found[rid])


def test_a_body_nested_deeper_than_python_recurses_is_refused_and_audited(tmp_path: Path, fake: str) -> None:
    args = [*upstream_args(fake), "--admin-token", TOKEN, "--analytics-flush-interval", "0.1"]
    with running(Daemon(tmp_path, args, {"RATE_LIMIT_PER_MINUTE": "0"})) as daemon:
        body = b'{"a":' * 50000 + b"1" + b"}" * 50000
        reply = _raw(daemon.port, b"POST /proxy/openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        assert reply.startswith(b"HTTP/1.1 403"), reply[:200]
        assert b'"error"' in reply and b"Traceback" not in reply
        rid = _request_id(reply)

        def row() -> dict | None:
            status, _, found = admin(daemon, "GET", "/api/v1/events?decision=block&limit=10")
            if status != 200:
                return None
            return next((event for event in found["events"] if event["request_id"] == rid), None)

        assert eventually(row, what="the audit row")["status"] == 403
        assert not [e for e in daemon.log_events() if e.get("level") in ("critical", "error")]
