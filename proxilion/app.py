"""Assemble one Proxilion process from its L{Settings}: the services and what they share."""

from __future__ import annotations

import time
from typing import Any, Callable
from urllib.parse import urlsplit

from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.logger import Logger

import attrs

from proxilion import __version__
from proxilion.admin.site import Directory, build_admin_site, health_value
from proxilion.analytics.admin import EventsResource, SummaryResource
from proxilion.analytics.store import EventStore
from proxilion.analytics.writer import AnalyticsWriter
from proxilion.component import Component
from proxilion.drain import DrainState
from proxilion.logs import AccessLogger
from proxilion.metrics import Metrics
from proxilion.policy_service import PolicyService
from proxilion.proxy.audit import audit_recorder, refusal_recorder
from proxilion.proxy.context import ProxyContext
from proxilion.proxy.offload import ScanPool
from proxilion.providers.names import PROVIDER_HOSTS
from proxilion.proxy.routing import Router
from proxilion.proxy.server import ProxyFactory
from proxilion.proxy.upstream import EndpointFactory, UpstreamClient
from proxilion.ratelimit.admin import RateLimitAdminResource
from proxilion.ratelimit.service import RateLimiter
from proxilion.service import ListeningService, ProxilionService, ProxySiteService
from proxilion.tls.interception import Interception, TLSListener

__all__ = ["Proxilion", "build", "ready_line"]

log = Logger()


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
    limiter: RateLimiter
    analytics: AnalyticsWriter
    policy: PolicyService


def build(
    settings: Any,
    reactor: Any,
    log_observer: Any = None,
    handle_sighup: bool = False,
    *,
    upstream_endpoint: EndpointFactory | None = None,
    analytics_store: EventStore | None = None,
    analytics_io: Callable[..., Deferred[Any]] | None = None,
    scan_pool: bool = True,
) -> Proxilion:
    """Wire every service; nothing listens or connects until the root service starts.

    The keyword arguments are seams for in-memory runs (L{proxilion.testing}):
    where upstream hosts are reached, the analytics store and how spool I/O
    runs (default: threads), and whether large bodies are scanned in worker
    processes (False: every body is scanned on the reactor thread).

    Raises L{proxilion.inspect.policy.PolicyError} or C{ValueError} for a bad
    policy file or Redis setting.
    """
    metrics = Metrics()
    drain = DrainState()
    policy = PolicyService(settings.policy_file, metrics, reactor, handle_sighup=handle_sighup,
                           max_findings=settings.max_findings_per_body)
    scans = ScanPool(reactor, metrics, settings.scan_workers, settings.scan_queue_size) if settings.inspection and scan_pool else None
    limiter = RateLimiter(settings, metrics, reactor)
    analytics = AnalyticsWriter(settings, metrics, reactor, store=analytics_store, io=analytics_io)
    upstream = UpstreamClient(reactor, settings.pool_size, settings.connect_timeout, settings.response_timeout, settings.stream_idle_timeout,
                              endpoint_factory=upstream_endpoint, ca_bundle=settings.upstream_ca_bundle)
    # Raises CAError (a ValueError): a bad CA stops startup.
    interception = Interception(settings, metrics, reactor)
    if handle_sighup and interception.enabled:
        reactor.callWhenRunning(interception.handle_sighup)
    ctx = ProxyContext(
        settings=settings,
        clock=reactor,
        router=Router(settings.upstreams),
        upstream=upstream,
        metrics=metrics,
        drain=drain,
        limiter=limiter,
        policy=policy if settings.inspection else None,
        scan_pool=scans,
        record=audit_recorder(settings.instance_id, analytics.record),
        record_refused=refusal_recorder(settings.instance_id, settings, reactor, analytics.record),
        audit_available=analytics.can_keep if settings.audit_fail_closed else None,
        interception=interception,
    )
    if log_observer is not None:
        # Straight to the process's observer: the global publisher's fan-out
        # costs more than the line itself, once per request.
        ctx.access_log = AccessLogger(namespace="proxilion.access", observer=log_observer)
    proxy_factory = ProxyFactory(ctx)
    proxy_service = ProxySiteService(reactor, settings, proxy_factory, drain, metrics, upstream)
    tls_listener = TLSListener(reactor, settings, interception, proxy_factory) if settings.tls_port else None
    started_at = time.time()
    components: dict[str, Component] = {"policy": policy, "redis" if settings.rate_limit_store == "redis" else "ratelimit": limiter, "analytics": analytics}

    def component_states() -> dict[str, str]:
        states = {"proxy": "draining" if drain.draining else ("ok" if drain.ready else "starting")}
        for name, component in components.items():
            states[name] = component.health()
        return states

    def refresh_metrics() -> None:
        for name, state in component_states().items():
            metrics.health_check_status.labels(name).set(health_value(state))

    def status() -> dict[str, Any]:
        states = component_states()
        # Shared-service trouble (Redis, the analytics database) degrades a component, never /health.
        degraded = sorted(name for name, state in states.items() if state not in ("ok", "healthy") and name != "proxy")
        serving = drain.status()
        return {
            "status": "degraded" if serving == "healthy" and degraded else serving,
            "version": __version__,
            "instance_id": settings.instance_id,
            "uptime_seconds": round(time.time() - started_at, 3),
            "inflight": drain.inflight,
            "open_connections": drain.open_connections,
            "degraded": degraded,
            "components": {
                "proxy": {"state": states["proxy"]},
                **{name: component.status() for name, component in components.items()},
            },
            "interception": interception.status(),
        }

    admin_site = build_admin_site(
        drain=drain,
        metrics=metrics,
        status=status,
        refresh_metrics=refresh_metrics,
        admin_token=settings.admin_token,
        begin_drain=proxy_service.begin_drain,
        api_children={
            b"ratelimits": RateLimitAdminResource(limiter),
            b"events": EventsResource(analytics.store(), reactor),
            b"analytics": _summary_branch(SummaryResource(analytics.store(), reactor)),
        },
        reactor=reactor,
    )
    admin_service = ListeningService("admin", reactor, settings.admin_port, settings.bind, admin_site)
    # Start order: admin first (probes answer while starting), analytics early
    # (spool replay), limiter, policy, then the proxy port; stop is the reverse,
    # so the proxy drains before the limiter closes and analytics flushes.
    # The scan pool stops after the proxy has drained: no body is waiting for it then.
    children: list[IService] = [admin_service, analytics, limiter, policy, *([scans] if scans is not None else []), proxy_service,
                *([tls_listener] if tls_listener is not None else [])]
    root = ProxilionService(
        reactor,
        children,
        stop_deadlines={"proxy": settings.drain_grace + settings.drain_timeout + 5.0, "analytics": 15.0, "ratelimit": 5.0},
        log_observer=log_observer,
    )
    app = Proxilion(settings, root, metrics, drain, ctx, proxy_service, admin_service, limiter, analytics, policy)

    def announce(result: None) -> None:
        # The log format is a literal: the line holds no braces of its own, but a URL or path might.
        log.info(ready_line(app).replace("{", "{{").replace("}", "}}"))
        return result

    root.started.addCallback(announce)
    return app


