"""Token buckets shared in Redis: one atomic Lua script per bucket group.

Each bucket is a hash C{{t: tokens, ts: server time}} that expires once it
would be full again (an absent key is a full bucket). The script reads the
server's clock (C{TIME}), so replica clocks never matter, and checks and
consumes every bucket it is given in one step: no replica can slip between
the read and the write.

Keys of one owner share a hash tag (see L{proxilion.ratelimit.buckets.bucket_key}).
On a single server or behind Sentinel all buckets of a request go in one
call. In a Cluster, buckets owned by different tags (identity, tenant,
provider, global) live in different slots, so the groups are checked one
after another in a fixed order (identity first); when a later group refuses,
the tokens taken from the earlier ones are given back. Between the take and
the refund other replicas may see those buckets a little emptier than they
are: the error is toward refusing, never toward admitting too much.
"""

from __future__ import annotations

from typing import Any, Sequence

from twisted.internet import defer

from proxilion.ratelimit.buckets import Bucket

__all__ = ["RedisStore", "SCRIPT"]

SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local mode = ARGV[1]
local levels = {}
local ok = 1
for i = 1, #KEYS do
  local rate, burst, amount = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  local state = redis.call('HMGET', KEYS[i], 't', 'ts')
  local level = burst
  if state[1] then
    level = math.min(burst, tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * rate)
  elseif mode == 'peek' then
    level = false
  end
  levels[i] = level
  if mode == 'take' and level + 1e-9 < amount then
    ok = 0
  end
end
local out = {ok}
for i = 1, #KEYS do
  local level = levels[i]
  if mode ~= 'peek' and ok == 1 then
    local rate, burst, amount = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
    level = math.max(-burst, math.min(burst, level - amount))
    redis.call('HSET', KEYS[i], 't', string.format('%.17g', level), 'ts', string.format('%.17g', now))
    redis.call('PEXPIRE', KEYS[i], math.ceil((burst - level) / rate * 1000) + 1000)
  end
  out[i + 1] = level and string.format('%.17g', level) or '-'
end
return out
"""


def _args(mode: str, buckets: Sequence[Bucket], amounts: Sequence[int]) -> list[Any]:
    args: list[Any] = [mode]
    for bucket, amount in zip(buckets, amounts):
        args.extend((repr(bucket.limit.rate), bucket.limit.burst, amount))
    return args


class RedisStore:
    """The Lua script run through a L{SingleClient} or L{ClusterClient}."""

    def __init__(self, client: Any, timeout: float) -> None:
        self.client = client
        self.timeout = timeout

    def _eval(self, tag: str, mode: str, buckets: Sequence[Bucket], amounts: Sequence[int]) -> defer.Deferred:
        keys = [b.key for b in buckets]
        args = _args(mode, buckets, amounts)
        d = self.client.run(tag, lambda proto: proto.eval(SCRIPT, keys, args), self.timeout)
        return d.addCallback(lambda reply: (int(reply[0]) == 1, [None if v == "-" else float(v) for v in reply[1:]]))

    def _merge(self, groups: Sequence[Sequence[Bucket]]) -> list[list[Bucket]]:
        if self.client.cluster:
            return [list(g) for g in groups]
        return [[b for g in groups for b in g]]

    async def take(self, groups: Sequence[Sequence[Bucket]]) -> tuple[bool, dict[str, float]]:
        """Consume from every bucket or from none; returns (allowed, tokens left per key)."""
        levels: dict[str, float] = {}
        taken: list[list[Bucket]] = []
        for group in self._merge(groups):
            allowed, values = await self._eval(group[0].tag, "take", group, [b.cost for b in group])
            levels.update((b.key, v) for b, v in zip(group, values))
            if not allowed:
                for done in taken:
                    self._refund(done)
                    levels.update((b.key, levels[b.key] + b.cost) for b in done)
                return False, levels
            taken.append(group)
        return True, levels

    def _refund(self, group: list[Bucket]) -> None:
        # Best effort: a lost refund only makes the bucket stricter until it refills.
        d = self._eval(group[0].tag, "adjust", group, [-b.cost for b in group])
        d.addErrback(lambda failure: None)

    async def adjust(self, groups: Sequence[Sequence[Bucket]], deltas: dict[str, int]) -> None:
        """Consume (positive) or give back (negative) tokens without refusing."""
        for group in self._merge(groups):
            await self._eval(group[0].tag, "adjust", group, [deltas[b.key] for b in group])

    async def peek(self, tag: str, buckets: Sequence[Bucket]) -> list[float | None]:
        """Tokens in each bucket now; None where the key is absent (the bucket is full)."""
        _, values = await self._eval(tag, "peek", buckets, [0] * len(buckets))
        return values

    async def delete(self, tag: str, keys: Sequence[str]) -> int:
        return int(await self.client.run(tag, lambda proto: proto.delete(list(keys)), self.timeout))
