"""Rate limiter throughput and latency: memory store and a local redis-server, one process.

    python bench/ratelimit_bench.py [--seconds 3] [--redis-url redis://127.0.0.1:6379]

Without --redis-url a throwaway redis-server is started on a free port.
Latency is per decision (take() called -> Decision delivered), measured
alone (one at a time) and under load (--concurrency outstanding takes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from twisted.internet import defer, task  # noqa: E402

from proxilion.config import load_settings  # noqa: E402
from proxilion.metrics import Metrics  # noqa: E402
from proxilion.proxy.identity import Identity  # noqa: E402
from proxilion.ratelimit.service import RateLimiter  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def report(name: str, count: int, elapsed: float, latencies: list[float]) -> None:
    print(
        f"{name:<28} {count / elapsed:>10,.0f} decisions/s   "
        f"p50 {percentile(latencies, 0.5) * 1e6:>7.1f} us   p99 {percentile(latencies, 0.99) * 1e6:>7.1f} us"
    )


def identities(n: int) -> list[Identity]:
    return [Identity(f"user:bench-{i}", "user", None, "203.0.113.1") for i in range(n)]


async def run(reactor, rl: RateLimiter, name: str, seconds: float, concurrency: int) -> None:
    people = identities(10_000)
    latencies: list[float] = []
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal count
        i = offset
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await rl.take(people[i % len(people)], "openai")
            latencies.append(time.perf_counter() - started)
            count += 1
            i += concurrency

    started = time.perf_counter()
    await defer.gatherResults([defer.ensureDeferred(worker(n)) for n in range(concurrency)])
    report(f"{name} (concurrency {concurrency})", count, time.perf_counter() - started, latencies)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def main(reactor, args) -> None:
    base = {"RATE_LIMIT_PER_MINUTE": "6000000", "RATE_LIMIT_BURST": "1000000"}
    memory = RateLimiter(load_settings({}, environ=base), Metrics(), reactor)
    await run(reactor, memory, "memory", args.seconds, 1)

    server = None
    url = args.redis_url
    if url is None:
        port = free_port()
        directory = tempfile.mkdtemp(prefix="ratelimit-bench-")
        server = subprocess.Popen(
            [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}"
    try:
        rl = RateLimiter(load_settings({}, environ={**base, "RATE_LIMIT_STORE": "redis", "REDIS_URL": url, "REDIS_TIMEOUT": "1"}), Metrics(), reactor)
        rl.startService()
        while rl.health() != "ok":
            await task.deferLater(reactor, 0.02, lambda: None)
        await run(reactor, rl, "redis", args.seconds, 1)
        await run(reactor, rl, "redis", args.seconds, args.concurrency)
        await rl.stopService()
    finally:
        if server is not None:
            server.kill()
            server.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--redis-url")
    arguments = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
