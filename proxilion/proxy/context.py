"""What every proxied request needs, gathered once per process."""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.logger import Logger

from proxilion.drain import DrainState
from proxilion.metrics import Metrics
from proxilion.proxy.record import ExchangeRecord
from proxilion.proxy.routing import Router
from proxilion.proxy.upstream import UpstreamClient

__all__ = ["ProxyContext"]


@attrs.define
class ProxyContext:
    """Collaborators of the request path; optional stages are None when switched off."""

    settings: Any
    clock: Any = attrs.field(repr=False)
    router: Router
    upstream: UpstreamClient
    metrics: Metrics
    drain: DrainState
    limiter: Any = None
    policy: Any = None
    # Decodes and inspects bodies larger than settings.scan_offload_bytes off the reactor.
    scan_pool: Any = None
    # The audit row of each exchange, made from its record.
    record: Callable[[ExchangeRecord], None] | None = None
    # Requests refused before they were complete (408, 413, 431) have no exchange.
    record_refused: Callable[..., None] | None = None
    # AUDIT_FAIL_CLOSED: False while no audit row can be kept, and requests are refused.
    audit_available: Callable[[], bool] | None = None
    # TLS interception and the CONNECT policy (proxilion.tls.interception.Interception).
    interception: Any = None
    # One line per request; build() hands it the process's observer directly.
    access_log: Logger = attrs.field(factory=lambda: Logger(namespace="proxilion.access"), repr=False)
