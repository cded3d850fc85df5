"""CONNECT to hosts that are not providers: denied by default, tunnelled only where CONNECT_POLICY and CONNECT_ALLOW say,
and never into loopback or private addresses unless allowlisted (no open proxy, no SSRF)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from support.daemon import Daemon, eventually, running


def connect(daemon: Daemon, authority: str, then: bytes = b"") -> tuple[int, bytes]:
    """Send CONNECT C{authority}; returns the status and, after a 200, the answer to C{then} sent through it."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
        s.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(65536)
            if not chunk:
                break
            head += chunk
        status = int(head.split(b" ", 2)[1])
        if status != 200 or not then:
            return status, head
        s.sendall(then)
        body = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, body


def access_lines(daemon: Daemon, method: str = "CONNECT") -> list[dict]:
    return [e for e in daemon.log_events() if e.get("method") == method and "decision" in e]


def test_connect_to_a_non_provider_is_denied_by_default(daemon: Daemon) -> None:
    before = daemon.metric("proxilion_connect_requests_total", decision="deny")
    status, head = connect(daemon, "example.com:443")
    assert status == 403
    assert b"not an open proxy" in head or b"connect_denied" in head
    assert daemon.metric("proxilion_connect_requests_total", decision="deny") == before + 1


@pytest.mark.parametrize("authority", ["api.openai.com:8443", "1.1.1.1:443"])
def test_a_port_other_than_443_or_an_ip_literal_is_refused(daemon: Daemon, authority: str) -> None:
    assert connect(daemon, authority)[0] == 403


def test_tunnel_refuses_loopback_ip_literals_and_other_ports_without_the_allowlist(tmp_path: Path, fake: str) -> None:
    fake_port = fake.rsplit(":", 1)[1]
    with running(Daemon(tmp_path, [], {"CONNECT_POLICY": "tunnel"})) as d:
        # localhost resolves to loopback: a tunnel there would reach the proxy's own network.
        assert connect(d, "localhost:443")[0] == 403
        assert connect(d, f"127.0.0.1:{fake_port}")[0] == 403
        assert connect(d, f"localhost:{fake_port}")[0] == 403
        assert connect(d, "10.0.0.1:443")[0] == 403
        assert d.metric("proxilion_connect_requests_total", decision="deny") == 4
        assert d.metric("proxilion_connect_requests_total", decision="tunnel") == 0


def test_an_allowlisted_target_is_tunnelled_blind_and_logged_as_a_tunnel(tmp_path: Path, fake: str) -> None:
    fake_port = fake.rsplit(":", 1)[1]
    env = {"CONNECT_POLICY": "tunnel", "CONNECT_ALLOW": f"localhost:{fake_port}"}
    with running(Daemon(tmp_path, [], env)) as d:
        status, answer = connect(d, f"localhost:{fake_port}", b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert status == 200
        # The fake provider itself answered, through the tunnel.
        assert b"no fake route for /health" in answer
        # With an allowlist, tunnels reach only what it names.
        assert connect(d, "localhost:443")[0] == 403
        assert d.metric("proxilion_connect_requests_total", decision="tunnel") == 1
        line = eventually(lambda: [e for e in access_lines(d) if e.get("decision") == "tunnel"], what="tunnel access line")[0]
        assert line["status"] == 200 and line.get("error") is None
        assert not [e for e in access_lines(d) if e.get("status") == 200 and e.get("decision") == "rejected"]
