"""The stream redactor ends with one frozen outcome: its action, findings, error code and tokens."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest

from proxilion.inspect.findings import TransformOutcome
from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import load_policy, parse_policy
from proxilion.inspect.stream import SCANNER_ERROR
from proxilion.providers.usage import event_usage


def _sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"event: %s\ndata: %s\n\n" % (e["type"].encode(), json.dumps(e).encode()) for e in events)


ANTHROPIC = _sse(
    {"type": "message_start", "message": {"id": "m1", "type": "message", "role": "assistant", "content": [],
                                          "usage": {"input_tokens": 25, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello there."}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}},
    {"type": "message_stop"},
)


def test_anthropic_usage_arrives_in_parts() -> None:
    redactor = Inspector(load_policy(None)).stream_redactor("anthropic", "/v1/messages")
    assert redactor.feed(ANTHROPIC) + redactor.finish() == ANTHROPIC
    outcome = redactor.outcome()
    assert outcome == TransformOutcome("allow", (), None, None, (25, 15), None)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        outcome.action = "block"  # type: ignore[misc]


@pytest.mark.parametrize("on_error, action", [("block", "block"), ("allow", "allow")])
def test_a_failed_scan_names_its_error(on_error: str, action: str, monkeypatch: pytest.MonkeyPatch) -> None:
    inspector = Inspector(parse_policy({"settings": {"on_scanner_error": on_error}, "rules": [
        {"id": "r", "direction": "response", "match": {"types": ["email"]}, "action": "redact"}]}, environ={}))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("detector bug")

    monkeypatch.setattr(inspector.scanner, "scan", broken)
    monkeypatch.setattr(inspector.scanner, "scan_many", broken)
    redactor = inspector.stream_redactor("anthropic", "/v1/messages")
    redactor.feed(ANTHROPIC)
    redactor.finish()
    outcome = redactor.outcome()
    assert outcome.error_code == SCANNER_ERROR and outcome.action == action and redactor.error


@pytest.mark.parametrize("event, tokens", [
    ({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}, (3, 2)),
    ({"usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 5}}, (7, 5)),
    ({"type": "message-end", "delta": {"usage": {"billed_units": {"input_tokens": 4, "output_tokens": 9}}}}, (4, 9)),
    ({"type": "response.completed", "response": {"usage": {"input_tokens": 8, "output_tokens": 6}}}, (8, 6)),
    ({"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 12, "outputTokenCount": 30}}, (12, 30)),
    ({"choices": [{"delta": {"content": "x"}}]}, (None, None)),
])
def test_event_usage(event: dict[str, Any], tokens: tuple[int | None, int | None]) -> None:
    assert event_usage(event) == tokens
