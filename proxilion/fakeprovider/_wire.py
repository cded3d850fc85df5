"""The providers' wire formats, as the fake provider speaks them (pure: no Twisted, no I/O).

Each API is a `Dialect`: it finds the conversation in a request body, builds the
non-streaming reply, builds a `Stream` (head frames, one frame per text delta,
tail frames) and shapes errors. Bodies follow what the real services send
closely enough that the official SDKs parse them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct

import attrs

from proxilion.providers import eventstream

Json = dict


def dumps(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def tokens(text: str) -> int:
    """A token count of the usual order of magnitude (about four characters a token)."""
    return (len(text) + 3) // 4


_PIECES = re.compile(r"\S+\s*|\s+")


def split_text(text: str, chunks: int | None) -> list[str]:
    """Word by word, or into `chunks` nearly equal pieces; joined, they give `text` back."""
    if chunks is None:
        return _PIECES.findall(text)
    count = max(1, min(chunks, len(text)))
    bounds = [round(i * len(text) / count) for i in range(count + 1)]
    return [text[bounds[i]:bounds[i + 1]] for i in range(count)]


@attrs.frozen
class Exchange:
    """What a dialect needs besides the body: identifiers and facts from the URL and clock."""

    ident: str
    created: int
    model: str
    prompt_tokens: int
    include_usage: bool = False


def _content_text(content: object) -> str:
    """Text of a string-or-parts message content (OpenAI, Anthropic, Cohere v2, Responses)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"] for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _messages(body: Json, key: str = "messages") -> list[tuple[str, str]]:
    return [
        (str(m.get("role", "user")), _content_text(m.get("content")))
        for m in body.get(key) or () if isinstance(m, dict)
    ]


def last_user_text(conversation: list[tuple[str, str]]) -> str:
    for role, text in reversed(conversation):
        if role.lower() in ("user", "human"):
            return text
    return conversation[-1][1] if conversation else ""


# --- error shapes -------------------------------------------------------------

_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error",
                       403: "permission_error", 404: "invalid_request_error",
                       429: "requests"}
_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                          403: "permission_error", 404: "not_found_error",
                          413: "request_too_large", 429: "rate_limit_error",
                          500: "api_error", 529: "overloaded_error"}
_GEMINI_STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                    404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                    503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_BEDROCK_TYPES = {400: "ValidationException", 403: "AccessDeniedException",
                  404: "ResourceNotFoundException", 408: "ModelTimeoutException",
                  429: "ThrottlingException", 503: "ServiceUnavailableException"}


def error_reply(family: str, status: int, message: str) -> tuple[bytes, dict[str, str]]:
    """Body and extra headers of an error as `family`'s service would send it."""
    if family == "anthropic":
        fallback = "api_error" if status >= 500 else "invalid_request_error"
        kind = _ANTHROPIC_ERROR_TYPES.get(status, fallback)
        return dumps({"type": "error", "error": {"type": kind, "message": message}}), {}
    if family == "gemini":
        fallback = "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"
        state = _GEMINI_STATUSES.get(status, fallback)
        return dumps({"error": {"code": status, "message": message, "status": state}}), {}
    if family == "cohere":
        return dumps({"message": message}), {}
    if family == "bedrock":
        fallback = "InternalServerException" if status >= 500 else "ValidationException"
        kind = _BEDROCK_TYPES.get(status, fallback)
        return dumps({"message": message}), {"x-amzn-ErrorType": kind}
    kind = ("server_error" if status >= 500
            else _OPENAI_ERROR_TYPES.get(status, "invalid_request_error"))
    code = "rate_limit_exceeded" if status == 429 else None
    return dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}), {}


# --- streams ------------------------------------------------------------------

class Stream:
    """One streamed answer: `head()`, then `delta(text)` per piece, then `tail()`.

    Instances keep the little state a stream needs (sequence numbers, output
    length) and are used once.
    """

    content_type = b"text/event-stream; charset=utf-8"

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex
        self.output_chars = 0

    def head(self) -> bytes:
        return b""

    def delta(self, text: str) -> bytes:
        self.output_chars += len(text)
        return self.frame(text)

    def frame(self, text: str) -> bytes:
        raise NotImplementedError

    def tail(self) -> bytes:
        return b""

    @property
    def output_tokens(self) -> int:
        return (self.output_chars + 3) // 4


