"""TLS interception fixtures: the interception CA, a separate upstream CA, the fake provider behind TLS, the daemon."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from proxilion.fakeprovider.testing import running_fake_provider
from proxilion.tls.ca import create_ca, load_ca
from support.daemon import Daemon, free_port, running


def leaf_for(ca_dir: Path, names: list[str], out: Path) -> tuple[Path, Path]:
    """A server certificate for C{names} (DNS) signed by the CA in C{ca_dir}, written as PEM files."""
    ca = load_ca(str(ca_dir / "ca.crt"), str(ca_dir / "ca.key"))
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / "server.crt", out / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


class TLSFront:
    """A TLS terminator (stdlib ssl, threads) in front of a plain TCP server: the fake provider's HTTPS."""

    def __init__(self, target_port: int, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.target_port = target_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture(scope="session")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("interception-ca")
    create_ca(directory)
    return directory


@pytest.fixture(scope="session")
def upstream_ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("upstream-ca")
    create_ca(directory, common_name="Test Upstream CA")
    return directory


@pytest.fixture(scope="session")
def fake() -> Iterator[str]:
    with running_fake_provider(chunk_delay=0.005) as url:
        yield url


@pytest.fixture(scope="session")
def fake_tls(fake: str, upstream_ca_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fake provider's base URL over TLS, its certificate from the upstream test CA."""
    cert, key = leaf_for(upstream_ca_dir, ["localhost"], tmp_path_factory.mktemp("fake-tls"))
    front = TLSFront(int(fake.rsplit(":", 1)[1]), cert, key)
    yield f"https://localhost:{front.port}"
    front.close()


def daemon_env(ca_dir: Path, upstream_ca_dir: Path, **extra: str) -> dict[str, str]:
    return {"CA_CERT_FILE": str(ca_dir / "ca.crt"), "CA_KEY_FILE": str(ca_dir / "ca.key"),
            "UPSTREAM_CA_BUNDLE": str(upstream_ca_dir / "ca.crt"), **extra}


def upstreams(fake_tls: str) -> list[str]:
    return ["--upstream", f"openai={fake_tls}", "--upstream", f"anthropic={fake_tls}"]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, ca_dir: Path, upstream_ca_dir: Path, fake_tls: str) -> Iterator[Daemon]:
    tls_port = free_port()
    env = daemon_env(ca_dir, upstream_ca_dir, TLS_PORT=str(tls_port), ADMIN_TOKEN="t")
    with running(Daemon(tmp_path_factory.mktemp("tls-daemon"), upstreams(fake_tls), env)) as d:
        d.tls_port = tls_port  # type: ignore[attr-defined]
        yield d
