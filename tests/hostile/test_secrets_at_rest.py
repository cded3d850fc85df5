"""Secrets a client writes where Proxilion logs or stores (path, query, fragment, ids, identity headers) never rest there.

Against the real daemon: every planted value is looked for in the access log,
in the audit rows the admin API serves, and in the bytes of the data directory
(the SQLite database, its WAL and any spool).
"""

from __future__ import annotations

import http.client
import socket
import time
from typing import Any, Iterator

import pytest

from proxilion.fakeprovider.testing import running_fake_provider
from support.daemon import Daemon, eventually, http_json, running

TOKEN = "hostile-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}

SECRETS = {
    "openai": "sk-proj-Q3xT9vLm2RkP8wZ4nB7yH1cJ6dF0gS5aE3uK9iO2pL7mN4bV",
    "aws": "AKIAQ3EGRTXW5JZ7BVMD",
    "card": "4111111111111111",
    "email": "victim.person@corp-mail.com",
}


def _encoded(secret: str) -> str:
    """Every byte percent-encoded: what a client hiding a value from a plain-text match would send."""
    return "".join("%%%02X" % b for b in secret.encode())


def _forms(secret: str) -> list[str]:
    """The spellings of C{secret} that must not appear at rest."""
    return [secret, _encoded(secret), _encoded(secret).lower(), secret.replace("@", "%40")]


def _raw(port: int, data: bytes, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        if not read:
            return b""
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _get(port: int, target: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", target, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    with running_fake_provider() as url:
        yield url


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory, fake: str) -> Iterator[tuple[Daemon, dict[str, Any]]]:
    """A daemon sent every secret in every place, with what came back."""
    workdir = tmp_path_factory.mktemp("secrets")
    args = ["--upstream", f"openai={fake}", "--admin-token", TOKEN, "--analytics-flush-interval", "0.1",
            "--max-body-size", "1024", "--max-headers", "10", "--client-timeout", "1"]
    env = {"RATE_LIMIT_PER_MINUTE": "0", "TENANT_HEADER": "x-tenant-id"}
    with running(Daemon(workdir, args, env)) as daemon:
        port = daemon.port
        seen: dict[str, Any] = {"request_ids": [], "sent": 0}
        for secret in SECRETS.values():
            enc = _encoded(secret)
            for target in (
                f"/proxy/openai/v1/{secret}/models",
                f"/proxy/openai/v1/models/{enc}",
                f"/proxy/openai/v1/models?api-version={secret}",
                f"/proxy/openai/v1/models?api-version={enc}",
                f"/proxy/openai/v1/models?limit=2&after={secret}",
                f"/proxy/openai/v1/models#{secret}",
            ):
                _get(port, target)
            _get(port, "/proxy/openai/v1/models", {"x-user-id": secret})
            _get(port, "/proxy/openai/v1/models", {"x-user-id": f"team {secret}"})
            _get(port, "/proxy/openai/v1/models", {"x-tenant-id": secret})
            status, headers = _get(port, "/proxy/openai/v1/models", {"x-request-id": secret})
            seen["request_ids"].append(headers.get("x-request-id"))
            # Refused before they were complete: 413, 431, 400, 408 and 499 (the client left).
            assert _raw(port, f"POST /proxy/openai/v1/{secret}/chat/completions?api-version={secret} HTTP/1.1\r\n"
                              "Host: x\r\nContent-Length: 5000\r\n\r\n".encode()).startswith(b"HTTP/1.1 413")
            many = "".join(f"X-H{i}: v\r\n" for i in range(20))
            assert _raw(port, f"GET /proxy/openai/v1/{enc}/models HTTP/1.1\r\nHost: x\r\nX-Request-ID: {secret}\r\n{many}\r\n"
                        .encode()).startswith(b"HTTP/1.1 431")
            assert _raw(port, f"GET /proxy/openai/v1/{secret}/models HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"
                        .encode()).startswith(b"HTTP/1.1 400")
            assert _raw(port, f"POST /proxy/openai/v1/{secret}/x HTTP/1.1\r\nHost: x\r\nX-User-ID: {secret}\r\n"
                              "Content-Length: 100\r\n\r\n{".encode()).startswith(b"HTTP/1.1 408")
            _raw(port, f"POST /proxy/openai/v1/chat/{enc}?api-version={secret} HTTP/1.1\r\nHost: x\r\n"
                       f"X-Request-ID: {secret}\r\nContent-Length: 100\r\n\r\n{{".encode(), read=False)
            seen["sent"] += 15

        def rows() -> list[dict[str, Any]]:
            status, _, body = http_json("GET", daemon.admin_url + "/api/v1/events?limit=1000", headers=AUTH)
            return body["events"] if status == 200 else []

        # Today's code keeps a client's request id, so a repeated one collapses rows: wait for the count to settle.
        counts: list[int] = []

        def settled() -> list[dict[str, Any]]:
            events = rows()
            counts.append(len(events))
            time.sleep(0.3)
            return events if len(counts) > 3 and counts[-1] == counts[-4] and counts[-1] >= seen["sent"] // 2 else []

        seen["events"] = eventually(settled, timeout=30, what="the planted requests' audit rows")
        time.sleep(0.3)
        seen["log"] = daemon.log()
        seen["data"] = b"".join(p.read_bytes() for p in (workdir / "data").rglob("*") if p.is_file())
        yield daemon, seen


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_no_planted_secret_in_the_access_log(planted: tuple[Daemon, dict[str, Any]], kind: str) -> None:
    _, seen = planted
    for form in _forms(SECRETS[kind]):
        assert form not in seen["log"], f"{kind} secret ({form}) in the log"


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_no_planted_secret_in_the_audit_rows(planted: tuple[Daemon, dict[str, Any]], kind: str) -> None:
    _, seen = planted
    for form in _forms(SECRETS[kind]):
        leaks = [event for event in seen["events"] if form in repr(event)]
        assert not leaks, f"{kind} secret ({form}) in audit rows: {leaks}"
        assert form.encode() not in seen["data"], f"{kind} secret ({form}) in the data directory"


def test_findings_are_masked_with_their_type(planted: tuple[Daemon, dict[str, Any]]) -> None:
    _, seen = planted
    paths = [event["path"] for event in seen["events"]]
    assert any("[REDACTED:OPENAI_API_KEY]" in path for path in paths), paths
    assert any("[REDACTED:CREDIT_CARD]" in path for path in paths), paths
    assert not any("#" in path for path in paths), "a fragment was stored"


def test_unsafe_request_ids_are_replaced_and_safe_ones_kept(planted: tuple[Daemon, dict[str, Any]]) -> None:
    daemon, seen = planted
    assert all(rid and rid not in SECRETS.values() for rid in seen["request_ids"])
    status, headers = _get(daemon.port, "/proxy/openai/v1/models", {"x-request-id": "trace-0af7651916cd43dd"})
    assert headers["x-request-id"] == "trace-0af7651916cd43dd"


def test_identity_header_findings_are_fingerprinted(planted: tuple[Daemon, dict[str, Any]]) -> None:
    _, seen = planted
    users = {event["identity"] for event in seen["events"] if event["identity"].startswith("user:")}
    assert users, "no identity from x-user-id was recorded"
    # Distinct secrets keep distinct buckets: fingerprints, not one shared placeholder.
    assert len(users) >= len(SECRETS)
    tenants = {event["tenant"] for event in seen["events"] if event["tenant"]}
    assert len(tenants) >= len(SECRETS)
