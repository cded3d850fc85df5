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
        return "".join(p.get("text", "") for d in _sse_docs(data) for p in d["candidates"][0]["content"]["parts"])
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


# -- One streamed text field per builder: each puts the pieces in one field, beside what a real stream sends. ----
# FIELDS[name] = (builder, reader, (provider, path)); the reader returns the field's text put back together
# and every event's shape (its keys and value types) so a test can see the redacted stream kept it.

def _shape(doc):
    if isinstance(doc, dict):
        return {k: _shape(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_shape(v) for v in doc]
    return type(doc).__name__


def _chunk(doc):
    """A Bedrock InvokeModel stream chunk holding a native model event."""
    payload = json.dumps({"bytes": base64.b64encode(json.dumps(doc).encode()).decode()}).encode()
    return eventstream.encode({":event-type": "chunk", ":content-type": "application/json",
                               ":message-type": "event"}, payload)


def _converse(event, doc):
    """A Bedrock ConverseStream event."""
    return eventstream.encode({":event-type": event, ":content-type": "application/json",
                               ":message-type": "event"}, json.dumps(doc).encode())


def _docs(framing, data: bytes):
    """The events' JSON documents; raises if any frame is not valid."""
    if framing == "sse":
        return _sse_docs(data)
    if framing == "ndjson":
        return [json.loads(x) for x in data.splitlines() if x.strip()]
    buf = bytearray(data)
    frames = eventstream.split_frames(buf)
    assert not buf
    if framing == "chunk":
        return [json.loads(base64.b64decode(json.loads(p)["bytes"])) for _, p in frames]
    return [dict(json.loads(p), event=h[":event-type"]) for h, p in frames]


def _field(framing, opening, delta, closing, get):
    """A builder and reader from the opening and closing events, the event of one piece and the field's getter."""
    frame = {"sse": lambda d: _sse(d), "ndjson": lambda d: json.dumps(d).encode() + b"\n",
             "chunk": _chunk, "converse": lambda d: _converse(d.pop("event"), d)}[framing]

    def build(pieces):
        docs = [dict(d) for d in opening] + [delta(p) for p in pieces] + [dict(d) for d in closing]
        out = b"".join(frame(d) for d in docs)
        return out + b"data: [DONE]\n\n" if framing == "sse" and "choices" in str(opening) else out

    def read(data):
        docs = _docs(framing, data)
        return "".join(t for t in map(get, docs) if t is not None), [_shape(d) for d in docs]
    return build, read


def _chat_delta(fields):
    return {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": fields, "finish_reason": None}]}


_CHAT_OPEN = [_chat_delta({"role": "assistant", "content": ""})]
_CHAT_CLOSE = [{"id": "c1", "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]


def _chat_get(*path):
    def get(doc):
        value = doc["choices"][0]["delta"]
        for part in path:
            if not isinstance(value, (dict, list)) or (isinstance(value, dict) and part not in value):
                return None
            value = value[part]
        return value if isinstance(value, str) else None
    return get


CHAT = ("openai", "/v1/chat/completions")
AUDIO_BYTES = base64.b64encode(bytes(range(256)) * 3).decode()  # base64 audio: passes on untouched
FIELDS = {
    # OpenAI audio output: the transcript in pieces, base64 audio data beside it and in events of its own.
    "openai_audio_transcript": (*_field(
        "sse",
        [_chat_delta({"role": "assistant", "content": None, "refusal": None,
                      "audio": {"id": "audio_1", "transcript": "", "expires_at": 1730000000}})],
        lambda p: _chat_delta({"audio": {"transcript": p, "data": AUDIO_BYTES[:64]}}),
        [_chat_delta({"audio": {"data": AUDIO_BYTES}}), _chat_delta({"audio": {"id": "audio_1", "expires_at": 1730000000}})]
        + _CHAT_CLOSE,
        _chat_get("audio", "transcript")), CHAT),
    # DeepSeek / vLLM reasoning, OpenRouter reasoning and reasoning_details.
    "openai_reasoning_content": (*_field(
        "sse", _CHAT_OPEN, lambda p: _chat_delta({"content": None, "reasoning_content": p}), _CHAT_CLOSE,
        _chat_get("reasoning_content")), CHAT),
    "openai_reasoning": (*_field(
        "sse", _CHAT_OPEN, lambda p: _chat_delta({"role": "assistant", "content": "", "reasoning": p}), _CHAT_CLOSE,
        _chat_get("reasoning")), CHAT),
    "openai_reasoning_details": (*_field(
        "sse", _CHAT_OPEN,
        lambda p: _chat_delta({"content": "", "reasoning": p, "reasoning_details": [
            {"type": "reasoning.text", "text": p, "format": "unknown", "index": 0}]}),
        _CHAT_CLOSE, _chat_get("reasoning_details", 0, "text")), CHAT),
    "openai_refusal": (*_field(
        "sse", _CHAT_OPEN, lambda p: _chat_delta({"refusal": p}), _CHAT_CLOSE, _chat_get("refusal")), CHAT),
    "responses_mcp_call_arguments": (*_field(
        "sse",
        [{"type": "response.output_item.added", "output_index": 0,
          "item": {"id": "mcp_1", "type": "mcp_call", "name": "pay", "server_label": "s", "arguments": ""}}],
        lambda p: {"type": "response.mcp_call_arguments.delta", "output_index": 0, "item_id": "mcp_1", "delta": p},
        [{"type": "response.completed", "response": {"id": "resp_1", "status": "completed"}}],
        lambda d: d.get("delta")), ("openai", "/v1/responses")),
    # Bedrock ConverseStream: reasoning text, then its signature; tool input.
    "bedrock_converse_reasoning": (*_field(
        "converse",
        [{"event": "messageStart", "role": "assistant"}],
        lambda p: {"event": "contentBlockDelta", "contentBlockIndex": 0, "delta": {"reasoningContent": {"text": p}},
                   "p": "abcd"},
        [{"event": "contentBlockDelta", "contentBlockIndex": 0,
          "delta": {"reasoningContent": {"signature": "ErcBCkgIBBABGAIiQFm0"}}},
         {"event": "contentBlockStop", "contentBlockIndex": 0},
         {"event": "messageStop", "stopReason": "end_turn"}],
        lambda d: (d.get("delta") or {}).get("reasoningContent", {}).get("text")),
        ("bedrock", "/model/anthropic.claude-3-7-sonnet-20250219-v1:0/converse-stream")),
    "bedrock_converse_tool_input": (*_field(
        "converse",
        [{"event": "messageStart", "role": "assistant"},
         {"event": "contentBlockStart", "contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t1", "name": "pay"}}}],
        lambda p: {"event": "contentBlockDelta", "contentBlockIndex": 0, "delta": {"toolUse": {"input": p}}},
        [{"event": "contentBlockStop", "contentBlockIndex": 0}, {"event": "messageStop", "stopReason": "tool_use"}],
        lambda d: (d.get("delta") or {}).get("toolUse", {}).get("input")),
        ("bedrock", "/model/amazon.nova-pro-v1:0/converse-stream")),
    # Bedrock InvokeModel streams of Amazon Nova (Converse events by name) and Cohere Command R (v1 events).
    "bedrock_nova": (*_field(
        "chunk",
        [{"messageStart": {"role": "assistant"}}],
        lambda p: {"contentBlockDelta": {"delta": {"text": p}, "contentBlockIndex": 0}},
        [{"contentBlockStop": {"contentBlockIndex": 0}}, {"messageStop": {"stopReason": "end_turn"}},
         {"metadata": {"usage": {"inputTokens": 5, "outputTokens": 9}},
          "amazon-bedrock-invocationMetrics": {"inputTokenCount": 5, "outputTokenCount": 9}}],
        lambda d: (d.get("contentBlockDelta") or {}).get("delta", {}).get("text")),
        ("bedrock", "/model/amazon.nova-pro-v1:0/invoke-with-response-stream")),
    "bedrock_cohere": (*_field(
        "chunk",
        [{"is_finished": False, "event_type": "stream-start", "generation_id": "g"}],
        lambda p: {"is_finished": False, "event_type": "text-generation", "text": p},
        [{"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE"}],
        lambda d: d.get("text") if d["event_type"] == "text-generation" else None),
        ("bedrock", "/model/cohere.command-r-plus-v1:0/invoke-with-response-stream")),
    # Cohere v1 (NDJSON) tool calls: the tool plan in "text", the parameters' JSON in tool_call_delta.
    "cohere_v1_tool_plan": (*_field(
        "ndjson",
        [{"is_finished": False, "event_type": "stream-start", "generation_id": "g"}],
        lambda p: {"is_finished": False, "event_type": "tool-calls-chunk", "text": p},
        [{"is_finished": False, "event_type": "tool-calls-chunk", "tool_call_delta": {"index": 0, "name": "pay"}},
         {"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE"}],
        lambda d: d.get("text") if d["event_type"] == "tool-calls-chunk" else None), ("cohere", "/v1/chat")),
    "cohere_v1_tool_parameters": (*_field(
        "ndjson",
        [{"is_finished": False, "event_type": "stream-start", "generation_id": "g"},
         {"is_finished": False, "event_type": "tool-calls-chunk", "tool_call_delta": {"index": 0, "name": "pay"}}],
        lambda p: {"is_finished": False, "event_type": "tool-calls-chunk",
                   "tool_call_delta": {"index": 0, "parameters": p}},
        [{"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE"}],
        lambda d: (d.get("tool_call_delta") or {}).get("parameters")), ("cohere", "/v1/chat")),
    # Cohere v2: thinking content, the tool plan and tool-call arguments.
    "cohere_thinking": (*_field(
        "sse",
        [{"type": "message-start", "id": "x", "delta": {"message": {"role": "assistant"}}},
         {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "thinking", "thinking": ""}}}}],
        lambda p: {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"thinking": p}}}},
        [{"type": "content-end", "index": 0}, {"type": "message-end", "delta": {"finish_reason": "COMPLETE"}}],
        lambda d: d["delta"]["message"]["content"]["thinking"] if d["type"] == "content-delta" else None),
        ("cohere", "/v2/chat")),
    "cohere_tool_plan": (*_field(
        "sse",
        [{"type": "message-start", "id": "x", "delta": {"message": {"role": "assistant"}}}],
        lambda p: {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": p}}},
        [{"type": "message-end", "delta": {"finish_reason": "TOOL_CALL"}}],
        lambda d: d["delta"]["message"]["tool_plan"] if d["type"] == "tool-plan-delta" else None),
        ("cohere", "/v2/chat")),
    "cohere_tool_arguments": (*_field(
        "sse",
        [{"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
            "id": "t1", "type": "function", "function": {"name": "pay", "arguments": ""}}}}}],
        lambda p: {"type": "tool-call-delta", "index": 0,
                   "delta": {"message": {"tool_calls": {"function": {"arguments": p}}}}},
        [{"type": "tool-call-end", "index": 0}, {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL"}}],
        lambda d: d["delta"]["message"]["tool_calls"]["function"]["arguments"]
        if d["type"] == "tool-call-delta" else None), ("cohere", "/v2/chat")),
    # Anthropic thinking and tool input (input_json_delta).
    "anthropic_thinking": (*_field(
        "sse",
        [{"type": "message_start", "message": {"id": "m", "role": "assistant", "content": []}},
         {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}],
        lambda p: {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": p}},
        [{"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}},
         {"type": "content_block_stop", "index": 0}, {"type": "message_stop"}],
        lambda d: d["delta"].get("thinking") if d["type"] == "content_block_delta" else None),
        ("anthropic", "/v1/messages")),
    "anthropic_input_json": (*_field(
        "sse",
        [{"type": "content_block_start", "index": 1,
          "content_block": {"type": "tool_use", "id": "t1", "name": "pay", "input": {}}}],
        lambda p: {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": p}},
        [{"type": "content_block_stop", "index": 1}, {"type": "message_stop"}],
        lambda d: d["delta"].get("partial_json") if d["type"] == "content_block_delta" else None),
        ("anthropic", "/v1/messages")),
    # Gemini thought parts.
    "gemini_thought": (*_field(
        "sse", [],
        lambda p: {"candidates": [{"content": {"parts": [{"text": p, "thought": True}], "role": "model"}, "index": 0}]},
        [{"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP", "index": 0}]}],
        lambda d: d["candidates"][0]["content"]["parts"][0]["text"]),
        ("gemini", "/v1beta/models/gemini-2.5-pro:streamGenerateContent")),
}
