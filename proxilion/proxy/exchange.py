"""One request's trip through the proxy: route, identify, admit, inspect, forward, relay, record.

Steps 4-7 (extract, scan, decide, rewrite) are the pure inspection core; this
module is the Twisted shell around them. Every exit path goes through
L{Exchange._complete}, which writes exactly one access line, one set of
metrics and one audit row.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, DNSLookupError, TimeoutError as ConnectTimeoutError
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed, ResponseNeverReceived
from twisted.web.http import Request

from proxilion.providers.errors import error_body, error_headers
from proxilion.proxy.context import ProxyContext
from proxilion.proxy.headers import client_response_headers, request_id, upstream_request_headers
from proxilion.proxy.relay import Relay
from proxilion.proxy.routing import Route, RouteError

__all__ = ["Exchange", "safe_path", "close_after"]

log = Logger(namespace="proxilion.access")
errlog = Logger(namespace="proxilion.proxy")

_SECRET_QUERY_KEYS = frozenset({"key", "api_key", "apikey", "api-key", "token", "access_token", "sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token"})
_JSON = b"application/json"


def safe_path(path: str, query: str) -> str:
    """The path with credential-carrying query values masked, fit for logs and audit rows."""
    if not query:
        return path
    pairs = [(k, "REDACTED" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in parse_qsl(query, keep_blank_values=True)]
    return path + "?" + urlencode(pairs)


def _client_ip(request: Request) -> str:
    peer = request.getClientAddress()
    return getattr(peer, "host", None) or "unknown"


class Exchange:
    """The state of one proxied request."""

    def __init__(self, ctx: ProxyContext, request: Request) -> None:
        self.ctx = ctx
        self.request = request
        self.started = ctx.clock.seconds()
        self.provider = "unknown"
        self.route: Route | None = None
        self.identity: Any = None
        self.decision = "allow"
        self.findings: dict[str, int] = {}
        self.model: str | None = None
        self.error: str | None = None
        self.upstream_seconds: float | None = None
        self.inspect_seconds = 0.0
        self.streamed = False
        self.bytes_in = len(request.content.getvalue()) if request.content is not None else 0
        self.relay: Relay | None = None
        self._pending: Deferred[Any] | None = None
        self._done = False
        rid_header = request.requestHeaders.getRawHeaders(b"x-request-id")
        self.rid = request_id(rid_header[0] if rid_header else None)

    # Entry point
    def start(self) -> None:
        ctx = self.ctx
        ctx.drain.request_started()
        ctx.metrics.inflight_requests.inc()
        self.request.notifyFinish().addErrback(self._client_lost)
        try:
            self.route = ctx.router.route(self.request.uri, self.request.getHeader(b"host"))
        except RouteError as e:
            self.decision = "rejected"
            self.error = e.code
            ctx.metrics.rejected_requests.labels(e.code).inc()
            self.respond_error(e.status, e.message, e.code)
            return
        self.provider = self.route.provider
        self._pending = Deferred.fromCoroutine(self._proxy())
        self._pending.addErrback(self._unexpected)

    async def _proxy(self) -> None:
        ctx = self.ctx
        route = self.route
        assert route is not None
        request = self.request
        body = request.content.getvalue() if self.bytes_in else None
        self.model = _model_of(body, route.path)
        if ctx.identify is not None:
            self.identity = ctx.identify(request, route)
        if ctx.limiter is not None:
            decision = await ctx.limiter.take(self.identity, route.provider)
            for name, value in decision.headers().items():
                request.setHeader(name, value)
            if decision.unavailable:
                self.decision = "ratelimited"
                self.error = "ratelimit_unavailable"
                self.respond_error(503, "Rate limiting is unavailable; try again shortly.", "ratelimit_unavailable")
                return
            if not decision.allowed:
                self.decision = "ratelimited"
                self.respond_error(429, "Rate limit exceeded for this identity; retry after the Retry-After delay.", "rate_limit_exceeded")
                return
        if ctx.inspector is not None:
            body = self._inspect_request(body)
            if body is None:
                return
        headers = upstream_request_headers(
            request.requestHeaders, _client_ip(request), b"http", self.rid, self._trusted_forwarded_for()
        )
        sent = ctx.clock.seconds()
        self._pending = ctx.upstream.request(request.method, route.url, headers, body)
        try:
            response = await self._pending
        except Exception as e:
            self._upstream_failed(Failure(e))
            return
        finally:
            self._pending = None
        self.upstream_seconds = ctx.clock.seconds() - sent
        ctx.metrics.upstream_request_duration.labels(self.provider).observe(self.upstream_seconds)
        self._relay(response)

    def _trusted_forwarded_for(self) -> bytes | None:
        if self.identity is not None and getattr(self.identity, "forwarded_trusted", False):
            values = self.request.requestHeaders.getRawHeaders(b"x-forwarded-for")
            return b", ".join(values) if values else None
        return None

    def _inspect_request(self, body: bytes | None) -> bytes | None:
        """Run the inspection core; return the body to forward, or None if answered here."""
        ctx = self.ctx
        route = self.route
        assert route is not None
        identity_key = getattr(self.identity, "key", None)
        verdict = ctx.inspector.inspect_request(route.provider, route.path, body or b"", identity_key)
        self.inspect_seconds = verdict.scan_seconds
        ctx.metrics.scan_duration.labels("request").observe(verdict.scan_seconds)
        ctx.metrics.policy_decisions.labels(verdict.action).inc()
        if verdict.error:
            ctx.metrics.scanner_errors.inc()
        for finding in verdict.findings:
            self.findings[finding.type] = self.findings.get(finding.type, 0) + 1
            ctx.metrics.findings.labels(finding.type, verdict.action).inc()
        self.decision = verdict.action
        self.request.setHeader(b"x-proxilion-decision", verdict.action.encode("ascii"))
        if verdict.action == "block":
            self.respond_error(403 if not verdict.error else 503, "Request blocked by Proxilion policy: " + verdict.message, "blocked_by_policy")
            return None
        if verdict.action == "redact":
            return verdict.body
        return body

    def _relay(self, response: Any) -> None:
        request = self.request
        request.setResponseCode(response.code, response.phrase)
        for name, values in client_response_headers(response.headers):
            request.responseHeaders.setRawHeaders(name, values)
        request.setHeader(b"x-request-id", self.rid)
        if self.ctx.drain.draining:
            close_after(request)
        length = response.length
        if isinstance(length, int):
            request.setHeader(b"content-length", str(length).encode("ascii"))
        content_type = response.headers.getRawHeaders(b"content-type", [b""])[0]
        self.streamed = content_type.startswith(b"text/event-stream") or not isinstance(length, int)
        self.status = response.code
        self.relay = Relay(request, self.ctx.clock, self.ctx.settings.stream_idle_timeout, self._relay_done)
        response.deliverBody(self.relay)

    def _relay_done(self, error: str | None) -> None:
        if error is not None:
            self.error = error
        self._complete(self.request.code)

    # Failures
    def _upstream_failed(self, failure: Failure) -> None:
        from proxilion.proxy.upstream import UpstreamTimeout

        if failure.check(UpstreamTimeout):
            kind, status, msg = "upstream_timeout", 504, "The upstream provider did not answer in time."
        elif failure.check(CancelledError):
            # The client went away while we waited; _client_lost has recorded it.
            return
        elif failure.check(ConnectTimeoutError):
            kind, status, msg = "upstream_connect_timeout", 504, "Timed out connecting to the upstream provider."
        elif failure.check(ConnectError, DNSLookupError, ResponseNeverReceived, ResponseFailed):
            kind, status, msg = "upstream_unreachable", 502, "The upstream provider could not be reached."
        else:
            kind, status, msg = "upstream_error", 502, "The upstream provider request failed."
        self.error = kind
        self.decision = "error" if self.decision == "allow" else self.decision
        self.ctx.metrics.upstream_errors.labels(self.provider, kind).inc()
        errlog.warn(
            "upstream {kind} for {provider} request {rid}: {reason}",
            kind=kind,
            provider=self.provider,
            rid=self.rid.decode("ascii"),
            reason=failure.getErrorMessage()[:200],
        )
        self.respond_error(status, msg, kind)

    def _unexpected(self, failure: Failure) -> None:
        errlog.failure("unexpected error handling request {rid}", failure=failure, rid=self.rid.decode("ascii"))
        self.error = "internal_error"
        self.decision = "error"
        if not self._done and not self.request.startedWriting:
            self.respond_error(500, "Proxilion hit an internal error; the request was not forwarded.", "internal_error")
        elif not self._done:
            self.request.channel.transport.abortConnection()
            self._complete(self.request.code)

    def _client_lost(self, failure: Failure) -> None:
        if self._done:
            return
        self.error = self.error or "client_disconnected"
        if self._pending is not None:
            self._pending.cancel()
        if self.relay is not None:
            self.relay.client_gone()
        else:
            self._complete(499)

    # Answers
    def respond_error(self, status: int, message: str, code: str) -> None:
        """Answer with an error shaped like this provider's own errors."""
        request = self.request
        if self._done:
            return
        body = error_body(self.provider, status, message, code)
        request.setResponseCode(status)
        request.setHeader(b"content-type", _JSON)
        for name, value in error_headers(self.provider, status).items():
            request.setHeader(name, value)
        request.setHeader(b"content-length", str(len(body)).encode("ascii"))
        request.setHeader(b"x-request-id", self.rid)
        if self.ctx.drain.draining:
            close_after(request)
        request.write(body)
        request.finish()
        self._complete(status)

    def _complete(self, status: int) -> None:
        if self._done:
            return
        self._done = True
        ctx = self.ctx
        now = ctx.clock.seconds()
        total = now - self.started
        ctx.drain.request_finished()
        ctx.metrics.inflight_requests.dec()
        method = self.request.method.decode("latin-1")
        ctx.metrics.http_requests.labels(self.provider, _bounded_method(method), str(status)).inc()
        ctx.metrics.http_request_duration.labels(self.provider).observe(total)
        route = self.route
        path = safe_path(route.path, route.query) if route else safe_path(*_split(self.request.uri))
        bytes_out = self.relay.bytes_out if self.relay is not None else 0
        overhead = total - self.upstream_seconds if self.upstream_seconds is not None and not self.streamed else None
        log.info(
            "{method} {path} {status}",
            request_id=self.rid.decode("ascii"),
            provider=self.provider,
            method=method,
            path=path,
            status=status,
            decision=self.decision,
            identity=getattr(self.identity, "key", None),
            duration_ms=round(total * 1000, 3),
            upstream_ms=round(self.upstream_seconds * 1000, 3) if self.upstream_seconds is not None else None,
            bytes_in=self.bytes_in,
            bytes_out=bytes_out,
            streamed=self.streamed,
            error=self.error,
            findings=self.findings or None,
        )
        if ctx.record is not None:
            ctx.record(self, status, path, total, overhead, bytes_out)


def close_after(request: Request) -> None:
    """Tell the client, and Twisted, that this connection closes after the response."""
    request.setHeader(b"connection", b"close")
    request.channel.persistent = False


def _split(uri: bytes) -> tuple[str, str]:
    text = uri.decode("latin-1")
    path, _, query = text.partition("?")
    return path, query


_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def _bounded_method(method: str) -> str:
    return method if method in _METHODS else "OTHER"


def _model_of(body: bytes | None, path: str) -> str | None:
    """The model a request asks for, from the body or (Gemini, Bedrock, Azure) the path."""
    if body and body[:1] in (b"{", b" ", b"\n", b"\t", b"\r"):
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("model"), str):
            return parsed["model"][:128]
    for marker in ("/models/", "/model/", "/deployments/"):
        if marker in path:
            rest = path.split(marker, 1)[1]
            return rest.split("/", 1)[0].split(":", 1)[0][:128] or None
    return None
