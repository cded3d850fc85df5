#!/usr/bin/env python3
"""Proxy overhead benchmark: direct vs nginx vs Proxilion, in one run.

Starts a fast upstream (nginx answering a fixed chat completion; or the fake
provider), nginx as a keep-alive reverse proxy to it, and Proxilion
(`twistd -n proxilion`) pointed at it; drives each with wrk posting a 1 KB
chat-completion body; then runs 64 concurrent SSE streams from the fake
provider, direct and through Proxilion, timing the first byte; then a paced
prose stream (200 events 20 ms apart), direct and through Proxilion, timing
the first content token and the delay added to each content event
(bench/content_pacing.py). Everything runs
in a temporary directory and is stopped at the end. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import content_pacing

REPO = Path(__file__).resolve().parent.parent
LUA = REPO / "bench" / "lib" / "chat_post.lua"
CHAT_PATH = "/v1/chat/completions"
PROXY_PREFIX = "/proxy/openai"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Plain words only: the body must pass inspection untouched, so no personal data.
FILLER = ("Summarise the quarterly planning notes for the platform team, focusing on "
          "reliability work, the migration schedule and the open questions about capacity. ")


def chat_body(size: int) -> bytes:
    """A chat-completion request of exactly `size` bytes."""
    def render(text: str) -> bytes:
        return json.dumps({
            "model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 256,
            "messages": [{"role": "system", "content": "You are a concise assistant."},
                         {"role": "user", "content": text}],
        }, separators=(",", ":")).encode()

    base = len(render(""))
    text = (FILLER * (size // len(FILLER) + 1))[:max(0, size - base)]
    return render(text)


STREAM_BODY = json.dumps({
    "model": "gpt-4o-mini", "stream": True,
    "messages": [{"role": "user", "content": "one two three four five six seven eight nine ten"}],
}).encode()

# The fast upstream's fixed answer; single-quoted in nginx.conf, so no ' \ or $ inside.
FIXED_REPLY = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant",
                                         "content": "The plan is on track. " * 20},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 220, "completion_tokens": 100, "total_tokens": 320},
}, separators=(",", ":"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout:.0f}s")


# CPUs for the process under test (Proxilion or nginx as a proxy) once pin() has run;
# the benchmark itself, its load generators and the upstreams keep the others.
TESTED_CPUS: set[int] = set()


def pin(enabled: bool) -> dict[str, Any]:
    """Give the proxy under test a CPU of its own, and everything else the rest.

    Unpinned, the proxy shares its cores and caches with wrk and the upstream.
    Pinned, it runs as on a host that gives it dedicated cores. On a 2-core
    machine the other core then carries wrk, the upstream and the stream
    client alone, which slows the baselines (direct TTFB above all): compare
    pinned runs with pinned runs.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if not enabled or len(cpus) < 2:
        return {"pinned": False}
    TESTED_CPUS.clear()
    TESTED_CPUS.add(cpus[-1])
    os.sched_setaffinity(0, cpus[:-1])  # inherited by every child not started as tested
    return {"pinned": True, "tested_cpus": sorted(TESTED_CPUS), "other_cpus": cpus[:-1]}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Processes:
    """Children started by the benchmark, stopped (in reverse order) on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None, tested: bool = False) -> subprocess.Popen:
        """Start a child; C{tested}: the proxy being measured, run on L{TESTED_CPUS} when pinned."""
        log = open(self.workdir / f"{name}.log", "wb")
        cpus = set(TESTED_CPUS) if tested else None
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                env={**os.environ, **(env or {})}, start_new_session=True,
                                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        log.close()
        self._procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs = [(n, p) for n, p in self._procs if p is not proc]

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop_all(self) -> None:
        for _, proc in reversed(list(self._procs)):
            self.stop(proc)


def nginx_conf(workdir: Path, name: str, server: str) -> Path:
    """A self-contained nginx.conf: pid, logs and temp paths all inside `workdir`."""
    home = workdir / name
    home.mkdir()
    temps = "\n".join(f"    {kind}_temp_path {home}/{kind};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # The master runs as root when we do; keep workers as root too so they can use the temp dir.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf = home / "nginx.conf"
    conf.write_text(f"""{user}worker_processes 1;
