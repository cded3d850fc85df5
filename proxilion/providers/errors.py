"""Error bodies shaped like each provider's own, so official SDKs raise their usual exceptions.

The proxy uses these for every answer it makes up itself (policy blocks, 403
unknown host, 413, 429, 502, 504). Messages are caller-supplied text and must
never contain inspected values.
"""

from __future__ import annotations

import json
import math
from typing import Any

from proxilion.providers import eventstream

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "requests",
}
# OpenAI marks rate limiting with a code as well as a type.
_OPENAI_CODES = {429: "rate_limit_exceeded"}

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
    503: "overloaded_error",
}

_GEMINI_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# botocore picks the exception class from x-amzn-ErrorType, not from the status.
_BEDROCK_TYPES = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    413: "ValidationException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    502: "InternalServerException",
    503: "ServiceUnavailableException",
    504: "ModelTimeoutException",
}


# After the provider answered, a refusal must not invite a retry: each retry is another billable call.
# No official SDK retries these (openai, anthropic and cohere retry 408, 409, 429 and 5xx; google-genai
# 408, 429 and 5xx; botocore 5xx and its throttling and timeout error types).
ANSWER_BLOCKED = 403
ANSWER_UNINSPECTABLE = 422


def refusal_headers(provider: str, status: int) -> tuple[tuple[str, str], ...]:
    """Headers of an error answer that replaces a provider's answer: its shape's, and "do not retry"
    (x-should-retry, which the OpenAI and Anthropic SDKs obey before their status rules)."""
    return tuple(error_headers(provider, status).items()) + (("x-should-retry", "false"),)


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def openai_error_type(status: int) -> str:
    if status >= 500:
        return "server_error"
    return _OPENAI_TYPES.get(status, "invalid_request_error")


def anthropic_error_type(status: int) -> str:
    if status >= 500:
        return _ANTHROPIC_TYPES.get(status, "api_error")
    return _ANTHROPIC_TYPES.get(status, "invalid_request_error")


def gemini_status(status: int) -> str:
    if status in _GEMINI_STATUSES:
        return _GEMINI_STATUSES[status]
    return "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"


def bedrock_error_type(status: int) -> str:
    if status in _BEDROCK_TYPES:
        return _BEDROCK_TYPES[status]
    return "InternalServerException" if status >= 500 else "ValidationException"


def bedrock_stream_exception(status: int) -> str:
    """The exception member of Bedrock's stream unions (ConverseStream, InvokeModelWithResponseStream).

    In a stream, ":exception-type" names a member of the union, in lower camel
    case; the SDKs find the error by that name, and an answer stopped part-way
    by the policy is what modelStreamErrorException reports.
    """
    if status == 429:
        return "throttlingException"
    if status == 503:
        return "serviceUnavailableException"
    return "internalServerException" if status >= 500 else "modelStreamErrorException"


def _openai_payload(status: int, message: str, code: str | None) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": openai_error_type(status),
            "param": None,
            "code": code if code is not None else _OPENAI_CODES.get(status),
        }
    }


def _anthropic_payload(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": anthropic_error_type(status), "message": message}}


def _gemini_payload(status: int, message: str, retry_after: float | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message, "status": gemini_status(status)}
    if status == 429 and retry_after is not None:
        # google.rpc.RetryInfo is where Google's clients look for the delay (a protobuf Duration, "12s").
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                             "retryDelay": f"{max(1, math.ceil(retry_after - 1e-9))}s"}]
    return {"error": error}


def wire_dialect(provider: str, path: str) -> str:
    """Whose wire format a request speaks: a provider's OpenAI-compatible endpoint (Gemini's
    /v1beta/openai/..., Anthropic's /v1/chat/completions, Cohere's /compatibility/...,
    Bedrock's /openai/...) speaks OpenAI's, streams and errors included."""
    if provider not in ("openai", "azure") and (path.endswith(("/chat/completions", "/completions", "/embeddings"))
                                                or "/openai/" in path or path.startswith("/compatibility/")):
        return "openai"
    return provider


def error_body(provider: str, status: int, message: str, code: str | None = None, *,
               retry_after: float | None = None) -> bytes:
    """The JSON body of an error response in `provider`'s shape (unknown -> OpenAI shape).

    C{retry_after} (seconds, for a 429) goes where the provider's own body
    carries it, which only Gemini's does; the others read headers.
    """
    if provider == "anthropic":
        return _dumps(_anthropic_payload(status, message))
    if provider == "gemini":
        return _dumps(_gemini_payload(status, message, retry_after))
    if provider in ("cohere", "bedrock"):
        return _dumps({"message": message})
    return _dumps(_openai_payload(status, message, code))


def error_headers(provider: str, status: int) -> dict[str, str]:
    """Headers to send with `error_body` (content type, and the AWS error type for Bedrock)."""
    headers = {"Content-Type": "application/json"}
    if provider == "bedrock":
        headers["x-amzn-ErrorType"] = bedrock_error_type(status)
    return headers


def stream_error_event(
    provider: str, message: str, status: int = 400, *, cohere_v1: bool = False
) -> bytes:
    """One stream frame that makes the provider's SDK stop with an API error.

    Used to end an SSE answer the policy blocked mid-way. Cohere's v1 chat stream
    is newline-delimited JSON rather than SSE, hence `cohere_v1`; Bedrock streams
    use AWS event-stream frames.
    """
    if provider == "anthropic":
        return b"event: error\ndata: " + _dumps(_anthropic_payload(status, message)) + b"\n\n"
    if provider == "gemini":
        return b"data: " + _dumps(_gemini_payload(status, message)) + b"\n\n"
    if provider == "cohere":
        if cohere_v1:
            return _dumps({"is_finished": True, "event_type": "stream-end",
                           "finish_reason": "ERROR", "error": message}) + b"\n"
        return (b"event: message-end\ndata: "
                + _dumps({"type": "message-end",
                          "delta": {"finish_reason": "ERROR", "error": message}})
                + b"\n\n")
    if provider == "bedrock":
        return eventstream.encode(
            {":message-type": "exception", ":exception-type": bedrock_stream_exception(status),
             ":content-type": "application/json"},
            _dumps({"message": message}),
        )
    return b"data: " + _dumps(_openai_payload(status, message, None)) + b"\n\n"
