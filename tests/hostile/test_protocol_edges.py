"""Protocol edges a hostile or broken client (or upstream) reaches: each gets a clear answer, never a traceback or a silent close."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from typing import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.daemon import Daemon, closed_port, eventually, http_json, raw_reply, running

TOKEN = "hostile-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def _status(reply: bytes) -> int:
    assert reply, "the connection was closed without an answer"
    return int(reply.split(b" ", 2)[1])


def _headers(reply: bytes) -> dict[str, str]:
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in head)}


@pytest.fixture(scope="module")
def untrusted_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A TLS server on loopback whose self-signed certificate no client trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    workdir = tmp_path_factory.mktemp("tls")
    (workdir / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (workdir / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(workdir / "cert.pem", workdir / "key.pem")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(65536)
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, untrusted_tls: int) -> Iterator[Daemon]:
    args = ["--admin-token", TOKEN, "--upstream", f"openai=https://127.0.0.1:{untrusted_tls}"]
    # Redis that is not there: the rate limiter falls back to local buckets and reports itself degraded.
    env = {"RATE_LIMIT_STORE": "redis", "REDIS_URL": f"redis://127.0.0.1:{closed_port()}"}
    with running(Daemon(tmp_path_factory.mktemp("edges"), args, env)) as d:
        yield d


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT"])
def test_drain_with_the_wrong_method_is_405_with_allow(daemon: Daemon, method: str) -> None:
    status, headers, body = http_json(method, daemon.admin_url + "/api/v1/drain", headers=AUTH)
    assert status == 405
    assert "POST" in headers["allow"]
    if method != "HEAD":
        assert body["error"]["status"] == 405
    assert not [e for e in daemon.log_events() if e.get("level") in ("critical", "error")]
    assert http_json("GET", daemon.admin_url + "/ready")[0] == 200, "a wrong method must not start the drain"


def test_a_huge_header_on_the_admin_port_is_431(daemon: Daemon) -> None:
    host = daemon.admin_url.removeprefix("http://")
    reply = raw_reply(daemon.admin_port, b"GET /status HTTP/1.1\r\nHost: %s\r\nX-Big: %s\r\n\r\n" % (host.encode(), b"a" * 100_000))
    assert _status(reply) == 431


def test_too_many_headers_on_the_admin_port_is_431(daemon: Daemon) -> None:
    lines = b"".join(b"X-H%d: v\r\n" % i for i in range(600))
    reply = raw_reply(daemon.admin_port, b"GET /status HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
    assert _status(reply) == 431


def test_http10_with_chunked_body_is_400(daemon: Daemon) -> None:
    reply = raw_reply(daemon.port, b"POST /proxy/openai/v1/chat/completions HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert _status(reply) == 400
    assert b'"error"' in reply


def test_http2_request_line_is_505(daemon: Daemon) -> None:
    reply = raw_reply(daemon.port, b"GET /proxy/openai/v1/models HTTP/2.0\r\nHost: x\r\n\r\n")
    assert _status(reply) == 505
    assert b'"error"' in reply


def test_upstream_certificate_failure_is_named(daemon: Daemon) -> None:
    status, _, body = http_json("POST", daemon.url + "/proxy/openai/v1/chat/completions",
                                {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 502
    assert body["error"]["code"] == "upstream_tls_error", body
    assert "certificate" in body["error"]["message"].lower()

    def warned() -> list[dict]:
        return [e for e in daemon.log_events() if "upstream_tls_error" in str(e.get("log_format", "")) + str(e.get("kind", ""))]

    lines = eventually(warned, what="the upstream TLS warning")
    text = str(lines)
    assert "certificate" in text.lower() and "closed before the response" not in text


def test_status_says_degraded_when_a_component_is(daemon: Daemon) -> None:
    def degraded() -> dict | None:
        status, _, body = http_json("GET", daemon.admin_url + "/status")
        return body if status == 200 and body["degraded"] else None

    body = eventually(degraded, what="a degraded component")
    assert body["status"] == "degraded", body
    # Liveness is not affected: shared-service trouble degrades, it does not take the replica out.
    assert http_json("GET", daemon.admin_url + "/health")[0] == 200