daemon off;
pid {home}/nginx.pid;
error_log {home}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temps}
    keepalive_requests 1000000;
    keepalive_timeout 120s;
{server}
}}
""")
    return conf


def start_nginx(procs: Processes, nginx: str, name: str, conf: Path, port: int, tested: bool = False) -> None:
    check = subprocess.run([nginx, "-t", "-q", "-c", str(conf), "-e", str(conf.parent / "t.log")],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"nginx -t failed for {name}: {check.stderr.strip()}")
    proc = procs.start(name, [nginx, "-c", str(conf), "-e", str(conf.parent / "startup.log")], tested=tested)
    wait_for_port(port, proc)


def run_wrk(wrk: str, url: str, body_file: Path, connections: int, threads: int,
            duration: float, pid: int | None = None) -> dict:
    """One wrk run; with `pid`, also that process's CPU seconds over the run."""
    before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(
        [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s",
         "--latency", "-s", str(LUA), url],
        capture_output=True, text=True, env={**os.environ, "BENCH_BODY_FILE": str(body_file)},
        check=True,
    )
    after = cpu_seconds(pid) if pid else 0.0
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    result = json.loads(line[len("BENCH_JSON "):])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    if pid:
        result["cpu_seconds"] = after - before
        ok = result["requests"] - result["errors"]["status"]
        result["cpu_us_per_request"] = (after - before) / ok * 1e6 if ok else None
    return result


async def _one_stream(port: int, request: bytes) -> tuple[float, bool]:
    """Seconds from sending the request to the first SSE data byte, and whether the
    stream ended with the `[DONE]` frame."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        start = time.perf_counter()
        writer.write(request)
        first = None
        seen = b""
        while chunk := await reader.read(65536):
            seen = (seen + chunk)[-4096:] if first is not None else seen + chunk
            if first is None and b"data:" in seen:
                first = time.perf_counter() - start
        return (first if first is not None else float("nan")), b"data: [DONE]" in seen
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _stream_load(port: int, path: str, concurrency: int, duration: float) -> dict:
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"Content-Type: application/json\r\nAuthorization: Bearer sk-bench\r\n"
               f"Content-Length: {len(STREAM_BODY)}\r\nConnection: close\r\n\r\n"
               ).encode() + STREAM_BODY
    deadline = time.perf_counter() + duration
    ttfb: list[float] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            try:
                first, complete = await _one_stream(port, request)
            except OSError:
                failures += 1
                continue
            if complete:
                ttfb.append(first)
            else:
                failures += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return summarise_ttfb(ttfb, failures)


def summarise_ttfb(samples: list[float], failures: int) -> dict:
    ordered = sorted(samples)

    def pct(p: float) -> float | None:
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1e3

    return {"streams": len(ordered), "failures": failures, "ttfb_ms_p50": pct(50),
            "ttfb_ms_p99": pct(99),
            "ttfb_ms_mean": statistics.fmean(ordered) * 1e3 if ordered else None}


def median_run(runs: list[dict], key: str) -> dict:
    """The run with the median C{key}, listing every run's C{key} when there are several."""
    measured = [r for r in runs if r.get(key) is not None]
    if not measured:
        return runs[-1]
    ordered = sorted(measured, key=lambda r: r[key])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        chosen[f"{key}_runs"] = [r.get(key) for r in runs]
    return chosen


def stream_run(port: int, path: str, concurrency: int, duration: float,
               pid: int | None = None) -> dict:
    before = cpu_seconds(pid) if pid else 0.0
    result = asyncio.run(_stream_load(port, path, concurrency, duration))
    if pid and result["streams"]:
        result["cpu_us_per_stream"] = (cpu_seconds(pid) - before) / result["streams"] * 1e6
    return result


def start_fake_provider(procs: Processes, source: Path, port: int,
                        chunk_delay: float) -> subprocess.Popen:
    code = ("import sys, argparse; from proxilion.fakeprovider import command as c; "
            "p = argparse.ArgumentParser(); c.add_arguments(p); "
            "sys.exit(c.run(p.parse_args(sys.argv[1:])))")
    proc = procs.start("fakeprovider",
                       [sys.executable, "-c", code, "--port", str(port),
                        "--chunk-delay", str(chunk_delay)],
                       env={"PYTHONPATH": str(source)}, cwd=procs.workdir)
    wait_for_port(port, proc)
    return proc


