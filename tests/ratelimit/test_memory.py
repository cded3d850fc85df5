"""The memory store and the RateLimiter on it, driven by a Clock: exact, bounded."""

from __future__ import annotations

import attrs
import pytest
from twisted.internet.task import Clock

from proxilion.config import ConfigError, load_settings
from proxilion.metrics import Metrics
from proxilion.proxy.identity import Identity
from proxilion.ratelimit.buckets import Bucket, Admission, Limit, MemoryStore
from proxilion.ratelimit.service import RateLimiter

ALICE = Identity(key="user:alice", kind="user", tenant="acme", client_ip="203.0.113.1")
BOB = Identity(key="user:bob", kind="user", tenant="acme", client_ip="203.0.113.2")


def limiter(env=None, limits=(), clock=None, **kw):
    settings = load_settings({}, environ={"RATE_LIMIT_PER_MINUTE": "60", "RATE_LIMIT_BURST": "5", **(env or {})})
    if limits:
        settings = attrs.evolve(settings, rate_limits=tuple(limits))
    metrics = Metrics()
    return RateLimiter(settings, metrics, clock or Clock(), **kw), metrics


def take(rl, identity=ALICE, provider="openai", cost=1) -> Admission:
    results = []
    rl.take(identity, provider, cost).addBoth(results.append)
    assert len(results) == 1, "memory decisions are synchronous"
    assert isinstance(results[0], Admission)
    return results[0]


