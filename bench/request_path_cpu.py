"""CPU of the request path in Python alone, without sockets: what the code costs per request.

The wire benchmark (proxy_bench.py) measures the whole process, kernel sends
included, and on a busy 2-core machine its numbers move with the neighbours.
This one drives the real proxy connection protocol and the real upstream
connection protocol over in-memory transports (Twisted's StringTransport) in
one process, with the default wiring from proxilion.app.build (metrics,
access log to /dev/null, audit rows queued for the analytics writer, the rate
limiter with limits off), and reports process CPU per request.

    .venv/bin/python bench/request_path_cpu.py [--rounds 40 --round-size 250] [--inspection] [--profile]

The reactor thread's CPU is taken per round; on a shared machine the
fastest round is the best estimate of the code's own cost, the median says
what a neighbour-disturbed run sees.
"""

from __future__ import annotations

import argparse
import faulthandler
import signal
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from twisted.internet import reactor  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.logger import globalLogBeginner  # noqa: E402

from proxilion.app import build  # noqa: E402
from proxilion.config import load_settings  # noqa: E402
from proxilion.logs import make_observer  # noqa: E402
from proxilion.proxy import upstream as upstream_module  # noqa: E402
from proxy_bench import FIXED_REPLY, chat_body  # noqa: E402

# The same request body and upstream answer as the daemon benchmarks (proxy_bench, e2e_bench).
REPLY = FIXED_REPLY.encode()
UPSTREAM_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(REPLY), REPLY)


def chat_request(size: int) -> bytes:
    body = chat_body(size)
    return (b"POST /proxy/openai/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8787\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer sk-bench-not-a-real-key\r\nUser-Agent: wrk\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


class _Endpoint:
    """Connects an upstream protocol to an in-memory transport that answers each request at once."""

    def __init__(self) -> None:
        self.connections = []

    def connect(self, factory):  # noqa: ANN001, ANN201
        from twisted.internet.defer import succeed

        protocol = factory.buildProtocol(None)
        transport = _AnsweringTransport(protocol)
        protocol.makeConnection(transport)
        self.connections.append(protocol)
        return succeed(protocol)


class _AnsweringTransport(StringTransport):
    def __init__(self, protocol) -> None:  # noqa: ANN001
        super().__init__()
        self._protocol = protocol

    def write(self, data: bytes) -> None:
        # The upstream answers as soon as the request is written.
        reactor.callLater(0, self._protocol.dataReceived, UPSTREAM_ANSWER)


def main() -> int:
    faulthandler.register(signal.SIGUSR1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--round-size", type=int, default=250, help="requests per round; the minimum round is the least disturbed")
    parser.add_argument("--body-size", type=int, default=1024)
    parser.add_argument("--inspection", action="store_true", help="run the shipped policy (default: INSPECTION=false)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the measured requests")
    parser.add_argument("--policy", help="policy file (with --inspection; default: the shipped policy)")
    args = parser.parse_args()

    # A fresh analytics database each run: inserts into a grown one cost more.
    environ = {**os.environ, "PROXILION_DATA_DIR": tempfile.mkdtemp(prefix="proxilion-request-path-cpu-"), "RATE_LIMIT_PER_MINUTE": "0", "INSPECTION": "true" if args.inspection else "false",
               "PROXILION_UPSTREAM_OPENAI": "http://127.0.0.1:9"}
    if args.policy:
        environ["POLICY_FILE"] = args.policy
    settings = load_settings({}, environ, None)
    devnull = open(os.devnull, "w")
    observer = make_observer("json", "info", devnull)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False, discardBuffer=True)
    app = build(settings, reactor, observer)
    endpoint = _Endpoint()
    original_target = upstream_module._Target

    class _Target(original_target):  # type: ignore[misc, valid-type]
        def __init__(self, base, reactor_, connect_timeout):  # noqa: ANN001
            super().__init__(base, reactor_, connect_timeout)
            self.endpoint = endpoint

    upstream_module._Target = _Target
    factory = app.proxy_service._factory  # the ProxyFactory the port would use
    request = chat_request(args.body_size)
    client = factory.buildProtocol(None)
    client_transport = StringTransport(peerAddress=None)
    client.makeConnection(client_transport)
    state = {"n": 0, "round_start": 0.0, "answered": 0}
    rounds: list[float] = []
    profiler = cProfile.Profile() if args.profile else None
    warmup = 1000
    total = warmup + args.rounds * args.round_size
    cpu_start = [0.0]

    def step() -> None:
        n = state["n"]
        if n == warmup:
            cpu_start[0] = time.process_time()
            if profiler:
                profiler.enable()
        if n >= warmup and (n - warmup) % args.round_size == 0:
            now = time.thread_time()
            if n > warmup:
                rounds.append((now - state["round_start"]) / args.round_size * 1e6)
            state["round_start"] = now
        if n == total:
            if profiler:
                profiler.disable()
            cpu = (time.process_time() - cpu_start[0]) / (args.rounds * args.round_size) * 1e6
            ordered = sorted(rounds)
            print(json.dumps({
                "requests": args.rounds * args.round_size, "inspection": args.inspection,
                "reactor_thread_us_per_request": {"min": round(ordered[0], 1), "median": round(ordered[len(ordered) // 2], 1)},
                "process_cpu_us_per_request": round(cpu, 1),
                "answered_200": state["answered"], "upstream_connections": len(endpoint.connections),
            }))
            reactor.stop()
            return
        if client.busy:
            # The previous answer is not complete yet (the upstream answers a turn later).
            reactor.callLater(0, step)
            return
        state["n"] = n + 1
        if client_transport.value().startswith(b"HTTP/1.1 200 OK"):
            state["answered"] += 1
        client_transport.clear()
        client.dataReceived(request)
        reactor.callLater(0, step)

    def begin() -> None:
        # Everything but the listening ports: the connections are built by hand.
        for service in (app.analytics, app.limiter, app.policy):
            service.startService()
        reactor.callLater(0.2, step)

    reactor.callWhenRunning(begin)
    reactor.run()
    if profiler:
        pstats.Stats(profiler).sort_stats(os.environ.get("PROFILE_SORT", "tottime")).print_stats(int(os.environ.get("PROFILE_LINES", "35")))
    sys.stdout.flush()
    # The analytics writer's threads are not stopped gracefully here; nothing needs to outlive the figures.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
