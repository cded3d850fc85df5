"""Assemble one Proxilion process from its L{Settings}: the services and what they share."""

from __future__ import annotations

import time
from typing import Any

import attrs

from proxilion import __version__
from proxilion.admin.site import build_admin_site, health_value
from proxilion.drain import DrainState
from proxilion.metrics import Metrics
from proxilion.proxy.context import ProxyContext
from proxilion.proxy.routing import Router
from proxilion.proxy.server import ProxyFactory
from proxilion.proxy.upstream import UpstreamClient
from proxilion.service import ListeningService, ProxilionService, ProxySiteService

__all__ = ["Proxilion", "build"]


@attrs.define
class Proxilion:
    """Handles to the parts of a running process (tests and the plugin use them)."""

    settings: Any
    root: ProxilionService
    metrics: Metrics
    drain: DrainState
    ctx: ProxyContext
    proxy_service: ProxySiteService
    admin_service: ListeningService


def build(settings: Any, reactor: Any, log_observer: Any = None) -> Proxilion:
    """Wire every service; nothing listens until the root service starts."""
    metrics = Metrics()
    drain = DrainState()
    upstream = UpstreamClient(reactor, settings.pool_size, settings.connect_timeout, settings.response_timeout)
    ctx = ProxyContext(
        settings=settings,
        clock=reactor,
        router=Router(settings.upstreams),
        upstream=upstream,
        metrics=metrics,
        drain=drain,
    )
    proxy_service = ProxySiteService(reactor, settings, ProxyFactory(ctx), drain, metrics, upstream)
    started_at = time.time()
    components: dict[str, Any] = {}

    def component_states() -> dict[str, str]:
        states = {"proxy": "draining" if drain.draining else ("ok" if drain.ready else "starting")}
        for name, component in components.items():
            states[name] = component.health()
        return states

    def refresh_metrics() -> None:
        for name, state in component_states().items():
            metrics.health_check_status.labels(name).set(health_value(state if state != "draining" else "down"))

    def status() -> dict[str, Any]:
        return {
            "status": drain.status(),
            "version": __version__,
            "instance_id": settings.instance_id,
            "uptime_seconds": round(time.time() - started_at, 3),
            "inflight": drain.inflight,
            "open_connections": drain.open_connections,
            "components": {
                "proxy": {"state": component_states()["proxy"]},
                **{name: component.status() for name, component in components.items()},
            },
        }

    admin_site = build_admin_site(
        drain=drain,
        metrics=metrics,
        status=status,
        refresh_metrics=refresh_metrics,
        admin_token=settings.admin_token,
        begin_drain=proxy_service.begin_drain,
        api_children={},
        reactor=reactor,
    )
    admin_service = ListeningService("admin", reactor, settings.admin_port, settings.bind, admin_site)
    children = [admin_service, proxy_service]
    root = ProxilionService(
        reactor,
        children,
        stop_deadlines={"proxy": settings.drain_grace + settings.drain_timeout + 5.0},
        log_observer=log_observer,
    )
    return Proxilion(settings, root, metrics, drain, ctx, proxy_service, admin_service)
