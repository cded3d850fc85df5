"""Scans stop once the verdict is final, and a body with too many findings is blocked as abusive."""

from __future__ import annotations

import json
import time

import pytest

from proxilion.inspect.findings import TOO_MANY_FINDINGS
from proxilion.inspect.inspector import EARLY_STOP_CHARS, Inspector
from proxilion.inspect.policy import load_policy

CHAT = "/v1/chat/completions"
POLICY = load_policy(None)


def _chat(content: str) -> bytes:
    return json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}).encode()


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1111, mail a.b@corp.com",
    "mail a.b@corp.com then ssn 123-45-6789 and password=hunter2x",
    "only mail a.b@corp.com and +1 415 555 0100",
    "nothing at all",
    "password=hunter2x " * 50,
    "ann.lee@example.com " * 50,
])
def test_early_stop_gives_the_verdict_of_a_full_scan(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    # Long enough to be scanned with early stop; the findings come first, the prose after.
    text += " and then some ordinary words" * (EARLY_STOP_CHARS // 29 + 1)
    stopping = Inspector(POLICY).inspect_request("openai", CHAT, _chat(text))
    full = Inspector(POLICY)
    monkeypatch.setattr(full, "stop_types", lambda *scope: frozenset())
    reference = full.inspect_request("openai", CHAT, _chat(text))
    assert (stopping.action, stopping.rule, stopping.body) == (reference.action, reference.rule, reference.body)
    assert len(stopping.findings) <= len(reference.findings)


def test_a_small_body_names_every_finding_of_a_block() -> None:
    verdict = Inspector(POLICY).inspect_request("openai", CHAT, _chat("card 4111 1111 1111 1111, mail a.b@corp.com"))
    assert verdict.action == "block" and sorted(f.type for f in verdict.findings) == ["credit_card", "email"]


def test_a_blocking_run_stops_at_its_first_finding() -> None:
    body = _chat("123-45-6789 " * (7_800_000 // 12))
    started = time.perf_counter()
    verdict = Inspector(POLICY).inspect_request("openai", CHAT, body)
    # A full scan of this body took over ten seconds.
    assert time.perf_counter() - started < 3
    assert verdict.action == "block" and [f.type for f in verdict.findings] == ["ssn"]


def test_a_body_over_the_findings_cap_is_blocked_as_abusive() -> None:
    inspector = Inspector(POLICY, max_findings=100)
    verdict = inspector.inspect_request("openai", CHAT, _chat("ann.lee@example.com " * 101))
    assert verdict.action == "block" and verdict.code == TOO_MANY_FINDINGS and not verdict.error
    assert "too many findings" in verdict.message and "example.com" not in verdict.message
    under = inspector.inspect_request("openai", CHAT, _chat("ann.lee@example.com " * 100))
    assert under.action == "redact" and under.code is None and len(under.findings) == 100


def test_the_cap_applies_to_streamed_answers() -> None:
    inspector = Inspector(POLICY, max_findings=50)
    events = b"".join(b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % (b"call +1 415 555 0100 " * 10)
                      for _ in range(20))
    redactor = inspector.stream_redactor("openai", CHAT)
    out = redactor.feed(events) + redactor.finish()
    assert redactor.blocked and redactor.error_code == TOO_MANY_FINDINGS
    # Text with findings the policy lets through (phones, logged) leaves as it is scanned: at most
    # the cap's worth of them before the stream ends with the error event.
    assert b"too many findings" in out and out.count(b"555 0100") <= 50
