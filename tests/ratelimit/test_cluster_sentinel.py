"""Redis Cluster routing (slots, MOVED, ASK during a migration, TRYAGAIN) and Sentinel discovery and failover, against real servers."""

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
        # With the master gone and no new one named yet, a decision must fall back
        # (the loop below may only start once the new master is already reachable).
        assert (await rl.take(ALICE, "openai")).store != "redis"
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


def _asking_calls(port: int) -> int:
    for line in cli(port, "info", "commandstats").splitlines():
        if line.startswith("cmdstat_asking:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


@pytest_twisted.ensureDeferred
async def test_cluster_follows_ask_while_a_slot_migrates(redis_cluster):
    # 0.1 token/s: the whole run adds at most one token to the burst of 20.
    rl, metrics = redis_limiter(redis_cluster[0].url, REDIS_CLUSTER="true", RATE_LIMIT_PER_MINUTE="6", RATE_LIMIT_BURST="20")
    await started(rl)
    client = rl._client
    await eventually(lambda: len(client.nodes()) == 3, what="all masters known")
    dave = Identity("user:dave-migrating", "user", None, "203.0.113.4")
    key = "proxilion:rl:{user:dave-migrating}:default"
    slot = key_slot(key)
    by_port = {node.port: node for node in redis_cluster}
    source = by_port[client._slots[slot][1]]
    target = next(node for node in redis_cluster if node is not source)
    source_id, target_id = cli(source.port, "cluster", "myid"), cli(target.port, "cluster", "myid")
    decisions = []
    try:
        decisions += [await rl.take(dave, "openai") for _ in range(5)]
        assert cli(source.port, "exists", key) == "1"
        assert cli(target.port, "cluster", "setslot", str(slot), "importing", source_id) == "OK"
        assert cli(source.port, "cluster", "setslot", str(slot), "migrating", target_id) == "OK"
        # Migrating, key still on the source: the source answers as before.
        decisions += [await rl.take(dave, "openai") for _ in range(5)]
        assert cli(source.port, "migrate", "127.0.0.1", str(target.port), key, "0", "5000") == "OK"
        asking_before = _asking_calls(target.port)
        # Key moved, slot not yet: the source answers ASK, the target serves only after ASKING.
        decisions += [await rl.take(dave, "openai") for _ in range(5)]
        assert _asking_calls(target.port) - asking_before >= 5
        assert client._slots[slot] == ("127.0.0.1", source.port), "an ASK must not change the slot map"
        for node in redis_cluster:
            assert cli(node.port, "cluster", "setslot", str(slot), "node", target_id) == "OK"
        # Migration done: MOVED to the target from now on.
        decisions += [await rl.take(dave, "openai") for _ in range(10)]
        await eventually(lambda: client._slots[slot] == ("127.0.0.1", target.port), what="slot map updated")
    finally:
        for node in redis_cluster:
            cli(node.port, "cluster", "setslot", str(slot), "node", target_id)
        await rl.stopService()
    assert {d.store for d in decisions} == {"redis"}
    assert sample(metrics, "proxilion_ratelimit_fallback_total") == 0
    allowed = [d.allowed for d in decisions]
    assert sum(allowed) in (20, 21) and allowed[:20] == [True] * 20, allowed
    assert cli(source.port, "cluster", "countkeysinslot", str(slot)) == "0"
    assert float(cli(target.port, "hget", key, "t")) < 1


def _error_count(port: int, error: str) -> int:
    for line in cli(port, "info", "errorstats").splitlines():
        if line.startswith(f"errorstat_{error}:"):
            return int(line.split("count=")[1])
    return 0


@pytest_twisted.ensureDeferred
async def test_cluster_retries_while_a_bucket_group_is_half_migrated(redis_cluster, monkeypatch):
    from proxilion.ratelimit import redisclient

    # Long enough for the test to finish the migration in between.
    monkeypatch.setattr(redisclient, "_TRYAGAIN_DELAY", 0.3)
    rl, metrics = redis_limiter(redis_cluster[0].url, REDIS_CLUSTER="true", RATE_LIMIT_BURST="20", REDIS_TIMEOUT="0.2")
    rl.limits = rl.limits + (Limit("per-provider", "identity+provider", 6, 10, "requests"),)
    await started(rl)
    client = rl._client
    await eventually(lambda: len(client.nodes()) == 3, what="all masters known")
    erin = Identity("user:erin-half-migrated", "user", None, "203.0.113.5")
    keys = ["proxilion:rl:{user:erin-half-migrated}:default", "proxilion:rl:{user:erin-half-migrated}:per-provider:openai"]
    slot = key_slot(keys[0])
    by_port = {node.port: node for node in redis_cluster}
    source = by_port[client._slots[slot][1]]
    target = next(node for node in redis_cluster if node is not source)
    source_id, target_id = cli(source.port, "cluster", "myid"), cli(target.port, "cluster", "myid")
    try:
        assert (await rl.take(erin, "openai")).remaining == 9
        cli(target.port, "cluster", "setslot", str(slot), "importing", source_id)
        cli(source.port, "cluster", "setslot", str(slot), "migrating", target_id)
        assert cli(source.port, "migrate", "127.0.0.1", str(target.port), keys[0], "0", "5000") == "OK"
        before = _error_count(source.port, "TRYAGAIN")
        pending = rl.take(erin, "openai")
        await eventually(lambda: _error_count(source.port, "TRYAGAIN") > before, what="TRYAGAIN")
        assert cli(source.port, "migrate", "127.0.0.1", str(target.port), keys[1], "0", "5000") == "OK"
        decision = await pending
        assert decision.store == "redis" and decision.allowed and decision.remaining == 8
        assert sample(metrics, "proxilion_ratelimit_fallback_total") == 0
    finally:
        for node in redis_cluster:
            cli(node.port, "cluster", "setslot", str(slot), "node", target_id)
        await rl.stopService()