def sse(data: object, event: str | None = None) -> bytes:
    line = b"data: " + dumps(data) + b"\n\n"
    return b"event: " + event.encode() + b"\n" + line if event else line


def _usage_openai(prompt: int, completion: int) -> Json:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


# --- OpenAI chat completions --------------------------------------------------

class OpenAIChat:

    def conversation(self, body: Json) -> list[tuple[str, str]]:
        return _messages(body)

    def reply(self, ex: Exchange, text: str) -> bytes:
        return dumps({
            "id": "chatcmpl-" + ex.ident, "object": "chat.completion", "created": ex.created,
            "model": ex.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text,
                                                 "refusal": None, "annotations": []},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": _usage_openai(ex.prompt_tokens, tokens(text)),
            "service_tier": "default", "system_fingerprint": "fp_fake",
        })

    def stream(self, ex: Exchange) -> Stream:
        return _OpenAIChatStream(ex)


class _OpenAIChatStream(Stream):
    def _chunk(self, delta: Json, finish: str | None) -> bytes:
        chunk = {"id": "chatcmpl-" + self.ex.ident, "object": "chat.completion.chunk",
                 "created": self.ex.created, "model": self.ex.model,
                 "service_tier": "default", "system_fingerprint": "fp_fake",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None,
                              "finish_reason": finish}]}
        if self.ex.include_usage:
            chunk["usage"] = None
        return sse(chunk)

    def head(self) -> bytes:
        return self._chunk({"role": "assistant", "content": "", "refusal": None}, None)

    def frame(self, text: str) -> bytes:
        return self._chunk({"content": text}, None)

    def tail(self) -> bytes:
        out = self._chunk({}, "stop")
        if self.ex.include_usage:
            out += sse({"id": "chatcmpl-" + self.ex.ident, "object": "chat.completion.chunk",
                        "created": self.ex.created, "model": self.ex.model,
                        "service_tier": "default", "system_fingerprint": "fp_fake",
                        "choices": [],
                        "usage": _usage_openai(self.ex.prompt_tokens, self.output_tokens)})
        return out + b"data: [DONE]\n\n"


# --- OpenAI legacy completions ------------------------------------------------

class OpenAICompletions:

    def conversation(self, body: Json) -> list[tuple[str, str]]:
        prompt = body.get("prompt", "")
        if isinstance(prompt, list):
            return [("user", p) for p in prompt if isinstance(p, str)]
        return [("user", prompt if isinstance(prompt, str) else "")]

    def reply(self, ex: Exchange, text: str) -> bytes:
        return dumps({
            "id": "cmpl-" + ex.ident, "object": "text_completion", "created": ex.created,
            "model": ex.model,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
            "usage": _usage_openai(ex.prompt_tokens, tokens(text)),
        })

    def stream(self, ex: Exchange) -> Stream:
        return _OpenAICompletionsStream(ex)


class _OpenAICompletionsStream(Stream):
    def _chunk(self, text: str, finish: str | None) -> bytes:
        return sse({"id": "cmpl-" + self.ex.ident, "object": "text_completion",
                    "created": self.ex.created, "model": self.ex.model,
                    "choices": [{"text": text, "index": 0, "logprobs": None,
                                 "finish_reason": finish}]})

    def frame(self, text: str) -> bytes:
        return self._chunk(text, None)

    def tail(self) -> bytes:
        return self._chunk("", "stop") + b"data: [DONE]\n\n"


# --- OpenAI embeddings --------------------------------------------------------

def embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic unit-ish vector derived from the text."""
    seed = hashlib.sha256(text.encode("utf-8")).digest()
    return [((seed[i % 32] + i * 7) % 255) / 127.0 - 1.0 for i in range(dimensions)]


def embeddings_reply(body: Json, model: str) -> bytes:
    raw = body.get("input", "")
    inputs = raw if isinstance(raw, list) else [raw]
    texts = [i if isinstance(i, str) else " ".join(map(str, i)) if isinstance(i, list) else ""
             for i in inputs]
    asked = body.get("dimensions")
    dims = asked if isinstance(asked, int) else 1536
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = embedding(text, dims)
        value: object = (base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode("ascii")
                         if as_base64 else vector)
        data.append({"object": "embedding", "index": index, "embedding": value})
    used = sum(tokens(t) for t in texts)
    return dumps({"object": "list", "data": data, "model": model,
                  "usage": {"prompt_tokens": used, "total_tokens": used}})


MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini", "text-embedding-3-small")


def model_object(model: str) -> Json:
    return {"id": model, "object": "model", "created": 1715367049, "owned_by": "system"}


def models_reply() -> bytes:
    return dumps({"object": "list", "data": [model_object(m) for m in MODELS]})


# --- OpenAI Responses ---------------------------------------------------------

class OpenAIResponses:

    def conversation(self, body: Json) -> list[tuple[str, str]]:
        turns = []
        if isinstance(body.get("instructions"), str):
            turns.append(("system", body["instructions"]))
        raw = body.get("input")
        if isinstance(raw, str):
            turns.append(("user", raw))
        elif isinstance(raw, list):
            turns.extend((str(item.get("role", "user")), _content_text(item.get("content")))
                         for item in raw if isinstance(item, dict))
        return turns

    def response(self, ex: Exchange, text: str | None) -> Json:
        """The response object; `text=None` gives the in-progress one of a stream's start."""
        output = [] if text is None else [self.message(ex, text, "completed")]
        out_tokens = 0 if text is None else tokens(text)
        return {
            "id": "resp_" + ex.ident, "object": "response", "created_at": ex.created,
            "status": "in_progress" if text is None else "completed",
            "background": False, "error": None, "incomplete_details": None,
            "instructions": None, "max_output_tokens": None, "model": ex.model,
            "output": output, "parallel_tool_calls": True, "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None}, "service_tier": "default",
            "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}},
            "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
            "usage": None if text is None else {
                "input_tokens": ex.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": out_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": ex.prompt_tokens + out_tokens,
            },
            "user": None, "metadata": {},
        }

    @staticmethod
    def message(ex: Exchange, text: str | None, status: str) -> Json:
        content = [] if text is None else [{"type": "output_text", "annotations": [],
                                            "logprobs": [], "text": text}]
        return {"id": "msg_" + ex.ident, "type": "message", "status": status,
                "content": content, "role": "assistant"}

    def reply(self, ex: Exchange, text: str) -> bytes:
        return dumps(self.response(ex, text))

    def stream(self, ex: Exchange) -> Stream:
        return _ResponsesStream(ex, self)


class _ResponsesStream(Stream):
    """The Responses event sequence; the closing events repeat the whole text, so it is kept."""

    def __init__(self, ex: Exchange, dialect: OpenAIResponses) -> None:
        super().__init__(ex)
        self._dialect = dialect
        self._sequence = 0
        self._parts: list[str] = []

    def _event(self, kind: str, **fields: object) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return sse(data, kind)

    def _where(self) -> Json:
        return {"item_id": "msg_" + self.ex.ident, "output_index": 0, "content_index": 0}

    def head(self) -> bytes:
        started = self._dialect.response(self.ex, None)
        return (self._event("response.created", response=started)
                + self._event("response.in_progress", response=started)
                + self._event("response.output_item.added", output_index=0,
                              item=self._dialect.message(self.ex, None, "in_progress"))
                + self._event("response.content_part.added", **self._where(),
                              part={"type": "output_text", "annotations": [], "logprobs": [],
                                    "text": ""}))

    def frame(self, text: str) -> bytes:
        self._parts.append(text)
        return self._event("response.output_text.delta", **self._where(), delta=text,
                           logprobs=[])

    def tail(self) -> bytes:
        text = "".join(self._parts)
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
        return (self._event("response.output_text.done", **self._where(), text=text,
                            logprobs=[])
                + self._event("response.content_part.done", **self._where(), part=part)
                + self._event("response.output_item.done", output_index=0,
                              item=self._dialect.message(self.ex, text, "completed"))
                + self._event("response.completed",
                              response=self._dialect.response(self.ex, text)))


