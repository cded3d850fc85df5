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

import hashlib
from typing import Any, Sequence

from twisted.internet import defer
from twisted.python.failure import Failure

from proxilion.ratelimit.buckets import Bucket, Limit
from proxilion.ratelimit.redisclient import Command
from proxilion.ratelimit.resp import RespProtocol, ResponseError, encode, encode_args

__all__ = ["RedisStore", "SCRIPT"]

# Levels come back as integer millionths of a token: a RESP integer is
# cheaper to send and parse than a float's text, and with bursts capped at
# 10**9 a level stays below 2**53, so the conversion is exact.
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
  out[i + 1] = level and math.floor(level * 1000000) or false
end
return out
"""

_SCRIPT_BYTES = SCRIPT.encode()
_EVALSHA = encode_args(("EVALSHA", hashlib.sha1(_SCRIPT_BYTES).hexdigest()))
_EVAL = encode_args(("EVAL", _SCRIPT_BYTES))
_MODES = {mode: encode_args((mode,)) for mode in ("take", "adjust", "peek")}


class _Call(Command):
    """One script call, encoded once: EVALSHA first, EVAL (which loads the script) on NOSCRIPT."""

    __slots__ = ("header", "tail")

    def __init__(self, count: int, tail: bytes) -> None:
        self.header = b"*%d\r\n" % (count + 2)
        self.tail = tail

    def __call__(self, proto: RespProtocol, timeout: float) -> defer.Deferred:
        d = proto.request(self.header + _EVALSHA + self.tail, timeout)
        return d.addErrback(self._noscript, proto, timeout)

    def _noscript(self, failure: Failure, proto: RespProtocol, timeout: float) -> Any:
        if failure.check(ResponseError) and str(failure.value).startswith("NOSCRIPT"):
            return proto.request(self.header + _EVAL + self.tail, timeout)
        return failure

    def after_asking(self, proto: RespProtocol, timeout: float) -> defer.Deferred:
        # ASKING covers one command: a NOSCRIPT retry after it would be
        # refused (MOVED), so on the importing node send the script itself.
        return proto.request(self.header + _EVAL + self.tail, timeout)


def _levels(reply: list) -> tuple[bool, list[float | None]]:
    return reply[0] == 1, [None if v is None else v / 1e6 for v in reply[1:]]


def _took(reply: list, group: list[Bucket]) -> tuple[bool, dict[str, float]]:
    return reply[0] == 1, {b.key: v / 1e6 for b, v in zip(group, reply[1:])}


def _encode_key(key: str) -> bytes:
    data = key.encode("utf-8")
    return b"$%d\r\n%s\r\n" % (len(data), data)


class RedisStore:
    """The Lua script run through a L{SingleClient} or L{ClusterClient}."""

    def __init__(self, client: Any, timeout: float) -> None:
        self.client = client
        self.timeout = timeout
        # Each limit's "rate burst" arguments, encoded once (few limits, fixed at start).
        self._limit_args: dict[Limit, bytes] = {}

    def _encoded(self, limit: Limit) -> bytes:
        args = self._limit_args.get(limit)
        if args is None:
            args = self._limit_args[limit] = encode_args((repr(limit.rate), limit.burst))
        return args

    def _run(self, tag: str, mode: str, buckets: Sequence[Bucket], amounts: Sequence[int]) -> defer.Deferred:
        """The script's raw reply: [1 or 0, millionths of a token per bucket (nil: absent)]."""
        count = len(buckets)
        parts = [b"$1\r\n%d\r\n" % count if count < 10 else encode_args((count,))]
        parts.extend(_encode_key(b.key) for b in buckets)
        parts.append(_MODES[mode])
        for bucket, amount in zip(buckets, amounts):
            parts.append(self._encoded(bucket.limit))
            amount_text = b"%d" % amount
            parts.append(b"$%d\r\n%s\r\n" % (len(amount_text), amount_text))
        return self.client.run(tag, _Call(2 + 4 * count, b"".join(parts)), self.timeout)

    def _eval(self, tag: str, mode: str, buckets: Sequence[Bucket], amounts: Sequence[int]) -> defer.Deferred:
        return self._run(tag, mode, buckets, amounts).addCallback(_levels)

    def _merge(self, groups: Sequence[Sequence[Bucket]]) -> list[list[Bucket]]:
        if self.client.cluster:
            return [list(g) for g in groups]
        if len(groups) == 1:
            return [list(groups[0])]
        return [[b for g in groups for b in g]]

    def take(self, groups: Sequence[Sequence[Bucket]]) -> defer.Deferred:
        """Consume from every bucket or from none; fires with (allowed, tokens left per key).

        On one server (or Sentinel) C{groups} may be a single list of buckets
        with different tags: they are checked in one call all the same.
        """
        merged = self._merge(groups)
        if len(merged) == 1:
            # The usual case (one server, or one owner in a cluster): no coroutine.
            group = merged[0]
            return self._run(group[0].tag, "take", group, [b.cost for b in group]).addCallback(_took, group)
        return defer.ensureDeferred(self._take_groups(merged))

    async def _take_groups(self, groups: list[list[Bucket]]) -> tuple[bool, dict[str, float]]:
        levels: dict[str, float] = {}
        taken: list[list[Bucket]] = []
        for group in groups:
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
        return int(await self.client.run(tag, Command(encode("DEL", *keys)), self.timeout))
