"""Every Prometheus metric Proxilion exports, defined once.

Each process builds one L{Metrics} around its own registry (tests build
their own), and hands it to the services that count things. Label values are
bounded: providers, methods, status codes, decisions and detector types come
from fixed sets, never from raw paths or identities.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "CONTENT_TYPE_LATEST", "HEALTH_OK", "HEALTH_DEGRADED", "HEALTH_DOWN"]

# proxilion_health_check_status values.
HEALTH_OK = 1.0
HEALTH_DEGRADED = 0.5
HEALTH_DOWN = 0.0

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_FAST_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class _CachedLabels:
    """A labelled metric whose C{labels()} children are remembered.

    prometheus_client validates the values and takes a lock on every
    C{labels()} call; the request path makes several per request with
    values from small fixed sets.
    """

    _LIMIT = 10000

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str, **named: str) -> Any:
        if named:
            values = tuple(named[name] for name in self.metric._labelnames)
        child = self._children.get(values)
        if child is None:
            child = self.metric.labels(*values)
            if len(self._children) < self._LIMIT:
                self._children[values] = child
        return child

    def __getattr__(self, name: str) -> Any:
        return getattr(self.metric, name)


class Metrics:
    """The process's metrics, registered in C{registry}."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry

        # HTTP (names promised by the HA guide).
        self.http_requests = Counter(
            "proxilion_http_requests", "Requests answered on the proxy port.", ["provider", "method", "status"], registry=r
        )
        self.http_request_duration = Histogram(
            "proxilion_http_request_duration_seconds",
            "Time from request received to response finished, proxy port.",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_request_duration = Histogram(
            "proxilion_upstream_request_duration_seconds",
            "Time from sending upstream to the upstream's response headers.",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "proxilion_upstream_errors", "Upstream failures by kind.", ["provider", "kind"], registry=r
        )
        self.inflight_requests = Gauge("proxilion_inflight_requests", "Requests being served now.", registry=r)
        self.rejected_requests = Counter(
            "proxilion_rejected_requests", "Requests refused before forwarding, by reason.", ["reason"], registry=r
        )
        self.health_check_status = Gauge(
            "proxilion_health_check_status",
            "Health of each component: 1 healthy, 0.5 degraded (serving), 0 down.",
            ["component"],
            registry=r,
        )
        self.draining = Gauge("proxilion_draining", "1 while this instance drains for shutdown.", registry=r)

        # Inspection.
        self.findings = Counter("proxilion_findings", "Findings by detector type and the action taken.", ["type", "action"], registry=r)
        self.policy_decisions = Counter("proxilion_policy_decisions", "Policy decisions by action.", ["action"], registry=r)
        # Bounded: rule ids come from the policy file, not from requests.
        self.policy_rule_decisions = Counter(
            "proxilion_policy_rule_decisions", "Requests and answers a policy rule decided, by direction, action and rule id.",
            ["direction", "action", "rule"], registry=r
        )
        self.scan_duration = Histogram(
            "proxilion_scan_duration_seconds", "Time spent inspecting one body.", ["direction"], buckets=_FAST_BUCKETS, registry=r
        )
        # Streamed answers: text is held only while a value may be in progress in it (issue #16).
        self.stream_hold_seconds = Histogram(
            "proxilion_stream_hold_seconds",
            "Added delay of each streamed content event: from its bytes' arrival from the upstream to its write to the client.",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=r
        )
        self.stream_held_chars = Histogram(
            "proxilion_stream_held_chars", "Characters of a streamed answer still held back when content events leave.",
            buckets=(0, 8, 16, 32, 64, 128, 256, 512, 1024), registry=r
        )
        self.stream_candidate_overflows = Counter(
            "proxilion_stream_candidate_overflows",
            "Values in progress longer than stream_holdback_chars: scanned, then released in parts (redacted if found).",
            registry=r
        )
        self.scanner_errors = Counter("proxilion_scanner_errors", "Inspection failures (each failed closed unless configured).", registry=r)
        self.findings_cap_exceeded = Counter(
            "proxilion_findings_cap_exceeded",
            "Bodies blocked as abusive: more findings than MAX_FINDINGS_PER_BODY.", ["direction"], registry=r
        )
        self.scan_pool_jobs = Counter(
            "proxilion_scan_pool_jobs", "Bodies decoded and inspected in the scan pool's worker processes.", ["direction"], registry=r
        )
        self.scan_pool_pending = Gauge("proxilion_scan_pool_pending", "Bodies in the scan pool (running or queued).", registry=r)
        self.scan_pool_rejected = Counter(
            "proxilion_scan_pool_rejected", "Bodies refused (503) because the scan pool and its queue were full.", registry=r
        )
        self.policy_reloads = Counter("proxilion_policy_reloads", "Policy reloads by result.", ["result"], registry=r)

        # Rate limiting.
        self.ratelimit_decisions = Counter(
            "proxilion_ratelimit_decisions", "Rate limit decisions.", ["result", "store"], registry=r
        )
        self.ratelimit_fallback = Counter(
            "proxilion_ratelimit_fallback", "Decisions taken on local buckets because Redis failed.", registry=r
        )
        self.ratelimit_duration = Histogram(
            "proxilion_ratelimit_duration_seconds", "Time to take one rate limit decision.", ["store"], buckets=_FAST_BUCKETS, registry=r
        )
        self.ratelimit_buckets = Gauge("proxilion_ratelimit_buckets", "Buckets held in local memory.", registry=r)
        self.ratelimit_evictions = Counter(
            "proxilion_ratelimit_evictions", "Local buckets evicted to stay within the memory bound.", registry=r
        )

        # Analytics.
        self.analytics_queue_depth = Gauge("proxilion_analytics_queue_depth", "Audit rows waiting to be written.", registry=r)
        self.analytics_rows_written = Counter("proxilion_analytics_rows_written", "Audit rows written to the database.", registry=r)
        self.analytics_rows_spooled = Counter("proxilion_analytics_rows_spooled", "Audit rows written to the disk spool.", registry=r)
        self.analytics_rows_dropped = Counter(
            "proxilion_analytics_rows_dropped", "Audit rows lost (queue and spool both full).", registry=r
        )
        self.analytics_rows_deferred = Counter(
            "proxilion_analytics_rows_deferred",
            "Audit rows dropped from memory (queue and spool full) but kept in the journal: written after the next start.",
            registry=r,
        )
        self.analytics_journal_skipped = Counter(
            "proxilion_analytics_journal_skipped", "Audit rows not journaled (journal full or failing): not crash-safe.", ["reason"], registry=r
        )
        for reason in ("full", "error"):
            # Both series exist from the start, so the alert's increase() sees the first skip.
            self.analytics_journal_skipped.labels(reason)
        self.analytics_flush_duration = Histogram(
            "proxilion_analytics_flush_duration_seconds", "Time to write one batch.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.analytics_flush_failures = Counter(
            "proxilion_analytics_flush_failures", "Failed batch writes by kind.", ["kind"], registry=r
        )

        # TLS interception.
        self.tls_certificates_minted = Counter("proxilion_tls_certificates_minted", "Leaf certificates minted from the CA.", registry=r)
        self.tls_leaf_cache = Counter("proxilion_tls_leaf_cache", "Leaf certificate lookups by result (hit, miss).", ["result"], registry=r)
        self.tls_leaf_cache_evictions = Counter(
            "proxilion_tls_leaf_cache_evictions", "Leaves dropped to keep the leaf cache within its bound.", registry=r
        )
        self.tls_handshakes = Counter(
            "proxilion_tls_handshakes", "Intercepting TLS handshakes by mode (connect, transparent) and result.", ["mode", "result"], registry=r
        )
        self.connect_requests = Counter("proxilion_connect_requests", "CONNECT requests by decision (intercept, deny, tunnel).", ["decision"], registry=r)
        self.tls_ca_not_after = Gauge(
            "proxilion_tls_ca_not_after_timestamp_seconds", "Expiry (Unix time) of the signing CA; 0 when interception is off.", registry=r
        )
        self.tls_ca_reloads = Counter("proxilion_tls_ca_reloads", "CA reloads (SIGHUP) by result.", ["result"], registry=r)

        for name, value in list(vars(self).items()):
            if getattr(value, "_labelnames", ()):
                setattr(self, name, _CachedLabels(value))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