# --- Anthropic messages (also Bedrock invoke with an Anthropic body) ----------

class AnthropicMessages:

    def conversation(self, body: Json) -> list[tuple[str, str]]:
        system = body.get("system")
        turns = [("system", _content_text(system))] if system else []
        return turns + _messages(body)

    @staticmethod
    def _usage(ex: Exchange, output: int) -> Json:
        return {"input_tokens": ex.prompt_tokens, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0, "output_tokens": output,
                "service_tier": "standard"}

    def message(self, ex: Exchange, text: str | None) -> Json:
        return {
            "id": "msg_" + ex.ident, "type": "message", "role": "assistant", "model": ex.model,
            "content": [] if text is None else [{"type": "text", "text": text}],
            "stop_reason": None if text is None else "end_turn", "stop_sequence": None,
            "usage": self._usage(ex, 1 if text is None else tokens(text)),
        }

    def reply(self, ex: Exchange, text: str) -> bytes:
        return dumps(self.message(ex, text))

    def stream(self, ex: Exchange) -> Stream:
        return _AnthropicStream(ex, self)


class _AnthropicStream(Stream):
    """Anthropic's stream events as SSE; subclasses frame the same events otherwise."""

    ping = True

    def __init__(self, ex: Exchange, dialect: AnthropicMessages) -> None:
        super().__init__(ex)
        self._dialect = dialect

    def encode(self, event: Json) -> bytes:
        return sse(event, event["type"])

    def head(self) -> bytes:
        events: list[Json] = [{"type": "message_start", "message": self._dialect.message(self.ex, None)},
                  {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}]
        if self.ping:
            events.append({"type": "ping"})
        return b"".join(map(self.encode, events))

    def frame(self, text: str) -> bytes:
        return self.encode({"type": "content_block_delta", "index": 0,
                            "delta": {"type": "text_delta", "text": text}})

    def closing(self) -> list[Json]:
        return [{"type": "content_block_stop", "index": 0},
                {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                 "usage": {"output_tokens": self.output_tokens}},
                {"type": "message_stop"}]

    def tail(self) -> bytes:
        return b"".join(map(self.encode, self.closing()))


# --- Gemini -------------------------------------------------------------------

class Gemini:

    def conversation(self, body: Json) -> list[tuple[str, str]]:
        turns = []
        system = body.get("systemInstruction") or body.get("system_instruction")
        if isinstance(system, dict):
            turns.append(("system", _content_text(system.get("parts"))))
        turns.extend((str(c.get("role", "user")), _content_text(c.get("parts")))
                     for c in body.get("contents") or () if isinstance(c, dict))
        return turns

    @staticmethod
    def chunk(ex: Exchange, text: str, output: int, final: bool) -> Json:
        candidate: Json = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        usage: Json = {"promptTokenCount": ex.prompt_tokens,
                       "totalTokenCount": ex.prompt_tokens + output}
        if final:
            candidate["finishReason"] = "STOP"
            usage = {"promptTokenCount": ex.prompt_tokens, "candidatesTokenCount": output,
                     "totalTokenCount": ex.prompt_tokens + output,
                     "promptTokensDetails": [{"modality": "TEXT",
                                              "tokenCount": ex.prompt_tokens}]}
        return {"candidates": [candidate], "usageMetadata": usage,
                "modelVersion": ex.model, "responseId": ex.ident}

    def reply(self, ex: Exchange, text: str) -> bytes:
        return dumps(self.chunk(ex, text, tokens(text), True))

    def stream(self, ex: Exchange) -> Stream:
        return _GeminiSSE(ex)

    def array_stream(self, ex: Exchange) -> Stream:
        return _GeminiArray(ex)


class _GeminiSSE(Stream):
    def frame(self, text: str) -> bytes:
        return sse(Gemini.chunk(self.ex, text, self.output_tokens, False))

    def tail(self) -> bytes:
        return sse(Gemini.chunk(self.ex, "", self.output_tokens, True))


