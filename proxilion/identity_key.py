"""Who a request counts against, as a value: the proxy makes it (proxy/identity.py reads the headers),
the rate limiter and the audit record read it. Pure: no Twisted, no I/O."""

from __future__ import annotations

import attrs

__all__ = ["Identity"]


@attrs.frozen
class Identity:
    """The bucket owner of one request.

    C{key} is C{"key:<16 hex>"}, C{"user:<name>"} (C{"user:#<16 hex>"} when the name holds
    a secret or personal data) or C{"ip:<address>"}; it never contains a provider key,
    only a truncated SHA-256 of one. C{forwarded_chain} is L{ClientAddress.chain}, for the
    X-Forwarded-For sent upstream.
    """

    key: str
    kind: str
    tenant: str | None
    client_ip: str
    forwarded_chain: tuple[str, ...] = ()
