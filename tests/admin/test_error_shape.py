"""Every resource on the admin port answers errors in one shape: {"error": {"code", "message", "status"}}."""

from __future__ import annotations

import json

import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.web.resource import Resource

from proxilion.admin.site import JsonError, JsonResource
from proxilion.analytics.admin import EventsResource
from proxilion.analytics.store import MemoryStore
from proxilion.ratelimit.admin import RateLimitAdminResource


class _Refuses(JsonResource):
    def render_GET(self, request):
        raise JsonError(409, "conflict_here", "Refused.")


def _root() -> Resource:
    root = Resource()
    root.putChild(b"site", _Refuses())
    root.putChild(b"events", EventsResource(MemoryStore(Clock()), Clock()))
    root.putChild(b"ratelimits", RateLimitAdminResource(limiter=None))
    return root


@pytest_twisted.ensureDeferred
async def test_the_site_the_analytics_api_and_the_rate_limit_api_share_one_error_shape():
    client = StubTreq(_root())
    cases = [
        ("GET", "http://admin/site", 409, "conflict_here"),
        ("POST", "http://admin/site", 405, "method_not_allowed"),
        ("GET", "http://admin/events?limit=abc", 400, "invalid_request"),
        ("GET", "http://admin/ratelimits/nobody", 400, "bad_identity"),
        ("POST", "http://admin/ratelimits", 405, "method_not_allowed"),
    ]
    for method, url, status, code in cases:
        response = await client.request(method, url)
        body = json.loads(await response.content())
        assert response.code == status, url
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "status"}, (url, body)
        assert (body["error"]["status"], body["error"]["code"]) == (status, code), url
        assert response.headers.getRawHeaders(b"content-type") == [b"application/json"], url
