"""TLS interception fixtures: the interception CA, a separate upstream CA, the fake provider behind TLS, the daemon."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import subprocess
import time
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
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / "server.crt", out / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


@contextlib.contextmanager
def tls_front(target_port: int, cert: Path, key: Path, workdir: Path) -> Iterator[int]:
    """HAProxy terminating TLS in front of a plain TCP server (the fake provider); yields its port."""
    pem = workdir / "front.pem"
    pem.write_bytes(cert.read_bytes() + key.read_bytes())
    port = free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n"
        f"frontend tls\n  bind 127.0.0.1:{port} ssl crt {pem}\n  default_backend fake\n"
        f"backend fake\n  server fake 127.0.0.1:{target_port}\n"
    )
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


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
    workdir = tmp_path_factory.mktemp("fake-tls")
    cert, key = leaf_for(upstream_ca_dir, ["localhost"], workdir)
    with tls_front(int(fake.rsplit(":", 1)[1]), cert, key, workdir) as port:
        yield f"https://127.0.0.1:{port}"


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
