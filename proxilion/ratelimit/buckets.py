"""Token buckets: limits, the per-request bucket plan, decisions and the memory store.

Pure: no Twisted, no I/O; time is passed in as seconds. The Redis Lua script
implements the same arithmetic (see L{proxilion.ratelimit.redisstore}).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Sequence

import attrs

__all__ = [
    "Limit",
    "Bucket",
    "Admission",
    "MemoryStore",
    "limits_from_settings",
    "plan",
    "decide",
    "EPSILON",
    "go_duration",
]

# Float slack so that a bucket refilled to 0.9999999999 tokens by rounding still admits.
EPSILON = 1e-9

IDENTITY_SCOPES = ("identity", "identity+provider")


@attrs.frozen
class Limit:
    """One configured token bucket: C{per_minute} refill, C{burst} capacity."""

    name: str
    scope: str  # identity | identity+provider | tenant | provider | global
    per_minute: int
    burst: int
    unit: str  # requests | tokens
    # Tokens per second.
    rate: float = attrs.field(init=False, default=attrs.Factory(lambda self: self.per_minute / 60.0, takes_self=True))


def limits_from_settings(settings: Any) -> tuple[Limit, ...]:
    """The default per-identity request bucket (unless 0/minute) plus the configured extras."""
    out = []
    if settings.rate_limit_per_minute > 0:
        out.append(Limit("default", "identity", settings.rate_limit_per_minute, settings.rate_limit_burst, "requests"))
    for item in settings.rate_limits:
        out.append(Limit(item["name"], item["scope"], item["per_minute"], item["burst"], item["unit"]))
    names = [limit.name for limit in out]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"rate_limits: limit names must be unique; repeated: {', '.join(duplicates)}")
    return tuple(out)


@attrs.frozen
class Bucket:
    """One bucket a request draws on: its store key, group tag, limit and cost."""

    key: str
    tag: str  # keys with the same tag live together (one Redis Cluster slot)
    limit: Limit
    cost: int


def scope_tag(scope: str, identity_key: str, tenant: str | None, provider: str) -> str | None:
    """The owner a scope's bucket belongs to, or None when the scope does not apply."""
    if scope in IDENTITY_SCOPES:
        return identity_key
    if scope == "tenant":
        return f"tenant:{tenant}" if tenant else None
    if scope == "provider":
        return f"provider:{provider}"
    return "global"


def bucket_key(tag: str, limit: Limit, provider: str) -> str:
    # Redis Cluster hashes only what is between the first "{" and "}": every
    # bucket of one owner lands in one slot, so one script call covers them.
    suffix = f"{limit.name}:{provider}" if limit.scope == "identity+provider" else limit.name
    return f"proxilion:rl:{{{tag}}}:{suffix}"


def plan(limits: Sequence[Limit], identity_key: str, tenant: str | None, provider: str, cost: int) -> list[Bucket]:
    """Every bucket a request must pass, identity-owned first.

    Request limits cost 1; token limits cost C{cost} (an estimate), capped at
    their burst so that a large prompt is admitted once its bucket is full.
    """
    buckets = []
    for limit in limits:
        tag = scope_tag(limit.scope, identity_key, tenant, provider)
        if tag is None:
            continue
        amount = 1 if limit.unit == "requests" else max(0, min(cost, limit.burst))
        buckets.append(Bucket(bucket_key(tag, limit, provider), tag, limit, amount))
    return buckets


def group_by_tag(buckets: Iterable[Bucket]) -> list[list[Bucket]]:
    """Buckets grouped by owner tag, in a fixed order: identity first, then tenant, provider, global.

    Checking the caller's own buckets first means a caller over its own limit
    never drains the shared tenant or global buckets.
    """
    groups: dict[str, list[Bucket]] = {}
    for bucket in buckets:
        groups.setdefault(bucket.tag, []).append(bucket)
    order = {"identity": 0, "identity+provider": 0, "tenant": 1, "provider": 2, "global": 3}
    return sorted(groups.values(), key=lambda group: (order[group[0].limit.scope], group[0].tag))


