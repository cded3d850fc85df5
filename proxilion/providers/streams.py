"""Where each provider's stream events carry answer text, and which events end a text.

A slot is (channel, path): the channel names one growing text (a choice, a
content block, a tool call's arguments), the path where this event holds its
next piece. Texts are redacted across events of one channel, so a value
split over two events is still seen whole.
"""

from __future__ import annotations

from typing import Any

from proxilion.providers.errors import wire_dialect

ALL = "all"

# A slot: (channel key, JSON path of the text that grows in it); an end: a channel index or ALL.
Slot = tuple[tuple[Any, ...], tuple[str | int, ...]]
Slots = tuple[list[Slot], list[Any]]


def stream_format(provider: str, path: str) -> str:
    """The stream dialect: openai, anthropic, gemini, cohere (v2 SSE), cohere_v1 (NDJSON), bedrock."""
    if wire_dialect(provider, path) == "openai":
        return "openai"
    if provider == "bedrock":
        return "bedrock"
    if provider == "cohere":
        return "cohere_v1" if path.startswith("/v1/") or path in ("/chat", "/generate") else "cohere"
    if provider in ("anthropic", "gemini"):
        return provider
    return "openai"


# The paths of the first choices' content, built once rather than per event.
_OPENAI_CONTENT = tuple(("choices", i, "delta", "content") for i in range(8))


# Responses API (/v1/responses) events whose "delta" is the next piece of a growing text.
_RESPONSES_DELTAS = {
    "response.output_text.delta": "text",
    "response.refusal.delta": "refusal",
    "response.function_call_arguments.delta": "arguments",
    "response.custom_tool_call_input.delta": "tool_input",
    "response.reasoning_text.delta": "reasoning",
    "response.reasoning_summary_text.delta": "summary",
    "response.code_interpreter_call_code.delta": "code",
    "response.audio.transcript.delta": "transcript",
    "response.mcp_call_arguments.delta": "mcp_arguments",
}
_RESPONSES_ENDS = frozenset({"response.completed", "response.failed", "response.incomplete", "error"})


def _responses(kind: str, doc: dict[str, Any]) -> Slots:
    """A Responses API event: deltas grow a text per output item and part; done events end them.

    Events that repeat a whole text (output_text.done, content_part.done,
    output_item.done, completed) have no slot, so they are scanned whole.
    """
    output = doc.get("output_index", 0)
    name = _RESPONSES_DELTAS.get(kind)
    if name is not None:
        if isinstance(doc.get("delta"), str):
            part = doc.get("content_index", doc.get("summary_index", 0))
            return [((output, part, name), ("delta",))], []
        return [], []
    if kind in _RESPONSES_ENDS:
        return [], [ALL]
    if kind.endswith(".done"):
        return [], [output]
    return [], []


# Reasoning text some OpenAI-compatible servers stream beside the content: DeepSeek and vLLM
# (reasoning_content), OpenRouter, Groq and Ollama (reasoning).
_OPENAI_REASONING = ("reasoning_content", "reasoning")


def _openai_extra(index: Any, i: int, delta: dict[str, Any], slots: list[Slot]) -> None:
    """The texts of a chat delta other than its content and refusal: reasoning, the audio transcript."""
    for field in _OPENAI_REASONING:
        if isinstance(delta.get(field), str):
            slots.append(((index, field), ("choices", i, "delta", field)))
    details = delta.get("reasoning_details")
    if isinstance(details, list):
        # OpenRouter: reasoning.text and reasoning.summary pieces (reasoning.encrypted data is not text).
        for k, detail in enumerate(details):
            if isinstance(detail, dict):
                for field in ("text", "summary"):
                    if isinstance(detail.get(field), str):
                        slots.append(((index, "reasoning_details", detail.get("index", k), field),
                                      ("choices", i, "delta", "reasoning_details", k, field)))
    audio = delta.get("audio")
    # Audio output: the transcript grows in pieces; data (base64 audio), id and expires_at are not text.
    if isinstance(audio, dict) and isinstance(audio.get("transcript"), str):
        slots.append(((index, "audio"), ("choices", i, "delta", "audio", "transcript")))