def _url_without_credentials(url: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=host).geturl()


def ready_line(app: Proxilion) -> str:
    """The one human-readable startup line: ports, upstreams, policy source and stores; never a secret."""
    settings = app.settings
    ports = f"proxy :{app.proxy_service.port.getHost().port}, admin :{app.admin_service.port.getHost().port}"
    if settings.tls_port:
        ports += f", tls :{settings.tls_port}"
    upstreams = {name: "https://" + hosts[0] for name, hosts in PROVIDER_HOSTS.items() if hosts}
    upstreams["azure"] = "per-request host"
    upstreams.update({name: _url_without_credentials(url) for name, url in settings.upstreams.items()})
    named = ", ".join(f"{name}={url}" for name, url in upstreams.items())
    policy = settings.policy_file or "shipped default"
    if not settings.inspection:
        policy += " (inspection off)"
    limits = app.limiter.status()
    rate_limits = f"redis {limits['redis']['target']}" if "redis" in limits else limits["store"]
    analytics = app.analytics.status()
    if analytics["store"] == "postgresql":
        # The DSN's host only: its user and password stay out of logs.
        dsn = urlsplit(settings.analytics_dsn)
        where = f"{dsn.hostname}:{dsn.port or 5432}{dsn.path}"
    else:
        where = analytics["target"]
    return (f"Proxilion ready: {ports}; upstreams: {named}; policy: {policy}; "
            f"rate limits: {rate_limits}; analytics: {analytics['store']} {where}")


def _summary_branch(summary: Any) -> Directory:
    branch = Directory()
    branch.putChild(b"summary", summary)
    return branch