# Proxilion is measured twice: with the shipped policy, and with inspection off.
VARIANTS = {"proxilion": {}, "no-inspect": {"INSPECTION": "false"}}


def start_proxilion(procs: Processes, source: Path, twistd: str, port: int, admin_port: int,
                    upstream_port: int, workdir: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Proxilion from `source` with rate limiting off, once it answers /health."""
    home = workdir / f"proxilion-{port}"
    home.mkdir()
    proc = procs.start(
        f"proxilion-{port}",
        [twistd, "-n", "--pidfile=", "proxilion", "--port", str(port),
         "--admin-port", str(admin_port), "--bind", "127.0.0.1",
         "--upstream", f"openai=http://127.0.0.1:{upstream_port}"],
        env={"RATE_LIMIT_PER_MINUTE": "0", "PYTHONPATH": str(source), **(env or {})}, cwd=home, tested=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc
        time.sleep(0.2)
    tail = procs.log_tail(f"proxilion-{port}")
    procs.stop(proc)
    raise RuntimeError(f"Proxilion did not become healthy:\n{tail}")


@contextlib.contextmanager
def ready_daemon(procs: Processes, twistd: str, source: Path, workdir: Path, upstream_port: int, name: str,
                 env: dict[str, str], args: "list[str] | tuple[str, ...]" = ()) -> Iterator[dict[str, Any]]:
    """A Proxilion daemon from C{source} in front of C{upstream_port}, once /ready answers 200; stopped on exit."""
    port, admin_port = free_port(), free_port()
    home = workdir / name
    home.mkdir()
    proc = procs.start(name, [twistd, "-n", "--pidfile=", "proxilion", "--port", str(port),
                              "--admin-port", str(admin_port), "--bind", "127.0.0.1",
                              "--upstream", f"openai=http://127.0.0.1:{upstream_port}", *args],
                       env={"PYTHONPATH": str(source), "PROXILION_DATA_DIR": str(home / "data"),
                            "DRAIN_GRACE": "0", **env}, cwd=home, tested=True)
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as r:
                if r.status == 200:
                    break
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start:\n{procs.log_tail(name)}")
        time.sleep(0.1)
    try:
        yield {"name": name, "port": port, "admin_port": admin_port, "pid": proc.pid,
               "url": f"http://127.0.0.1:{port}{PROXY_PREFIX}{CHAT_PATH}"}
    finally:
        procs.stop(proc)


def metrics(admin_port: int) -> str:
    """A daemon's /metrics page (admin port), as text."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as r:
        return r.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of metric C{name} whose labels include C{labels}."""
    total = 0.0
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric == name and all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


def smoke(port: int, path: str, body: bytes) -> None:
    """One request, so a broken target fails loudly instead of benchmarking errors."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                 headers={"Content-Type": "application/json",
                                          "Authorization": "Bearer sk-bench"})
    with urllib.request.urlopen(req, timeout=10) as r:
        reply = json.loads(r.read())
    if "choices" not in reply:
        raise RuntimeError(f"unexpected reply from {port}{path}: {reply}")


def fmt(value: float | None, width: int, decimals: int) -> str:
    return ("n/a" if value is None else f"{value:.{decimals}f}").rjust(width)


def not_measured(name: str, row: dict | None) -> str:
    reason = row["error"].strip().splitlines()[-1] if row else "-"
    return f"{name:<11}not measured: {reason}"


