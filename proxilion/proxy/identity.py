"""Who a request counts against: provider-key fingerprint, identity header, or client IP.

Pure: no Twisted, no I/O. The provider key itself is hashed here and dropped;
only its fingerprint leaves this module.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from typing import Any, Iterable, Mapping
from urllib.parse import quote

import attrs

from proxilion.proxy.safe_target import has_finding

__all__ = ["Identity", "identify", "client_ip", "fingerprint", "sanitise"]

_MAX_NAME = 128
# Kept as is in identity keys; everything else is percent-encoded so that two
# different header values never share a bucket and no key holds "{" or "}"
# (which would change the Redis Cluster hash tag).
_SAFE = "-._~@+=:"

_KEY_HEADERS = ("x-api-key", "api-key", "x-goog-api-key")


@attrs.frozen
class Identity:
    """The bucket owner of one request.

    C{key} is C{"key:<16 hex>"}, C{"user:<name>"} (C{"user:#<16 hex>"} when the name holds
    a secret or personal data) or C{"ip:<address>"}; it never contains a provider key,
    only a truncated SHA-256 of one.
    """

    key: str
    kind: str
    tenant: str | None
    client_ip: str


@functools.lru_cache(maxsize=1024)
def fingerprint(secret: str) -> str:
    """16 hex digits of SHA-256: enough to tell keys apart, useless to recover one.

    Cached: the same few keys come back on every request, and in the busy
    daemon OpenSSL's digest setup runs from cold CPU caches, ~10 µs a call.
    The cache holds keys this process has just read off requests, nothing more.
    """
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def sanitise(value: str) -> str:
    """A header value made safe for bucket keys, URLs and logs, at most 128 characters."""
    return quote(value.strip(), safe=_SAFE)[:_MAX_NAME]


@functools.lru_cache(maxsize=1024)
def _name(value: str) -> str | None:
    """An identity header's value as kept in bucket keys and rows; one holding a finding, only as its fingerprint.

    Cached like L{fingerprint}: the same few names come back on every request.
    """
    value = value.strip()
    if value and has_finding(value):
        # "#" never survives sanitise(), so a fingerprint cannot pass for a name a client sent.
        return "#" + fingerprint(value)
    return sanitise(value) or None


def _provider_key(headers: Mapping[str, str], query_key: str | None) -> str | None:
    auth = (headers.get("authorization") or "").strip()
    if auth:
        scheme, _, rest = auth.partition(" ")
        rest = rest.strip()
        if scheme.lower() == "bearer" and rest:
            return rest
        if scheme.upper() == "AWS4-HMAC-SHA256":
            # SigV4 signs every request differently; the access key id is the stable part.
            for part in rest.split(","):
                name, _, value = part.strip().partition("=")
                if name == "Credential" and value:
                    return value.split("/", 1)[0]
        if rest:
            return auth
    for name in _KEY_HEADERS:
        value = (headers.get(name) or "").strip()
        if value:
            return value
    if query_key and query_key.strip():
        return query_key.strip()
    return None


@functools.lru_cache(maxsize=4096)
def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Cached: the same peers and proxies come back on every request.
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=4096)
def _ip_text(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    # ipaddress formats in Python; the same few addresses come back on every request.
    return str(address)


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Iterable[Any]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_ip(forwarded_for: str | None, peer_ip: str, trusted_proxies: Iterable[Any]) -> str:
    """The real client: the rightmost X-Forwarded-For hop not in C{trusted_proxies}.

    The header is only read when the peer itself is a trusted proxy; anyone
    else could write whatever they like in it.
    """
    networks = tuple(trusted_proxies)
    peer = _parse_ip(peer_ip)
    if peer is None:
        return peer_ip
    if not forwarded_for or not _trusted(peer, networks):
        return _ip_text(peer)
    candidate = peer
    for hop in reversed(forwarded_for.split(",")):
        address = _parse_ip(hop)
        if address is None:
            # Garbage was written by someone untrusted: the hop that appended it is the client.
            break
        candidate = address
        if not _trusted(address, networks):
            break
    return _ip_text(candidate)


def identify(headers: Mapping[str, str], peer_ip: str, settings: Any, *, query_key: str | None = None) -> Identity:
    """Identify a request from its (lower-cased, first-value) headers and peer address.

    Precedence: provider key fingerprint, then C{settings.identity_header},
    then the client IP. C{query_key} is Gemini's C{?key=} parameter.
    """
    ip = client_ip(headers.get("x-forwarded-for"), peer_ip, settings.trusted_proxies)
    tenant = None
    if settings.tenant_header:
        tenant = _name(headers.get(settings.tenant_header.lower()) or "")
    secret = _provider_key(headers, query_key)
    if secret is not None:
        return Identity(key=f"key:{fingerprint(secret)}", kind="key", tenant=tenant, client_ip=ip)
    if settings.identity_header:
        user = _name(headers.get(settings.identity_header.lower()) or "")
        if user:
            return Identity(key=f"user:{user}", kind="user", tenant=tenant, client_ip=ip)
    return Identity(key=f"ip:{ip}", kind="ip", tenant=tenant, client_ip=ip)
