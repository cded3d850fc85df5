"""The RateLimiter service: step 3 of the request path.

Decisions come from the memory store, or from Redis with the memory store as
the fallback while Redis is away (or a 503 decision with
C{rate_limit_fail_closed}).
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from proxilion.component import Health
from proxilion.config import PROVIDER_NAMES
from proxilion.identity_key import Identity
from proxilion.metrics import HEALTH_DEGRADED, HEALTH_DOWN, HEALTH_OK
from proxilion.ratelimit.buckets import (
    IDENTITY_SCOPES,
    UNLIMITED,
    Bucket,
    Admission,
    MemoryStore,
    bucket_key,
    decide,
    group_by_tag,
    limits_from_settings,
    plan,
)
from proxilion.ratelimit.redisclient import RedisNode, RedisUnavailable, build_client, parse_target
from proxilion.ratelimit.redisstore import RedisStore

__all__ = ["RateLimiter", "Admission", "DEFAULT_MAX_BUCKETS"]

# About 300 bytes a bucket: ~60 MB at most, however many identities show up.
DEFAULT_MAX_BUCKETS = 200_000


class RateLimiter(Service):
    """Token-bucket admission per identity, in memory or shared through Redis.

    C{reactor} provides C{IReactorTime} (and C{IReactorTCP}, C{IReactorSSL}
    for Redis); only C{seconds()} is used by the memory store, so tests pass
    a L{twisted.internet.task.Clock}.
    """

    name = "ratelimit"  # type: ignore[assignment]  # Twisted's Service declares `name = None` without a type
    log = Logger()

    def __init__(self, settings: Any, metrics: Any, reactor: Any, *, max_buckets: int = DEFAULT_MAX_BUCKETS) -> None:
        self.limits = limits_from_settings(settings)
        self.store_name: str = settings.rate_limit_store
        self._unlimited_decision: Admission | None = None
        self.fail_closed: bool = settings.rate_limit_fail_closed
        self.metrics = metrics
        self.reactor = reactor
        self.memory = MemoryStore(max_buckets, on_evict=metrics.ratelimit_evictions.inc)
        self._redis_ok = False
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._target = None
        self._client: Any = None
        self._redis: RedisStore | None = None
        if self.store_name == "redis":
            self._target = parse_target(settings)
            self._client = build_client(reactor, self._target, settings.redis_timeout, self._node_changed)
            self._redis = RedisStore(self._client, settings.redis_timeout)

    # Lifecycle.

    def startService(self) -> None:
        super().startService()
        if self._client is not None and self._target is not None:
            self.log.info("Rate limits shared through Redis at {target}", target=self._target.describe())
            self._set_redis(False, "connecting")
            self._client.start()

    def stopService(self) -> defer.Deferred:
        super().stopService()
        if self._client is None:
            return defer.succeed(None)
        return self._client.stop().addCallback(lambda _: None)

    # Health.

    def _node_changed(self, node: RedisNode) -> None:
        if node.up:
            self._set_redis(True, f"{node.name} connected")
        elif not self._client.up:
            self._set_redis(False, f"{node.name} unavailable")

    def _set_redis(self, ok: bool, why: str) -> None:
        changed = ok != self._redis_ok
        self._redis_ok = ok
        value = HEALTH_OK if ok else (HEALTH_DOWN if self.fail_closed else HEALTH_DEGRADED)
        self.metrics.health_check_status.labels(component="redis").set(value)
        if changed and ok:
            self.log.info("Redis rate limiting active ({why})", why=why)
        elif changed and why != "connecting":
            mode = "refusing requests with 503" if self.fail_closed else "using local buckets"
            self.log.warn("Redis rate limiting unavailable ({why}); {mode}", why=why, mode=mode)

    def health(self) -> Health:
        """C{ok} or C{degraded}; Redis trouble never makes the process unhealthy."""
        return "ok" if self._client is None or self._redis_ok else "degraded"

    def status(self) -> dict[str, Any]:
        if self._client is None:
            state = "ok"
        elif self._redis_ok:
            state = "ok"
        else:
            state = "down" if self.fail_closed else "degraded"
        out: dict[str, Any] = {
            "store": self.store_name,
            "state": state,
            "enabled": bool(self.limits),
            "limits": [attrs.asdict(limit) for limit in self.limits],
            "local_buckets": len(self.memory),
        }
        if self._client is not None and self._target is not None:
            out["redis"] = {
                "target": self._target.describe(),
                "fail_closed": self.fail_closed,
                "nodes": {node.name: node.state for node in self._client.nodes()},
            }
        return out

    # Decisions.

    def _unlimited(self) -> Admission:
        # Decisions are frozen: one per store serves every request no limit applies to.
        decision = self._unlimited_decision
        if decision is None or decision.store != self.store_name:
            decision = self._unlimited_decision = attrs.evolve(UNLIMITED, store=self.store_name)
        return decision

    def take(self, identity: Identity, provider: str, cost: int = 1) -> defer.Deferred:
        """Admit or refuse one request against every limit that applies; never errbacks.

        Request limits cost 1; token limits cost C{cost} (an estimate,
        corrected later by L{reconcile}).
        """
        if not self.limits:
            return defer.succeed(self._unlimited())
        buckets = plan(self.limits, identity.key, identity.tenant, provider, cost)
        if not buckets:
            return defer.succeed(self._unlimited())
        started = self.reactor.seconds()
        if self._redis is None:
            return defer.succeed(self._record(self._take_local(buckets, "memory"), started))
        # One server takes every bucket in one call whatever its owner: no grouping needed.
        groups = group_by_tag(buckets) if self._client.cluster else [buckets]
        return self._redis.take(groups).addCallbacks(
            self._redis_took, self._redis_failed, callbackArgs=(buckets, started), errbackArgs=(buckets, started)
        )

    def _take_local(self, buckets: list[Bucket], store: str) -> Admission:
        allowed, levels = self.memory.take(buckets, self.reactor.seconds())
        self.metrics.ratelimit_buckets.set(len(self.memory))
        return decide(buckets, levels, allowed, store)

    def _redis_took(self, result: tuple[bool, dict[str, float]], buckets: list[Bucket], started: float) -> Admission:
        if not self._redis_ok:
            self._set_redis(True, "a decision succeeded")
        allowed, levels = result
        tokens = [levels.get(b.key, float(b.limit.burst)) for b in buckets]
        return self._record(decide(buckets, tokens, allowed, "redis"), started)

    def _redis_failed(self, failure: Failure, buckets: list[Bucket], started: float) -> Admission:
        if self._redis_ok and not failure.check(RedisUnavailable):
            # Only on the transition: a persistent error must not log once per request.
            self.log.failure("Redis rate limit decision failed", failure)
        self._set_redis(False, failure.getErrorMessage())
        if self.fail_closed:
            decision = Admission(
                allowed=False, limit=0, remaining=0, reset_seconds=0.0, retry_after=1.0, store="redis", unavailable=True
            )
            return self._record(decision, started)
        self.metrics.ratelimit_fallback.inc()
        return self._record(self._take_local(buckets, "fallback"), started)

    def _record(self, decision: Admission, started: float) -> Admission:
        result = "unavailable" if decision.unavailable else ("allowed" if decision.allowed else "limited")
        # labels() costs more than the memory decision itself: look each child up once.
        children = self._children.get((result, decision.store))
        if children is None:
            children = self._children[(result, decision.store)] = (
                self.metrics.ratelimit_decisions.labels(result=result, store=decision.store),
                self.metrics.ratelimit_duration.labels(store=decision.store),
            )
        children[0].inc()
        children[1].observe(max(0.0, self.reactor.seconds() - started))
        return decision

    def reconcile(self, identity: Identity, provider: str, estimated: int, actual: int) -> None:
        """Correct token limits once the provider reports real usage (best effort, fire and forget)."""
        buckets = [b for b in plan(self.limits, identity.key, identity.tenant, provider, estimated) if b.limit.unit == "tokens"]
        deltas = {b.key: max(0, actual) - b.cost for b in buckets}
        buckets = [b for b in buckets if deltas[b.key]]
        if not buckets:
            return
        if self._redis is None:
            self.memory.adjust(buckets, [deltas[b.key] for b in buckets], self.reactor.seconds())
            return

        def local(failure: Failure) -> None:
            self.memory.adjust(buckets, [deltas[b.key] for b in buckets], self.reactor.seconds())

        defer.ensureDeferred(self._redis.adjust(group_by_tag(buckets), deltas)).addErrback(local)

    # Admin.

    def _owned(self, owner: str) -> list[Bucket]:
        """Every bucket C{owner} (an identity key, C{tenant:<name>}, C{provider:<name>} or C{global}) can hold."""
        kind = owner.partition(":")[0]
        scopes = {"tenant": ("tenant",), "provider": ("provider",), "global": ("global",)}.get(kind, IDENTITY_SCOPES)
        out: list[Bucket] = []
        for limit in self.limits:
            if limit.scope not in scopes:
                continue
            if limit.scope == "identity+provider":
                out.extend(Bucket(bucket_key(owner, limit, p), owner, limit, 0) for p in PROVIDER_NAMES)
            elif limit.scope == "provider":
                provider = owner.partition(":")[2]
                out.append(Bucket(bucket_key(owner, limit, provider), owner, limit, 0))
            else:
                out.append(Bucket(bucket_key(owner, limit, ""), owner, limit, 0))
        return out

    def buckets(self, identity_key: str) -> defer.Deferred:
        """The buckets of one owner as JSON-ready dicts (absent buckets are full)."""
        return defer.ensureDeferred(self._buckets(identity_key))

    async def _buckets(self, owner: str) -> list[dict]:
        owned = self._owned(owner)
        if not owned:
            return []
        store = self.store_name
        levels: list[float | None]
        now = self.reactor.seconds()
        if self._redis is not None:
            try:
                levels = await self._redis.peek(owner, owned)
            except Exception:
                store = "fallback"
                levels = [self.memory.peek(b.key, b.limit, now) for b in owned]
        else:
            levels = [self.memory.peek(b.key, b.limit, now) for b in owned]
        out = []
        for bucket, level in zip(owned, levels):
            tokens = float(bucket.limit.burst) if level is None else level
            entry = {
                "name": bucket.limit.name,
                "scope": bucket.limit.scope,
                "unit": bucket.limit.unit,
                "per_minute": bucket.limit.per_minute,
                "burst": bucket.limit.burst,
                "tokens": round(tokens, 3),
                "reset_seconds": round(max(0.0, (bucket.limit.burst - tokens) / bucket.limit.rate), 3),
                "active": level is not None,
                "store": store,
            }
            if bucket.limit.scope == "identity+provider":
                entry["provider"] = bucket.key.rpartition(":")[2]
            elif bucket.limit.scope == "provider":
                entry["provider"] = owner.partition(":")[2]
            out.append(entry)
        return out

    def reset(self, identity_key: str) -> defer.Deferred:
        """Refill every bucket of one owner; fires with the number of buckets removed.

        Fails with L{RedisUnavailable} when the shared buckets cannot be reached.
        """
        return defer.ensureDeferred(self._reset(identity_key))

    async def _reset(self, owner: str) -> int:
        keys = [b.key for b in self._owned(owner)]
        if not keys:
            return 0
        removed = self.memory.delete(keys)
        self.metrics.ratelimit_buckets.set(len(self.memory))
        if self._redis is not None:
            removed += await self._redis.delete(owner, keys)
        return removed
