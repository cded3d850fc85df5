"""Gemini, Cohere and Bedrock wire formats, over raw HTTP."""

from __future__ import annotations

import json

from proxilion.fakeprovider.testing import call, sse_events

GEMINI = {"systemInstruction": {"parts": [{"text": "sys"}]},
          "contents": [{"role": "user", "parts": [{"text": "gemini says hi"}]}]}


def test_gemini_generate_content(fake_url: str) -> None:
    reply = call(fake_url, "POST", "/v1beta/models/gemini-2.0-flash:generateContent", GEMINI)
    body = reply.json()
    assert body["candidates"][0]["content"] == {"parts": [{"text": "gemini says hi"}],
                                                "role": "model"}
    assert body["candidates"][0]["finishReason"] == "STOP"
    usage = body["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]


def test_gemini_sse_stream(fake_url: str) -> None:
    reply = call(fake_url, "POST",
                 "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", GEMINI)
    assert reply.headers["content-type"].startswith("text/event-stream")
    frames = [json.loads(data) for event, data in sse_events(reply.body)]
    assert all(event is None for event, _ in sse_events(reply.body))
    texts = [f["candidates"][0]["content"]["parts"][0]["text"] for f in frames]
    assert "".join(texts) == "gemini says hi" and len(frames) == 4
    assert frames[-1]["candidates"][0]["finishReason"] == "STOP"
    assert len(reply.chunks) > 2


def test_gemini_json_array_stream(fake_url: str) -> None:
    reply = call(fake_url, "POST", "/v1/models/gemini-pro:streamGenerateContent", GEMINI)
    assert reply.headers["content-type"].startswith("application/json")
    frames = json.loads(reply.body)
    assert "".join(f["candidates"][0]["content"]["parts"][0]["text"] for f in frames) == \
        "gemini says hi"
    assert len(reply.chunks) > 2


def test_gemini_error_shape(fake_url: str) -> None:
    reply = call(fake_url, "POST", "/v1beta/models/g:generateContent", GEMINI,
                 headers={"x-fake-status": "429"})
    assert reply.status == 429
    assert reply.json()["error"] == {"code": 429, "message": "fake provider error 429",
                                     "status": "RESOURCE_EXHAUSTED"}


def test_cohere_v2_chat(fake_url: str) -> None:
    body = {"model": "command-r", "messages": [{"role": "user", "content": "cohere two"}]}
    done = call(fake_url, "POST", "/v2/chat", body).json()
    assert done["message"]["content"] == [{"type": "text", "text": "cohere two"}]
    assert done["finish_reason"] == "COMPLETE"

    events = sse_events(call(fake_url, "POST", "/v2/chat", {**body, "stream": True}).body)
    assert [e for e, _ in events] == ["message-start", "content-start", "content-delta",
                                      "content-delta", "content-end", "message-end"]
    assert all(event == json.loads(data)["type"] for event, data in events)
    deltas = [json.loads(d)["delta"]["message"]["content"]["text"]
              for e, d in events if e == "content-delta"]
    assert "".join(deltas) == "cohere two"


def test_cohere_v1_chat(fake_url: str) -> None:
    body = {"message": "cohere one", "chat_history": [{"role": "USER", "message": "old"}]}
    assert call(fake_url, "POST", "/v1/chat", body).json()["text"] == "cohere one"

    reply = call(fake_url, "POST", "/v1/chat", {**body, "stream": True})
    lines = [json.loads(line) for line in reply.body.splitlines()]
    assert [e["event_type"] for e in lines] == ["stream-start", "text-generation",
                                                "text-generation", "stream-end"]
    assert lines[-1]["is_finished"] is True and lines[-1]["finish_reason"] == "COMPLETE"
    assert call(fake_url, "POST", "/v1/chat", body,
                headers={"x-fake-status": "500"}).json() == {"message": "fake provider error 500"}


def test_bedrock_invoke_and_converse(fake_url: str) -> None:
    claude = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10,
              "messages": [{"role": "user", "content": "bedrock claude"}]}
    reply = call(fake_url, "POST", "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke",
                 claude).json()
    assert reply["type"] == "message" and reply["content"][0]["text"] == "bedrock claude"
    assert reply["model"] == "anthropic.claude-3-haiku-20240307-v1:0"

    titan = call(fake_url, "POST", "/model/amazon.titan-text-express-v1/invoke",
                 {"inputText": "titan text"}).json()
    assert titan["results"][0]["outputText"] == "titan text"

    converse = call(fake_url, "POST", "/model/m/converse",
                    {"messages": [{"role": "user", "content": [{"text": "converse me"}]}]}).json()
    assert converse["output"]["message"]["content"] == [{"text": "converse me"}]
    assert converse["stopReason"] == "end_turn" and converse["usage"]["totalTokens"] > 0

    throttled = call(fake_url, "POST", "/model/m/converse", {"messages": []},
                     headers={"x-fake-status": "429"})
    assert throttled.status == 429
    assert throttled.headers["x-amzn-errortype"] == "ThrottlingException"


def test_bedrock_streams_are_aws_event_streams(fake_url: str) -> None:
    from base64 import b64decode

    from proxilion.providers import eventstream

    reply = call(fake_url, "POST", "/model/m/converse-stream",
                 {"messages": [{"role": "user", "content": [{"text": "stream me now"}]}]})
    assert reply.headers["content-type"] == "application/vnd.amazon.eventstream"
    frames = eventstream.split_frames(bytearray(reply.body))
    kinds = [headers[":event-type"] for headers, _ in frames]
    assert kinds[0] == "messageStart" and kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    text = "".join(json.loads(p)["delta"]["text"] for h, p in frames if h[":event-type"] == "contentBlockDelta")
    assert text == "stream me now"
    assert len(reply.chunks) > 2

    claude = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10,
              "messages": [{"role": "user", "content": "invoke stream"}]}
    reply = call(fake_url, "POST", "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke-with-response-stream", claude)
    events = [json.loads(b64decode(json.loads(p)["bytes"])) for h, p in eventstream.split_frames(bytearray(reply.body))]
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    assert "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta") == "invoke stream"

    reply = call(fake_url, "POST", "/model/amazon.titan-text-express-v1/invoke-with-response-stream",
                 {"inputText": "titan streams"})
    chunks = [json.loads(b64decode(json.loads(p)["bytes"])) for h, p in eventstream.split_frames(bytearray(reply.body))]
    assert "".join(c["outputText"] for c in chunks) == "titan streams"
    assert chunks[-1]["completionReason"] == "FINISH"
