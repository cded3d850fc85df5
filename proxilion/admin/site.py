"""The admin port: /health /ready /status /metrics, and the bearer-token API under /api/v1."""

from __future__ import annotations

import hmac
import json
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web import http
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request, Site, UnsupportedMethod

from proxilion.admin.errors import admin_error, admin_error_bytes
from proxilion.drain import DrainState
from proxilion.metrics import CONTENT_TYPE_LATEST, HEALTH_DEGRADED, HEALTH_DOWN, HEALTH_OK, Metrics
from proxilion.transport import StreamTransport

__all__ = ["AdminSite", "Directory", "build_admin_site", "health_value", "json_response", "JsonError", "JsonResource"]

log = Logger(namespace="proxilion.admin")

_HEALTH_VALUES = {"ok": HEALTH_OK, "healthy": HEALTH_OK, "degraded": HEALTH_DEGRADED, "spooling": HEALTH_DEGRADED, "down": HEALTH_DOWN}


def json_response(request: Request, status: int, payload: Any) -> bytes:
    """Set status and JSON headers; return the body for a resource's render method."""
    body = json.dumps(payload, separators=(",", ":"), default=str).encode("utf-8")
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return body


class JsonError(Exception):
    """Raised inside a L{JsonResource} handler to answer an error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class JsonResource(Resource):
    """A leaf answering JSON: no HTML error pages, no tracebacks."""

    isLeaf = True

    def render(self, request: Request) -> bytes | int:
        try:
            return super().render(request)
        except UnsupportedMethod:
            request.setHeader(b"allow", b", ".join(self.allowed_methods()))
            return json_response(request, 405, admin_error(405, "method_not_allowed", "method not allowed"))
        except JsonError as e:
            return json_response(request, e.status, admin_error(e.status, e.code, e.message))
        except Exception:
            log.failure("admin request failed")
            return json_response(request, 500, admin_error(500, "internal_error", "internal error"))

    def render_HEAD(self, request: Request) -> bytes | int:
        render_get = getattr(self, "render_GET", None)
        if render_get is None:
            raise UnsupportedMethod(self.allowed_methods())
        return render_get(request)

    def allowed_methods(self) -> list[bytes]:
        """The methods this resource answers: HEAD only where GET is."""
        names = {name[len("render_"):] for name in dir(self) if name.startswith("render_")}
        if "GET" not in names:
            names.discard("HEAD")
        return sorted(name.encode("ascii") for name in names)


class _NotFound(JsonResource):
    def render(self, request: Request) -> bytes:
        return json_response(request, 404, admin_error(404, "not_found", "not found"))


class Directory(Resource):
    """A branch whose unknown children answer JSON 404."""

    def getChild(self, path: bytes, request: Request) -> Resource:
        return _NotFound()

    def render(self, request: Request) -> bytes:
        return _NotFound().render(request)


class HealthResource(JsonResource):
    """Liveness: 200 while serving, 503 while draining. Shared services never fail it."""

    def __init__(self, drain: DrainState, readiness: bool) -> None:
        super().__init__()
        self._drain = drain
        self._readiness = readiness

    def render_GET(self, request: Request) -> bytes:
        return json_response(request, *self._drain.probe(self._readiness))


class MetricsResource(JsonResource):
    def __init__(self, metrics: Metrics, refresh: Callable[[], None]) -> None:
        super().__init__()
        self._metrics = metrics
        self._refresh = refresh

    def render_GET(self, request: Request) -> bytes:
        self._refresh()
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return self._metrics.render()


class StatusResource(JsonResource):
    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        super().__init__()
        self._status = status

    def render_GET(self, request: Request) -> bytes:
        return json_response(request, 200, self._status())


class DrainResource(JsonResource):
    """POST /api/v1/drain: start the drain without exiting (preStop hooks, maintenance)."""

    def __init__(self, begin_drain: Callable[[], Deferred[None]], drain: DrainState) -> None:
        super().__init__()
        self._begin = begin_drain
        self._drain = drain

    def render_POST(self, request: Request) -> bytes:
        already = self._drain.draining
        self._begin().addErrback(lambda f: log.failure("drain failed", failure=f))
        return json_response(request, 202, {"status": "draining", "already_draining": already, "inflight": self._drain.inflight})


class BearerGuard(Resource):
    """Wraps the API: every request needs C{Authorization: Bearer <ADMIN_TOKEN>}."""

    def __init__(self, token: str | None, api: Resource) -> None:
        super().__init__()
        self._token = token.encode("utf-8") if token else None
        self._api = api

    def _denied(self, request: Request) -> Resource | None:
        if self._token is None:
            return _Refusal(403, "admin_api_disabled", "The admin API is disabled: set ADMIN_TOKEN to enable it.")
        header = request.getHeader(b"authorization") or b""
        scheme, _, supplied = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(supplied.strip(), self._token):
            request.setHeader(b"www-authenticate", b'Bearer realm="proxilion-admin"')
            return _Refusal(401, "unauthorized", "Missing or wrong bearer token.")
        return None

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        refusal = self._denied(request)
        if refusal is not None:
            return refusal
        return self._api.getChildWithDefault(path, request)

    def render(self, request: Request) -> bytes:
        refusal = self._denied(request)
        return (refusal or _NotFound()).render(request)


class _Refusal(JsonResource):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__()
        self._error = admin_error(status, code, message)

    def render(self, request: Request) -> bytes:
        return json_response(request, self._error["error"]["status"], self._error)


_TOO_LARGE = admin_error_bytes(431, "request_header_fields_too_large", "Request header fields too large.")


class _AdminChannel(HTTPChannel):
    """twisted.web's channel, answering 431 where it would close silently (a head line over C{MAX_LENGTH})
    or answer a bare 400 (more than C{totalHeadersSize} bytes or C{maxHeaders} headers)."""

    transport: StreamTransport  # type: ignore[assignment]  # see proxilion.transport

    def lineLengthExceeded(self, line: bytes) -> None:
        self._headers_too_large()

    def lineReceived(self, line: bytes) -> Any:
        # The same sum twisted.web checks next, checked first so that the answer can be 431.
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._headers_too_large()
            return None
        return super().lineReceived(line)

    def headerReceived(self, line: bytes) -> bool:
        if self._receivedHeaderCount >= self.maxHeaders:
            self._headers_too_large()
            return False
        return super().headerReceived(line)

    def _headers_too_large(self) -> None:
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TOO_LARGE), _TOO_LARGE))
        self.loseConnection()


class AdminSite(Site):
    """No tracebacks on the admin port either."""

    displayTracebacks = False
    noisy = False
    # HTTP/1.1 only (no HTTP/2 negotiation on the admin port), with 431 for oversized heads.
    # Twisted types it as the factory of its HTTP/2-capable wrapper; a plain HTTP/1.1 channel is the point here.
    protocol = _AdminChannel  # type: ignore[assignment]

    def log(self, request: http.Request) -> None:
        """Probes every few seconds would drown the access log; nothing is logged per admin request."""


def build_admin_site(
    drain: DrainState,
    metrics: Metrics,
    status: Callable[[], dict[str, Any]],
    refresh_metrics: Callable[[], None],
    admin_token: str | None,
    begin_drain: Callable[[], Deferred[None]],
    api_children: dict[bytes, Resource],
    reactor: Any,
) -> AdminSite:
    root = Directory()
    root.putChild(b"health", HealthResource(drain, readiness=False))
    root.putChild(b"ready", HealthResource(drain, readiness=True))
    root.putChild(b"status", StatusResource(status))
    root.putChild(b"metrics", MetricsResource(metrics, refresh_metrics))
    api = Directory()
    api.putChild(b"drain", DrainResource(begin_drain, drain))
    for name, child in api_children.items():
        api.putChild(name, child)
    v1 = Directory()
    v1.putChild(b"v1", api)
    root.putChild(b"api", BearerGuard(admin_token, v1))
    site = AdminSite(root, reactor=reactor)
    return site


def health_value(state: str) -> float:
    """The proxilion_health_check_status value of a component state."""
    return _HEALTH_VALUES.get(state, HEALTH_DOWN)
