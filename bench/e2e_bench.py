#!/usr/bin/env python3
"""End-to-end costs of the request-path stages, measured through the real daemon.

(a) latency the rate limiter adds: the same wrk run against Proxilion with
    limiting off (RATE_LIMIT_PER_MINUTE=0), with memory buckets and with Redis
    on loopback (limits high enough that nothing is refused);
(b) inspection CPU: daemon CPU per 4 KB chat request with the shipped policy,
    with an empty policy (no rules: every body is still scanned) and with
    --no-inspection (the baseline), plus the scanner's own time from
    proxilion_scan_duration_seconds;
(c) p99 proxy latency with PostgreSQL analytics running, with every process
    of the cluster SIGSTOPped (a stalled database), and with only the
    postmaster stopped (the proposal in issue 5; open connections still work).

The upstream is nginx answering a fixed chat completion, so its cost is
negligible and identical in every run. Usage:

    .venv/bin/python bench/e2e_bench.py [--duration 8] [--connections 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import proxy_bench as pb  # noqa: E402
from proxy_bench import metrics, sample  # noqa: E402

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
REDIS_SERVER = "/usr/bin/redis-server"
WRK = "/usr/bin/wrk"
NGINX = "/usr/sbin/nginx"
UNLIMITED = {"RATE_LIMIT_PER_MINUTE": "1000000000", "RATE_LIMIT_BURST": "1000000000"}
EMPTY_POLICY = "version: 1\nrules: []\n"


def proxilion(procs: pb.Processes, workdir: Path, upstream_port: int, name: str,
              env: dict[str, str], args: list[str] = ()) -> contextlib.AbstractContextManager[dict[str, Any]]:
    return pb.ready_daemon(procs, TWISTD, pb.REPO, workdir, upstream_port, name, env, args)


def wrk(daemon: dict[str, Any], body: Path, connections: int, duration: float, warmup: float) -> dict:
    pb.smoke(daemon["port"], pb.PROXY_PREFIX + pb.CHAT_PATH, body.read_bytes())
    if warmup:
        pb.run_wrk(WRK, daemon["url"], body, connections, 1, warmup)
    result = pb.run_wrk(WRK, daemon["url"], body, connections, min(2, connections), duration, daemon["pid"])
    bad = result["errors"]["status"] + result["errors"]["connect"] + result["errors"]["read"]
    if bad:
        raise RuntimeError(f"wrk saw {bad} errors: {result['errors']}")
    return result


def brief(result: dict) -> dict:
    lat = result["latency_us"]
    return {"rps": round(result["rps"]), "p50_ms": lat["p50"] / 1000, "p99_ms": lat["p99"] / 1000,
            "cpu_us_per_request": round(result.get("cpu_us_per_request") or 0, 1)}


def ratelimit_runs(procs, workdir, upstream, body, args) -> dict:
    redis_port = pb.free_port()
    redis = procs.start("redis", [REDIS_SERVER, "--port", str(redis_port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", str(workdir)])
    pb.wait_for_port(redis_port, redis)
    variants = {
        "off": {"RATE_LIMIT_PER_MINUTE": "0"},
        "memory": dict(UNLIMITED),
        "redis": {**UNLIMITED, "RATE_LIMIT_STORE": "redis", "REDIS_URL": f"redis://127.0.0.1:{redis_port}"},
    }
    out: dict[str, Any] = {}
    for name, env in variants.items():
        with proxilion(procs, workdir, upstream, f"rl-{name}", env) as d:
            row = {"c1": brief(wrk(d, body, 1, args.duration, args.warmup)),
                   f"c{args.connections}": brief(wrk(d, body, args.connections, args.duration, 0))}
            text = metrics(d["admin_port"])
            store = {"off": None, "memory": "memory", "redis": "redis"}[name]
            if store:
                count = sample(text, "proxilion_ratelimit_duration_seconds_count", store=store)
                total = sample(text, "proxilion_ratelimit_duration_seconds_sum", store=store)
                row["decision_mean_us"] = round(total / count * 1e6, 1) if count else None
                row["fallbacks"] = sample(text, "proxilion_ratelimit_fallback_total")
            out[name] = row
    procs.stop(redis)
    for c in ("c1", f"c{args.connections}"):
        out[f"added_by_redis_{c}"] = {
            "p50_ms": round(out["redis"][c]["p50_ms"] - out["off"][c]["p50_ms"], 3),
            "p99_ms": round(out["redis"][c]["p99_ms"] - out["off"][c]["p99_ms"], 3),
        }
    return out


def inspection_runs(procs, workdir, upstream, body4k, args) -> dict:
    """The three daemons run side by side and take turns, round after round: a
    neighbour's load in one round hits the baseline it is compared with."""
    empty = workdir / "empty-policy.yaml"
    empty.write_text(EMPTY_POLICY)
    runs = (("default_policy", []), ("empty_policy", ["--policy", str(empty)]), ("inspection_off", ["--no-inspection"]))
    out: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        daemons = {name: stack.enter_context(proxilion(procs, workdir, upstream, f"inspect-{name}", {"RATE_LIMIT_PER_MINUTE": "0"}, extra))
                   for name, extra in runs}
        rounds: dict[str, list[dict]] = {name: [] for name in daemons}
        for number in range(args.rounds):
            for name, d in daemons.items():
                rounds[name].append(brief(wrk(d, body4k, args.connections, args.duration, args.warmup if number == 0 else 0)))
        for name, d in daemons.items():
            text = metrics(d["admin_port"])
            requests = sample(text, "proxilion_http_requests_total")
            row = dict(rounds[name][-1]) if args.rounds == 1 else {"rounds": rounds[name]}
            for direction in ("request", "response"):
                total = sample(text, "proxilion_scan_duration_seconds_sum", direction=direction)
                row[f"scan_{direction}_us_per_request"] = round(total / requests * 1e6, 1) if requests else None
            out[name] = row

    for key, (more, less) in {"cpu_added_by_inspection_us": ("default_policy", "inspection_off"),
                              "cpu_added_by_rules_us": ("default_policy", "empty_policy")}.items():
        per_round = [round(a["cpu_us_per_request"] - b["cpu_us_per_request"], 1) for a, b in zip(rounds[more], rounds[less])]
        out[key] = statistics.median_low(per_round)
        if len(per_round) > 1:
            out[key + "_rounds"] = per_round
    out["scanner_us_per_request_default"] = round(
        out["default_policy"]["scan_request_us_per_request"] + out["default_policy"]["scan_response_us_per_request"], 1)
    return out


