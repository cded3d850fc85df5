"""The upstream over TLS, as every real provider is reached: each request arrives whole and encrypted.

The upstream is a TLS server of this test's own (a CA made here, trusted by the
daemon through SSL_CERT_FILE, which OpenSSL's default verify paths read); it
closes the connection after each answer (HTTP/1.0) or keeps it (HTTP/1.1), so
both new and reused upstream TLS connections are exercised.
"""

from __future__ import annotations

import datetime
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.daemon import Daemon, http_json, running

ANSWER = {"id": "c1", "object": "chat.completion", "model": "m", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "hello over TLS"}, "finish_reason": "stop"}]}


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for localhost signed by it: (ca.pem, server.pem, server.key)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "upstream test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def _tls_upstream(cert: Path, key: Path, version: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = version

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            request = json.loads(self.rfile.read(length))
            assert request["model"] == "m"
            body = json.dumps(ANSWER).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return _certificates(tmp_path_factory.mktemp("upstream-tls"))


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
def test_every_request_reaches_a_tls_upstream(tmp_path: Path, certificates: tuple[Path, Path, Path], version: str) -> None:
    ca, cert, key = certificates
    server = _tls_upstream(cert, key, version)
    try:
        port = server.server_address[1]
        args = ["--upstream", f"openai=https://localhost:{port}", "--no-inspection"]
        with running(Daemon(tmp_path, args, {"SSL_CERT_FILE": str(ca), "RATE_LIMIT_PER_MINUTE": "0"})) as daemon:
            for _ in range(8):
                status, _, body = http_json("POST", daemon.url + "/proxy/openai/v1/chat/completions",
                                            {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
                assert status == 200, body
                assert body["choices"][0]["message"]["content"] == "hello over TLS"
    finally:
        server.shutdown()
        server.server_close()
