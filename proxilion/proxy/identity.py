"""Who a request counts against: provider-key fingerprint, identity header, or client IP.

Pure: no Twisted, no I/O. The provider key itself is hashed here and dropped;
only its fingerprint leaves this module. This is also the one home of the
trusted-proxy walk: the client address that is rate limited and recorded, and
the X-Forwarded-For chain passed upstream, both come from L{resolve_client}.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from typing import Any, Iterable, Sequence
from urllib.parse import parse_qsl, quote

import attrs

from proxilion.identity_key import Identity

# Every header a provider reads a credential from. All of them go upstream, so
# a request carrying more than one line of them (the same name twice, or two
# names) is refused whatever the route: the proxy cannot know which one the
# provider (or a gateway behind an --upstream override) will believe.
from proxilion.proxy.headers import CREDENTIAL_HEADERS
from proxilion.proxy.safe_target import has_finding

__all__ = [
    "Identity", "IdentityConflict", "identify", "client_ip", "resolve_client", "ClientAddress", "forwarded_for_hops",
    "forwarded_hops", "is_trusted", "fingerprint", "sanitise",
]

_MAX_NAME = 128
# Kept as is in identity keys; everything else is percent-encoded so that two
# different header values never share a bucket and no key holds "{" or "}"
# (which would change the Redis Cluster hash tag).
_SAFE = "-._~@+=:"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Pairs = Sequence[tuple[bytes, bytes]]


# The credentials each provider authenticates with; identity comes only from these.
# Query names are only credentials where the provider reads them.
_READ_BY: dict[str, frozenset[str]] = {
    "openai": frozenset({"authorization"}),
    "azure": frozenset({"api-key", "authorization"}),  # key, or Entra ID bearer token
    "anthropic": frozenset({"x-api-key", "authorization"}),  # key, or OAuth / OpenAI-compatible bearer
    "gemini": frozenset({"x-goog-api-key", "authorization", "?key"}),
    "cohere": frozenset({"authorization"}),
    "bedrock": frozenset({"authorization", "?X-Amz-Credential"}),  # SigV4 (header or presigned) or API-key bearer
}
_ALL_SOURCES = frozenset({"authorization", "x-api-key", "api-key", "x-goog-api-key", "?key", "?X-Amz-Credential"})
# token68 (RFC 9110 section 11.2) has neither; a bearer value holding them is two credentials or garbage.
_NOT_IN_TOKEN = frozenset(" \t,")


class IdentityConflict(ValueError):
    """The request names its caller ambiguously; C{code} and C{message} (no header values) say how."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@attrs.frozen
class ClientAddress:
    """The client as far as trusted proxies vouch for it.

    C{chain} is the verified part of the forwarding header: the client first,
    then each trusted proxy that passed the request on (the TCP peer is not in
    it). Hops left of the client were written by the client and are dropped.
    """

    ip: str
    chain: tuple[str, ...] = ()


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


# Client addresses


@functools.lru_cache(maxsize=4096)
def _parse_ip(text: str) -> Address | None:
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
def _ip_text(address: Address) -> str:
    # ipaddress formats in Python; the same few addresses come back on every request.
    return str(address)