def postgres_pids(data_dir: str) -> tuple[int, list[int]]:
    master = int(Path(data_dir, "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    return master, [int(p) for p in children]


def analytics_runs(procs, workdir, upstream, body, args) -> dict:
    from analytics.conftest import PostgresServer, _pg_bindir

    bindir = _pg_bindir()
    if bindir is None:
        return {"skipped": "PostgreSQL binaries not found"}
    pg = PostgresServer(bindir)
    pg.start()
    out: dict[str, Any] = {}
    try:
        dsn = pg.create_database()
        with proxilion(procs, workdir, upstream, "analytics-pg", {"RATE_LIMIT_PER_MINUTE": "0", "ANALYTICS_DSN": dsn}) as d:
            out["running"] = brief(wrk(d, body, args.connections, args.duration, args.warmup))
            for label, which in (("all_postgres_stopped", "all"), ("postmaster_stopped", "postmaster")):
                master, children = postgres_pids(pg.data)
                stopped = [master] + (children if which == "all" else [])
                for pid in stopped:
                    os.kill(pid, signal.SIGSTOP)
                try:
                    out[label] = brief(wrk(d, body, args.connections, args.duration, 0))
                    text = metrics(d["admin_port"])
                    out[label]["queue_depth_at_end"] = sample(text, "proxilion_analytics_queue_depth")
                    out[label]["rows_spooled_total"] = sample(text, "proxilion_analytics_rows_spooled_total")
                finally:
                    for pid in stopped:
                        os.kill(pid, signal.SIGCONT)
                time.sleep(2)
            out["running_again"] = brief(wrk(d, body, args.connections, args.duration, 0))
            text = metrics(d["admin_port"])
            out["rows_dropped_total"] = sample(text, "proxilion_analytics_rows_dropped_total")
        base = out["running"]["p99_ms"]
        for label in ("all_postgres_stopped", "postmaster_stopped", "running_again"):
            out[label]["p99_vs_running"] = round(out[label]["p99_ms"] / base, 3)
    finally:
        pg.destroy()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8, help="seconds per measured wrk run")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of wrk before each daemon's first run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections for the loaded runs")
    parser.add_argument("--only", choices=("ratelimit", "inspection", "analytics"), action="append")
    parser.add_argument("--rounds", type=int, default=1,
                        help="inspection: rounds in which each daemon gets one run in turn; the median per-round difference is reported")
    parser.add_argument("--pin", action="store_true",
                        help="give the Proxilion daemons the last CPU, and wrk, the upstream, Redis and PostgreSQL "
                             "the others (default: every process may use every CPU)")
    args = parser.parse_args()
    results: dict[str, Any] = {"environment": {"cpus": os.cpu_count(), **pb.pin(args.pin), "commit": pb.git_commit(),
                                               "duration": args.duration, "connections": args.connections}}
    with tempfile.TemporaryDirectory(prefix="e2e-bench-") as tmp:
        workdir = Path(tmp)
        procs = pb.Processes(workdir)
        try:
            upstream = pb.free_port()
            conf = pb.nginx_conf(workdir, "upstream", f"""
    server {{
        listen 127.0.0.1:{upstream} backlog=4096;
        location / {{ default_type application/json; return 200 '{pb.FIXED_REPLY}'; }}
    }}""")
            pb.start_nginx(procs, NGINX, "nginx-upstream", conf, upstream)
            body1k = workdir / "body1k.json"
            body1k.write_bytes(pb.chat_body(1024))
            body4k = workdir / "body4k.json"
            body4k.write_bytes(pb.chat_body(4096))
            only = set(args.only or ("ratelimit", "inspection", "analytics"))
            if "ratelimit" in only:
                results["ratelimit_1k"] = ratelimit_runs(procs, workdir, upstream, body1k, args)
            if "inspection" in only:
                results["inspection_4k"] = inspection_runs(procs, workdir, upstream, body4k, args)
            if "analytics" in only:
                results["analytics_pg_1k"] = analytics_runs(procs, workdir, upstream, body1k, args)
        finally:
            procs.stop_all()
    text = json.dumps(results, indent=2)
    print(text)
    out = pb.REPO / "bench" / "results" / f"e2e-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(text + "\n")
    print(f"written to {out.relative_to(pb.REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
