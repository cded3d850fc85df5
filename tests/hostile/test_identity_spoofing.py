"""Hostile clients against the running daemon: forged client addresses and extra credentials (issue #14, items 1 and 2).

The load balancer is a real HAProxy started from packaging/haproxy/haproxy.cfg,
changed only where a test on loopback must change it (addresses, ports, the
stats socket, check timings) and, for the PROXY protocol, as the config's own
comment says. HAProxy reaches Proxilion from 127.0.0.5, the only trusted proxy;
clients connect from 127.0.0.1, which is therefore the true client address.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import struct
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from proxilion.fakeprovider.testing import running_fake_provider
from support.daemon import REPO, Daemon, clear_fake, eventually, fake_requests, free_port, haproxy_stat, http_json, raw_reply, running

HAPROXY = "/usr/sbin/haproxy"
TOKEN = "hostile-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
LB_SOURCE = "127.0.0.5"  # HAProxy's address towards Proxilion: the trusted proxy
CLIENT = "127.0.0.1"  # where the test clients really are
OPENAI_CHAT = "/proxy/openai/v1/chat/completions"
ANTHROPIC_MESSAGES = "/proxy/anthropic/v1/messages"
CHAT_BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}).encode()
MESSAGES_BODY = json.dumps({"model": "claude-3-5-haiku-latest", "max_tokens": 16, "messages": [{"role": "user", "content": "hello"}]}).encode()
ANTHROPIC_KEY = "sk-ant-api03-hostile-test-key-0123456789"


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    with running_fake_provider(chunk_delay=0.005) as url:
        yield url


def daemon_args(fake_url: str) -> list[str]:
    return ["--upstream", f"openai={fake_url}", "--upstream", f"anthropic={fake_url}", "--upstream", f"gemini={fake_url}",
            "--admin-token", TOKEN, "--analytics-flush-interval", "0.1"]


def haproxy_config(port: int, backend_port: int, stats: Path, send_proxy: str | None = None) -> str:
    """The shipped config on loopback; C{send_proxy} ("send-proxy" or "send-proxy-v2") as its comment explains."""
    cfg = (REPO / "packaging/haproxy/haproxy.cfg").read_text()
    cfg = cfg.replace("stats socket /run/haproxy/admin.sock", f"stats socket {stats}")
    cfg = cfg.replace("maxconn 50000", "maxconn 2000")
    cfg = cfg.replace("bind *:443 ssl crt /etc/ssl/proxy.pem", f"bind {CLIENT}:{port}")
    cfg = cfg.replace("default-server fastinter 1s downinter 5s", "default-server fastinter 100ms downinter 200ms")
    for n in (1, 2, 3):
        cfg, count = re.subn(rf"server proxilion-{n} \S+:8787 check inter 5s fall 3 rise 2",
                             f"server proxilion-{n} 127.0.0.1:{backend_port} source {LB_SOURCE} check inter 200ms fall 2 rise 1", cfg)
        assert count == 1
    if send_proxy is not None:
        # What the config's comment tells an operator to do.
        line = re.search(r"^\s*#\s*(default-server .*send-proxy-v2.*)$", cfg, re.M)
        assert line is not None, "haproxy.cfg shows no PROXY protocol alternative"
        enabled = line.group(1).replace("fastinter 1s downinter 5s", "fastinter 100ms downinter 200ms")
        enabled = enabled.replace("send-proxy-v2", send_proxy)
        cfg = re.sub(r"^(\s*)default-server fastinter 100ms downinter 200ms\s*$", lambda m: m.group(1) + enabled, cfg, count=1, flags=re.M)
        assert send_proxy in cfg
    assert "option forwardfor" in cfg
    return cfg


class HAProxy:
    def __init__(self, root: Path, backend_port: int, send_proxy: str | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.stats = root / "haproxy.sock"
        path = root / "haproxy.cfg"
        path.write_text(haproxy_config(self.port, backend_port, self.stats, send_proxy))
        check = subprocess.run([HAPROXY, "-c", "-f", path], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.log = open(root / "haproxy.log", "wb")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", path], stdout=self.log, stderr=subprocess.STDOUT)
        self.root = root

    def states(self) -> set[str]:
        rows = haproxy_stat(self.stats)
        return {r["status"] for r in rows if r["pxname"] == "proxilion_back" and r["svname"].startswith("proxilion-")}

    def wait_up(self) -> None:
        eventually(lambda: self.stats.exists() or self.proc.poll() is not None, what="HAProxy's stats socket")
        assert self.proc.poll() is None, (self.root / "haproxy.log").read_text()
        eventually(lambda: self.states() == {"UP"}, what="HAProxy to see Proxilion up")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def send(port: int, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"",
         source: str = CLIENT) -> tuple[int, dict[str, str], Any]:
    """One request with exactly these header lines (repeats and case kept), from C{source}."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.putrequest(method, path, skip_host=any(n.lower() == "host" for n, _ in headers), skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body:
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = raw
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed
    finally:
        conn.close()


