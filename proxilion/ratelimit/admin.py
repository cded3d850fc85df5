"""Admin API for rate limits, mounted at /api/v1/ratelimits (auth is checked by the caller).

GET    /api/v1/ratelimits              the configured limits and the store's state
GET    /api/v1/ratelimits/<owner>      {"identity": owner, "buckets": [...]}
DELETE /api/v1/ratelimits/<owner>      {"identity": owner, "reset": n}

<owner> is an identity key (key:<fp>, user:<name>, ip:<address>) or
tenant:<name>, provider:<name>, global. Errors have the admin port's one shape (proxilion/admin/errors.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from proxilion.admin.errors import admin_error
from proxilion.ratelimit.redisclient import RedisUnavailable

__all__ = ["RateLimitAdminResource"]

_OWNER = re.compile(r"^(?:(?:key|user|ip|tenant|provider):[A-Za-z0-9\-._~@+=:%]{1,128}|global)$")


def _write(request: Any, status: int, body: dict) -> None:
    if request.finished or getattr(request, "_disconnected", False):
        return
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    request.write(json.dumps(body).encode("utf-8"))
    request.finish()


class _OwnerResource(Resource):
    isLeaf = True
    log = Logger()

    def __init__(self, limiter: Any, owner: str) -> None:
        super().__init__()
        self.limiter = limiter
        self.owner = owner

    def _respond(self, request: Any, d: defer.Deferred, body: Any) -> Any:
        def failed(failure: Failure) -> None:
            if failure.check(RedisUnavailable):
                _write(request, 503, admin_error(503, "redis_unavailable", "the shared rate limit store is unavailable"))
                return
            self.log.failure("rate limit admin request failed", failure)
            _write(request, 500, admin_error(500, "internal_error", "internal error"))

        d.addCallback(lambda result: _write(request, 200, body(result))).addErrback(failed)
        return NOT_DONE_YET

    def render_GET(self, request: Any) -> Any:
        return self._respond(request, self.limiter.buckets(self.owner), lambda b: {"identity": self.owner, "buckets": b})

    def render_DELETE(self, request: Any) -> Any:
        return self._respond(request, self.limiter.reset(self.owner), lambda n: {"identity": self.owner, "reset": n})


class _Problem(Resource):
    isLeaf = True

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__()
        self.status, self.code, self.message = status, code, message

    def render(self, request: Any) -> Any:
        _write(request, self.status, admin_error(self.status, self.code, self.message))
        return NOT_DONE_YET


class RateLimitAdminResource(Resource):
    """The rate limit admin API; C{limiter} is the L{RateLimiter}."""

    def __init__(self, limiter: Any) -> None:
        super().__init__()
        self.limiter = limiter

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b"":
            return self
        if len(request.postpath) > 0 and any(request.postpath):
            return _Problem(404, "not_found", "no such resource")
        try:
            owner = path.decode("utf-8")
        except UnicodeDecodeError:
            owner = ""
        if not _OWNER.match(owner):
            return _Problem(400, "bad_identity", "expected key:<fingerprint>, user:<name>, ip:<address>, tenant:<name>, provider:<name> or global")
        if request.method not in (b"GET", b"HEAD", b"DELETE"):
            return _Problem(405, "method_not_allowed", "use GET or DELETE")
        return _OwnerResource(self.limiter, owner)

    def render_GET(self, request: Any) -> Any:
        _write(request, 200, self.limiter.status())
        return NOT_DONE_YET

    def render(self, request: Any) -> Any:
        if request.method not in (b"GET", b"HEAD"):
            _write(request, 405, admin_error(405, "method_not_allowed", "use GET"))
            return NOT_DONE_YET
        return super().render(request)
