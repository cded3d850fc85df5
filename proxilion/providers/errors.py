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


def _ours(error: dict[str, Any], code: str | None, rule: str | None) -> dict[str, Any]:
    """C{error} with our code and the deciding rule's id, for shapes whose own fields hold neither:
    an app reads C{code == "blocked_by_policy"} the same way from every provider's error."""
    if code is not None:
        error["code"] = code
    if rule is not None:
        error["rule"] = rule
    return error


def _openai_payload(status: int, message: str, code: str | None, rule: str | None = None) -> dict[str, Any]:
    error = {
        "message": message,
        "type": openai_error_type(status),
        "param": None,
        "code": code if code is not None else _OPENAI_CODES.get(status),
    }
    return {"error": _ours(error, None, rule)}


def _anthropic_payload(status: int, message: str, code: str | None = None, rule: str | None = None) -> dict[str, Any]:
    return {"type": "error", "error": _ours({"type": anthropic_error_type(status), "message": message}, code, rule)}


def _gemini_payload(status: int, message: str, retry_after: float | None = None, code: str | None = None,
                    rule: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message, "status": gemini_status(status)}
    details: list[dict[str, Any]] = []
    if status == 429 and retry_after is not None:
        # google.rpc.RetryInfo is where Google's clients look for the delay (a protobuf Duration, "12s").
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": f"{max(1, math.ceil(retry_after - 1e-9))}s"})
    if code is not None:
        # google.rpc.ErrorInfo: Google's place for a machine-readable reason and its metadata.
        info: dict[str, Any] = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": code, "domain": "proxilion"}
        if rule is not None:
            info["metadata"] = {"rule": rule}
        details.append(info)
    if details:
        error["details"] = details
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
               retry_after: float | None = None, rule: str | None = None) -> bytes:
    """The JSON body of an error response in `provider`'s shape (unknown -> OpenAI shape).

    C{retry_after} (seconds, for a 429) goes where the provider's own body
    carries it, which only Gemini's does; the others read headers. C{code}
    (ours, such as "blocked_by_policy") and C{rule} (the deciding policy
    rule's id) go into every shape: OpenAI's C{code}, Gemini's ErrorInfo, and
    extra C{code}/C{rule} fields elsewhere, which the SDKs keep in the body.
    """
    if provider == "anthropic":
        return _dumps(_anthropic_payload(status, message, code, rule))
    if provider == "gemini":
        return _dumps(_gemini_payload(status, message, retry_after, code, rule))
    if provider in ("cohere", "bedrock"):
        return _dumps(_ours({"message": message}, code, rule))
    return _dumps(_openai_payload(status, message, code, rule))


def error_headers(provider: str, status: int) -> dict[str, str]:
    """Headers to send with `error_body` (content type, and the AWS error type for Bedrock)."""
    headers = {"Content-Type": "application/json"}
    if provider == "bedrock":
        headers["x-amzn-ErrorType"] = bedrock_error_type(status)
    return headers


def stream_error_event(
    provider: str, message: str, status: int = ANSWER_BLOCKED, *, code: str | None = None, rule: str | None = None,
    cohere_v1: bool = False
) -> bytes:
    """One stream frame that makes the provider's SDK stop with an API error.

    Used to end an SSE answer the policy blocked mid-way. Cohere's v1 chat stream
    is newline-delimited JSON rather than SSE, hence `cohere_v1`; Bedrock streams
    use AWS event-stream frames.
    """
    if provider == "anthropic":
        return b"event: error\ndata: " + _dumps(_anthropic_payload(status, message, code, rule)) + b"\n\n"
    if provider == "gemini":
        return b"data: " + _dumps(_gemini_payload(status, message, None, code, rule)) + b"\n\n"
    if provider == "cohere":
        if cohere_v1:
            return _dumps(_ours({"is_finished": True, "event_type": "stream-end",
                                 "finish_reason": "ERROR", "error": message}, code, rule)) + b"\n"
        return (b"event: message-end\ndata: "
                + _dumps({"type": "message-end",
                          "delta": _ours({"finish_reason": "ERROR", "error": message}, code, rule)})
                + b"\n\n")
    if provider == "bedrock":
        return eventstream.encode(
            {":message-type": "exception", ":exception-type": bedrock_stream_exception(status),
             ":content-type": "application/json"},
            _dumps(_ours({"message": message}, code, rule)),
        )
    return b"data: " + _dumps(_openai_payload(status, message, code, rule)) + b"\n\n"