def events(daemon: Daemon, request_ids: set[str]) -> dict[str, dict[str, Any]]:
    """The audit rows of these requests, once they are all stored."""

    def rows() -> dict[str, dict[str, Any]]:
        status, _, body = http_json("GET", daemon.admin_url + "/api/v1/events?limit=500", headers=AUTH)
        if status != 200:
            return {}
        found = {e["request_id"]: e for e in body["events"] if e["request_id"] in request_ids}
        return found if set(found) == request_ids else {}

    return eventually(rows, what="audit rows")


def access_identities(daemon: Daemon, request_ids: set[str]) -> dict[str, str]:
    """The identity in the access line of each of these requests, once all are in the log (lines are batched)."""

    def lines() -> dict[str, str]:
        found = {e["request_id"]: e.get("identity") for e in daemon.log_events()
                 if e.get("logger") == "proxilion.access" and e.get("request_id") in request_ids}
        return found if set(found) == request_ids else {}

    return eventually(lines, what="access lines")


def rid() -> str:
    return "hostile-" + uuid.uuid4().hex


# ---- Item 1: the client address behind the shipped HAProxy ---------------------------


@pytest.fixture(scope="module")
def behind_haproxy(tmp_path_factory: pytest.TempPathFactory, fake: str) -> Iterator[tuple[Daemon, HAProxy]]:
    root = tmp_path_factory.mktemp("xff")
    env = {"TRUSTED_PROXIES": f"{LB_SOURCE}/32", "RATE_LIMIT_PER_MINUTE": "60", "RATE_LIMIT_BURST": "5"}
    with running(Daemon(root / "daemon", daemon_args(fake), env)) as daemon:
        lb = HAProxy(root / "haproxy", daemon.port)
        try:
            lb.wait_up()
            yield daemon, lb
        finally:
            lb.close()


def test_forged_forwarding_headers_are_not_the_client(behind_haproxy: tuple[Daemon, HAProxy], fake: str) -> None:
    daemon, lb = behind_haproxy
    clear_fake(fake)
    forged = [
        [("X-Forwarded-For", "6.6.6.6")],
        [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "7.7.7.7")],
        [("x-forwarded-for", "6.6.6.6, 127.0.0.5")],  # ends in the trusted proxy's own address
        [("Forwarded", "for=6.6.6.6")],
        [("Forwarded", 'for="[2001:db8::6]:443";proto=https')],
        [("X-Real-IP", "6.6.6.6")],
    ]
    ids = set()
    for headers in forged:
        request_id = rid()
        ids.add(request_id)
        status, _, body = send(lb.port, "POST", OPENAI_CHAT, [*headers, ("X-Request-ID", request_id)], CHAT_BODY)
        assert status in (200, 429), body
    rows = events(daemon, ids)
    assert {row["client_ip"] for row in rows.values()} == {CLIENT}
    assert set(access_identities(daemon, ids).values()) == {f"ip:{CLIENT}"}
    # What goes upstream holds no address the client wrote either.
    for seen in fake_requests(fake):
        assert "6.6.6.6" not in seen["headers"].get("x-forwarded-for", "")


def test_rotating_forged_addresses_do_not_escape_the_limit(behind_haproxy: tuple[Daemon, HAProxy]) -> None:
    daemon, lb = behind_haproxy
    statuses = []
    for n in range(12):
        headers = [("X-Forwarded-For", f"198.51.100.{n + 1}"), ("Forwarded", f"for=203.0.113.{n + 1}")]
        statuses.append(send(lb.port, "POST", OPENAI_CHAT, headers, CHAT_BODY)[0])
    # Burst 5: one true client, one bucket, however many addresses it claims.
    assert statuses.count(429) >= 6, statuses


