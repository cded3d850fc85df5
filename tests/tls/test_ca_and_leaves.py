"""The interception CA (`proxilion ca`), the checks that stop startup, and the leaves minted from it."""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from proxilion.metrics import Metrics
from proxilion.tls.ca import create_ca, load_ca, verify_issued
from proxilion.tls.leaves import LEAF_DAYS, LeafCache
from support.daemon import Daemon

from .conftest import leaf_for

CLI = [sys.executable, "-m", "proxilion.cli"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=60)


def ext(cert: x509.Certificate, kind: type) -> x509.Extension:  # type: ignore[type-arg]
    return cert.extensions.get_extension_for_class(kind)


@pytest.mark.parametrize("rsa_key", [False, True])
def test_ca_init_writes_a_constrained_ca_and_a_private_key(tmp_path: Path, rsa_key: bool) -> None:
    done = cli("ca", "init", "--dir", str(tmp_path / "ca"), *(["--rsa"] if rsa_key else []))
    assert done.returncode == 0, done.stderr
    key_path, cert_path = tmp_path / "ca" / "ca.key", tmp_path / "ca" / "ca.crt"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in done.stdout
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    constraints = ext(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ext(cert, x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert ext(cert, x509.SubjectKeyIdentifier).value.digest
    public = cert.public_key()
    if rsa_key:
        assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 3072
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    # Never overwrites a CA in place.
    again = cli("ca", "init", "--dir", str(tmp_path / "ca"))
    assert again.returncode == 2 and "exists already" in again.stderr


def test_ca_show_and_export(ca_dir: Path) -> None:
    cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    shown = cli("ca", "show", env={"CA_CERT_FILE": str(ca_dir / "ca.crt")})
    assert shown.returncode == 0, shown.stderr
    fingerprint = cert.fingerprint(cert.signature_hash_algorithm).hex(":").upper()  # type: ignore[arg-type]
    assert "Proxilion Interception CA" in shown.stdout and fingerprint in shown.stdout
    assert f"{cert.not_valid_after_utc:%Y-%m-%d}" in shown.stdout
    exported = cli("ca", "export", "--cert", str(ca_dir / "ca.crt"))
    assert exported.returncode == 0
    assert exported.stdout == (ca_dir / "ca.crt").read_text()
    assert "PRIVATE" not in exported.stdout


def _broken_setups(tmp_path: Path, ca_dir: Path) -> dict[str, tuple[dict[str, str], str]]:
    other = tmp_path / "other"
    create_ca(other)
    leaf = tmp_path / "leaf"
    leaf_cert, _ = leaf_for(ca_dir, ["example.test"], leaf)
    return {
        "missing key": ({"CA_CERT_FILE": str(ca_dir / "ca.crt"), "CA_KEY_FILE": str(tmp_path / "nope.key")}, "CA_KEY_FILE: cannot read"),
        "not a CA": ({"CA_CERT_FILE": str(leaf_cert), "CA_KEY_FILE": str(ca_dir / "ca.key")}, "is not a CA certificate"),
        "mismatched key": ({"CA_CERT_FILE": str(ca_dir / "ca.crt"), "CA_KEY_FILE": str(other / "ca.key")}, "does not match"),
    }


@pytest.mark.parametrize("case", ["missing key", "not a CA", "mismatched key"])
def test_a_bad_ca_stops_startup_with_one_line(tmp_path: Path, ca_dir: Path, case: str) -> None:
    env, expected = _broken_setups(tmp_path, ca_dir)[case]
    daemon = Daemon(tmp_path / "d", [], env)
    daemon.start(wait=False)
    assert daemon.proc is not None
    try:
        assert daemon.proc.wait(timeout=30) != 0
    finally:
        daemon.kill()
    log = daemon.log()
    lines = [line for line in log.splitlines() if expected in line]
    assert len(lines) == 1, log
    assert "Traceback" not in log
    assert "PRIVATE KEY" not in log


def test_a_leaf_has_the_fields_clients_check(ca_dir: Path) -> None:
    ca = load_ca(str(ca_dir / "ca.crt"), str(ca_dir / "ca.key"))
    leaves = LeafCache(ca, Metrics(), size=4)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert, _ = leaves.mint_certificate("api.openai.com", now)
    second, _ = leaves.mint_certificate("api.openai.com", now)
    assert ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == ["api.openai.com"]
    assert ExtendedKeyUsageOID.SERVER_AUTH in ext(cert, x509.ExtendedKeyUsage).value
    assert not ext(cert, x509.BasicConstraints).value.ca
    assert cert.not_valid_before_utc < now - datetime.timedelta(minutes=1)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= datetime.timedelta(days=LEAF_DAYS) <= datetime.timedelta(days=30)
    assert cert.serial_number != second.serial_number and cert.serial_number.bit_length() > 64
    assert verify_issued(cert, ca.certificate)


def test_the_leaf_cache_is_bounded_and_counts_evictions(ca_dir: Path) -> None:
    metrics = Metrics()
    leaves = LeafCache(load_ca(str(ca_dir / "ca.crt"), str(ca_dir / "ca.key")), metrics, size=2)
    for host in ("api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com", "api.openai.com"):
        leaves.context_for(host)
    assert len(leaves) == 2
    assert metrics.tls_leaf_cache_evictions._value.get() >= 1


def _handshake(port: int, host: str, cafile: Path | None) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname=host)


def test_a_client_that_does_not_trust_the_ca_fails_the_handshake(daemon: Daemon, upstream_ca_dir: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(daemon.tls_port, "api.openai.com", upstream_ca_dir / "ca.crt")  # type: ignore[attr-defined]


def test_a_non_provider_host_never_gets_a_certificate(daemon: Daemon, ca_dir: Path) -> None:
    before = daemon.metric("proxilion_tls_certificates_minted_total")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", daemon.tls_port), timeout=10) as raw:  # type: ignore[attr-defined]
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(raw, server_hostname="example.com")
    assert daemon.metric("proxilion_tls_certificates_minted_total") == before
    assert daemon.metric("proxilion_tls_handshakes_total", mode="transparent", result="unknown_host") >= 1
