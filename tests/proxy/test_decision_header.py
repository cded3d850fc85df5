"""x-proxilion-decision carries the request's final decision: the answer's inspection included.

Whole answers carry it in their headers; a stream, whose headers leave before
its answer is inspected, carries it in the `x-proxilion-decision` trailer after
its last chunk, and a server-sent-event stream (not Gemini's) also ends with an
SSE comment line `: x-proxilion-decision: <decision>`. A body that is not
chunked (an HTTP/1.0 client) has no trailer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proxilion.providers import eventstream
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
    assert answer.headers["trailer"] == "x-proxilion-decision"
    assert answer.trailers == {"x-proxilion-decision": decision}


def test_a_gemini_stream_ends_without_the_comment_google_genai_cannot_parse(harness):
    answer = harness.request("POST", "/proxy/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
                             json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
                             headers={"x-goog-api-key": "g-test-decision", "x-fake-reply": f"card {CARD} and more",
                                      "x-fake-chunks": "4"})
    assert answer.status == 200 and b"[REDACTED:CREDIT_CARD]" in answer.body
    assert b"x-proxilion-decision" not in answer.body
    assert answer.trailers == {"x-proxilion-decision": "redact"}


@pytest.mark.parametrize("path, body, reply, decision", [
    ("/proxy/bedrock/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse-stream",
     {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}, f"the SSN is {SSN} and more", "block"),
    ("/proxy/cohere/v1/chat", {"message": "hi", "stream": True}, f"card {CARD} and more", "redact"),
    ("/proxy/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
     {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, "plain words here", "allow"),
])
def test_streams_without_comment_syntax_carry_it_in_the_trailer_only(harness, path, body, reply, decision):
    answer = harness.request("POST", path, json=body,
                             headers={"authorization": "Bearer test-decision-key", "x-fake-reply": reply, "x-fake-chunks": "4"})
    assert answer.status == 200 and answer.headers["x-proxilion-decision"] == "allow"
    assert answer.trailers == {"x-proxilion-decision": decision}
    assert b"x-proxilion-decision" not in answer.body
    if "bedrock" in path:
        frames = list(eventstream.split_frames(bytearray(answer.body)))
        assert frames[-1][0][":message-type"] == "exception"


def test_a_whole_answer_announces_no_trailer(harness):
    answer = _chat(harness, f"card {CARD}")
    assert "trailer" not in answer.headers and answer.trailers == {}


def test_an_http_1_0_client_gets_no_trailer(harness):
    client = harness.connect()
    body = b'{"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
    client.send(b"POST /proxy/openai/v1/chat/completions HTTP/1.0\r\nHost: proxilion.test\r\n"
                b"Authorization: Bearer sk-test-decision\r\nx-fake-reply: card %s and more\r\nx-fake-chunks: 4\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (CARD.encode(), len(body), body))
    harness.advance(5)
    head, _, rest = client.received.partition(b"\r\n\r\n")
    assert b"chunked" not in head.lower() and b"trailer" not in head.lower()
    assert rest.endswith(b": x-proxilion-decision: redact\n\n") and client.closed