def report(results: dict) -> str:
    config = results["config"]
    rows = results["http"]
    direct = rows.get("direct")
    base = direct["latency_us"] if direct and "error" not in direct else None
    lines = [
        f"1 KB chat-completion POST, wrk -c {config['connections']} -t {config['threads']} "
        f"-d {config['duration']:g}s (upstream: {config['upstream']})",
        f"{'target':<11}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}{'+p99 ms':>9}"
        f"{'errors':>8}{'CPU us/req':>12}",
    ]
    for name in ("direct", "nginx", *VARIANTS):
        row = rows.get(name)
        if row is None or "error" in row:
            lines.append(not_measured(name, row))
            continue
        lat = row["latency_us"]
        compare = base is not None and name != "direct"
        added50 = (lat["p50"] - base["p50"]) / 1e3 if compare else None
        added99 = (lat["p99"] - base["p99"]) / 1e3 if compare else None
        lines.append(f"{name:<11}{row['rps']:>10.0f}{fmt(lat['p50'] / 1e3, 9, 2)}"
                     f"{fmt(lat['p99'] / 1e3, 9, 2)}{fmt(added50, 9, 2)}{fmt(added99, 9, 2)}"
                     f"{sum(row['errors'].values()):>8}"
                     f"{fmt(row.get('cpu_us_per_request'), 12, 0)}")
    for name in VARIANTS:
        runs = rows.get(name, {}).get("cpu_us_per_request_runs")
        if runs:
            lines.append(f"{name} CPU us/req in each run: " + ", ".join(f"{x:.0f}" for x in runs if x is not None)
                         + "; req/s: " + ", ".join(f"{x:.0f}" for x in rows[name]["rps_runs"]))
    streams = results.get("streams")
    if not streams:
        return "\n".join(lines)
    lines += [
        "",
        f"SSE streams from the fake provider, {config['stream_connections']} connections, "
        f"{config['stream_duration']:g}s each",
        f"{'target':<11}{'streams':>9}{'fail':>6}{'TTFB p50 ms':>13}{'TTFB p99 ms':>13}"
        f"{'CPU us/stream':>15}",
    ]
    for name in ("direct", *VARIANTS):
        row = streams.get(name)
        if row is None or "error" in row:
            lines.append(not_measured(name, row))
            continue
        lines.append(f"{name:<11}{row['streams']:>9}{row['failures']:>6}"
                     f"{fmt(row['ttfb_ms_p50'], 13, 2)}{fmt(row['ttfb_ms_p99'], 13, 2)}"
                     f"{fmt(row.get('cpu_us_per_stream'), 15, 0)}")
    for name in VARIANTS:
        p = streams.get(name, {})
        if p.get("added_ttfb_ms_p50") is not None:
            runs = p.get("added_ttfb_ms_p50_runs")
            lines.append(f"{name} adds {p['added_ttfb_ms_p50']:.2f} ms (p50), "
                         f"{p.get('added_ttfb_ms_p99', float('nan')):.2f} ms (p99) to time to first byte"
                         + (" (p50 in each round: " + ", ".join(f"{x:+.2f}" for x in runs if x is not None) + ")" if runs else ""))
    return "\n".join(lines)


def paced(fake_port: int, proxies: dict[str, subprocess.Popen], runs: int) -> dict:
    """First content token and added delay per content event of a paced prose stream, per variant."""
    rows: dict = {}
    for variant, proxy in proxies.items():
        port = int(proxy.args[proxy.args.index("--port") + 1])
        admin_port = int(proxy.args[proxy.args.index("--admin-port") + 1])
        try:
            before = metrics(admin_port)
            rows[variant] = content_pacing.summarise(
                *content_pacing.run((fake_port, CHAT_PATH), (port, PROXY_PREFIX + CHAT_PATH), runs))
            # The proxy's own measure: each content event from its bytes' arrival to its write.
            after = metrics(admin_port)
            rows[variant]["hold"] = content_pacing.hold_shares(
                lambda le: sample(after, "proxilion_stream_hold_seconds_bucket", le=le)
                - sample(before, "proxilion_stream_hold_seconds_bucket", le=le))
        except Exception as e:
            rows[variant] = {"error": f"{type(e).__name__}: {e}"}
        print(f"  paced {variant}: {json.dumps(rows[variant])}", file=sys.stderr)
    return rows


