"""What TLS interception costs: CONNECT + handshake + one request, kept-alive intercepted requests against
explicit ones in the same run, the cost of minting a leaf, and the leaf cache's hit rate under a mix of hosts.

    .venv/bin/python bench/tls_bench.py [--rounds 6 --round-size 300 --connects 200 --mints 200 --mix 2000] [--json]

One Proxilion daemon (twistd, the working tree) with a fresh interception CA
and the fake provider as its plain-HTTP upstream, so only the client side's
TLS is measured. The daemon's CPU (utime + stime of its process, from /proc)
is read around each round; explicit and intercepted rounds take turns, and
the median round is reported (the fastest says what the code costs on a
quiet machine). The client (this process) uses the standard library's ssl
and http.client; its own CPU is not counted.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import random
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from proxilion.fakeprovider.testing import running_fake_provider  # noqa: E402
from proxilion.metrics import Metrics  # noqa: E402
from proxilion.tls.ca import create_ca, load_ca  # noqa: E402
from proxilion.tls.leaves import LeafCache  # noqa: E402

TWISTD = str(Path(sys.executable).parent / "twistd")
BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 900}]}).encode()
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class Daemon:
    def __init__(self, workdir: Path, upstream: str, ca: Path) -> None:
        self.port, self.admin_port = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO), "PROXILION_DATA_DIR": str(workdir / "data"), "RATE_LIMIT_PER_MINUTE": "0",
               "CA_CERT_FILE": str(ca / "ca.crt"), "CA_KEY_FILE": str(ca / "ca.key"), "LOG_LEVEL": "warn"}
        self.log = open(workdir / "daemon.log", "ab")
        self.proc = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "proxilion", "--bind", "127.0.0.1", "--port", str(self.port), "--admin-port", str(self.admin_port),
             "--upstream", f"openai={upstream}", "--upstream", f"anthropic={upstream}"],
            cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"daemon did not start; see {workdir / 'daemon.log'}")

    def metric(self, name: str, **labels: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        total = 0.0
        for line in text.splitlines():
            head, _, value = line.rpartition(" ")
            name_part, _, label_part = head.partition("{")
            if name_part == name and all(f'{k}="{v}"' in label_part for k, v in labels.items()) and (want or not label_part):
                total += float(value)
        return total

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def intercepted(port: int, host: str, cafile: Path) -> ssl.SSLSocket:
    """CONNECT host:443 through the proxy and the TLS handshake with the leaf; the socket speaks HTTP to the host."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    # As http.client's own connect() does for the explicit connection: it sends a request's head and
    # body in two writes, and with Nagle on, the body waits for the proxy's delayed ACK (about 40 ms).
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = raw.recv(4096)
        if not chunk:
            raise RuntimeError("proxy closed the CONNECT")
        head += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
    return ssl.create_default_context(cafile=str(cafile)).wrap_socket(raw, server_hostname=host)


class _Over(http.client.HTTPConnection):
    """http.client on a socket already connected (and already TLS)."""

    def __init__(self, sock: socket.socket, host: str) -> None:
        super().__init__(host, 443, timeout=10)
        self.sock = sock

    def connect(self) -> None:
        raise RuntimeError("the intercepted connection was closed")


def post(conn: http.client.HTTPConnection, path: str) -> None:
    conn.request("POST", path, BODY, HEADERS)
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"{path}: {response.status}")


def measure(pid: int, count: int, work: Callable[[], None]) -> float:
    """Daemon CPU µs per call of C{work}."""
    before = cpu_seconds(pid)
    for _ in range(count):
        work()
    return (cpu_seconds(pid) - before) / count * 1e6


def kept_alive(args: argparse.Namespace, daemon: Daemon, ca: Path) -> dict[str, Any]:
    explicit = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    inside = _Over(intercepted(daemon.port, "api.openai.com", ca), "api.openai.com")
    for _ in range(50):  # warm-up
        post(explicit, "/proxy/openai/v1/chat/completions")
        post(inside, "/v1/chat/completions")
    rounds: dict[str, list[float]] = {"explicit": [], "connect": []}
    pid = daemon.proc.pid
    for _ in range(args.rounds):
        rounds["explicit"].append(measure(pid, args.round_size, lambda: post(explicit, "/proxy/openai/v1/chat/completions")))
        rounds["connect"].append(measure(pid, args.round_size, lambda: post(inside, "/v1/chat/completions")))
    explicit.close()
    inside.close()
    out = {mode: {"median_us": round(statistics.median(v)), "min_us": round(min(v))} for mode, v in rounds.items()}
    out["connect_over_explicit_us"] = out["connect"]["median_us"] - out["explicit"]["median_us"]
    return out


