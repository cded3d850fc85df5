"""Header filtering between client and upstream (RFC 9110 section 7.6.1)."""

from __future__ import annotations

import re
import uuid
from typing import Iterable

from twisted.web.http_headers import Headers

__all__ = ["HOP_BY_HOP", "upstream_request_headers", "client_response_headers", "request_id", "CREDENTIAL_HEADERS"]

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
    {b"host", b"content-length", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-request-id", b"forwarded"}
)
_REPLACED_DOWNSTREAM = frozenset({b"content-length", b"date", b"server", b"x-request-id"})

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{8,128}$")


def _connection_tokens(headers: Headers) -> set[bytes]:
    tokens = set()
    for value in headers.getRawHeaders(b"connection", ()):
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                tokens.add(token)
    return tokens


def _filtered(headers: Headers, drop: frozenset[bytes]) -> Iterable[tuple[bytes, list[bytes]]]:
    named = _connection_tokens(headers)
    for name, values in headers.getAllRawHeaders():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in drop or lower in named or lower.startswith(b"proxy-"):
            continue
        yield name, values


def upstream_request_headers(
    client: Headers, client_ip: str, proto: bytes, rid: bytes, trusted_forwarded_for: bytes | None
) -> Headers:
    """Headers to send upstream: the client's minus hop-by-hop, plus forwarding headers.

    C{trusted_forwarded_for} is the client's X-Forwarded-For when its peer is a
    trusted proxy; otherwise the chain starts at the peer.
    """
    out = Headers()
    for name, values in _filtered(client, _REPLACED_UPSTREAM):
        out.setRawHeaders(name, values)
    chain = client_ip.encode("ascii")
    if trusted_forwarded_for:
        chain = trusted_forwarded_for + b", " + chain
    out.setRawHeaders(b"x-forwarded-for", [chain])
    out.setRawHeaders(b"x-forwarded-proto", [proto])
    out.setRawHeaders(b"x-request-id", [rid])
    return out


def client_response_headers(upstream: Headers) -> Iterable[tuple[bytes, list[bytes]]]:
    """The upstream response's headers that may be relayed to the client."""
    return _filtered(upstream, _REPLACED_DOWNSTREAM)


def request_id(client_value: bytes | None) -> bytes:
    """Keep a well-formed client X-Request-ID, else make a new one."""
    if client_value and _REQUEST_ID.match(client_value):
        return client_value
    return uuid.uuid4().hex.encode("ascii")
