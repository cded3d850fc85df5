import json

import pytest

from proxilion.providers import eventstream
from proxilion.providers.errors import error_body, error_headers, stream_error_event


@pytest.mark.parametrize("provider", ["openai", "azure", "unknown"])
@pytest.mark.parametrize("status,etype,code", [
    (400, "invalid_request_error", None),
    (401, "authentication_error", None),
    (403, "permission_error", None),
    (404, "not_found_error", None),
    (413, "invalid_request_error", None),
    (429, "requests", "rate_limit_exceeded"),
    (502, "server_error", None),
    (504, "server_error", None),
])
def test_openai_shape(provider, status, etype, code):
    body = json.loads(error_body(provider, status, "blocked: 1 email"))
    assert body == {"error": {"message": "blocked: 1 email", "type": etype, "param": None, "code": code}}


def test_openai_explicit_code():
    body = json.loads(error_body("openai", 403, "m", code="policy_block"))
    assert body["error"]["code"] == "policy_block"


@pytest.mark.parametrize("status,etype", [
    (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
    (404, "not_found_error"), (413, "request_too_large"), (429, "rate_limit_error"),
    (500, "api_error"), (502, "api_error"), (529, "overloaded_error"),
])
def test_anthropic_shape(status, etype):
    body = json.loads(error_body("anthropic", status, "m"))
    assert body == {"type": "error", "error": {"type": etype, "message": "m"}}


@pytest.mark.parametrize("status,gstatus", [
    (400, "INVALID_ARGUMENT"), (403, "PERMISSION_DENIED"), (429, "RESOURCE_EXHAUSTED"),
    (503, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED"),
])
def test_gemini_shape(status, gstatus):
    body = json.loads(error_body("gemini", status, "m"))
    assert body == {"error": {"code": status, "message": "m", "status": gstatus}}


@pytest.mark.parametrize("provider", ["cohere", "bedrock"])
def test_message_shape(provider):
    assert json.loads(error_body(provider, 403, "m")) == {"message": "m"}


def test_bedrock_headers():
    assert error_headers("bedrock", 429)["x-amzn-ErrorType"] == "ThrottlingException"
    assert error_headers("bedrock", 403)["x-amzn-ErrorType"] == "AccessDeniedException"
    assert "x-amzn-ErrorType" not in error_headers("openai", 429)
    assert error_headers("openai", 429)["Content-Type"] == "application/json"


def _sse_data(frame: bytes) -> dict:
    lines = frame.decode().strip().split("\n")
    data = [ln[len("data: "):] for ln in lines if ln.startswith("data: ")]
    return json.loads(data[0])


def test_stream_error_events():
    assert _sse_data(stream_error_event("openai", "m"))["error"]["message"] == "m"
    anthropic = stream_error_event("anthropic", "m")
    assert anthropic.startswith(b"event: error\n") and anthropic.endswith(b"\n\n")
    assert _sse_data(anthropic)["type"] == "error"
    assert _sse_data(stream_error_event("gemini", "m"))["error"]["status"] == "PERMISSION_DENIED"
    assert _sse_data(stream_error_event("cohere", "m"))["delta"]["finish_reason"] == "ERROR"
    v1 = json.loads(stream_error_event("cohere", "m", cohere_v1=True))
    assert v1["event_type"] == "stream-end" and v1["finish_reason"] == "ERROR"


def test_bedrock_stream_error_is_an_eventstream_exception():
    buf = bytearray(stream_error_event("bedrock", "m", 403))
    [(headers, payload)] = eventstream.split_frames(buf)
    assert headers[":message-type"] == "exception"
    # A member of the stream's union, as the SDKs look it up (botocore: EventStreamError with this code).
    assert headers[":exception-type"] == "modelStreamErrorException"
    assert json.loads(payload) == {"message": "m"}
    assert not buf


@pytest.mark.parametrize("status, member", [(403, "modelStreamErrorException"), (400, "modelStreamErrorException"),
                                            (429, "throttlingException"), (502, "internalServerException"),
                                            (503, "serviceUnavailableException")])
def test_bedrock_stream_exceptions_are_members_of_both_stream_unions(status, member):
    import botocore.session

    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    for operation, field in (("ConverseStream", "stream"), ("InvokeModelWithResponseStream", "body")):
        union = model.operation_model(operation).output_shape.members[field]
        assert member in union.members
    [(headers, _)] = eventstream.split_frames(bytearray(stream_error_event("bedrock", "m", status)))
    assert headers[":exception-type"] == member


def test_eventstream_round_trip_partial():
    frame = eventstream.encode({":event-type": "chunk"}, b'{"bytes":"eA=="}')
    buf = bytearray(frame[:10])
    assert eventstream.split_frames(buf) == []
    buf += frame[10:] + frame
    assert len(eventstream.split_frames(buf)) == 2


def test_eventstream_bad_checksum():
    frame = bytearray(eventstream.encode({":event-type": "chunk"}, b"{}"))
    frame[-5] ^= 1
    with pytest.raises(eventstream.EventStreamError):
        eventstream.split_frames(frame)


def test_gemini_rate_limit_carries_retry_info():
    body = json.loads(error_body("gemini", 429, "slow down", retry_after=11.2))
    assert body["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert body["error"]["details"] == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}]
    assert "details" not in json.loads(error_body("gemini", 429, "slow down"))["error"]
    assert "details" not in json.loads(error_body("gemini", 403, "no", retry_after=3))["error"]


def test_retry_after_leaves_other_shapes_alone():
    for provider in ("openai", "anthropic", "cohere", "bedrock"):
        assert error_body(provider, 429, "m", retry_after=5) == error_body(provider, 429, "m")


def test_bedrock_throttling_is_what_botocore_retries():
    from botocore.retries.standard import ThrottledRetryableChecker

    assert error_headers("bedrock", 429)["x-amzn-ErrorType"] == "ThrottlingException"
    assert json.loads(error_body("bedrock", 429, "slow down")) == {"message": "slow down"}
    assert "ThrottlingException" in ThrottledRetryableChecker._THROTTLED_ERROR_CODES


def _code_and_rule(provider: str, body: dict) -> tuple:
    if provider == "gemini":
        [info] = [d for d in body["error"]["details"] if d["@type"].endswith("ErrorInfo")]
        return info["reason"], info["metadata"]["rule"]
    error = body["error"] if isinstance(body.get("error"), dict) else body
    return error["code"], error["rule"]


@pytest.mark.parametrize("provider", ["openai", "azure", "anthropic", "gemini", "cohere", "bedrock"])
def test_every_block_carries_our_code_and_the_rule_in_every_shape(provider):
    whole = json.loads(error_body(provider, 403, "m", "blocked_by_policy", rule="block-cards"))
    assert _code_and_rule(provider, whole) == ("blocked_by_policy", "block-cards")
    event = stream_error_event(provider, "m", code="blocked_by_policy", rule="block-cards")
    if provider == "bedrock":
        [(_, payload)] = eventstream.split_frames(bytearray(event))
        streamed = json.loads(payload)
    elif provider == "cohere":
        streamed = _sse_data(event)["delta"]
    else:
        streamed = _sse_data(event)
    assert _code_and_rule(provider, streamed) == ("blocked_by_policy", "block-cards")
    if provider in ("openai", "azure"):
        assert streamed["error"]["type"] == "permission_error"
