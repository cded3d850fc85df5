"""The /api/v1/ratelimits resource, rendered in memory."""

from __future__ import annotations

import json

import pytest
from twisted.internet.task import Clock
from twisted.web.resource import getChildForRequest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from proxilion.config import load_settings
from proxilion.metrics import Metrics
from proxilion.proxy.identity import Identity
from proxilion.ratelimit.admin import RateLimitAdminResource
from proxilion.ratelimit.service import RateLimiter


@pytest.fixture
def limiter():
    settings = load_settings({}, environ={"RATE_LIMIT_PER_MINUTE": "60", "RATE_LIMIT_BURST": "5"})
    return RateLimiter(settings, Metrics(), Clock())


def call(resource, method: bytes, path: str) -> tuple[int, dict]:
    request = DummyRequest([part.encode() for part in path.split("/")] if path else [])
    request.method = method
    child = getChildForRequest(resource, request)
    result = child.render(request)
    assert result == NOT_DONE_YET and request.finished
    assert request.responseHeaders.getRawHeaders(b"content-type") == [b"application/json"]
    return request.responseCode or 200, json.loads(b"".join(request.written))


def test_get_and_delete_buckets(limiter):
    resource = RateLimitAdminResource(limiter)
    identity = Identity("user:alice@example.com", "user", None, "203.0.113.1")
    for _ in range(3):
        limiter.take(identity, "openai")
    status, body = call(resource, b"GET", "user:alice@example.com")
    assert status == 200 and body["identity"] == "user:alice@example.com"
    assert body["buckets"][0]["tokens"] == 2 and body["buckets"][0]["name"] == "default"
    status, body = call(resource, b"DELETE", "user:alice@example.com")
    assert (status, body) == (200, {"identity": "user:alice@example.com", "reset": 1})
    assert call(resource, b"DELETE", "user:alice@example.com")[1]["reset"] == 0


def test_overview(limiter):
    status, body = call(RateLimitAdminResource(limiter), b"GET", "")
    assert status == 200 and body["store"] == "memory" and body["limits"][0]["burst"] == 5


@pytest.mark.parametrize(
    "method,path,status,code",
    [
        (b"GET", "nobody", 400, "bad_identity"),
        (b"GET", "user:{tag}", 400, "bad_identity"),
        (b"POST", "user:alice", 405, "method_not_allowed"),
        (b"GET", "user:alice/extra", 404, "not_found"),
        (b"POST", "", 405, "method_not_allowed"),
    ],
)
def test_errors_are_json(limiter, method, path, status, code):
    got, body = call(RateLimitAdminResource(limiter), method, path)
    assert got == status and body["error"]["code"] == code
