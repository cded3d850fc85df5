"""The Redis store against real redis-server processes."""

from __future__ import annotations

import time

import pytest_twisted

from proxilion.ratelimit.buckets import Admission

from rl_support import ALICE, cli, eventually, redis_limiter, sample, sleep


async def started(rl):
    rl.startService()
    await eventually(lambda: rl.health() == "ok", what="redis connected")
    return rl


@pytest_twisted.ensureDeferred
async def test_exact_burst_then_refusals_then_refill(redis_server):
    rl, metrics = redis_limiter(redis_server.url)
    await started(rl)
    try:
        decisions = [await rl.take(ALICE, "openai") for _ in range(7)]
        assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
        assert {d.store for d in decisions} == {"redis"}
        assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
        assert 0 < decisions[5].retry_after <= 0.1
        assert decisions[5].headers()["Retry-After"] == "1"
        await sleep(0.25)  # 10 tokens/s: two more
        again = [await rl.take(ALICE, "openai") for _ in range(3)]
        assert [d.allowed for d in again] == [True, True, False]
        assert sample(metrics, "proxilion_ratelimit_decisions_total", result="allowed", store="redis") == 7
        assert sample(metrics, "proxilion_ratelimit_fallback_total") == 0
        ttl = int(cli(redis_server.port, "pttl", "proxilion:rl:{user:alice}:default"))
        assert 0 < ttl <= 1600  # expires once full again (0.5 s) plus a second of slack
        assert rl.status()["state"] == "ok"
    finally:
        await rl.stopService()


@pytest_twisted.ensureDeferred
async def test_all_limits_in_one_atomic_call(redis_server):
    limits = (
        {"name": "pp", "scope": "identity+provider", "per_minute": 600, "burst": 2, "unit": "requests"},
        {"name": "all", "scope": "global", "per_minute": 600, "burst": 3, "unit": "requests"},
    )
    rl, _ = redis_limiter(redis_server.url, REDIS_TIMEOUT="0.2")
    rl.limits = rl.limits + tuple(__import__("proxilion.ratelimit.buckets", fromlist=["Limit"]).Limit(**l) for l in limits)
    await started(rl)
    try:
        assert (await rl.take(ALICE, "openai")).allowed
        assert (await rl.take(ALICE, "openai")).allowed
        refused = await rl.take(ALICE, "openai")
        assert not refused.allowed and refused.limit == 2
        # The refusal consumed nothing from the global bucket: one token left there.
        assert (await rl.take(ALICE, "anthropic")).allowed
        assert not (await rl.take(ALICE, "gemini")).allowed
    finally:
        await rl.stopService()


@pytest_twisted.ensureDeferred
async def test_noscript_after_script_flush(redis_server):
    rl, metrics = redis_limiter(redis_server.url, RATE_LIMIT_BURST="100")
    await started(rl)
    try:
        assert (await rl.take(ALICE, "openai")).store == "redis"
        assert (await rl.take(ALICE, "openai")).store == "redis"  # now by EVALSHA
        assert cli(redis_server.port, "script", "flush") == "OK"
        decision = await rl.take(ALICE, "openai")
        assert decision.store == "redis" and decision.remaining == 97
        assert sample(metrics, "proxilion_ratelimit_fallback_total") == 0
    finally:
        await rl.stopService()


@pytest_twisted.ensureDeferred
async def test_starts_with_redis_unreachable_and_falls_back(redis_server):
    port = redis_server.port
    redis_server.kill()
    rl, metrics = redis_limiter(f"redis://127.0.0.1:{port}", RATE_LIMIT_PER_MINUTE="6")
    rl.startService()  # must not raise
    try:
        decisions = [await rl.take(ALICE, "openai") for _ in range(7)]
        assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
        assert {d.store for d in decisions} == {"fallback"}
        assert sample(metrics, "proxilion_ratelimit_fallback_total") == 7
        assert rl.health() == "degraded" and rl.status()["state"] == "degraded"
        assert sample(metrics, "proxilion_health_check_status", component="redis") == 0.5
        redis_server.start()
        await eventually(lambda: rl.health() == "ok", timeout=2, what="reconnect")
        assert (await rl.take(ALICE, "openai")).store == "redis"
        assert sample(metrics, "proxilion_health_check_status", component="redis") == 1.0
    finally:
        await rl.stopService()


