"""The interception CA: create it (`proxilion ca init`), load and check it, describe it.

The key never leaves this module except as the signing key of leaves; no
message or log line carries it.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

__all__ = ["CA", "CAError", "create_ca", "load_ca", "load_certificate", "describe", "CA_CERT_NAME", "CA_KEY_NAME"]

CA_CERT_NAME = "ca.crt"
CA_KEY_NAME = "ca.key"
_CA_DAYS = 3650


class CAError(ValueError):
    """The CA files are missing, unreadable or wrong; the message is one line and never holds key material."""


@attrs.frozen
class CA:
    """The signing CA (certificate and key) and, during a rotation, the other CA clients may still trust."""

    certificate: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes = attrs.field(repr=False)
    extra: x509.Certificate | None = None

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        return (self.certificate,) if self.extra is None else (self.certificate, self.extra)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def create_ca(directory: str | Path, use_rsa: bool = False, common_name: str = "Proxilion Interception CA") -> tuple[Path, Path]:
    """Write a new CA into C{directory} (key mode 0600); refuse to overwrite one. Returns (cert, key) paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CA_CERT_NAME, directory / CA_KEY_NAME
    for path in (cert_path, key_path):
        if path.exists():
            raise CAError(f"{path} exists already; remove it or choose another --dir")
    key: CertificateIssuerPrivateKeyTypes = rsa.generate_private_key(65537, 3072) if use_rsa else ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Proxilion GRC"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                          key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    # The key file is created 0600 before a byte of the key is written.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CAError(f"{what}: cannot read {path}: {e.strerror}") from None


def load_certificate(path: str, what: str = "CA_CERT_FILE") -> x509.Certificate:
    """A CA certificate from a PEM file, checked to be a CA."""
    try:
        cert = x509.load_pem_x509_certificate(_read(path, what))
    except ValueError:
        raise CAError(f"{what}: {path} does not hold a PEM certificate") from None
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise CAError(f"{what}: {path} is not a CA certificate (basicConstraints CA:true is missing)")
    return cert


def load_ca(cert_file: str, key_file: str | None, extra_cert_file: str | None = None) -> CA:
    """Load and check the CA; raise L{CAError} with one line naming the file and the problem."""
    if not key_file:
        raise CAError("CA_KEY_FILE: must be set with CA_CERT_FILE")
    cert = load_certificate(cert_file)
    data = _read(key_file, "CA_KEY_FILE")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        # The parser's own message could quote the file; ours names it only.
        raise CAError(f"CA_KEY_FILE: {key_file} does not hold an unencrypted PEM private key") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise CAError(f"CA_KEY_FILE: {key_file} holds a key type other than ECDSA or RSA")
    if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise CAError(f"CA_KEY_FILE: {key_file} does not match the certificate in {cert_file}")
    if cert.not_valid_after_utc <= _now():
        raise CAError(f"CA_CERT_FILE: {cert_file} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    extra = load_certificate(extra_cert_file, "CA_EXTRA_CERT_FILE") if extra_cert_file else None
    return CA(cert, key, extra)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def describe(cert: x509.Certificate) -> dict[str, object]:
    """Subject, SHA-256 fingerprint and expiry of a CA certificate (what /status and `ca show` print)."""
    not_after = cert.not_valid_after_utc
    return {
        "subject": cert.subject.rfc4514_string(),
        "sha256_fingerprint": fingerprint(cert),
        "not_after": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "days_to_expiry": round((not_after - _now()).total_seconds() / 86400, 1),
    }


def verify_issued(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    """True when C{ca} signed C{leaf} (tests and `ca show` use it)."""
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
