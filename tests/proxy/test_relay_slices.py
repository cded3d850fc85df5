"""The relay feeds a stream transform a slice at a time: a costly answer never holds the reactor for long."""

from __future__ import annotations

import itertools
import json
from typing import Any

from twisted.internet.task import Clock

from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import load_policy
from proxilion.proxy import relay as relay_module
from proxilion.proxy.relay import Relay
from proxilion.proxy.upstream import BodyDone


class FakeRequest:
    def __init__(self) -> None:
        self.started_writing = False
        self.finished = False
        self.body = b""
        self.producer: Any = None

    def register_producer(self, producer: Any) -> None:
        self.producer = producer

    def unregister_producer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.started_writing = True
        self.body += data

    def finish(self) -> None:
        self.finished = True

    def set_code(self, code: int) -> None:
        pass

    def set_header(self, name: bytes, value: bytes) -> None:
        pass


class FakeUpstream:
    def __init__(self) -> None:
        self.paused = False
        self.stopped = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.stopped = True


def run_turns(clock: Clock) -> int:
    """Run the clock's calls one reactor turn at a time (Clock.advance would also run the calls each
    turn schedules); the number of turns."""
    turns = 0
    while clock.getDelayedCalls():
        call = clock.getDelayedCalls()[0]
        clock.calls.remove(call)
        call.func()
        turns += 1
    return turns


def _events(count: int) -> bytes:
    return b"".join(b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": f"mail {i}: ann.lee@example.com "}}]}).encode()
                    + b"\n\n" for i in range(count)) + b"data: [DONE]\n\n"


def _relay(clock: Clock, request: FakeRequest, upstream: FakeUpstream, done: list) -> Relay:
    transform = Inspector(load_policy(None)).stream_redactor("openai", "/v1/chat/completions")
    # Every slice spends the turn's time: one slice per reactor turn.
    ticks = itertools.count()
    relay = Relay(request, done.append, transform, clock, timer=lambda: float(next(ticks)))  # type: ignore[arg-type]
    relay.makeConnection(upstream)  # type: ignore[arg-type]
    return relay


def test_a_large_chunk_is_fed_over_several_turns_with_upstream_paused() -> None:
    clock, request, upstream, done = Clock(), FakeRequest(), FakeUpstream(), []
    relay = _relay(clock, request, upstream, done)
    data = _events(300)
    relay.dataReceived(data)
    relay.connectionLost(BodyDone())
    assert upstream.paused and not request.finished and done == []
    turns = run_turns(clock)
    assert turns >= len(data) // relay_module.SLICE - 1
    assert request.finished and done == [None]
    whole = Inspector(load_policy(None)).stream_redactor("openai", "/v1/chat/completions")
    # Slices may end inside an event's word, which then leaves in two events: the same text.
    assert _text(request.body) == _text(whole.feed(data) + whole.finish())
    assert request.body.endswith(b"data: [DONE]\n\n")


def _text(body: bytes) -> str:
    return "".join(json.loads(event[6:])["choices"][0]["delta"]["content"]
                   for event in body.split(b"\n\n") if event.startswith(b"data: {"))


def test_a_small_chunk_is_fed_at_once() -> None:
    clock, request, upstream, done = Clock(), FakeRequest(), FakeUpstream(), []
    relay = _relay(clock, request, upstream, done)
    relay.dataReceived(_events(1)[:200])
    assert not clock.getDelayedCalls() and not upstream.paused


def test_the_client_pausing_keeps_upstream_paused_after_the_backlog() -> None:
    clock, request, upstream, done = Clock(), FakeRequest(), FakeUpstream(), []
    relay = _relay(clock, request, upstream, done)
    relay.dataReceived(_events(300))
    request.producer.pauseProducing()
    request.producer.resumeProducing()
    assert upstream.paused  # the backlog still holds it
    request.producer.pauseProducing()
    while clock.getDelayedCalls():
        clock.advance(0)
    assert upstream.paused  # the client still holds it
    request.producer.resumeProducing()
    assert not upstream.paused


def test_client_gone_with_a_backlog_after_the_body_ended_reports_once() -> None:
    clock, request, upstream, done = Clock(), FakeRequest(), FakeUpstream(), []
    relay = _relay(clock, request, upstream, done)
    relay.dataReceived(_events(300))
    relay.connectionLost(BodyDone())
    relay.client_gone()
    assert not upstream.stopped  # the upstream connection may already serve another request
    while clock.getDelayedCalls():
        clock.advance(0)
    assert done == ["client_disconnected"]
