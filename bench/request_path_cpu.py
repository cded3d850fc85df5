"""CPU of the request path in Python alone, without sockets: what the code costs per request.

The wire benchmark (proxy_bench.py) measures the whole process, kernel sends
included, and on a busy 2-core machine its numbers move with the neighbours.
This one drives the real proxy connection protocol and the real upstream
connection protocol over in-memory transports (Twisted's StringTransport) in
one process, with the default wiring from proxilion.app.build (metrics,
access log to /dev/null, audit rows queued for the analytics writer, the rate
limiter with limits off), and reports process CPU per request.

    .venv/bin/python bench/request_path_cpu.py [--rounds 40 --round-size 250] [--inspection | --compare] [--profile]

The reactor thread's CPU is taken per round; on a shared machine the
fastest round is the best estimate of the code's own cost, the median says
what a neighbour-disturbed run sees. --compare runs inspection off and on in
one process, rounds taking turns, and reports what inspection adds.
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


class _Lane:
    """One configuration of the proxy (its own app and client connection) and its timed rounds."""

    def __init__(self, inspection: bool, policy: str | None, observer, endpoint: _Endpoint) -> None:  # noqa: ANN001
        # A fresh analytics database each run: inserts into a grown one cost more.
        environ = {**os.environ, "PROXILION_DATA_DIR": tempfile.mkdtemp(prefix="proxilion-request-path-cpu-"), "RATE_LIMIT_PER_MINUTE": "0",
                   "INSPECTION": "true" if inspection else "false", "PROXILION_UPSTREAM_OPENAI": "http://127.0.0.1:9"}
        if policy:
            environ["POLICY_FILE"] = policy
        self.inspection = inspection
        self.app = build(load_settings({}, environ, None), reactor, observer, upstream_endpoint=lambda scheme, host, port: endpoint)
        self.endpoint = endpoint
        self.client = self.app.proxy_service._factory.buildProtocol(None)  # the ProxyFactory the port would use
        self.transport = StringTransport(peerAddress=None)
        self.client.makeConnection(self.transport)
        self.rounds: list[float] = []
        self.answered = 0

    def start(self) -> None:
        # Everything but the listening ports: the connections are built by hand.
        for service in (self.app.analytics, self.app.limiter, self.app.policy):
            service.startService()

    def figures(self) -> dict:
        ordered = sorted(self.rounds)
        return {"min": round(ordered[0], 1), "median": round(ordered[len(ordered) // 2], 1)}


def main() -> int:
    faulthandler.register(signal.SIGUSR1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--round-size", type=int, default=250, help="requests per round; the minimum round is the least disturbed")
    parser.add_argument("--body-size", type=int, default=1024)
    parser.add_argument("--inspection", action="store_true", help="run the shipped policy (default: INSPECTION=false)")
    parser.add_argument("--compare", action="store_true",
                        help="run inspection off and on in one process, rounds taking turns, and report what inspection adds")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the measured requests")
    parser.add_argument("--policy", help="policy file (with --inspection or --compare; default: the shipped policy)")
    args = parser.parse_args()

    devnull = open(os.devnull, "w")
    observer = make_observer("json", "info", devnull)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False, discardBuffer=True)
    endpoint = _Endpoint()
    configurations = (False, True) if args.compare else (args.inspection,)
    lanes = [_Lane(inspection, args.policy, observer, endpoint) for inspection in configurations]
    request = chat_request(args.body_size)
    state = {"n": 0, "round_start": 0.0}
    profiler = cProfile.Profile() if args.profile else None
    warmup = 1000
    # Rounds take turns between the lanes, so a disturbance hits both alike.
    total = warmup + args.rounds * args.round_size * len(lanes)
    cpu_start = [0.0]

    def step() -> None:
        n = state["n"]
        if n == warmup:
            cpu_start[0] = time.process_time()
            if profiler:
                profiler.enable()
        measured = n - warmup
        if measured >= 0 and measured % args.round_size == 0:
            now = time.thread_time()
            if measured > 0:
                lanes[(measured // args.round_size - 1) % len(lanes)].rounds.append((now - state["round_start"]) / args.round_size * 1e6)
            state["round_start"] = now
        if n == total:
            if profiler:
                profiler.disable()
            report(lanes, args, (time.process_time() - cpu_start[0]) / (total - warmup) * 1e6, len(endpoint.connections))
            reactor.stop()
            return
        lane = lanes[(max(measured, 0) // args.round_size) % len(lanes)]
        if lane.client.busy:
            # The previous answer is not complete yet (the upstream answers a turn later).
            reactor.callLater(0, step)
            return
        state["n"] = n + 1
        if lane.transport.value().startswith(b"HTTP/1.1 200 OK"):
            lane.answered += 1
        lane.transport.clear()
        lane.client.dataReceived(request)
        reactor.callLater(0, step)

    def begin() -> None:
        for lane in lanes:
            lane.start()
        reactor.callLater(0.2, step)

    reactor.callWhenRunning(begin)
    reactor.run()
    if profiler:
        if os.environ.get("PROFILE_DUMP"):
            profiler.dump_stats(os.environ["PROFILE_DUMP"])
        pstats.Stats(profiler).sort_stats(os.environ.get("PROFILE_SORT", "tottime")).print_stats(int(os.environ.get("PROFILE_LINES", "35")))
    sys.stdout.flush()
    # The analytics writer's threads are not stopped gracefully here; nothing needs to outlive the figures.
    os._exit(0)


def report(lanes: list[_Lane], args: argparse.Namespace, process_cpu_us: float, upstream_connections: int) -> None:
    common = {"requests": args.rounds * args.round_size, "body_size": args.body_size}
    if len(lanes) == 1:
        lane = lanes[0]
        print(json.dumps({
            **common, "inspection": lane.inspection, "reactor_thread_us_per_request": lane.figures(),
            "process_cpu_us_per_request": round(process_cpu_us, 1),
            "answered_200": lane.answered, "upstream_connections": upstream_connections,
        }))
        return
    off, on = lanes
    # Rounds next to each other saw the same neighbours: their difference is steadier than either.
    added = sorted(b - a for a, b in zip(off.rounds, on.rounds))
    print(json.dumps({
        **common, "reactor_thread_us_per_request": {"inspection_off": off.figures(), "inspection_on": on.figures()},
        "added_by_inspection_us": {"min_on_minus_min_off": round(on.figures()["min"] - off.figures()["min"], 1),
                                   "median_of_round_pairs": round(added[len(added) // 2], 1)},
        "answered_200": [off.answered, on.answered], "upstream_connections": upstream_connections,
    }))


if __name__ == "__main__":
    sys.exit(main())