def connect_per_request(args: argparse.Namespace, daemon: Daemon, ca: Path) -> dict[str, Any]:
    """A new connection per request: CONNECT, handshake (the leaf cached after the first), one request, close."""
    walls: list[float] = []

    def once() -> None:
        start = time.perf_counter()
        sock = intercepted(daemon.port, "api.openai.com", ca)
        conn = _Over(sock, "api.openai.com")
        post(conn, "/v1/chat/completions")
        conn.close()
        walls.append(time.perf_counter() - start)

    once()
    walls.clear()
    cpu = measure(daemon.proc.pid, args.connects, once)
    walls.sort()
    return {"daemon_cpu_us": round(cpu), "client_wall_p50_ms": round(walls[len(walls) // 2] * 1000, 2),
            "client_wall_p99_ms": round(walls[int(len(walls) * 0.99) - 1] * 1000, 2)}


def mint_cost(args: argparse.Namespace, ca_dir: Path) -> dict[str, Any]:
    leaves = LeafCache(load_ca(str(ca_dir / "ca.crt"), str(ca_dir / "ca.key")), Metrics())
    now = datetime.datetime.now(datetime.timezone.utc)
    times = []
    for i in range(args.mints):
        start = time.process_time()
        leaves.mint_certificate(f"r{i}.openai.azure.com", now)
        times.append(time.process_time() - start)
    context_times = []
    for i in range(args.mints):
        start = time.process_time()
        leaves.context_for(f"c{i}.openai.azure.com")
        context_times.append(time.process_time() - start)
    return {"certificate_ms": round(statistics.median(times) * 1000, 3),
            "certificate_and_context_ms": round(statistics.median(context_times) * 1000, 3)}


def host_mix(count: int, seed: int = 7) -> Iterator[str]:
    """Mostly the big providers, a long tail of Azure resources (Zipf-like, 300 of them)."""
    rng = random.Random(seed)
    tail = [f"res{i}.openai.azure.com" for i in range(300)]
    weights = [1 / (i + 1) for i in range(len(tail))]
    for _ in range(count):
        r = rng.random()
        if r < 0.5:
            yield "api.openai.com"
        elif r < 0.8:
            yield "api.anthropic.com"
        else:
            yield rng.choices(tail, weights)[0]


def cache_hit_rate(args: argparse.Namespace, daemon: Daemon, ca: Path) -> dict[str, Any]:
    hits0, misses0 = daemon.metric("proxilion_tls_leaf_cache_total", result="hit"), daemon.metric("proxilion_tls_leaf_cache_total", result="miss")
    hosts = set()
    for host in host_mix(args.mix):
        hosts.add(host)
        intercepted(daemon.port, host, ca).close()
    hits = daemon.metric("proxilion_tls_leaf_cache_total", result="hit") - hits0
    misses = daemon.metric("proxilion_tls_leaf_cache_total", result="miss") - misses0
    return {"handshakes": args.mix, "distinct_hosts": len(hosts), "hits": int(hits), "misses": int(misses),
            "hit_rate": round(hits / max(hits + misses, 1), 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="kept-alive rounds per mode (taking turns)")
    parser.add_argument("--round-size", type=int, default=300, help="requests per kept-alive round")
    parser.add_argument("--connects", type=int, default=200, help="CONNECT + handshake + one request, each on a new connection")
    parser.add_argument("--mints", type=int, default=200, help="leaves minted in-process for the mint cost")
    parser.add_argument("--mix", type=int, default=2000, help="handshakes over the host mix for the cache hit rate")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tls-bench-") as tmp, running_fake_provider(chunk_delay=0) as upstream:
        work = Path(tmp)
        ca = work / "ca"
        create_ca(ca)
        results: dict[str, Any] = {"mint": mint_cost(args, ca)}
        daemon = Daemon(work, upstream, ca)
        try:
            results["kept_alive"] = kept_alive(args, daemon, ca / "ca.crt")
            results["connect_handshake_request"] = connect_per_request(args, daemon, ca / "ca.crt")
            results["leaf_cache"] = cache_hit_rate(args, daemon, ca / "ca.crt")
        finally:
            daemon.stop()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for section, values in results.items():
            print(f"{section}: {json.dumps(values)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