def export_head(dest: Path) -> Path:
    """The committed tree of HEAD, unpacked in `dest`: a stable source to benchmark
    while others edit the working tree."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "HEAD"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def git_commit() -> str | None:
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    return out.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per target")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--body-size", type=int, default=1024, help="request body bytes")
    parser.add_argument("--upstream", choices=("nginx", "fake"), default="nginx",
                        help="upstream for the POST runs: nginx's fixed reply (fast) or the "
                             "fake provider")
    parser.add_argument("--stream-connections", type=int, default=64)
    parser.add_argument("--stream-duration", type=float, default=None,
                        help="seconds per streaming run (default: --duration)")
    parser.add_argument("--stream-chunk-delay", type=float, default=0.02,
                        help="fake provider seconds between stream chunks")
    parser.add_argument("--no-streams", action="store_true", help="skip the streaming runs")
    parser.add_argument("--paced-runs", type=int, default=5,
                        help="paced prose streams (200 events 20 ms apart) per target, one after the other; "
                             "0 skips them")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measured runs per Proxilion variant, and stream rounds (each a direct "
                             "run then every variant); the run with the median figure is reported, "
                             "all runs are listed")
    parser.add_argument("--only", choices=("direct", "nginx", "proxilion"), action="append",
                        help="measure only these targets (repeatable)")
    parser.add_argument("--json", action="store_true",
                        help="also write the results to bench/results/proxy-<time>.json")
    parser.add_argument("--pin", action="store_true",
                        help="give the proxy under test the last CPU to itself, and the load generator, "
                             "the upstreams and the stream client the others (default: every process "
                             "may use every CPU)")
    parser.add_argument("--worktree", action="store_true",
                        help="run the working tree's code instead of the HEAD commit's")
    parser.add_argument("--venv", default=str(REPO / ".venv"),
                        help="virtualenv holding twistd (default: the checkout's .venv)")
    args = parser.parse_args(argv)
    targets = args.only or ["direct", "nginx", "proxilion"]
    stream_duration = args.stream_duration or args.duration

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    wrk = shutil.which("wrk")
    twistd = str(Path(args.venv) / "bin" / "twistd")
    if not wrk or not Path(nginx).exists():
        print("proxy_bench: needs wrk and nginx (apt-get install wrk nginx)", file=sys.stderr)
        return 2

    results: dict = {
        "config": {**{k: v for k, v in vars(args).items() if k not in ("only", "venv")},
                   "stream_duration": stream_duration, "targets": targets},
        "environment": {"cpus": os.cpu_count(), **pin(args.pin), "python": platform.python_version(),
                        "kernel": platform.release(), "commit": git_commit(),
                        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "http": {}, "streams": {},
    }
    with tempfile.TemporaryDirectory(prefix="proxy-bench-") as tmp:
        workdir = Path(tmp)
        procs = Processes(workdir)
        source = REPO if args.worktree else export_head(workdir / "src")
        body_file = workdir / "body.json"
        body_file.write_bytes(chat_body(args.body_size))
        try:
            upstream_port = free_port()
            if args.upstream == "nginx":
                conf = nginx_conf(workdir, "upstream", f"""
    server {{
        listen 127.0.0.1:{upstream_port} backlog=4096;
        location / {{
            default_type application/json;
            return 200 '{FIXED_REPLY}';
        }}
    }}""")
                start_nginx(procs, nginx, "nginx-upstream", conf, upstream_port)
            else:
                start_fake_provider(procs, source, upstream_port, args.stream_chunk_delay)

            def measure(name: str, port: int, path: str) -> None:
                url = f"http://127.0.0.1:{port}{path}"
                try:
                    smoke(port, path, body_file.read_bytes())
                    if args.warmup:
                        run_wrk(wrk, url, body_file, args.connections, args.threads, args.warmup)
                    results["http"][name] = run_wrk(wrk, url, body_file, args.connections, args.threads, args.duration)
                except Exception as e:
                    results["http"][name] = {"error": f"{type(e).__name__}: {e}"}
                print(f"  {name}: {json.dumps(results['http'][name])}", file=sys.stderr)

            if "direct" in targets:
                measure("direct", upstream_port, CHAT_PATH)
            if "nginx" in targets:
                nginx_port = free_port()
                conf = nginx_conf(workdir, "reverse", f"""
    upstream backend {{
        server 127.0.0.1:{upstream_port};
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{nginx_port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}""")
                start_nginx(procs, nginx, "nginx-reverse", conf, nginx_port, tested=True)
                measure("nginx", nginx_port, CHAT_PATH)
            # The variants' runs take turns (every daemon up, one wrk run each per round): on a shared
            # machine a neighbour's burst then hits every variant, not only the one measured at the time.
            daemons: dict[str, subprocess.Popen] = {}
            for variant, variant_env in (VARIANTS.items() if "proxilion" in targets else ()):
                try:
                    daemons[variant] = start_proxilion(procs, source, twistd, free_port(), free_port(),
                                                       upstream_port, workdir, variant_env)
                except RuntimeError as e:
                    results["http"][variant] = {"error": str(e)}
            ports = {variant: int(proxy.args[proxy.args.index("--port") + 1]) for variant, proxy in daemons.items()}
            urls = {variant: f"http://127.0.0.1:{port}{PROXY_PREFIX}{CHAT_PATH}" for variant, port in ports.items()}
            runs: dict[str, list[dict]] = {variant: [] for variant in daemons}
            try:
                for variant, url in urls.items():
                    smoke(ports[variant], PROXY_PREFIX + CHAT_PATH, body_file.read_bytes())
                    if args.warmup:
                        run_wrk(wrk, url, body_file, args.connections, args.threads, args.warmup)
                for _ in range(args.rounds):
                    for variant, url in urls.items():
                        runs[variant].append(run_wrk(wrk, url, body_file, args.connections, args.threads,
                                                     args.duration, daemons[variant].pid))
                for variant in daemons:
                    results["http"][variant] = {**median_run(runs[variant], "cpu_us_per_request"),
                                                "rps_runs": [r["rps"] for r in runs[variant]]}
            except Exception as e:
                for variant in daemons:
                    results["http"][variant] = {"error": f"{type(e).__name__}: {e}"}
            for variant, proxy in daemons.items():
                print(f"  {variant}: {json.dumps(results['http'][variant])}", file=sys.stderr)
                procs.stop(proxy)

            if not args.no_streams:
                fake_port = free_port()
                start_fake_provider(procs, source, fake_port, args.stream_chunk_delay)
                proxies = {}
                for variant, variant_env in (VARIANTS.items() if "proxilion" in targets else ()):
                    try:
                        proxies[variant] = start_proxilion(procs, source, twistd, free_port(),
                                                           free_port(), fake_port, workdir, variant_env)
                    except RuntimeError as e:
                        results["streams"][variant] = {"error": str(e)}
                # Each round measures direct, then every variant: a neighbour's load in one
                # round hits the baseline it is compared with.
                rounds: dict[str, list[dict]] = {name: [] for name in ("direct", *proxies)}
                for _ in range(args.rounds):
                    rounds["direct"].append(stream_run(
                        fake_port, CHAT_PATH, args.stream_connections, stream_duration))
                    print(f"  stream direct: {json.dumps(rounds['direct'][-1])}", file=sys.stderr)
                    for variant, proxy in proxies.items():
                        port = int(proxy.args[proxy.args.index("--port") + 1])
                        row = stream_run(port, PROXY_PREFIX + CHAT_PATH, args.stream_connections,
                                         stream_duration, proxy.pid)
                        direct = rounds["direct"][-1]
                        for p in ("p50", "p99"):
                            if row[f"ttfb_ms_{p}"] is not None and direct[f"ttfb_ms_{p}"] is not None:
                                row[f"added_ttfb_ms_{p}"] = row[f"ttfb_ms_{p}"] - direct[f"ttfb_ms_{p}"]
                        rounds[variant].append(row)
                        print(f"  stream {variant}: {json.dumps(row)}", file=sys.stderr)
                if args.paced_runs:
                    results["paced"] = paced(fake_port, proxies, args.paced_runs)
                for proxy in proxies.values():
                    procs.stop(proxy)
                results["streams"]["direct"] = median_run(rounds["direct"], "ttfb_ms_p50")
                for variant in proxies:
                    results["streams"][variant] = median_run(rounds[variant], "added_ttfb_ms_p50")
        finally:
            procs.stop_all()

    print(report(results))
    if results.get("paced"):
        print("\n".join(content_pacing.report(results["paced"])))
    if args.json:
        out_dir = REPO / "bench" / "results"
        out_dir.mkdir(exist_ok=True)
        path = out_dir / f"proxy-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
