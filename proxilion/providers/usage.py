"""Token usage reported in a provider's (non-streaming) JSON answer."""

from __future__ import annotations

import json
from urllib.parse import unquote
from typing import Any

import orjson

__all__ = ["usage_of", "event_usage", "model_of"]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def usage_of(doc: Any) -> tuple[int | None, int | None]:
    """(input tokens, output tokens) from an answer of any supported provider, else (None, None)."""
    if not isinstance(doc, dict):
        return None, None
    usage = doc.get("usage")
    if isinstance(usage, dict):
        # OpenAI chat/completions/embeddings, Responses API, Anthropic, Bedrock Converse.
        tokens_in = _int(usage.get("prompt_tokens", usage.get("input_tokens", usage.get("inputTokens"))))
        tokens_out = _int(usage.get("completion_tokens", usage.get("output_tokens", usage.get("outputTokens"))))
        billed = usage.get("billed_units") if isinstance(usage.get("billed_units"), dict) else None
        if billed is not None and tokens_in is None:
            # Cohere v2.
            tokens_in, tokens_out = _int(billed.get("input_tokens")), _int(billed.get("output_tokens"))
        return tokens_in, tokens_out
    meta = doc.get("usageMetadata")
    if isinstance(meta, dict):
        return _int(meta.get("promptTokenCount")), _int(meta.get("candidatesTokenCount"))
    meta = doc.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("billed_units"), dict):
        billed = meta["billed_units"]
        return _int(billed.get("input_tokens")), _int(billed.get("output_tokens"))
    return None, None


def model_of(body: bytes | None, path: str) -> str | None:
    """The model a request asks for, from its JSON body or (Gemini, Bedrock, Azure) its path."""
    parsed = None
    if body and body.lstrip()[:1] == b"{":
        try:
            # Only "model" is read, so orjson's one difference (integers beyond 64 bits
            # become floats) cannot matter here; json decides what orjson refuses.
            parsed = orjson.loads(body)
        except ValueError:
            try:
                parsed = json.loads(body)
            except (ValueError, RecursionError):  # RecursionError: nested deeper than Python recurses
                parsed = None
    return model_from(parsed, path)


def model_from(parsed: Any, path: str) -> str | None:
    """L{model_of} for a body already parsed (None when it was not JSON)."""
    if isinstance(parsed, dict) and isinstance(model := parsed.get("model"), str):
        return model[:128]
    for marker in ("/models/", "/model/", "/deployments/"):
        if marker in path:
            name = unquote(path.split(marker, 1)[1].split("/", 1)[0])
            if marker == "/models/":
                # Gemini: models/<model>:<method>
                name = name.split(":", 1)[0]
            return name[:128] or None
    return None


def event_usage(doc: Any) -> tuple[int | None, int | None]:
    """Token usage carried by one event of a streamed answer, else (None, None).

    Streams report it in their last events, some in parts: Anthropic's message_start holds
    the input tokens (under "message"), its message_delta the output tokens; OpenAI's final
    chunk (stream_options.include_usage) and Bedrock Converse's metadata event hold "usage";
    Gemini repeats usageMetadata; Cohere v2's message-end holds it under "delta", v1's
    stream-end and the Responses API's response.completed under "response"; Bedrock
    invoke streams add amazon-bedrock-invocationMetrics.
    """
    if not isinstance(doc, dict):
        return None, None
    for key in ("message", "delta", "response"):
        inner = doc.get(key)
        if isinstance(inner, dict) and ("usage" in inner or "meta" in inner):
            return usage_of(inner)
    metrics = doc.get("amazon-bedrock-invocationMetrics")
    if isinstance(metrics, dict):
        return _int(metrics.get("inputTokenCount")), _int(metrics.get("outputTokenCount"))
    return usage_of(doc)