class _GeminiArray(Stream):
    """Without alt=sse, Gemini streams one JSON array, element by element."""

    content_type = b"application/json; charset=UTF-8"

    def head(self) -> bytes:
        return b"["

    def frame(self, text: str) -> bytes:
        return dumps(Gemini.chunk(self.ex, text, self.output_tokens, False)) + b"\n,\r\n"

    def tail(self) -> bytes:
        return dumps(Gemini.chunk(self.ex, "", self.output_tokens, True)) + b"\n]"


# --- Cohere -------------------------------------------------------------------

def _cohere_usage(ex: Exchange, output: int) -> Json:
    counts = {"input_tokens": ex.prompt_tokens, "output_tokens": output}
    return {"billed_units": dict(counts), "tokens": counts}


class CohereV2:

    def conversation(self, body: Json) -> list[tuple[str, str]]:
        return _messages(body)

    def reply(self, ex: Exchange, text: str) -> bytes:
        return dumps({"id": ex.ident, "message": {"role": "assistant",
                                                  "content": [{"type": "text", "text": text}]},
                      "finish_reason": "COMPLETE", "usage": _cohere_usage(ex, tokens(text))})

    def stream(self, ex: Exchange) -> Stream:
        return _CohereV2Stream(ex)


class _CohereV2Stream(Stream):
    def head(self) -> bytes:
        return (sse({"id": self.ex.ident, "type": "message-start",
                     "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "",
                                           "tool_calls": [], "citations": []}}}, "message-start")
                + sse({"type": "content-start", "index": 0,
                       "delta": {"message": {"content": {"type": "text", "text": ""}}}},
                      "content-start"))

    def frame(self, text: str) -> bytes:
        return sse({"type": "content-delta", "index": 0,
                    "delta": {"message": {"content": {"text": text}}}}, "content-delta")

    def tail(self) -> bytes:
        return (sse({"type": "content-end", "index": 0}, "content-end")
                + sse({"type": "message-end",
                       "delta": {"finish_reason": "COMPLETE",
                                 "usage": _cohere_usage(self.ex, self.output_tokens)}},
                      "message-end"))


class CohereV1:

    def conversation(self, body: Json) -> list[tuple[str, str]]:
        turns = [("system", body["preamble"])] if isinstance(body.get("preamble"), str) else []
        turns.extend((str(h.get("role", "USER")), str(h.get("message", "")))
                     for h in body.get("chat_history") or () if isinstance(h, dict))
        message = body.get("message")
        return turns + [("USER", message if isinstance(message, str) else "")]

    @staticmethod
    def response(ex: Exchange, text: str) -> Json:
        return {"response_id": ex.ident, "text": text, "generation_id": "gen-" + ex.ident,
                "chat_history": [], "finish_reason": "COMPLETE",
                "meta": {"api_version": {"version": "1"}, **_cohere_usage(ex, tokens(text))}}

    def reply(self, ex: Exchange, text: str) -> bytes:
        return dumps(self.response(ex, text))

    def stream(self, ex: Exchange) -> Stream:
        return _CohereV1Stream(ex)


class _CohereV1Stream(Stream):
    """Cohere v1 streams newline-delimited JSON, not SSE."""

    content_type = b"application/stream+json"

    def head(self) -> bytes:
        return dumps({"is_finished": False, "event_type": "stream-start",
                      "generation_id": "gen-" + self.ex.ident}) + b"\n"

    def frame(self, text: str) -> bytes:
        return dumps({"is_finished": False, "event_type": "text-generation", "text": text}) + b"\n"

    def tail(self) -> bytes:
        response = CohereV1.response(self.ex, "")
        response["meta"] = {"api_version": {"version": "1"},
                            **_cohere_usage(self.ex, self.output_tokens)}
        return dumps({"is_finished": True, "event_type": "stream-end",
                      "finish_reason": "COMPLETE", "response": response}) + b"\n"


# --- Bedrock ------------------------------------------------------------------

