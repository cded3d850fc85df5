"""The one record of a finished exchange, from which its access line, metrics and audit row are made."""

from __future__ import annotations

import attrs

from proxilion.analytics.event import Decision, Mode

__all__ = ["ExchangeRecord"]


@attrs.frozen
class ExchangeRecord:
    """What one request came to, built once when it completes (L{proxilion.proxy.exchange.Exchange}).

    Nothing in it holds a secret: C{path} is masked, C{identity} a fingerprint, C{findings}
    counts per type.
    """

    started: float
    request_id: str
    provider: str
    method: str  # as sent, at most 16 characters
    path: str
    status: int
    decision: Decision
    findings: tuple[tuple[str, int], ...]
    identity: str | None
    tenant: str | None
    client_ip: str | None
    model: str | None
    bytes_in: int
    bytes_out: int
    streamed: bool
    duration_total: float
    duration_upstream: float | None
    tokens_in: int | None
    tokens_out: int | None
    error: str | None
    # The phase the exchange was in when it ended (proxilion.proxy.phases.Phase): "relay" for an
    # answer relayed, else the phase whose refusal, failure or lost client ended it.
    ended_in: str
    # How the client reached the proxy: explicit (plain HTTP), connect (CONNECT, intercepted) or transparent (TLS_PORT).
    mode: Mode = "explicit"
    # The policy rule that decided the request, request or answer side (its strongest action).
    rule: str | None = None