def sample(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_exact_burst_then_refill():
    clock = Clock()
    rl, metrics = limiter(clock=clock)
    decisions = [take(rl) for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    refused = decisions[5]
    assert refused.retry_after == pytest.approx(1.0)
    assert refused.reset_seconds == pytest.approx(5.0)
    headers = refused.headers(now=0.0)
    assert {k: headers[k] for k in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After")} == {
        "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "5", "Retry-After": "1"}
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-reset-requests"]) == ("60", "5s")
    clock.advance(0.999)
    assert not take(rl).allowed
    clock.advance(0.001)
    assert take(rl).allowed
    assert not take(rl).allowed
    clock.advance(2.5)
    assert [take(rl).allowed for _ in range(3)] == [True, True, False]
    assert sample(metrics, "proxilion_ratelimit_decisions_total", result="allowed", store="memory") == 8
    assert sample(metrics, "proxilion_ratelimit_decisions_total", result="limited", store="memory") == 5


def test_long_run_admits_exactly_burst_plus_rate_times_time():
    clock = Clock()
    rl, _ = limiter(clock=clock)
    admitted = 0
    for _ in range(6000):  # 10 requests per simulated second for 600 s
        admitted += take(rl).allowed
        clock.advance(0.1)
    assert admitted == 5 + 600 - 1  # the last 0.1 s step's token is not yet spent


def test_identities_are_independent():
    rl, _ = limiter()
    for _ in range(5):
        assert take(rl, ALICE).allowed
    assert not take(rl, ALICE).allowed
    assert take(rl, BOB).allowed


def test_limiting_off_admits_everything_without_headers():
    rl, metrics = limiter({"RATE_LIMIT_PER_MINUTE": "0"})
    decisions = [take(rl) for _ in range(1000)]
    assert all(d.allowed for d in decisions)
    assert decisions[0].headers() == {}
    assert rl.status()["enabled"] is False


def test_every_limit_must_pass_and_refusal_consumes_nothing():
    clock = Clock()
    limits = [{"name": "tenant", "scope": "tenant", "per_minute": 60, "burst": 3, "unit": "requests"}]
    rl, _ = limiter(limits=limits, clock=clock)
    assert [take(rl, ALICE).allowed for _ in range(2)] == [True, True]
    assert take(rl, BOB).allowed
    refused = take(rl, BOB)  # BOB's own bucket has 4 left, the tenant's has none
    assert not refused.allowed and refused.limit == 3
    other_tenant = Identity(key="user:carol", kind="user", tenant="other", client_ip="203.0.113.3")
    assert take(rl, other_tenant).allowed
    clock.advance(1)
    assert take(rl, BOB).allowed


def test_identity_provider_global_and_provider_scopes():
    limits = [
        {"name": "per-provider", "scope": "identity+provider", "per_minute": 60, "burst": 1, "unit": "requests"},
        {"name": "provider", "scope": "provider", "per_minute": 60, "burst": 3, "unit": "requests"},
        {"name": "all", "scope": "global", "per_minute": 60, "burst": 4, "unit": "requests"},
    ]
    rl, _ = limiter(limits=limits)
    assert take(rl, ALICE, "openai").allowed
    assert not take(rl, ALICE, "openai").allowed
    assert take(rl, ALICE, "anthropic").allowed
    assert take(rl, BOB, "openai").allowed
    assert take(rl, BOB, "anthropic").allowed
    assert not take(rl, Identity("user:dan", "user", None, "1.1.1.1"), "gemini").allowed  # global burst 4 spent


def test_token_limits_estimate_then_reconcile():
    clock = Clock()
    limits = [{"name": "tpm", "scope": "identity", "per_minute": 6000, "burst": 1000, "unit": "tokens"}]
    rl, _ = limiter({"RATE_LIMIT_PER_MINUTE": "0"}, limits=limits, clock=clock)
    assert take(rl, cost=600).allowed
    assert not take(rl, cost=600).allowed  # 400 left
    rl.reconcile(ALICE, "openai", estimated=600, actual=100)  # 500 given back
    decision = take(rl, cost=600)
    assert decision.allowed and decision.remaining == 300
    rl.reconcile(ALICE, "openai", estimated=600, actual=1500)  # 900 more owed: 300 - 900 = -600
    refused = take(rl, cost=1)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(6.01)  # 601 tokens at 100/s
    assert take(rl, cost=5000, identity=BOB).allowed  # larger than the burst: admitted when full


def test_memory_is_bounded_and_evictions_counted():
    store_evictions = []
    store = MemoryStore(max_buckets=1000, on_evict=store_evictions.append)
    limit = Limit("default", "identity", 60, 5, "requests")
    for n in range(1_000_000):
        store.take([Bucket(f"k{n}", f"k{n}", limit, 1)], 0.0)
    assert len(store) == 1000
    assert sum(store_evictions) == 1_000_000 - 1000


def test_idle_buckets_expire():
    clock = Clock()
    rl, metrics = limiter(clock=clock)
    for n in range(100):
        take(rl, Identity(f"ip:10.0.0.{n}", "ip", None, f"10.0.0.{n}"))
    assert len(rl.memory) == 100
    clock.advance(5.0)  # every bucket is full again: equivalent to absent
    take(rl)
    assert len(rl.memory) == 1
    assert sample(metrics, "proxilion_ratelimit_buckets") == 1
    assert sample(metrics, "proxilion_ratelimit_evictions_total") == 0


def test_limiter_eviction_metric():
    rl, metrics = limiter(max_buckets=10)
    for n in range(25):
        take(rl, Identity(f"ip:10.0.0.{n}", "ip", None, f"10.0.0.{n}"))
    assert len(rl.memory) == 10
    assert sample(metrics, "proxilion_ratelimit_evictions_total") == 15


def test_admin_buckets_and_reset():
    limits = [{"name": "pp", "scope": "identity+provider", "per_minute": 60, "burst": 2, "unit": "requests"}]
    rl, _ = limiter(limits=limits)
    for _ in range(3):
        take(rl, ALICE, "openai")
    buckets = rl.buckets("user:alice").result
    default = next(b for b in buckets if b["name"] == "default")
    assert default["tokens"] == 3 and default["active"] and default["burst"] == 5
    pp = {b["provider"]: b for b in buckets if b["name"] == "pp"}
    assert pp["openai"]["tokens"] == 0 and not pp["anthropic"]["active"]
    assert rl.reset("user:alice").result == 2
    after = take(rl, ALICE, "openai")
    assert (after.limit, after.remaining) == (2, 1)  # the tightest bucket: half its burst left


def test_duplicate_limit_names_are_rejected():
    limits = [{"name": "x", "scope": "identity", "per_minute": 1, "burst": 1, "unit": "requests"}] * 2
    with pytest.raises(ValueError, match="repeated: x"):
        limiter(limits=limits)


@pytest.mark.parametrize(
    "env,message",
    [
        ({"RATE_LIMIT_STORE": "redis"}, "needs REDIS_URL"),
        ({"RATE_LIMIT_STORE": "redis", "REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL: must be a redis:///rediss:// URL"),
        ({"RATE_LIMIT_STORE": "redis", "REDIS_URL": "redis://127.0.0.1:99999"}, "REDIS_URL: has an invalid port"),
    ],
)
def test_bad_redis_settings_fail_at_load(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({}, environ=env)


@pytest.mark.filterwarnings("ignore:Passing HostnameEndpoint a reactor:DeprecationWarning")
@pytest.mark.parametrize(
    "env,message",
    [
        ({"REDIS_URL": "redis://127.0.0.1:6379/zero"}, "REDIS_URL: the path must be a database number"),
        ({"REDIS_URL": "redis://127.0.0.1:6379/1", "REDIS_CLUSTER": "true"}, "Redis Cluster has only database 0"),
        ({"REDIS_SENTINELS": "sentinel-a", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS: 'sentinel-a' must look like host:port"),
    ],
)
def test_bad_redis_settings_fail_in_the_constructor(env, message):
    with pytest.raises(ValueError, match=message):
        limiter({"RATE_LIMIT_STORE": "redis", **env})


@pytest.mark.filterwarnings("ignore:Passing HostnameEndpoint a reactor:DeprecationWarning")
def test_password_never_in_status_or_repr():
    rl, _ = limiter({"RATE_LIMIT_STORE": "redis", "REDIS_URL": "redis://:hunter2-secret@127.0.0.1:1/2"})
    assert "hunter2" not in repr(rl.status()) and "hunter2" not in repr(rl._target)
    assert rl.status()["redis"]["target"] == "redis://127.0.0.1:1/2"