@pytest_twisted.ensureDeferred
async def test_fail_closed_answers_unavailable(redis_server):
    port = redis_server.port
    redis_server.kill()
    rl, metrics = redis_limiter(f"redis://127.0.0.1:{port}", RATE_LIMIT_FAIL_CLOSED="true")
    rl.startService()
    try:
        decision = await rl.take(ALICE, "openai")
        assert decision.unavailable and not decision.allowed
        assert decision.headers() == {"Retry-After": "1"}
        assert rl.status()["state"] == "down" and rl.health() == "degraded"
        assert sample(metrics, "proxilion_ratelimit_decisions_total", result="unavailable", store="redis") == 1
        assert sample(metrics, "proxilion_ratelimit_fallback_total") == 0
    finally:
        await rl.stopService()


@pytest_twisted.ensureDeferred
async def test_redis_killed_mid_run_falls_back_and_resumes_exactly(redis_server):
    rl, metrics = redis_limiter(redis_server.url, RATE_LIMIT_PER_MINUTE="60", RATE_LIMIT_BURST="1000", REDIS_TIMEOUT="0.05")
    await started(rl)
    try:
        stores = []
        for _ in range(50):
            stores.append((await rl.take(ALICE, "openai")).store)
        assert set(stores) == {"redis"}
        redis_server.kill()
        during = [await rl.take(ALICE, "openai") for _ in range(200)]
        assert all(isinstance(d, Admission) and d.allowed for d in during)
        assert during[-1].store == "fallback"
        assert sample(metrics, "proxilion_ratelimit_fallback_total") >= 199
        assert rl.health() == "degraded"
        redis_server.start(wait=False)
        returned = time.monotonic()
        while True:
            decision = await rl.take(ALICE, "openai")
            if decision.store == "redis":
                break
            assert time.monotonic() - returned < 1.5, "limiting did not resume from Redis"
            await sleep(0.01)
        resumed_after = time.monotonic() - returned
        assert resumed_after < 1.0 + 0.3  # redis-server's own start-up time included
        # Exact again: the restarted (empty) Redis starts a full bucket of 1000.
        results = [await rl.take(ALICE, "openai") for _ in range(1005)]
        assert {d.store for d in results} == {"redis"}
        assert sum(d.allowed for d in results) in (998, 999, 1000)  # 1/s refill over the run
    finally:
        await rl.stopService()


@pytest_twisted.ensureDeferred
async def test_admin_buckets_and_reset_in_redis(redis_server):
    rl, _ = redis_limiter(redis_server.url)
    await started(rl)
    try:
        for _ in range(3):
            await rl.take(ALICE, "openai")
        [bucket] = await rl.buckets("user:alice")
        assert bucket["store"] == "redis" and bucket["active"] and 2 <= bucket["tokens"] < 2.5
        assert await rl.reset("user:alice") == 1
        [bucket] = await rl.buckets("user:alice")
        assert not bucket["active"] and bucket["tokens"] == 5
    finally:
        await rl.stopService()


@pytest_twisted.ensureDeferred
async def test_password_and_db_number(tmp_path):
    from rl_support import RedisServer

    server = RedisServer(tmp_path / "auth", None, "--requirepass", "s3cret").start()
    try:
        rl, _ = redis_limiter(f"redis://:s3cret@127.0.0.1:{server.port}/3")
        await started(rl)
        assert (await rl.take(ALICE, "openai")).store == "redis"
        await rl.stopService()
        keys = cli(server.port, "-a", "s3cret", "--no-auth-warning", "-n", "3", "keys", "*")
        assert keys == "proxilion:rl:{user:alice}:default"
        wrong, _ = redis_limiter(f"redis://:wrong@127.0.0.1:{server.port}/3")
        wrong.startService()
        decision = await wrong.take(ALICE, "openai")
        assert decision.store == "fallback" and wrong.health() == "degraded"
        await wrong.stopService()
    finally:
        server.kill()
