"""One limiter process for the concurrency tests: takes as fast as it can, prints counts as JSON.

python hammer.py START_AT DURATION CONCURRENCY  (settings from the environment)
"""

from __future__ import annotations

import json
import os
import sys
import time

from twisted.internet import defer, task

from proxilion.config import load_settings
from proxilion.metrics import Metrics
from proxilion.proxy.identity import Identity
from proxilion.ratelimit.service import RateLimiter

IDENTITY = Identity(key="user:hammered", kind="user", tenant=None, client_ip="203.0.113.1")


async def main(reactor, start_at: float, duration: float, concurrency: int) -> None:
    rl = RateLimiter(load_settings({}, environ=dict(os.environ)), Metrics(), reactor)
    rl.startService()
    while rl.health() != "ok":
        await task.deferLater(reactor, 0.01, lambda: None)
    counts = {"allowed": 0, "refused": 0, "other_store": 0}
    await task.deferLater(reactor, max(0.0, start_at - time.time()), lambda: None)
    start = time.time()
    deadline = start + duration
    # Each decision happened somewhere between send and reply; the midpoint
    # keeps a loaded machine's round trips out of the measured window.
    first: float | None = None
    last = start

    async def worker() -> None:
        nonlocal first, last
        while time.time() < deadline:
            sent = time.time()
            decision = await rl.take(IDENTITY, "openai")
            middle = (sent + time.time()) / 2
            if first is None or middle < first:
                first = middle
            counts["allowed" if decision.allowed else "refused"] += 1
            if decision.allowed:
                last = max(last, middle)
            if decision.store != "redis":
                counts["other_store"] += 1

    await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(concurrency)])
    await rl.stopService()
    print(json.dumps({**counts, "first": first, "last": last}))


if __name__ == "__main__":
    start_at, duration, concurrency = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, start_at, duration, concurrency)))
