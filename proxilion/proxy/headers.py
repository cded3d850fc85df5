"""Header filtering between client and upstream (RFC 9110 section 7.6.1).

Header lists are (name, value) byte pairs with names lower-cased when parsed,
on both sides: names are case-insensitive, HTTP/2 requires lower case, and
each lookup is then a plain comparison.
"""

from __future__ import annotations

import itertools
import os
import re

from proxilion.proxy.safe_target import has_finding

__all__ = ["HOP_BY_HOP", "upstream_request_headers", "client_response_headers", "first_header", "replace_header", "request_id", "CREDENTIAL_HEADERS"]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Headers that carry provider credentials: forwarded untouched, never logged or stored.
CREDENTIAL_HEADERS = frozenset({b"authorization", b"x-api-key", b"api-key", b"x-goog-api-key"})

# Set by us on the way upstream; the client's values are replaced, not trusted.
_REPLACED_UPSTREAM = frozenset(
    {b"host", b"content-length", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-request-id", b"forwarded",
     # The proxy holds the whole body already; an upstream "100 Continue" would only cost a round trip.
     b"expect"}
)
_REPLACED_DOWNSTREAM = frozenset({b"content-length", b"date", b"server", b"x-request-id"})

# Generated ids: 64 random bits per process, then a counter (unique without a
# random draw per request; the random part keeps replicas apart).
_ID_PREFIX = os.urandom(8).hex().encode("ascii")
_ID_COUNTER = itertools.count(int.from_bytes(os.urandom(4), "big"))

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{8,64}$")


Pairs = list[tuple[bytes, bytes]]


def _connection_tokens(headers: Pairs) -> set[bytes]:
    tokens = set()
    for name, value in headers:
        if name == b"connection":
            for token in value.split(b","):
                token = token.strip().lower()
                if token:
                    tokens.add(token)
    return tokens


def _filtered(headers: Pairs, drop: frozenset[bytes]) -> Pairs:
    named = _connection_tokens(headers)
    return [(name, value) for name, value in headers
            if not (name in HOP_BY_HOP or name in drop or name in named or name.startswith(b"proxy-"))]


def upstream_request_headers(client: Pairs, peer_ip: str, proto: bytes, rid: bytes, trusted_forwarded_for: bytes | None) -> Pairs:
    """Headers to send upstream: the client's minus hop-by-hop, plus forwarding headers.

    Host and Content-Length are written by the client for the request it
    really sends. C{trusted_forwarded_for} is the part of the forwarding chain
    trusted proxies vouch for (L{proxilion.proxy.identity.ClientAddress.chain});
    our peer is appended to it, as every proxy appends its own.
    """
    out = _filtered(client, _REPLACED_UPSTREAM)
    chain = peer_ip.encode("ascii")
    if trusted_forwarded_for:
        chain = trusted_forwarded_for + b", " + chain
    out.append((b"x-forwarded-for", chain))
    out.append((b"x-forwarded-proto", proto))
    out.append((b"x-request-id", rid))
    return out


def first_header(headers: Pairs, name: bytes) -> bytes | None:
    """The first value of header C{name} (lower-case), or None."""
    for key, value in headers:
        if key == name:
            return value
    return None


def replace_header(headers: Pairs, name: bytes, value: bytes) -> Pairs:
    """C{headers} with every C{name} (lower-case) header replaced by one C{value}."""
    out = [(k, v) for k, v in headers if k != name]
    out.append((name, value))
    return out


def client_response_headers(upstream: Pairs) -> Pairs:
    """The upstream response's headers that may be relayed to the client."""
    return _filtered(upstream, _REPLACED_DOWNSTREAM)


def request_id(client_value: bytes | None) -> bytes:
    """Keep a client X-Request-ID that is well-formed and holds no finding (it is logged and stored), else make a new one."""
    if client_value and _REQUEST_ID.match(client_value) and not has_finding(client_value.decode("ascii")):
        return client_value
    return b"%s%016x" % (_ID_PREFIX, next(_ID_COUNTER))