def _openai(doc: dict[str, Any]) -> Slots:
    kind = doc.get("type")
    if isinstance(kind, str) and (kind.startswith("response.") or kind == "error"):
        return _responses(kind, doc)
    slots: list[Slot] = []
    ends: list[Any] = []
    for i, choice in enumerate(doc.get("choices") or ()):
        if not isinstance(choice, dict):
            continue
        index = choice.get("index", i)
        delta = choice.get("delta")
        if isinstance(delta, dict):
            if isinstance(delta.get("content"), str):
                slots.append(((index, "content"), _OPENAI_CONTENT[i] if i < 8 else ("choices", i, "delta", "content")))
            if isinstance(delta.get("refusal"), str):
                slots.append(((index, "refusal"), ("choices", i, "delta", "refusal")))
            if len(delta) > 1 or "content" not in delta:
                _openai_extra(index, i, delta, slots)
            legacy = delta.get("function_call")
            if isinstance(legacy, dict) and isinstance(legacy.get("arguments"), str):
                # The deprecated functions API streams one call's arguments per choice.
                slots.append(((index, "function_call"), ("choices", i, "delta", "function_call", "arguments")))
            for k, call in enumerate(delta.get("tool_calls") or ()):
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    slots.append(((index, "tool", call.get("index", k)),
                                  ("choices", i, "delta", "tool_calls", k, "function", "arguments")))
        elif isinstance(choice.get("text"), str):
            slots.append(((index, "text"), ("choices", i, "text")))
        if choice.get("finish_reason") is not None:
            ends.append(index)
    if isinstance(doc.get("error"), dict):
        ends.append(ALL)
    return slots, ends


def _anthropic(event: str | None, doc: dict[str, Any]) -> Slots:
    kind = doc.get("type", event)
    index = doc.get("index", 0)
    if kind == "content_block_delta":
        delta = doc.get("delta") or {}
        for field in ("text", "partial_json", "thinking"):
            if isinstance(delta.get(field), str):
                return [((index, field), ("delta", field))], []
        return [], []
    if kind == "content_block_start":
        block = doc.get("content_block") or {}
        if isinstance(block.get("text"), str):
            return [((index, "text"), ("content_block", "text"))], []
        return [], []
    if kind == "content_block_stop":
        return [], [index]
    if kind in ("message_delta", "message_stop", "error"):
        return [], [ALL]
    return [], []


# Keys of a Gemini part that holds only (growing) text.
_GEMINI_TEXT_PART = frozenset({"text", "thought", "thoughtSignature"})


def _gemini(doc: dict[str, Any]) -> Slots:
    slots: list[Slot] = []
    ends: list[Any] = []
    for i, candidate in enumerate(doc.get("candidates") or ()):
        if not isinstance(candidate, dict):
            continue
        index = candidate.get("index", i)
        parts = (candidate.get("content") or {}).get("parts") or ()
        for j, part in enumerate(parts):
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str) and part.keys() <= _GEMINI_TEXT_PART:
                kind = "thought" if part.get("thought") else "text"
                slots.append(((index, kind), ("candidates", i, "content", "parts", j, "text")))
        if candidate.get("finishReason"):
            ends.append(index)
    if isinstance(doc.get("error"), dict):
        ends.append(ALL)
    # A function call (or code) beside the text is scanned with the event's other strings.
    return slots, ends


def _cohere(event: str | None, doc: dict[str, Any]) -> Slots:
    kind = doc.get("type", event)
    index = doc.get("index", 0)
    message = ((doc.get("delta") or {}).get("message") or {}) if isinstance(doc.get("delta"), dict) else {}
    if kind == "content-delta":
        content = message.get("content") or {}
        if isinstance(content, dict):
            # Reasoning models stream their thinking as content deltas too.
            return [((index, field), ("delta", "message", "content", field))
                    for field in ("text", "thinking") if isinstance(content.get(field), str)], []
    elif kind == "tool-plan-delta" and isinstance(message.get("tool_plan"), str):
        return [(("plan", 0), ("delta", "message", "tool_plan"))], []
    elif kind == "tool-call-delta":
        function = ((message.get("tool_calls") or {}).get("function") or {})
        if isinstance(function.get("arguments"), str):
            return [((index, "tool"), ("delta", "message", "tool_calls", "function", "arguments"))], []
    elif kind in ("content-end", "tool-call-end"):
        return [], [index]
    elif kind == "message-end":
        return [], [ALL]
    return [], []