def _trusted(address: Address, networks: Iterable[Any]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def is_trusted(peer_ip: str, trusted_proxies: Iterable[Any]) -> bool:
    """True when C{peer_ip} lies in one of C{trusted_proxies}."""
    peer = _parse_ip(peer_ip)
    return peer is not None and _trusted(peer, tuple(trusted_proxies))


def forwarded_for_hops(values: Sequence[str]) -> list[str]:
    """The hops of every X-Forwarded-For line, in order (the lines joined as RFC 9110 section 5.3 says)."""
    return [hop.strip() for value in values for hop in value.split(",")]


def forwarded_hops(values: Sequence[str]) -> list[str]:
    """The C{for=} node of every element of every RFC 7239 C{Forwarded} line, in order.

    An element without a (single) C{for=} becomes C{""}, which the walk treats as
    garbage. Commas and semicolons are split without regard to quotes: node names
    never hold them, and a client's unbalanced quote must not swallow the
    element a trusted proxy appended after it.
    """
    hops = []
    for value in values:
        for element in value.split(","):
            nodes = [pair.strip()[4:] for pair in element.split(";") if pair.strip()[:4].lower() == "for="]
            hops.append(nodes[0].strip() if len(nodes) == 1 else "")
    return hops


def resolve_client(hops: Sequence[str] | None, peer_ip: str, trusted_proxies: Iterable[Any]) -> ClientAddress:
    """The real client: walking C{hops} from the right, the first hop not in C{trusted_proxies}.

    The hops are only read when the peer itself is a trusted proxy; anyone
    else could write whatever they like in them. A hop that is not an address
    (garbage, C{unknown}, an obfuscated RFC 7239 name) stops the walk: the
    trusted proxy that passed it on is then the client.
    """
    networks = tuple(trusted_proxies)
    peer = _parse_ip(peer_ip)
    if peer is None:
        return ClientAddress(peer_ip)
    if not hops or not _trusted(peer, networks):
        return ClientAddress(_ip_text(peer))
    candidate = peer
    verified = 0
    for hop in reversed(hops):
        address = _parse_ip(hop)
        if address is None:
            break
        candidate = address
        verified += 1
        if not _trusted(address, networks):
            break
    chain = tuple(_ip_text(a) for a in (_parse_ip(h) for h in hops[len(hops) - verified:]) if a is not None)
    return ClientAddress(_ip_text(candidate), chain)


def client_ip(forwarded_for: str | None, peer_ip: str, trusted_proxies: Iterable[Any]) -> str:
    """The client address from one X-Forwarded-For value; see L{resolve_client}."""
    return resolve_client(forwarded_for_hops([forwarded_for]) if forwarded_for else None, peer_ip, trusted_proxies).ip


# Credentials


def _bearer_or_scheme(value: str) -> str | None:
    scheme, _, rest = value.partition(" ")
    rest = rest.strip()
    if scheme.lower() == "bearer":
        if not rest:
            return None
        if any(c in _NOT_IN_TOKEN for c in rest):
            raise IdentityConflict("ambiguous_credentials", "The Authorization header holds more than one bearer token; send exactly one.")
        return rest
    if scheme.upper() == "AWS4-HMAC-SHA256":
        # SigV4 signs every request differently; the access key id is the stable part.
        ids = [part.strip()[11:].split("/", 1)[0] for part in rest.split(",") if part.strip().startswith("Credential=")]
        if len(ids) > 1:
            raise IdentityConflict("ambiguous_credentials", "The AWS SigV4 Authorization header names more than one credential.")
        return (ids[0] or None) if ids else None
    return value or None


def _credential(lines: list[tuple[str, str]], provider: str | None) -> str | None:
    """The one credential the provider authenticates this request with, or None.

    Raises L{IdentityConflict} when more than one credential line is present.
    """
    if len(lines) > 1:
        names = sorted({name for name, _ in lines})
        raise IdentityConflict(
            "ambiguous_credentials",
            "The request carries more than one credential (%s); send exactly one." % ", ".join(names),
        )
    if not lines:
        return None
    name, value = lines[0]
    read = _READ_BY.get(provider or "", _ALL_SOURCES)
    if name not in read:
        # Not what this provider authenticates with: not who the request counts against either.
        return None
    value = value.strip()
    if name == "authorization":
        return _bearer_or_scheme(value)
    if name == "?X-Amz-Credential":
        return value.split("/", 1)[0] or None
    return value or None


def _query_credentials(query: str, provider: str | None) -> list[tuple[str, str]]:
    read = _READ_BY.get(provider or "", _ALL_SOURCES)
    wanted = {name[1:] for name in read if name.startswith("?")}
    if not query or not any(name + "=" in query for name in wanted):
        return []
    return [("?" + name, value) for name, value in parse_qsl(query, keep_blank_values=True) if name in wanted]


def identify(headers: Pairs, peer_ip: str, settings: Any, *, provider: str | None = None, query: str = "",
             strict: bool = True) -> Identity:
    """Identify a request from all its header lines (names lower-case) and its peer address.

    Precedence: the fingerprint of the credential C{provider} authenticates
    with (C{None}: any provider's), then C{settings.identity_header}, then the
    client IP. C{query} is the request's query string (Gemini's C{?key=}, a
    presigned SigV4 URL's C{X-Amz-Credential}).

    Strict, a request holding more than one credential line, or repeating the
    identity or tenant header, raises L{IdentityConflict}. Not strict (the row
    of a request refused for other reasons), such a request counts as its IP.
    """
    identity_name = settings.identity_header.lower().encode("latin-1") if settings.identity_header else None
    tenant_name = settings.tenant_header.lower().encode("latin-1") if settings.tenant_header else None
    forwarded_name = b"forwarded" if settings.client_ip_header == "forwarded" else b"x-forwarded-for"
    credentials: list[tuple[str, str]] = []
    forwarded: list[str] = []
    users: list[str] = []
    tenants: list[str] = []
    for name, value in headers:
        if name in CREDENTIAL_HEADERS:
            credentials.append((name.decode("latin-1"), value.decode("latin-1")))
        elif name == forwarded_name:
            forwarded.append(value.decode("latin-1"))
        elif name == identity_name:
            users.append(value.decode("latin-1"))
        elif name == tenant_name:
            tenants.append(value.decode("latin-1"))
    hops = (forwarded_hops if forwarded_name == b"forwarded" else forwarded_for_hops)(forwarded) if forwarded else None
    address = resolve_client(hops, peer_ip, settings.trusted_proxies)

    def by_ip(tenant: str | None) -> Identity:
        return Identity(key=f"ip:{address.ip}", kind="ip", tenant=tenant, client_ip=address.ip, forwarded_chain=address.chain)

    try:
        credentials += _query_credentials(query, provider)
        if len(users) > 1 or len(tenants) > 1:
            raise IdentityConflict("ambiguous_identity", "The request repeats its identity or tenant header; send it once.")
        secret = _credential(credentials, provider)
    except IdentityConflict:
        if strict:
            raise
        return by_ip(None)
    tenant = _name(tenants[0]) if tenants else None
    if secret is not None:
        return Identity(key=f"key:{fingerprint(secret)}", kind="key", tenant=tenant, client_ip=address.ip, forwarded_chain=address.chain)
    user = _name(users[0]) if users else None
    if user:
        return Identity(key=f"user:{user}", kind="user", tenant=tenant, client_ip=address.ip, forwarded_chain=address.chain)
    return by_ip(tenant)
