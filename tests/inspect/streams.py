"""Builders of realistic provider streams and readers that put the answer text back together."""

from __future__ import annotations

import base64
import json

from proxilion.providers import eventstream


def _sse(doc, event=None, sep=b"\n\n"):
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(doc).encode() + sep


def openai(pieces):
    out = [_sse({"id": "c1", "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})]
    out += [_sse({"id": "c1", "object": "chat.completion.chunk",
                  "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}) for p in pieces]
    out += [_sse({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}), b"data: [DONE]\n\n"]
    return b"".join(out)


def responses(pieces):
    """The OpenAI Responses API: text deltas, then the whole text again in four closing events."""
    text = "".join(pieces)
    message = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "annotations": [], "text": text}]}
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}

    def event(kind, **fields):
        return _sse({"type": kind, **fields}, kind)

    out = [event("response.created", response={"id": "resp_1", "object": "response", "status": "in_progress", "output": []}),
           event("response.output_item.added", output_index=0, item=dict(message, content=[], status="in_progress")),
           event("response.content_part.added", part={"type": "output_text", "annotations": [], "text": ""}, **where)]
    out += [event("response.output_text.delta", delta=p, logprobs=[], **where) for p in pieces]
    out += [event("response.output_text.done", text=text, logprobs=[], **where),
            event("response.content_part.done", part=message["content"][0], **where),
            event("response.output_item.done", output_index=0, item=message),
            event("response.completed", response={"id": "resp_1", "object": "response", "status": "completed",
                                                  "output": [message]})]
    return b"".join(out)


def anthropic(pieces):
    out = [_sse({"type": "message_start", "message": {"id": "m", "role": "assistant", "content": []}}, "message_start"),
           _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                "content_block_start"),
           _sse({"type": "ping"}, "ping")]
    out += [_sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                 "content_block_delta") for p in pieces]
    out += [_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}, "message_delta"),
            _sse({"type": "message_stop"}, "message_stop")]
    return b"".join(out)


def gemini(pieces):
    out = [_sse({"candidates": [{"content": {"parts": [{"text": p}], "role": "model"}, "index": 0}]}, sep=b"\r\n\r\n")
           for p in pieces]
    out.append(_sse({"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP",
                                     "index": 0}], "usageMetadata": {"totalTokenCount": 9}}, sep=b"\r\n\r\n"))
    return b"".join(out)


def cohere(pieces):
    out = [_sse({"type": "message-start", "id": "x", "delta": {"message": {"role": "assistant"}}}, "message-start"),
           _sse({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
                "content-start")]
    out += [_sse({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": p}}}}, "content-delta")
            for p in pieces]
    out += [_sse({"type": "content-end", "index": 0}, "content-end"),
            _sse({"type": "message-end", "delta": {"finish_reason": "COMPLETE"}}, "message-end")]
    return b"".join(out)


def cohere_v1(pieces):
    lines = [{"is_finished": False, "event_type": "stream-start", "generation_id": "g"}]
    lines += [{"is_finished": False, "event_type": "text-generation", "text": p} for p in pieces]
    lines.append({"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE",
                  "response": {"text": "".join(pieces)}})
    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)


def bedrock(pieces):
    def chunk(doc):
        payload = json.dumps({"bytes": base64.b64encode(json.dumps(doc).encode()).decode()}).encode()
        return eventstream.encode({":event-type": "chunk", ":content-type": "application/json",
                                   ":message-type": "event"}, payload)
    out = [chunk({"type": "message_start", "message": {"role": "assistant", "content": []}})]
    out += [chunk({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})
            for p in pieces]
    out += [chunk({"type": "content_block_stop", "index": 0}), chunk({"type": "message_stop"})]
    return b"".join(out)


BUILDERS = {"openai": openai, "responses": responses, "anthropic": anthropic, "gemini": gemini, "cohere": cohere,
            "cohere_v1": cohere_v1, "bedrock": bedrock}
PATHS = {"openai": ("openai", "/v1/chat/completions"), "responses": ("openai", "/v1/responses"),
         "anthropic": ("anthropic", "/v1/messages"),
         "gemini": ("gemini", "/v1beta/models/gemini-1.5-pro:streamGenerateContent"),
         "cohere": ("cohere", "/v2/chat"), "cohere_v1": ("cohere", "/v1/chat"),
         "bedrock": ("bedrock", "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/invoke-with-response-stream")}


def _sse_docs(data: bytes):
    docs = []
    for frame in data.replace(b"\r\n", b"\n").split(b"\n\n"):
        for line in frame.split(b"\n"):
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                docs.append(json.loads(line[6:]))
    return docs


def text_of(fmt: str, data: bytes) -> str:
    """The answer text as an SDK would assemble it; raises if any frame is not valid."""
    if fmt == "openai":
        return "".join(d["choices"][0]["delta"].get("content") or "" for d in _sse_docs(data) if d.get("choices"))
    if fmt == "responses":
        docs = _sse_docs(data)
        text = "".join(d["delta"] for d in docs if d["type"] == "response.output_text.delta")
        # The closing events repeat the whole text: it must read the same as the deltas.
        closing = {d["type"]: d for d in docs}
        assert closing["response.output_text.done"]["text"] == text
        assert closing["response.content_part.done"]["part"]["text"] == text
        assert closing["response.output_item.done"]["item"]["content"][0]["text"] == text
        assert closing["response.completed"]["response"]["output"][0]["content"][0]["text"] == text
        return text
    if fmt == "anthropic":
        return "".join(d["delta"]["text"] for d in _sse_docs(data) if d["type"] == "content_block_delta")
    if fmt == "gemini":
        return "".join(p["text"] for d in _sse_docs(data) for p in d["candidates"][0]["content"]["parts"])
    if fmt == "cohere":
        return "".join(d["delta"]["message"]["content"]["text"] for d in _sse_docs(data) if d["type"] == "content-delta")
    if fmt == "cohere_v1":
        lines = [json.loads(x) for x in data.splitlines() if x.strip()]
        text = "".join(x["text"] for x in lines if x["event_type"] == "text-generation")
        assert lines[-1]["response"]["text"] == text
        return text
    buf = bytearray(data)
    docs = [json.loads(base64.b64decode(json.loads(p)["bytes"])) for _, p in eventstream.split_frames(buf)]
    assert not buf
    return "".join(d["delta"]["text"] for d in docs if d["type"] == "content_block_delta")