def _cohere_v1(doc: dict[str, Any]) -> Slots:
    kind = doc.get("event_type")
    if kind == "text-generation" and isinstance(doc.get("text"), str):
        return [((0, "text"), ("text",))], []
    if kind == "tool-calls-chunk":
        # The tool plan grows in "text"; each call's JSON parameters grow in tool_call_delta.
        slots: list[Slot] = [(("plan", 0), ("text",))] if isinstance(doc.get("text"), str) else []
        call = doc.get("tool_call_delta")
        if isinstance(call, dict):
            for field in ("parameters", "text"):
                if isinstance(call.get(field), str):
                    slots.append(((call.get("index", 0), "tool", field), ("tool_call_delta", field)))
        return slots, []
    if kind == "stream-end" or doc.get("is_finished"):
        return [], [ALL]
    return [], []


def _bedrock_chunk(doc: dict[str, Any]) -> Slots:
    """A decoded InvokeModel stream chunk, in the native shape of the model family."""
    if "type" in doc:
        return _anthropic(None, doc)
    if isinstance(doc.get("outputText"), str):  # Amazon Titan
        ends: list[Any] = [ALL] if doc.get("completionReason") else []
        return [((doc.get("index", 0), "text"), ("outputText",))], ends
    if isinstance(doc.get("generation"), str):  # Meta Llama
        ends = [ALL] if doc.get("stop_reason") else []
        return [((0, "text"), ("generation",))], ends
    outputs = doc.get("outputs")
    if isinstance(outputs, list):  # Mistral
        slots: list[Slot] = []
        ends = []
        for i, out in enumerate(outputs):
            if isinstance(out, dict) and isinstance(out.get("text"), str):
                slots.append(((i, "text"), ("outputs", i, "text")))
                if out.get("stop_reason"):
                    ends.append(i)
        return slots, ends
    if "choices" in doc:
        return _openai(doc)
    if "event_type" in doc:  # Cohere Command R
        return _cohere_v1(doc)
    for name in doc:  # Amazon Nova: a Converse stream event under its name (beside invocation metrics)
        if name in _CONVERSE_EVENTS and isinstance(doc[name], dict):
            slots, ends = _bedrock_converse(name, doc[name])
            return [(channel, (name, *path)) for channel, path in slots], ends
    return [], []


_CONVERSE_EVENTS = frozenset({"messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop",
                              "messageStop", "metadata"})


def _bedrock_converse(event: str | None, doc: dict[str, Any]) -> Slots:
    index = doc.get("contentBlockIndex", 0)
    if event == "contentBlockDelta":
        delta = doc.get("delta") or {}
        if isinstance(delta.get("text"), str):
            return [((index, "text"), ("delta", "text"))], []
        tool = delta.get("toolUse") or {}
        if isinstance(tool.get("input"), str):
            return [((index, "tool"), ("delta", "toolUse", "input"))], []
        # Reasoning text grows like text; its signature and redactedContent (bytes) are not text.
        reasoning = delta.get("reasoningContent") or {}
        if isinstance(reasoning, dict) and isinstance(reasoning.get("text"), str):
            return [((index, "reasoning"), ("delta", "reasoningContent", "text"))], []
    elif event == "contentBlockStop":
        return [], [index]
    elif event in ("messageStop", "metadata"):
        return [], [ALL]
    return [], []


def text_slots(fmt: str, event: str | None, doc: Any) -> Slots:
    """(slots, ended channel indexes or ALL) for one parsed stream event."""
    if not isinstance(doc, dict):
        return [], []
    if fmt == "anthropic":
        return _anthropic(event, doc)
    if fmt == "gemini":
        return _gemini(doc)
    if fmt == "cohere":
        return _cohere(event, doc)
    if fmt == "cohere_v1":
        return _cohere_v1(doc)
    if fmt == "bedrock":
        return _bedrock_chunk(doc) if event == "chunk" else _bedrock_converse(event, doc)
    return _openai(doc)
