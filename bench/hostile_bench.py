#!/usr/bin/env python3
"""Other clients' latency while one client sends worst-case bodies (issue 14, item 3).

Starts the fake provider and the daemon (`twistd -n proxilion`, working tree),
then runs two phases of --duration seconds on the same daemon: "idle", where
--clients processes send ordinary 1 KB chat requests over keep-alive
connections, and "hostile", the same plus one process sending worst-case
bodies in a loop (a gzip bomb of empty members, 7.8 MB runs of SSNs,
passwords and emails). A /health poller on the proxy port records the longest
wait between two answers (the longest reactor stall). Usage:

    .venv/bin/python bench/hostile_bench.py [--duration 20] [--clients 4]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from proxilion.fakeprovider.testing import running_fake_provider  # noqa: E402
from support.daemon import Daemon, running  # noqa: E402

CHAT = "/proxy/openai/v1/chat/completions"
SIZE = 7_800_000


def chat(text: str) -> bytes:
    return json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}).encode()


def hostile_bodies() -> list[tuple[str, bytes, dict[str, str]]]:
    member = gzip.compress(b"", mtime=0)
    bodies = [("gzip_members", member * (10 * 1024 * 1024 // len(member) - 1), {"content-encoding": "gzip"})]
    for name, unit in (("ssn_run", "123-45-6789 "), ("password_run", "password=hunter2x "), ("email_run", "ann.lee@example.com ")):
        bodies.append((name, chat(unit * (SIZE // len(unit))), {}))
    return bodies


def ordinary(port: int, until: float, out: Any) -> None:
    text = "Summarise the meeting notes below in three bullet points. " + "The quarterly review went well. " * 40
    body = chat(text[:1024 - len(chat(""))])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies = []
    while time.time() < until:
        started = time.perf_counter()
        conn.request("POST", CHAT, body=body, headers={"content-type": "application/json"})
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        assert response.status == 200, response.status
    out.put(latencies)


def health(port: int, until: float, out: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    last, worst = time.perf_counter(), 0.0
    while time.time() < until:
        conn.request("GET", "/health")
        conn.getresponse().read()
        now = time.perf_counter()
        worst, last = max(worst, now - last), now
        time.sleep(0.002)
    out.put(worst)


def hostile(port: int, until: float, out: Any) -> None:
    statuses: dict[str, dict[int, int]] = {}
    while time.time() < until:
        for name, body, headers in hostile_bodies():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("POST", CHAT, body=body, headers={"content-type": "application/json", **headers})
            status = conn.getresponse().status
            conn.close()
            counts = statuses.setdefault(name, {})
            counts[status] = counts.get(status, 0) + 1
    out.put(statuses)


def phase(port: int, clients: int, duration: float, with_hostile: bool) -> dict[str, Any]:
    until = time.time() + duration
    lat_q, health_q, hostile_q = multiprocessing.Queue(), multiprocessing.Queue(), multiprocessing.Queue()
    procs = [multiprocessing.Process(target=ordinary, args=(port, until, lat_q)) for _ in range(clients)]
    procs.append(multiprocessing.Process(target=health, args=(port, until, health_q)))
    if with_hostile:
        procs.append(multiprocessing.Process(target=hostile, args=(port, until, hostile_q)))
    for p in procs:
        p.start()
    latencies = sorted(x for _ in range(clients) for x in lat_q.get())
    result = {
        "requests": len(latencies),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "max_health_gap_ms": round(health_q.get() * 1000, 1),
    }
    if with_hostile:
        result["hostile_statuses"] = hostile_q.get()
    for p in procs:
        p.join()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20, help="seconds per phase")
    parser.add_argument("--clients", type=int, default=4, help="ordinary clients (one process each)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as tmp, running_fake_provider(chunk_delay=0.001) as fake:
        with running(Daemon(Path(tmp), ["--upstream", f"openai={fake}"], env={"RATE_LIMIT_PER_MINUTE": "0", "LOG_LEVEL": "warn"})) as d:
            phase(d.port, args.clients, 2, False)  # warm-up
            idle = phase(d.port, args.clients, args.duration, False)
            loaded = phase(d.port, args.clients, args.duration, True)
            metrics = {name: d.metric(name) for name in ("proxilion_scan_pool_jobs_total", "proxilion_scan_pool_rejected_total",
                                                        "proxilion_findings_cap_exceeded_total")}
    results = {"cpus": os.cpu_count(), "idle": idle, "hostile": loaded, "metrics": metrics,
               "p99_vs_idle": round(loaded["p99_ms"] / idle["p99_ms"], 2), "p50_vs_idle": round(loaded["p50_ms"] / idle["p50_ms"], 2)}
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
