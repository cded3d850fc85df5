#!/usr/bin/env python3
"""Rate limiter cost: decisions in one process, and the latency it adds to a proxied request.

    .venv/bin/python bench/ratelimit_bench.py [--seconds 3] [--rounds 8] [--round-requests 2000]
        [--rev HEAD | --worktree] [--redis-url redis://127.0.0.1:6379] [--no-proxy] [--json]

1. In process: RateLimiter.take() in a loop, memory store and a local
   redis-server, one decision at a time and --concurrency at once:
   decisions/s, latency p50/p99, and CPU µs per decision (process time / decisions).
2. Through the daemon: two `twistd -n proxilion` processes in front of one
   nginx upstream answering a fixed chat completion, one with limiting off
   (RATE_LIMIT_PER_MINUTE=0), one with RATE_LIMIT_STORE=redis against the
   redis-server (limits too high to refuse anything). One keep-alive
   connection to each; requests alternate between the two one by one (ABBA),
   so a stall of the machine (a 2-core box shared with other work) hits both
   alike instead of whichever happened to be measured then. Each round
   gives p50/p99 of both and their difference, and each daemon's CPU µs per
   request (/proc/<pid>/stat); reported are the medians over --rounds rounds
   and the spread (min..max), plus the limiter's own time per decision from
   proxilion_ratelimit_duration_seconds and the fallbacks (should be 0).

The code measured is the commit --rev (default HEAD), exported with
`git archive`, so edits in progress in the working tree do not leak in;
--worktree measures the working tree. Without --redis-url a throwaway
redis-server is started. Needs redis-server and nginx (apt).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import proxy_bench as pb  # noqa: E402

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
UNLIMITED = {"RATE_LIMIT_PER_MINUTE": "1000000000", "RATE_LIMIT_BURST": "1000000000"}


def export(rev: str, dest: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# 1. In process.


async def in_process(reactor: Any, redis_url: str, args: argparse.Namespace) -> list[dict]:
    from twisted.internet import defer, task

    from proxilion.config import load_settings
    from proxilion.metrics import Metrics
    from proxilion.proxy.identity import Identity
    from proxilion.ratelimit.service import RateLimiter

    people = [Identity(f"user:bench-{i}", "user", None, "203.0.113.1") for i in range(10_000)]
    rows = []

    async def run(rl: RateLimiter, name: str, concurrency: int) -> None:
        latencies: list[float] = []
        stores: set[str] = set()
        deadline = time.perf_counter() + args.seconds

        async def worker(offset: int) -> None:
            i = offset
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                decision = await rl.take(people[i % len(people)], "openai")
                latencies.append(time.perf_counter() - started)
                stores.add(decision.store)
                i += concurrency

        started, cpu = time.perf_counter(), time.process_time()
        await defer.gatherResults([defer.ensureDeferred(worker(n)) for n in range(concurrency)])
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        row = {
            "store": name,
            "concurrency": concurrency,
            "decisions_per_s": round(len(latencies) / elapsed),
            "p50_us": round(percentile(latencies, 0.5) * 1e6, 1),
            "p99_us": round(percentile(latencies, 0.99) * 1e6, 1),
            "cpu_us_per_decision": round(cpu / len(latencies) * 1e6, 1),
            "decided_by": sorted(stores),
        }
        rows.append(row)
        print(
            f"  {name:<7} concurrency {concurrency:<3} {row['decisions_per_s']:>8,} decisions/s   "
            f"p50 {row['p50_us']:>8.1f} us   p99 {row['p99_us']:>8.1f} us   "
            f"CPU {row['cpu_us_per_decision']:>6.1f} us/decision   {','.join(row['decided_by'])}",
            flush=True,
        )

    limits = {"RATE_LIMIT_PER_MINUTE": "6000000", "RATE_LIMIT_BURST": "1000000"}
    await run(RateLimiter(load_settings({}, environ=limits), Metrics(), reactor), "memory", 1)
    env = {**limits, "RATE_LIMIT_STORE": "redis", "REDIS_URL": redis_url, "REDIS_TIMEOUT": "1"}
    rl = RateLimiter(load_settings({}, environ=env), Metrics(), reactor)
    rl.startService()
    while rl.health() != "ok":
        await task.deferLater(reactor, 0.02, lambda: None)
    await run(rl, "redis", 1)
    await run(rl, "redis", args.concurrency)
    await rl.stopService()
    return rows


# 2. Through the daemon.


def daemon(procs: pb.Processes, source: Path, workdir: Path, upstream: int, name: str, env: dict) -> contextlib.AbstractContextManager[dict]:
    return pb.ready_daemon(procs, TWISTD, source, workdir, upstream, name, env)


class Client:
    """One keep-alive HTTP/1.1 connection posting the same chat request; blocking, so it adds no reactor of its own."""

    def __init__(self, port: int, body: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = (f"POST {pb.PROXY_PREFIX}{pb.CHAT_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Content-Type: application/json\r\nAuthorization: Bearer sk-bench-not-a-real-key\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        self.request = head.encode() + body
        self.buffer = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise RuntimeError("the daemon closed the connection")
        self.buffer += data

    def roundtrip(self) -> float:
        """Seconds from sending the request to the last byte of the answer."""
        started = time.perf_counter()
        self.sock.sendall(self.request)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if lines[0].split()[1] != "200":
            raise RuntimeError(f"answer {lines[0]!r}")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if "content-length" in headers:
            size = int(headers["content-length"])
            while len(self.buffer) < size:
                self._fill()
            self.buffer = self.buffer[size:]
        else:  # chunked
            while True:
                while b"\r\n" not in self.buffer:
                    self._fill()
                size_line, _, rest = self.buffer.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(rest) < size + 2:
                    self._fill()
                    size_line, _, rest = self.buffer.partition(b"\r\n")
                self.buffer = rest[size + 2 :]
                if size == 0:
                    break
        return time.perf_counter() - started

    def close(self) -> None:
        self.sock.close()


def spread(values: list[float], digits: int = 3) -> dict:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits), "max": round(max(values), digits)}


def through_daemon(source: Path, workdir: Path, procs: pb.Processes, redis_url: str, args: argparse.Namespace) -> dict:
    upstream = pb.free_port()
    conf = pb.nginx_conf(workdir, "upstream", f"""
    server {{
        listen 127.0.0.1:{upstream} backlog=4096;
        location / {{ default_type application/json; return 200 '{pb.FIXED_REPLY}'; }}
    }}""")
    pb.start_nginx(procs, args.nginx, "nginx-upstream", conf, upstream)
    body = pb.chat_body(1024)
    on_env = {**UNLIMITED, "RATE_LIMIT_STORE": "redis", "REDIS_URL": redis_url}
    with daemon(procs, source, workdir, upstream, "limiting-off", {"RATE_LIMIT_PER_MINUTE": "0"}) as off, \
            daemon(procs, source, workdir, upstream, "limiting-redis", on_env) as on:
        clients = {"off": Client(off["port"], body), "redis": Client(on["port"], body)}
        pids = {"off": off["pid"], "redis": on["pid"]}
        for _ in range(args.warmup_requests):
            clients["off"].roundtrip()
            clients["redis"].roundtrip()
        rounds = []
        for index in range(args.rounds):
            latencies: dict[str, list[float]] = {"off": [], "redis": []}
            cpu = {name: pb.cpu_seconds(pid) for name, pid in pids.items()}
            for n in range(args.round_requests):
                # Request by request, ABBA: both daemons see the same moments of the machine's noise.
                for name in ("off", "redis") if n % 2 == 0 else ("redis", "off"):
                    latencies[name].append(clients[name].roundtrip())
            row: dict[str, Any] = {}
            for name in ("off", "redis"):
                row[name] = {
                    "p50_ms": round(percentile(latencies[name], 0.5) * 1e3, 3),
                    "p99_ms": round(percentile(latencies[name], 0.99) * 1e3, 3),
                    "cpu_us_per_request": round((pb.cpu_seconds(pids[name]) - cpu[name]) / args.round_requests * 1e6, 1),
                }
            row["added_p50_ms"] = round(row["redis"]["p50_ms"] - row["off"]["p50_ms"], 3)
            row["added_p99_ms"] = round(row["redis"]["p99_ms"] - row["off"]["p99_ms"], 3)
            row["added_cpu_us_per_request"] = round(row["redis"]["cpu_us_per_request"] - row["off"]["cpu_us_per_request"], 1)
            rounds.append(row)
            print(
                f"  round {index + 1:>2}: off p50 {row['off']['p50_ms']:.3f} p99 {row['off']['p99_ms']:.3f} ms"
                f" | redis p50 {row['redis']['p50_ms']:.3f} p99 {row['redis']['p99_ms']:.3f} ms"
                f" | added p50 {row['added_p50_ms']:+.3f} p99 {row['added_p99_ms']:+.3f} ms,"
                f" CPU {row['added_cpu_us_per_request']:+.1f} us/request",
                flush=True,
            )
        for client in clients.values():
            client.close()
        text = pb.metrics(on["admin_port"])
        count = pb.sample(text, "proxilion_ratelimit_duration_seconds_count", store="redis")
        total = pb.sample(text, "proxilion_ratelimit_duration_seconds_sum", store="redis")
        fallbacks = pb.sample(text, "proxilion_ratelimit_fallback_total")
    summary = {
        "off_p50_ms": spread([r["off"]["p50_ms"] for r in rounds]),
        "off_p99_ms": spread([r["off"]["p99_ms"] for r in rounds]),
        "redis_p50_ms": spread([r["redis"]["p50_ms"] for r in rounds]),
        "redis_p99_ms": spread([r["redis"]["p99_ms"] for r in rounds]),
        "added_p50_ms": spread([r["added_p50_ms"] for r in rounds]),
        "added_p99_ms": spread([r["added_p99_ms"] for r in rounds]),
        "added_cpu_us_per_request": spread([r["added_cpu_us_per_request"] for r in rounds], 1),
        "decision_mean_us_in_daemon": round(total / count * 1e6, 1) if count else None,
        "decisions": int(count),
        "fallbacks": int(fallbacks),
    }
    return {"rounds": rounds, "summary": summary}


def report(summary: dict) -> None:
    def line(label: str, key: str, unit: str, digits: int = 3) -> None:
        s = summary[key]
        print(f"  {label:<36} median {s['median']:>8.{digits}f} {unit}   (rounds: {s['min']:.{digits}f} .. {s['max']:.{digits}f})")

    print("\nmedians over rounds (1 connection per daemon, requests interleaved):")
    line("limiting off      p50", "off_p50_ms", "ms")
    line("limiting redis    p50", "redis_p50_ms", "ms")
    line("added by limiter  p50 (goal <= 0.5)", "added_p50_ms", "ms")
    line("limiting off      p99", "off_p99_ms", "ms")
    line("limiting redis    p99", "redis_p99_ms", "ms")
    line("added by limiter  p99 (goal <= 2)", "added_p99_ms", "ms")
    line("added daemon CPU per request", "added_cpu_us_per_request", "us", 1)
    print(f"  decision time inside the daemon (take() called -> decided): mean {summary['decision_mean_us_in_daemon']} us "
          f"over {summary['decisions']} decisions")
    if summary["fallbacks"]:
        print(f"  WARNING: {summary['fallbacks']} decisions fell back to local buckets (Redis too slow or away)")


def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="ratelimit-bench-") as tmp:
        workdir = Path(tmp)
        source = REPO if args.worktree else export(args.rev, workdir / "src")
        sys.path.insert(0, str(source))
        procs = pb.Processes(workdir)
        results: dict[str, Any] = {"environment": {
            "cpus": os.cpu_count(), "machine": platform.platform(), "rev": "worktree" if args.worktree else args.rev,
            "commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", args.rev], capture_output=True, text=True).stdout.strip(),
            "load_average_at_start": os.getloadavg(),
        }}
        try:
            redis_url = args.redis_url
            if redis_url is None:
                port = pb.free_port()
                redis = procs.start("redis", [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port),
                                              "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)])
                pb.wait_for_port(port, redis)
                redis_url = f"redis://127.0.0.1:{port}"
            print(f"in process ({results['environment']['rev']}):")
            from twisted.internet import defer

            rows: list[dict] = []

            async def run_in_process(reactor: Any) -> None:
                rows.extend(await in_process(reactor, redis_url, args))

            _react(lambda reactor: defer.ensureDeferred(run_in_process(reactor)))
            results["in_process"] = rows
            if not args.no_proxy:
                print(f"\nthrough the daemon, {args.rounds} rounds of {args.round_requests} requests per daemon:")
                results["proxied"] = through_daemon(source, workdir, procs, redis_url, args)
                report(results["proxied"]["summary"])
        finally:
            procs.stop_all()
    if args.json:
        out = BENCH / "results" / f"ratelimit-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written to {out.relative_to(REPO)}", file=sys.stderr)
    return 0


def _react(main: Any) -> None:
    """Run C{main(reactor)} to completion without exiting (task.react calls sys.exit)."""
    from twisted.internet import reactor

    failures: list[Any] = []
    reactor.callWhenRunning(lambda: main(reactor).addErrback(failures.append).addBoth(lambda _: reactor.stop()))
    reactor.run()
    if failures:
        failures[0].raiseException()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per in-process run")
    parser.add_argument("--concurrency", type=int, default=64, help="outstanding decisions in the loaded in-process run")
    parser.add_argument("--redis-url", help="an existing Redis instead of a throwaway redis-server")
    parser.add_argument("--rounds", type=int, default=8, help="rounds through the daemons")
    parser.add_argument("--round-requests", type=int, default=2000, help="requests per daemon per round")
    parser.add_argument("--warmup-requests", type=int, default=500, help="requests per daemon before the rounds")
    parser.add_argument("--rev", default="HEAD", help="commit to measure (git archive)")
    parser.add_argument("--worktree", action="store_true", help="measure the working tree instead of --rev")
    parser.add_argument("--no-proxy", action="store_true", help="in-process figures only")
    parser.add_argument("--json", action="store_true", help="also write bench/results/ratelimit-<time>.json")
    parser.add_argument("--nginx", default="/usr/sbin/nginx")
    sys.exit(main(parser.parse_args()))
