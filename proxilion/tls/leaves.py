"""Leaf certificates for provider hosts, minted on demand from the CA and kept in a bounded LRU.

An ECDSA P-256 leaf (key, certificate, OpenSSL context) costs about 0.5 ms of
CPU (bench/tls_bench.py), well under the reactor's budget, so it is minted
inline in the SNI callback rather than in a thread. Leaves live in memory
only; a CA reload drops them all.
"""

from __future__ import annotations

import collections
import datetime
import weakref
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

from proxilion.proxy.routing import provider_for_host
from proxilion.tls.ca import CA

__all__ = ["LeafCache", "Handshake", "InterceptingTLS", "LEAF_DAYS"]

log = Logger(namespace="proxilion.tls")

LEAF_DAYS = 30
# Clients whose clock runs a little behind still accept a fresh leaf.
_BACKDATE = datetime.timedelta(hours=1)
# A cached leaf this close to its end is minted again.
_RENEW_BEFORE = datetime.timedelta(days=1)
_ALPN = b"http/1.1"
HANDSHAKE_RESULTS = ("ok", "no_sni", "unknown_host", "client_rejected")


class Handshake:
    """One TLS server handshake: the host served and how it ended."""

    __slots__ = ("mode", "expected", "host", "result", "_count")

    def __init__(self, mode: str, expected: str | None, count: Callable[[str, str], None]) -> None:
        self.mode = mode
        # The CONNECT host, which the client's SNI must name (None on the TLS listener).
        self.expected = expected
        self.host: str | None = None
        self.result: str | None = None
        self._count = count

    @property
    def done(self) -> bool:
        return self.result == "ok"

    def end(self, result: str) -> None:
        """Count the handshake's result once."""
        if self.result is None or (self.result != "ok" and result == "ok"):
            if self.result is None:
                self._count(self.mode, result)
            self.result = result

    def lost(self) -> None:
        """The connection closed: a handshake that never completed failed on the client's side unless we refused it."""
        if self.result is None:
            self.end("client_rejected")


def _alpn_select(connection: SSL.Connection, offered: list[bytes]) -> bytes | SSL._NoOverlappingProtocols:
    # HTTP/1.1 only: the proxy port speaks nothing else.
    return _ALPN if _ALPN in offered else SSL.NO_OVERLAPPING_PROTOCOLS


# Twisted keeps its own object in the connections' app data, so each handshake's state is found here.
_HANDSHAKES: "weakref.WeakKeyDictionary[SSL.Connection, Handshake]" = weakref.WeakKeyDictionary()


def _info(connection: SSL.Connection, where: int, ret: int) -> None:
    if where & SSL.SSL_CB_HANDSHAKE_DONE:
        state = _HANDSHAKES.get(connection)
        if state is not None and state.result is None:
            state.end("ok")


def _server_context() -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    ctx.set_alpn_select_callback(_alpn_select)
    ctx.set_info_callback(_info)
    return ctx


class LeafCache:
    """Mints and remembers one leaf (as a ready OpenSSL context) per provider host, at most C{size}."""

    def __init__(self, ca: CA, metrics: Any, size: int = 1024) -> None:
        self._metrics = metrics
        self._size = size
        self._leaves: collections.OrderedDict[str, tuple[SSL.Context, datetime.datetime]] = collections.OrderedDict()
        self.ca = ca
        # Contexts without a certificate: a handshake left on them ends in an alert, never a certificate.
        self.base = _server_context()
        self.base.set_tlsext_servername_callback(self._on_sni)

    def replace_ca(self, ca: CA) -> None:
        """Sign with C{ca} from now on; leaves of the old CA are dropped."""
        self.ca = ca
        self._leaves.clear()

    def __len__(self) -> int:
        return len(self._leaves)

    def context_for(self, host: str) -> SSL.Context:
        """The server context for provider host C{host} (the caller has checked it is one)."""
        now = datetime.datetime.now(datetime.timezone.utc)
        cached = self._leaves.get(host)
        if cached is not None and cached[1] - now > _RENEW_BEFORE:
            self._leaves.move_to_end(host)
            self._metrics.tls_leaf_cache.labels("hit").inc()
            return cached[0]
        self._metrics.tls_leaf_cache.labels("miss").inc()
        ctx, not_after = self._mint(host, now)
        self._leaves[host] = (ctx, not_after)
        self._leaves.move_to_end(host)
        if len(self._leaves) > self._size:
            self._leaves.popitem(last=False)
            self._metrics.tls_leaf_cache_evictions.inc()
        return ctx

    def mint_certificate(self, host: str, now: datetime.datetime | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A new leaf for C{host}: SAN = the host, serverAuth, at most LEAF_DAYS long, random serial."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        ca = self.ca
        key = ec.generate_private_key(ec.SECP256R1())
        not_before = now - _BACKDATE
        # Never outlives its CA, which clients would reject.
        not_after = min(not_before + datetime.timedelta(days=LEAF_DAYS), ca.certificate.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                              key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        )
        cert = builder.sign(ca.key, hashes.SHA256())
        self._metrics.tls_certificates_minted.inc()
        return cert, key

    def _mint(self, host: str, now: datetime.datetime) -> tuple[SSL.Context, datetime.datetime]:
        cert, key = self.mint_certificate(host, now)
        ctx = _server_context()
        ctx.use_certificate(cert)
        ctx.use_privatekey(key)
        return ctx, cert.not_valid_after_utc

    def _on_sni(self, connection: SSL.Connection) -> None:
        state = _HANDSHAKES.get(connection)
        if state is None:
            return
        try:
            raw = connection.get_servername()
            sni = raw.decode("ascii").lower().rstrip(".") if raw else None
            if state.expected is not None:
                # CONNECT: the tunnel's host decides; an SNI naming another host is refused.
                if sni is not None and sni != state.expected:
                    state.end("unknown_host")
                    return
                host = state.expected
            elif sni is None:
                state.end("no_sni")
                return
            else:
                host = sni
            if provider_for_host(host) is None:
                state.end("unknown_host")
                return
            state.host = host
            connection.set_context(self.context_for(host))
        except Exception:
            # Left on the certificate-less context, the handshake fails: never serve a wrong leaf.
            log.failure("minting a leaf certificate failed")
            state.end("unknown_host")


@implementer(IOpenSSLServerConnectionCreator)
class InterceptingTLS:
    """Twisted's TLS layer asks this for each server connection: the leaf comes from the SNI callback."""

    def __init__(self, leaves: LeafCache, mode: str, count: Callable[[str, str], None], expected: str | None = None) -> None:
        self._leaves = leaves
        self._mode = mode
        self._count = count
        self._expected = expected

    def serverConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._leaves.base, None)
        state = Handshake(self._mode, self._expected, self._count)
        _HANDSHAKES[connection] = state
        # The HTTP connection inside reads the host it serves and reports the handshake's end.
        wrapped = getattr(tls_protocol, "wrappedProtocol", None)
        if wrapped is not None:
            wrapped.tls = state
        return connection
