"""Backpressure: a client that reads a big stream slowly must not make the proxy buffer it.

The client shrinks its socket receive buffer and reads a little at a time while the
daemon's resident memory is sampled; then it reads to the end and checks every byte
arrived. The fake provider's byte counter shows the upstream read was paused too.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.daemon import Daemon, http_json, running

from .conftest import NO_LIMITS, fake_stats, request_rules_only_policy

MB = 1 << 20


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class SlowReader(http.client.HTTPConnection):
    """An HTTP connection with a tiny receive window, like a client on a slow link."""

    def connect(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.settimeout(30)
        sock.connect((self.host, self.port))
        self.sock = sock


def _warm_up(daemon: Daemon) -> None:
    # First requests allocate pools, caches and the policy: not what is measured.
    for _ in range(5):
        http_json("POST", daemon.url + "/proxy/openai/v1/chat/completions",
                  body={"model": "m", "messages": [{"role": "user", "content": "warm up"}], "stream": True})


def _slow_then_full_read(daemon: Daemon, fake_url: str, size: int, slow_seconds: float) -> None:
    assert daemon.proc is not None
    pid = daemon.proc.pid
    _warm_up(daemon)
    baseline = rss_bytes(pid)
    streamed_before = fake_stats(fake_url)["bytes_streamed"]
    conn = SlowReader("127.0.0.1", daemon.port)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "stream"}], "stream": True})
    conn.request("POST", "/proxy/openai/v1/chat/completions", body=body,
                 headers={"content-type": "application/json", "x-fake-stream-bytes": str(size)})
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("content-type", "").startswith("text/event-stream")
    received = 0
    peak = baseline
    deadline = time.monotonic() + slow_seconds
    while time.monotonic() < deadline:
        received += len(response.read1(4096))
        peak = max(peak, rss_bytes(pid))
        time.sleep(0.02)
    upstream_sent = fake_stats(fake_url)["bytes_streamed"] - streamed_before
    assert received < size // 8
    # The proxy stopped reading upstream: what the provider wrote is bounded by socket
    # buffers, not by how much of the stream exists. Loopback autotuning lets the two
    # connections' four kernel buffers hold 7-26 MB between them (seen here; the proxy's own
    # memory meanwhile grew by kilobytes, which the next line checks).
    assert upstream_sent < 32 * MB, upstream_sent
    assert peak - baseline < 6 * MB, (baseline, peak)
    tail = b""
    while chunk := response.read1(MB):
        received += len(chunk)
        tail = (tail + chunk)[-64:]
        peak = max(peak, rss_bytes(pid))
    conn.close()
    # An inspected stream ends with the final decision, a comment of Proxilion's own (tests/proxy/test_decision_header.py).
    done = tail.rindex(b"data: [DONE]\n\n") + len(b"data: [DONE]\n\n")
    ours = tail[done:]
    assert ours in (b"", b": x-proxilion-decision: allow\n\n")
    received -= len(ours)
    assert received >= size
    # Every byte arrives; an event whose text ends inside a word leaves as two events (the
    # text before the word at once), so the client gets more bytes than the provider sent.
    sent = fake_stats(fake_url)["bytes_streamed"] - streamed_before
    assert sent <= received < 2 * sent
    assert peak - baseline < 12 * MB, (baseline, peak)


@pytest.fixture(scope="module")
def relay_daemon(tmp_path_factory: pytest.TempPathFactory, fake_provider: str) -> Iterator[Daemon]:
    workdir = tmp_path_factory.mktemp("backpressure")
    args = ["--upstream", f"openai={fake_provider}", "--policy", str(request_rules_only_policy(workdir))]
    with running(Daemon(workdir, args, NO_LIMITS)) as d:
        yield d


@pytest.fixture(scope="module")
def inspecting_daemon(tmp_path_factory: pytest.TempPathFactory, fake_provider: str) -> Iterator[Daemon]:
    workdir = tmp_path_factory.mktemp("backpressure-inspecting")
    with running(Daemon(workdir, ["--upstream", f"openai={fake_provider}"], NO_LIMITS)) as d:
        yield d


def test_slow_reader_of_a_64mb_stream_does_not_grow_memory(relay_daemon: Daemon, fake_provider: str) -> None:
    _slow_then_full_read(relay_daemon, fake_provider, 64 * MB, slow_seconds=3)


def test_slow_reader_with_answer_inspection_does_not_grow_memory(inspecting_daemon: Daemon, fake_provider: str) -> None:
    """The shipped policy redacts streamed answers on the way: backpressure must survive that."""
    _slow_then_full_read(inspecting_daemon, fake_provider, 6 * MB, slow_seconds=2)
