"""A streamed answer compressed against our request is decoded as it comes, inspected, and relayed decoded.

One that does not decode, or decodes past the size limit, ends with the
provider's stream error event and is audited as such.
"""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import load_policy
from proxilion.providers.content_coding import StreamDecoder
from proxilion.proxy.relay import SLICE, Relay
from proxilion.proxy.upstream import BodyDone
from proxilion.testing import InMemoryProxilion
from support.policies import BLOCK_SSN_IN_ANSWERS, shipped_policy_with

from .test_relay_slices import FakeRequest, FakeUpstream, run_turns

CARD = "4111 1111 1111 1111"
SSN = "536-22-4187"


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[InMemoryProxilion]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(shipped_policy_with(BLOCK_SSN_IN_ANSWERS))
    proxilion = InMemoryProxilion(policy=policy, settings={"max_body_size": 64 * 1024})
    proxilion.start()
    yield proxilion
    proxilion.stop()


def _stream(harness: InMemoryProxilion, reply: str, encoding: str, **headers: str):
    return harness.request("POST", "/proxy/openai/v1/chat/completions",
                           json={"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
                           headers={"authorization": "Bearer sk-test-coded", "x-fake-reply": reply, "x-fake-chunks": "6",
                                    "x-fake-encoding": encoding, **headers})


def _text(body: bytes) -> str:
    return "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                   for line in body.split(b"\n") if line.startswith(b"data: {") and b'"choices"' in line)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_a_compressed_stream_is_redacted_and_relayed_decoded_and_chunked(harness, encoding):
    answer = _stream(harness, f"my card is {CARD} thanks", encoding)
    assert answer.status == 200
    assert "content-encoding" not in answer.headers and "content-length" not in answer.headers
    assert answer.headers["transfer-encoding"] == "chunked"
    assert _text(answer.body) == "my card is [REDACTED:CREDIT_CARD] thanks"
    assert answer.body.endswith(b"data: [DONE]\n\n: x-proxilion-decision: redact\n\n")
    (row,) = harness.audit()
    assert (row.decision, row.error) == ("redact", None)


def test_a_compressed_stream_is_blocked_mid_way_like_any_other(harness):
    answer = _stream(harness, f"the SSN is {SSN} and more", "br")
    assert SSN.encode() not in answer.body
    error = json.loads(answer.body.split(b"data: ")[-1].split(b"\n")[0])["error"]
    assert (error["code"], error["rule"]) == ("blocked_by_policy", "block-ssn-in-answers")


def test_a_stream_decoding_past_the_size_limit_ends_with_the_providers_error_event(harness):
    answer = _stream(harness, "hi", "gzip", **{"x-fake-stream-bytes": "200000"})
    assert answer.status == 200
    error = json.loads(answer.body.split(b"data: ")[-1].split(b"\n")[0])["error"]
    assert error["code"] == "uninspectable_answer" and "size limit" in error["message"]
    (row,) = harness.audit()
    assert (row.decision, row.error) == ("block", "answer_too_large")


def _coded_relay(coding: bytes, limit: int = 1 << 20):
    clock, request, upstream, done = Clock(), FakeRequest(), FakeUpstream(), []
    transform = Inspector(load_policy(None)).stream_redactor("anthropic", "/v1/messages")
    ticks = itertools.count()
    relay = Relay(request, done.append, transform, clock, timer=lambda: float(next(ticks)),  # type: ignore[arg-type]
                  decoder=StreamDecoder(coding, limit))
    relay.makeConnection(upstream)  # type: ignore[arg-type]
    return clock, request, upstream, done, relay


EVENTS = b"".join(b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                  b'"delta":{"type":"text_delta","text":"word %d "}}\n\n' % i for i in range(2000))


def test_a_read_that_decodes_to_much_more_is_fed_a_decoded_slice_per_turn():
    clock, request, upstream, done, relay = _coded_relay(b"gzip")
    coded = gzip.compress(EVENTS)
    assert len(coded) < SLICE * 8 < len(EVENTS) // 8
    relay.dataReceived(coded)
    relay.connectionLost(BodyDone())
    turns = run_turns(clock)
    assert turns >= len(EVENTS) // SLICE - 1
    # The text whole (an event ending inside a word may leave as two: see inspect/stream.py).
    assert _deltas(request.body) == _deltas(EVENTS) and done == [None]


def _deltas(sse: bytes) -> str:
    return "".join(json.loads(line[6:])["delta"]["text"] for line in sse.split(b"\n") if line.startswith(b"data: "))


@pytest.mark.parametrize("coded", [b"\x1f\x8b\x08\x00garbage that is not deflate data" * 3,
                                   gzip.compress(EVENTS)[:-20]])
def test_a_corrupt_or_cut_short_stream_ends_with_the_error_event(coded):
    clock, request, upstream, done, relay = _coded_relay(b"gzip")
    relay.dataReceived(coded)
    relay.connectionLost(BodyDone())
    while not request.finished:
        clock.advance(0)
    last = request.body.rstrip(b"\n").split(b"\n\n")[-1]
    assert last.startswith(b"event: error\ndata: ")
    assert json.loads(last.split(b"data: ")[1])["error"]["code"] == "uninspectable_answer"
    assert relay.outcome().action == "block" and relay.outcome().error_code == "undecodable_answer"
    assert done == [None]
