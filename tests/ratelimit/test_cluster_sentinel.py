"""Redis Cluster routing (slots, MOVED) and Sentinel discovery and failover, against real servers."""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from rl_support import ALICE, cli, eventually, redis_limiter, sample, sleep

from proxilion.proxy.identity import Identity
from proxilion.ratelimit.buckets import Limit
from proxilion.ratelimit.redisclient import key_slot


async def started(rl):
    rl.startService()
    await eventually(lambda: rl.health() == "ok", what="redis connected")
    return rl


def test_key_slot_matches_redis(redis_cluster):
    port = redis_cluster[0].port
    for key in ("foo", "proxilion:rl:{user:alice}:default", "{tenant:acme}x", "a{}b", "{}{x}", "ключ"):
        assert key_slot(key) == int(cli(port, "cluster", "keyslot", key)), key


@pytest_twisted.ensureDeferred
async def test_cluster_follows_moved_and_refreshes_the_map(redis_cluster):
    rl, metrics = redis_limiter(redis_cluster[0].url, REDIS_CLUSTER="true")
    await started(rl)
    try:
        client = rl._client
        await eventually(lambda: len(client.nodes()) == 3, what="all masters known")
        identities = [Identity(f"user:u{n}", "user", None, "203.0.113.1") for n in range(30)]
        owners = {client._slots[key_slot("{" + i.key + "}")] for i in identities}
        assert len(owners) == 3, "the identities should spread over the three masters"
        # Point every slot at one node: two thirds of the calls now get MOVED.
        wrong = redis_cluster[0]
        client._slots = [("127.0.0.1", wrong.port)] * 16384
        for identity in identities:
            decisions = [await rl.take(identity, "openai") for _ in range(6)]
            assert [d.allowed for d in decisions] == [True] * 5 + [False]
            assert {d.store for d in decisions} == {"redis"}
        assert sample(metrics, "proxilion_ratelimit_fallback_total") == 0
        await eventually(lambda: len(set(client._slots)) == 3, what="slot map refreshed")
    finally:
        await rl.stopService()


@pytest_twisted.ensureDeferred
async def test_cluster_limits_in_different_slots_refund_on_refusal(redis_cluster):
    rl, _ = redis_limiter(redis_cluster[0].url, REDIS_CLUSTER="true", RATE_LIMIT_PER_MINUTE="6", RATE_LIMIT_BURST="2")
    rl.limits = rl.limits + (Limit("all", "global", 6, 3, "requests"),)
    await started(rl)
    try:
        bob = Identity("user:bob-cluster", "user", None, "203.0.113.2")
        carol = Identity("user:carol-cluster", "user", None, "203.0.113.3")
        assert [(await rl.take(bob, "openai")).allowed for _ in range(3)] == [True, True, False]
        assert (await rl.take(carol, "openai")).allowed  # global: 1 left
        refused = await rl.take(carol, "openai")  # carol's own bucket passes, the global one refuses
        assert not refused.allowed and refused.limit == 3 and refused.store == "redis"
        [own] = await rl.buckets("user:carol-cluster")
        assert own["tokens"] == pytest.approx(1, abs=0.05)  # the refused request's token was given back
    finally:
        await rl.stopService()


@pytest_twisted.ensureDeferred
async def test_sentinel_discovery_and_failover(redis_sentinel):
    sentinel_port = redis_sentinel["sentinel_port"]
    rl, metrics = redis_limiter(
        None, REDIS_SENTINELS=f"127.0.0.1:{sentinel_port}", REDIS_SENTINEL_MASTER="mymaster", RATE_LIMIT_BURST="1000"
    )
    await started(rl)
    try:
        assert (await rl.take(ALICE, "openai")).store == "redis"
        master_port = redis_sentinel["master"].port
        assert cli(master_port, "exists", "proxilion:rl:{user:alice}:default") == "1"
        redis_sentinel["master"].kill()
        new_port = redis_sentinel["replica"].port
        await eventually(
            lambda: cli(sentinel_port, "sentinel", "get-master-addr-by-name", "mymaster").endswith(str(new_port)),
            timeout=15,
            what="sentinel failover",
        )
        switched = time.monotonic()
        # Meanwhile the limiter falls back; once the sentinel names the new master it reconnects there.
        key = "proxilion:rl:{user:alice}:default"
        for _ in range(300):
            decision = await rl.take(ALICE, "openai")
            if decision.store == "redis" and cli(new_port, "exists", key) == "1":
                break
            await sleep(0.05)
        else:
            raise AssertionError("never reached the new master")
        assert time.monotonic() - switched < 1.5
        assert sample(metrics, "proxilion_ratelimit_fallback_total") > 0
        assert rl.health() == "ok"
        before = float(cli(new_port, "hget", key, "t"))
        assert (await rl.take(ALICE, "openai")).store == "redis"
        assert float(cli(new_port, "hget", key, "t")) < before  # the write went to the new master
    finally:
        await rl.stopService()