# ---- Item 1: the PROXY protocol ---------------------------------------------------------


@pytest.fixture(scope="module", params=["send-proxy", "send-proxy-v2"])
def proxy_protocol(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake: str) -> Iterator[tuple[Daemon, HAProxy]]:
    root = tmp_path_factory.mktemp(request.param)
    env = {"TRUSTED_PROXIES": f"{LB_SOURCE}/32", "PROXY_PROTOCOL": "on", "RATE_LIMIT_PER_MINUTE": "0"}
    with running(Daemon(root / "daemon", daemon_args(fake), env)) as daemon:
        lb = HAProxy(root / "haproxy", daemon.port, send_proxy=request.param)
        try:
            lb.wait_up()
            yield daemon, lb
        finally:
            lb.close()


def test_proxy_protocol_from_haproxy_names_the_client(proxy_protocol: tuple[Daemon, HAProxy]) -> None:
    daemon, lb = proxy_protocol
    ids = {rid(), rid()}
    for request_id in ids:
        status, _, body = send(lb.port, "POST", OPENAI_CHAT, [("X-Forwarded-For", "6.6.6.6"), ("X-Request-ID", request_id)], CHAT_BODY)
        assert status == 200, body
    assert {row["client_ip"] for row in events(daemon, ids).values()} == {CLIENT}
    assert set(access_identities(daemon, ids).values()) == {f"ip:{CLIENT}"}


V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def _v2_header(source: str, port: int) -> bytes:
    addresses = socket.inet_aton(source) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", port, 8787)
    return V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(addresses)) + addresses


def _request(request_id: str) -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: proxilion\r\nX-Request-ID: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (OPENAI_CHAT.encode(), request_id.encode(), len(CHAT_BODY), CHAT_BODY))


@pytest.fixture(scope="module")
def proxy_protocol_direct(tmp_path_factory: pytest.TempPathFactory, fake: str) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("proxy-direct")
    env = {"TRUSTED_PROXIES": f"{LB_SOURCE}/32", "PROXY_PROTOCOL": "on", "RATE_LIMIT_PER_MINUTE": "0"}
    with running(Daemon(root, daemon_args(fake), env)) as daemon:
        yield daemon


def test_proxy_header_from_an_untrusted_peer_is_not_honoured(proxy_protocol_direct: Daemon) -> None:
    daemon = proxy_protocol_direct
    for header in (b"PROXY TCP4 6.6.6.6 127.0.0.1 4711 8787\r\n", _v2_header("6.6.6.6", 4711)):
        reply = raw_reply(daemon.port, header + _request(rid()), CLIENT)
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    # The same daemon serves untrusted clients speaking plain HTTP, as themselves.
    request_id = rid()
    reply = raw_reply(daemon.port, _request(request_id), CLIENT)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert events(daemon, {request_id})[request_id]["client_ip"] == CLIENT
    assert "6.6.6.6" not in daemon.log()


def test_trusted_peer_without_a_valid_proxy_header_is_closed(proxy_protocol_direct: Daemon) -> None:
    daemon = proxy_protocol_direct
    for data in (_request(rid()), b"PROXY TCP4 6.6.6.6 nonsense\r\n" + _request(rid()), b"PROXY " + b"9" * 200 + b"\r\n"):
        assert raw_reply(daemon.port, data, LB_SOURCE) == b""
    # Split across packets, v1 and v2 from the trusted peer are read whole.
    for header in (b"PROXY TCP4 198.51.100.9 127.0.0.1 4711 8787\r\n", _v2_header("198.51.100.9", 4711)):
        request_id = rid()
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=5, source_address=(LB_SOURCE, 0)) as sock:
            for i in range(0, len(header), 5):
                sock.sendall(header[i:i + 5])
            sock.sendall(_request(request_id))
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert events(daemon, {request_id})[request_id]["client_ip"] == "198.51.100.9"


# ---- Item 2: one request, one credential ----------------------------------------------


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory, fake: str) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("credentials")
    env = {"RATE_LIMIT_PER_MINUTE": "60", "RATE_LIMIT_BURST": "3"}
    with running(Daemon(root, daemon_args(fake), env)) as daemon:
        yield daemon


