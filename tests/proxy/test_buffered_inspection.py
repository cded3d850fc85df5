"""JSON answers are held whole and inspected; one too large to hold follows on_scanner_error."""

from __future__ import annotations

import json

from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import load_policy, parse_policy
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
    assert transform.blocked and transform.status == 502 and transform.error_code == "answer_too_large"
    error = json.loads(out)
    assert error["type"] == "error" and "larger than 100 bytes" in error["error"]["message"]
    assert b"4111" not in out


def test_an_answer_too_large_to_hold_passes_uninspected_when_the_policy_allows_it():
    policy = parse_policy({"settings": {"on_scanner_error": "allow"}, "rules": []}, environ={})
    transform = BufferedInspection(Inspector(policy), "openai", "/v1/chat/completions", None, 100)
    assert _feed(transform, ANSWER) == ANSWER
    assert transform.uninspected and not transform.blocked
    assert transform.error_code == "answer_too_large_uninspected"