@attrs.frozen
class Admission:
    """The answer for one request.

    C{reset_seconds} and C{retry_after} are delta seconds from now (the IETF
    RateLimit header drafts' convention), not epoch times.
    """

    allowed: bool
    limit: int  # the tightest bucket's burst (its capacity)
    remaining: int
    reset_seconds: float
    retry_after: float
    store: str  # memory | redis | fallback
    unavailable: bool = False
    # The tightest bucket's refill per minute and unit: what OpenAI and Anthropic call the limit.
    per_minute: int = 0
    unit: str = "requests"

    def headers(self, now: float | None = None) -> dict[str, str]:
        """Rate-limit headers in every dialect: the generic X-RateLimit-*, OpenAI's and Anthropic's.

        The generic ones describe the bucket (capacity, tokens left, seconds
        until full); OpenAI's x-ratelimit-*-requests (or -tokens) give the
        per-minute limit and the time until full as a duration ("6m0s"),
        Anthropic's anthropic-ratelimit-* the same with an RFC 3339 time.
        Retry-After (whole seconds) when refused. C{now} is the epoch time,
        for Anthropic's reset.
        """
        out: dict[str, str] = {}
        if self.limit > 0:
            remaining = str(max(0, self.remaining))
            reset = max(0.0, self.reset_seconds - EPSILON)
            out["X-RateLimit-Limit"] = str(self.limit)
            out["X-RateLimit-Remaining"] = remaining
            out["X-RateLimit-Reset"] = str(math.ceil(reset))
            out[f"x-ratelimit-limit-{self.unit}"] = str(self.per_minute)
            out[f"x-ratelimit-remaining-{self.unit}"] = remaining
            out[f"x-ratelimit-reset-{self.unit}"] = go_duration(reset)
            full_at = math.ceil((time.time() if now is None else now) + reset)
            out[f"anthropic-ratelimit-{self.unit}-limit"] = str(self.per_minute)
            out[f"anthropic-ratelimit-{self.unit}-remaining"] = remaining
            out[f"anthropic-ratelimit-{self.unit}-reset"] = (
                datetime.fromtimestamp(full_at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        if not self.allowed:
            out["Retry-After"] = str(max(1, math.ceil(self.retry_after - EPSILON)))
        return out


def go_duration(seconds: float) -> str:
    """A duration as Go prints one ("20ms", "1.5s", "6m0s"): OpenAI's x-ratelimit-reset-* format, rounded up to the ms."""
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + f"{secs}s"


UNLIMITED = Admission(allowed=True, limit=0, remaining=0, reset_seconds=0.0, retry_after=0.0, store="memory")


def decide(buckets: Sequence[Bucket], tokens: Sequence[float], allowed: bool, store: str) -> Admission:
    """Turn the buckets' token counts after a take into a L{Admission} (the limiter's decision).

    Admitted: the tightest bucket is the one with the fewest tokens left.
    Refused: it is the one that makes the caller wait longest.
    """
    if not buckets:
        return attrs.evolve(UNLIMITED, store=store)
    tightest, wait = 0, 0.0
    for index, bucket in enumerate(buckets):
        if not allowed:
            needed = (bucket.cost - tokens[index]) / bucket.limit.rate
            if needed > wait + EPSILON:
                tightest, wait = index, needed
        elif tokens[index] / bucket.limit.burst < tokens[tightest] / buckets[tightest].limit.burst:
            # Compared as a share of the burst: request and token buckets have different units.
            tightest = index
    bucket, left = buckets[tightest], tokens[tightest]
    reset = max(0.0, (bucket.limit.burst - left) / bucket.limit.rate)
    return Admission(
        allowed=allowed,
        limit=bucket.limit.burst,
        remaining=max(0, math.floor(left + EPSILON)),
        reset_seconds=reset,
        retry_after=0.0 if allowed else max(wait, 0.0),
        store=store,
        per_minute=bucket.limit.per_minute,
        unit=bucket.limit.unit,
    )


class MemoryStore:
    """Exact token buckets in one process, bounded.

    Buckets live in an LRU dict of at most C{max_buckets}; a bucket that has
    refilled completely is indistinguishable from a missing one, so idle full
    buckets are dropped from the cold end as we go. When the dict is still
    full, the least recently used bucket is evicted (counted via
    C{on_evict}): that caller gets a fresh, full bucket, the one inexact case,
    and it only happens with more than C{max_buckets} active callers.
    """

    def __init__(self, max_buckets: int = 100_000, on_evict: Callable[[int], None] | None = None) -> None:
        if max_buckets < 1:
            raise ValueError(f"max_buckets must be positive, got {max_buckets}")
        self.max_buckets = max_buckets
        self._on_evict = on_evict or (lambda n: None)
        # key -> [tokens, last update time, time it is full again]
        self._buckets: OrderedDict[str, list[Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, key: str, limit: Limit, now: float) -> float:
        state = self._buckets.get(key)
        if state is None:
            return float(limit.burst)
        return min(float(limit.burst), state[0] + max(0.0, now - state[1]) * limit.rate)

    def _store(self, key: str, limit: Limit, tokens: float, now: float) -> None:
        self._buckets[key] = [tokens, now, now + max(0.0, (limit.burst - tokens) / limit.rate)]
        self._buckets.move_to_end(key)

    def _expire(self, now: float) -> None:
        buckets = self._buckets
        while buckets:
            key = next(iter(buckets))
            if buckets[key][2] > now:
                break
            del buckets[key]
        excess = len(buckets) - self.max_buckets
        if excess > 0:
            for _ in range(excess):
                buckets.popitem(last=False)
            self._on_evict(excess)

    def take(self, buckets: Sequence[Bucket], now: float) -> tuple[bool, list[float]]:
        """All or nothing: consume from every bucket when each has enough tokens."""
        # The hot path of the memory store: kept to plain loops.
        levels = []
        allowed = True
        for b in buckets:
            level = self._level(b.key, b.limit, now)
            levels.append(level)
            if level + EPSILON < b.cost:
                allowed = False
        if allowed:
            for index, b in enumerate(buckets):
                levels[index] -= b.cost
                self._store(b.key, b.limit, levels[index], now)
        self._expire(now)
        return allowed, levels

    def adjust(self, buckets: Sequence[Bucket], deltas: Sequence[int], now: float) -> None:
        """Consume (positive) or give back (negative) without refusing; debt is capped at one burst."""
        for b, delta in zip(buckets, deltas):
            level = self._level(b.key, b.limit, now) - delta
            self._store(b.key, b.limit, max(-float(b.limit.burst), min(float(b.limit.burst), level)), now)
        self._expire(now)

    def peek(self, key: str, limit: Limit, now: float) -> float | None:
        """Tokens in a bucket now, or None when it is not held (full)."""
        if key not in self._buckets:
            return None
        return self._level(key, limit, now)

    def delete(self, keys: Iterable[str]) -> int:
        removed = 0
        for key in keys:
            if self._buckets.pop(key, None) is not None:
                removed += 1
        return removed