def test_extra_authorization_does_not_escape_the_key_limit(direct: Daemon, fake: str) -> None:
    clear_fake(fake)
    statuses = []
    for _ in range(8):
        headers = [("x-api-key", ANTHROPIC_KEY), ("anthropic-version", "2023-06-01"), ("Authorization", f"Bearer junk-{uuid.uuid4().hex}")]
        statuses.append(send(direct.port, "POST", ANTHROPIC_MESSAGES, headers, MESSAGES_BODY)[0])
    assert set(statuses) == {400}, statuses
    assert fake_requests(fake) == []


AMBIGUOUS = [
    # (route and query, header lines)
    (ANTHROPIC_MESSAGES, [("x-api-key", ANTHROPIC_KEY), ("Authorization", "Bearer junk")]),
    (ANTHROPIC_MESSAGES, [("x-api-key", ANTHROPIC_KEY), ("X-API-Key", "sk-ant-other")]),
    (ANTHROPIC_MESSAGES, [("x-api-key", ANTHROPIC_KEY), ("x-api-key", ANTHROPIC_KEY)]),  # identical repeats too
    (ANTHROPIC_MESSAGES, [("x-api-key", ANTHROPIC_KEY), ("x-api-key", "")]),
    (ANTHROPIC_MESSAGES, [("x-api-key", ANTHROPIC_KEY), ("api-key", "other")]),
    (OPENAI_CHAT, [("Authorization", "Bearer sk-one"), ("Authorization", "Bearer sk-two")]),
    (OPENAI_CHAT, [("Authorization", "Bearer sk-one"), ("authorization", "  Bearer sk-one ")]),
    (OPENAI_CHAT, [("Authorization", "Bearer sk-one, Bearer sk-two")]),
    (OPENAI_CHAT, [("Authorization", "Bearer sk-one"), ("x-api-key", "junk")]),
    ("/proxy/gemini/v1beta/models/gemini-pro:generateContent?key=AIza-one", [("x-goog-api-key", "AIza-two")]),
    ("/proxy/gemini/v1beta/models/gemini-pro:generateContent?key=AIza-one&key=AIza-one", []),
    (OPENAI_CHAT, [("Host", "api.openai.com"), ("Host", "api.anthropic.com"), ("Authorization", "Bearer sk-one")]),
]


@pytest.mark.parametrize("path,headers", AMBIGUOUS)
def test_ambiguous_credentials_and_hosts_are_refused(direct: Daemon, fake: str, path: str, headers: list[tuple[str, str]]) -> None:
    clear_fake(fake)
    rejected_before = direct.metric("proxilion_rejected_requests_total")
    request_id = rid()
    if not any(n.lower() == "host" for n, _ in headers):
        headers = [("Host", "proxilion"), *headers]
    status, reply_headers, body = send(direct.port, "POST", path, [*headers, ("X-Request-ID", request_id)], MESSAGES_BODY)
    assert status == 400, body
    if path.startswith("/proxy/anthropic"):
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    elif path.startswith("/proxy/gemini"):
        assert body["error"]["status"] == "INVALID_ARGUMENT"
    else:
        assert body["error"]["type"] == "invalid_request_error"
    assert fake_requests(fake) == []
    assert direct.metric("proxilion_rejected_requests_total") == rejected_before + 1
    row = events(direct, {request_id})[request_id]
    assert row["decision"] == "rejected"
    assert row["error"] in ("ambiguous_credentials", "duplicate_host")
    # The refusal names no secret.
    for _, value in headers:
        for secret in ("sk-one", "sk-two", ANTHROPIC_KEY, "AIza-one", "AIza-two", "sk-ant-other"):
            assert secret not in json.dumps(body) and secret not in json.dumps(row)


def test_a_single_credential_is_limited_per_key(direct: Daemon, fake: str) -> None:
    clear_fake(fake)
    key = f"sk-ant-api03-{uuid.uuid4().hex}"
    statuses = [send(direct.port, "POST", ANTHROPIC_MESSAGES, [("x-api-key", key), ("anthropic-version", "2023-06-01"),
                                                                ("X-User-Id", f"u-{n}")], MESSAGES_BODY)[0]
                for n in range(6)]
    assert statuses[:3] == [200, 200, 200] and statuses.count(429) >= 2, statuses
    assert len(fake_requests(fake)) == statuses.count(200)