class BedrockTitan:
    """InvokeModel with a Titan text body (`inputText`)."""

    def conversation(self, body: Json) -> list[tuple[str, str]]:
        return [("user", body["inputText"])]

    def reply(self, ex: Exchange, text: str) -> bytes:
        return dumps({"inputTextTokenCount": ex.prompt_tokens,
                      "results": [{"tokenCount": tokens(text), "outputText": text,
                                   "completionReason": "FINISH"}]})


def _event_frame(event_type: str, payload: Json) -> bytes:
    """One AWS event-stream frame, as Bedrock's streaming APIs send it."""
    return eventstream.encode(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        dumps(payload))


def _chunk_frame(event: Json) -> bytes:
    """An InvokeModelWithResponseStream chunk: the model's own event, base64 in "bytes"."""
    return _event_frame("chunk", {"bytes": base64.b64encode(dumps(event)).decode("ascii")})


class _EventStream(Stream):
    content_type = b"application/vnd.amazon.eventstream"


class _InvokeAnthropicStream(_AnthropicStream):
    """InvokeModelWithResponseStream for Claude: Anthropic's stream events, one per chunk, no ping."""

    content_type = _EventStream.content_type
    ping = False

    def __init__(self, ex: Exchange) -> None:
        super().__init__(ex, AnthropicMessages())

    def encode(self, event: Json) -> bytes:
        return _chunk_frame(event)

    def closing(self) -> list[Json]:
        events = super().closing()
        events[-1]["amazon-bedrock-invocationMetrics"] = {
            "inputTokenCount": self.ex.prompt_tokens, "outputTokenCount": self.output_tokens,
            "invocationLatency": 1, "firstByteLatency": 1}
        return events


class _InvokeTitanStream(_EventStream):
    def frame(self, text: str) -> bytes:
        return _chunk_frame({"outputText": text, "index": 0, "totalOutputTextTokenCount": None,
                             "completionReason": None, "inputTextTokenCount": self.ex.prompt_tokens})

    def tail(self) -> bytes:
        return _chunk_frame({"outputText": "", "index": 0, "totalOutputTextTokenCount": self.output_tokens,
                             "completionReason": "FINISH", "inputTextTokenCount": self.ex.prompt_tokens})


class _ConverseStream(_EventStream):
    def head(self) -> bytes:
        return _event_frame("messageStart", {"role": "assistant"})

    def frame(self, text: str) -> bytes:
        return _event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}})

    def tail(self) -> bytes:
        output = self.output_tokens
        return (_event_frame("contentBlockStop", {"contentBlockIndex": 0})
                + _event_frame("messageStop", {"stopReason": "end_turn"})
                + _event_frame("metadata", {
                    "usage": {"inputTokens": self.ex.prompt_tokens, "outputTokens": output,
                              "totalTokens": self.ex.prompt_tokens + output},
                    "metrics": {"latencyMs": 1}}))


def bedrock_invoke_dialect(body: Json) -> BedrockTitan | AnthropicMessages:
    """InvokeModel answers in the model family's own format: Titan or Anthropic."""
    return BedrockTitan() if isinstance(body.get("inputText"), str) else AnthropicMessages()


def bedrock_invoke_stream(body: Json, ex: Exchange) -> Stream:
    """InvokeModelWithResponseStream: the family's stream events in event-stream chunks."""
    return _InvokeTitanStream(ex) if isinstance(body.get("inputText"), str) else _InvokeAnthropicStream(ex)


class BedrockConverse:
    def conversation(self, body: Json) -> list[tuple[str, str]]:
        turns = [("system", _content_text(body["system"]))] if body.get("system") else []
        return turns + _messages(body)

    def reply(self, ex: Exchange, text: str) -> bytes:
        out = tokens(text)
        return dumps({"output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                      "stopReason": "end_turn",
                      "usage": {"inputTokens": ex.prompt_tokens, "outputTokens": out,
                                "totalTokens": ex.prompt_tokens + out},
                      "metrics": {"latencyMs": 1}})

    def stream(self, ex: Exchange) -> Stream:
        return _ConverseStream(ex)
