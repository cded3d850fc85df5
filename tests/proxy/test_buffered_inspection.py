"""JSON answers are held whole and inspected; one too large to hold follows on_scanner_error; compressed ones are decoded."""

from __future__ import annotations

import gzip
import json
import os
import zlib

import brotli
import pytest
import zstandard
from twisted.internet.defer import fail, succeed

from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import load_policy, parse_policy
from proxilion.providers import content_coding
from proxilion.proxy.relay import BufferedInspection

ANSWER = json.dumps({"id": "x", "object": "chat.completion", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "card 4111 1111 1111 1111 " + "filler " * 40}}]}).encode()


def _feed(transform, data, size=64):
    out = b"".join(transform.feed(data[i:i + size]) for i in range(0, len(data), size))
    return out + transform.finish()


def test_an_answer_within_the_limit_is_inspected_whole():
    transform = BufferedInspection(Inspector(load_policy(None)), "openai", "/v1/chat/completions", None, len(ANSWER))
    out = _feed(transform, ANSWER)
    assert b"4111" not in out and b"[REDACTED:CREDIT_CARD]" in out
    assert transform.error_code is None and not transform.blocked


def test_an_answer_too_large_to_hold_is_refused_by_default():
    transform = BufferedInspection(Inspector(load_policy(None)), "anthropic", "/v1/messages", None, 100)
    out = _feed(transform, ANSWER)
    assert transform.blocked and transform.status == 422 and transform.error_code == "answer_too_large"
    assert ("x-should-retry", "false") in transform.outcome().headers
    error = json.loads(out)
    assert error["type"] == "error" and "larger than 100 bytes" in error["error"]["message"]
    assert b"4111" not in out


def test_an_answer_too_large_to_hold_passes_uninspected_when_the_policy_allows_it():
    policy = parse_policy({"settings": {"on_scanner_error": "allow"}, "rules": []}, environ={})
    transform = BufferedInspection(Inspector(policy), "openai", "/v1/chat/completions", None, 100)
    assert _feed(transform, ANSWER) == ANSWER
    assert transform.uninspected and not transform.blocked
    assert transform.error_code == "answer_too_large_uninspected"


@pytest.mark.parametrize("compress, coding", [(gzip.compress, b"gzip"), (zlib.compress, b"deflate"),
                                              (brotli.compress, b"br"), (zstandard.ZstdCompressor().compress, b"zstd")])
def test_a_compressed_answer_is_decoded_inspected_and_released_decoded(compress, coding):
    transform = BufferedInspection(Inspector(load_policy(None)), "openai", "/v1/chat/completions", None, 1 << 20,
                                   coding=coding)
    out = _feed(transform, compress(ANSWER))
    assert b"4111" not in out and b"[REDACTED:CREDIT_CARD]" in out and json.loads(out)
    assert not transform.blocked


@pytest.mark.parametrize("data, coding, code", [(b"not gzip", b"gzip", "undecodable_answer"),
                                                (brotli.compress(b" " * 5000), b"br", "answer_too_large")])
def test_a_compressed_answer_that_cannot_be_read_is_refused_without_inviting_a_retry(data, coding, code):
    transform = BufferedInspection(Inspector(load_policy(None)), "anthropic", "/v1/messages", None, 1000, coding=coding)
    out = _feed(transform, data)
    outcome = transform.outcome()
    assert transform.blocked and outcome.status == 422 and outcome.error_code == code
    assert json.loads(out)["error"]["type"] == "invalid_request_error"
    assert ("x-should-retry", "false") in outcome.headers


class _InlinePool:
    """The scan pool's interface, run inline: which bodies go to the pool, and decoded how."""

    def __init__(self) -> None:
        self.jobs: list[tuple[bytes | None, int]] = []

    def inspect(self, inspector, direction, provider, path, body, identity, coding=None, limit=0):
        self.jobs.append((coding, limit))
        try:
            if coding is not None:
                body = content_coding.decode(body, coding, limit)
            return succeed(inspector.inspect_response(provider, path, body, identity))
        except content_coding.CodingError as e:
            return fail(e)


def _feed_later(transform, data):
    assert transform.feed(data) == b""
    box = []
    transform.finish_later().addBoth(box.append)
    return box[0]


def test_a_compressed_answer_that_decodes_past_the_offload_size_is_decoded_in_the_pool():
    pool = _InlinePool()
    answer = json.dumps({"object": "chat.completion", "choices": [{"index": 0, "message": {
        "role": "assistant", "content": "card 4111 1111 1111 1111 " + "filler " * 20000}}]}).encode()
    transform = BufferedInspection(Inspector(load_policy(None)), "openai", "/v1/chat/completions", None, 1 << 20,
                                   pool, offload_bytes=4096, coding=b"zstd")
    out = _feed_later(transform, zstandard.ZstdCompressor().compress(answer))
    assert pool.jobs == [(b"zstd", 1 << 20)]
    assert b"4111" not in out and b"[REDACTED:CREDIT_CARD]" in out and json.loads(out)


def test_a_small_compressed_answer_is_decoded_on_the_reactor_and_a_corrupt_one_in_the_pool_is_refused():
    pool = _InlinePool()
    small = BufferedInspection(Inspector(load_policy(None)), "openai", "/v1/chat/completions", None, 1 << 20,
                               pool, offload_bytes=1 << 16, coding=b"br")
    small.feed(brotli.compress(ANSWER))
    assert small.finish_later() is None and pool.jobs == []
    assert b"[REDACTED:CREDIT_CARD]" in small.finish()
    corrupt = BufferedInspection(Inspector(load_policy(None)), "gemini", "/v1beta/models/m:generateContent", None, 1 << 20,
                                 pool, offload_bytes=16, coding=b"gzip")
    out = _feed_later(corrupt, b"\x1f\x8b" + b"not really gzip" * 4)
    assert corrupt.outcome().status == 422 and json.loads(out)["error"]["status"] == "FAILED_PRECONDITION"


def test_a_compressed_answer_too_large_to_hold_is_refused_even_when_uninspected_answers_may_pass():
    # Its Content-Encoding header is dropped for the decoded answer: the raw bytes could not pass as they came.
    policy = parse_policy({"settings": {"on_scanner_error": "allow"}, "rules": []}, environ={})
    transform = BufferedInspection(Inspector(policy), "openai", "/v1/chat/completions", None, 100, coding=b"gzip")
    out = _feed(transform, gzip.compress(os.urandom(400)))
    assert transform.blocked and transform.outcome().status == 422 and json.loads(out)["error"]["code"] == "uninspectable_answer"
