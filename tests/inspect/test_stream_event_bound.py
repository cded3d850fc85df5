"""An event larger than the stream redactor's bound is refused, never scanned (its scan would hold the reactor)."""

import json

from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import load_policy, parse_policy
from proxilion.inspect.stream import STREAM_EVENT_TOO_LARGE


def _event(text: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}).encode() + b"\n\n"


def test_oversized_event_ends_the_stream_with_the_providers_error() -> None:
    redactor = Inspector(load_policy(None)).stream_redactor("openai", "/v1/chat/completions")
    redactor.max_event_bytes = 1000
    out = redactor.feed(_event("hello ") + _event("x" * 2000))
    assert redactor.blocked and redactor.error_code == STREAM_EVENT_TOO_LARGE
    assert b"too large to inspect" in out and b"xxxx" not in out


def test_oversized_partial_event_is_refused_before_it_ends() -> None:
    redactor = Inspector(load_policy(None)).stream_redactor("openai", "/v1/chat/completions")
    redactor.max_event_bytes = 1000
    redactor.feed(_event("x" * 2000)[:1500])
    assert redactor.blocked and redactor.error_code == STREAM_EVENT_TOO_LARGE


def test_oversized_event_passes_uninspected_when_the_policy_allows() -> None:
    policy = parse_policy({"settings": {"on_scanner_error": "allow"}, "rules": []}, environ={})
    redactor = Inspector(policy).stream_redactor("openai", "/v1/chat/completions")
    redactor.max_event_bytes = 1000
    data = _event("x" * 2000)
    assert redactor.feed(data) == data
    assert not redactor.blocked and redactor.error_code == STREAM_EVENT_TOO_LARGE
