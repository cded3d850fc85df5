"""x-proxilion-decision carries the request's final decision: the answer's inspection included.

Whole answers carry it in their headers; a server-sent-event stream, whose
headers leave before its answer is inspected, ends with an SSE comment line
`: x-proxilion-decision: <decision>`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proxilion.testing import InMemoryProxilion
from support.policies import BLOCK_SSN_IN_ANSWERS, shipped_policy_with

CARD = "4111 1111 1111 1111"
SSN = "536-22-4187"


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[InMemoryProxilion]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(shipped_policy_with(BLOCK_SSN_IN_ANSWERS))
    proxilion = InMemoryProxilion(policy=policy)
    proxilion.start()
    yield proxilion
    proxilion.stop()


def _chat(harness: InMemoryProxilion, reply: str, stream: bool = False, **headers: str):
    return harness.request("POST", "/proxy/openai/v1/chat/completions",
                           json={"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": "hi"}]},
                           headers={"authorization": "Bearer sk-test-decision", "x-fake-reply": reply, **headers})


@pytest.mark.parametrize("reply, decision, status", [("plain words", "allow", 200), (f"card {CARD}", "redact", 200),
                                                     (f"the SSN is {SSN}", "block", 403)])
def test_a_whole_answer_carries_the_final_decision_in_its_headers(harness, reply, decision, status):
    answer = _chat(harness, reply)
    assert (answer.status, answer.headers["x-proxilion-decision"]) == (status, decision)


def test_a_compressed_answer_carries_it_too(harness):
    answer = _chat(harness, f"card {CARD}", **{"x-fake-encoding": "br"})
    assert (answer.status, answer.headers["x-proxilion-decision"]) == (200, "redact")
    assert "content-encoding" not in answer.headers and int(answer.headers["content-length"]) == len(answer.body)


@pytest.mark.parametrize("reply, decision", [("plain words here", "allow"), (f"card {CARD} and more", "redact"),
                                             (f"the SSN is {SSN} and more", "block")])
def test_a_stream_ends_with_the_final_decision_as_an_sse_comment(harness, reply, decision):
    answer = _chat(harness, reply, stream=True, **{"x-fake-chunks": "4"})
    # Sent before the answer was inspected: what the request side decided.
    assert answer.headers["x-proxilion-decision"] == "allow"
    assert answer.body.endswith(b"\n\n: x-proxilion-decision: %s\n\n" % decision.encode())
    assert answer.body.count(b"x-proxilion-decision") == 1


def test_a_gemini_stream_ends_without_the_comment_google_genai_cannot_parse(harness):
    answer = harness.request("POST", "/proxy/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
                             json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
                             headers={"x-goog-api-key": "g-test-decision", "x-fake-reply": f"card {CARD} and more",
                                      "x-fake-chunks": "4"})
    assert answer.status == 200 and b"[REDACTED:CREDIT_CARD]" in answer.body
    assert b"x-proxilion-decision" not in answer.body

