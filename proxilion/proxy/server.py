"""The proxy port's HTTP server: request framing limits, bad-input answers, dispatch.

This is a plain L{twisted.web.http} server rather than a resource tree: every
request goes to the same place, and skipping traversal, sessions and form
parsing keeps the per-request cost down.
"""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.web import http

from proxilion.providers.errors import error_body
from proxilion.proxy.context import ProxyContext
from proxilion.proxy.exchange import Exchange, bounded_method, close_after, log_refused
from proxilion.proxy.headers import request_id
from proxilion.proxy.routing import provider_for_host

__all__ = ["ProxyFactory", "ProxyRequest", "ProxyChannel", "health_body"]

_STATUS_LINES = {
    400: b"400 Bad Request",
    408: b"408 Request Timeout",
    413: b"413 Content Too Large",
    431: b"431 Request Header Fields Too Large",
}


def health_body(status: str) -> bytes:
    return json.dumps({"status": status}).encode("ascii")


def _guess_provider(uri: bytes | None, host: bytes | None) -> str:
    """Best-effort provider for errors raised before routing (so the error has its shape)."""
    if uri and uri.startswith(b"/proxy/"):
        target = uri[7:].split(b"/", 1)[0].split(b"?", 1)[0].decode("latin-1").lower()
        return target if target in ("openai", "anthropic", "gemini", "cohere", "azure", "bedrock") else (provider_for_host(target) or "unknown")
    if host:
        return provider_for_host(host.decode("latin-1").split(":")[0]) or "unknown"
    return "unknown"


class ProxyRequest(http.Request):
    """A request on the proxy port; enforces the body limit and the slow-client deadline."""

    def __init__(self, channel: "ProxyChannel", queued: Any = None) -> None:
        # Never parse form bodies: they are forwarded, not consumed (and parsing
        # every POST's Content-Type with the email package is costly).
        super().__init__(channel, parsePOSTFormSubmission=False)
        ctx: ProxyContext = channel.factory.ctx
        self.ctx = ctx
        self._received = 0
        self._rejected = False
        self._deadline = ctx.clock.callLater(ctx.settings.client_timeout, self._too_slow)

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.ctx.settings.max_body_size:
            # Refuse before reading (and before any "100 Continue").
            self.requestHeaders.removeHeader(b"expect")
            self.reject_early(413, "Request body too large: limit is %d bytes." % self.ctx.settings.max_body_size, "request_too_large")
            return
        self.content = io.BytesIO()

    def handleContentChunk(self, data: bytes) -> None:
        if self._rejected:
            return
        self._received += len(data)
        if self._received > self.ctx.settings.max_body_size:
            self.reject_early(413, "Request body too large: limit is %d bytes." % self.ctx.settings.max_body_size, "request_too_large")
            return
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._deadline.active():
            self._deadline.cancel()
        if self._rejected:
            return
        super().requestReceived(command, path, version)

    def _too_slow(self) -> None:
        self.reject_early(408, "The request was not received in time.", "request_timeout")

    def reject_early(self, status: int, message: str, code: str) -> None:
        """Answer before the request is complete, then close: the rest of it is not read."""
        if self._rejected:
            return
        self._rejected = True
        if self._deadline.active():
            self._deadline.cancel()
        channel = self.channel
        if channel is None or channel.transport is None:
            return
        uri = getattr(channel, "_path", None)
        provider = _guess_provider(uri, self.requestHeaders.getRawHeaders(b"host", [None])[0])
        method = bounded_method(getattr(channel, "_command", b"").decode("latin-1"))
        rid = request_id(self.requestHeaders.getRawHeaders(b"x-request-id", [None])[0])
        body = error_body(provider, status, message, code)
        head = b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nX-Request-ID: %s\r\nConnection: close\r\n\r\n" % (
            _STATUS_LINES[status],
            len(body),
            rid,
        )
        channel.transport.write(head + body)
        channel.transport.loseConnection()
        self.ctx.metrics.rejected_requests.labels(code).inc()
        self.ctx.metrics.http_requests.labels(provider, method, str(status)).inc()
        log_refused(rid, provider, method, uri, status, code)
        if self.ctx.record_refused is not None:
            self.ctx.record_refused(self, rid, provider, method, uri, status, code, len(body))

    def connectionLost(self, reason: Any) -> None:
        if self._deadline.active():
            self._deadline.cancel()
        super().connectionLost(reason)

    def process(self) -> None:
        ctx = self.ctx
        if self.method in (b"GET", b"HEAD") and self.path in (b"/health", b"/ready"):
            self._health()
            return
        Exchange(ctx, self).start()

    def _health(self) -> None:
        drain = self.ctx.drain
        status = drain.status()
        ok = status == "healthy"
        body = health_body(status)
        self.setResponseCode(200 if ok else 503)
        self.setHeader(b"content-type", b"application/json")
        self.setHeader(b"content-length", b"%d" % len(body))
        self.setHeader(b"cache-control", b"no-store")
        if drain.draining:
            close_after(self)
        if self.method != b"HEAD":
            self.write(body)
        self.finish()


class ProxyChannel(http.HTTPChannel):
    """An HTTP connection on the proxy port: JSON for framing errors, tracked for draining."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.factory.ctx.drain.channel_opened(self)

    def connectionLost(self, reason: Any) -> None:
        self.factory.ctx.drain.channel_closed(self)
        super().connectionLost(reason)

    def headerReceived(self, line: bytes) -> bool:
        if self._receivedHeaderCount >= self.maxHeaders:
            self._reject(431, "Too many request headers.", "too_many_headers")
            return False
        return super().headerReceived(line)

    def lineReceived(self, line: bytes) -> None:
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._reject(431, "Request headers too large.", "headers_too_large")
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._reject(431, "Request header line too long.", "headers_too_large")

    def _reject(self, status: int, message: str, code: str) -> None:
        if self.requests:
            self.requests[-1].reject_early(status, message, code)
        else:
            self._respondToBadRequestAndDisconnect()
        self.dataReceived = self.lineReceived = lambda *args: None  # type: ignore[method-assign]

    def _respondToBadRequestAndDisconnect(self) -> None:
        body = error_body("unknown", 400, "Malformed HTTP request.", "bad_request")
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (len(body), body)
        )
        self.loseConnection()
        self.factory.ctx.metrics.rejected_requests.labels("bad_request").inc()


class ProxyFactory(http.HTTPFactory):
    """Builds proxy channels sharing one L{ProxyContext}."""

    protocol = ProxyChannel
    noisy = False

    def __init__(self, ctx: ProxyContext) -> None:
        super().__init__(timeout=ctx.settings.client_timeout, reactor=ctx.clock)
        self.ctx = ctx

    def buildProtocol(self, addr: Any) -> ProxyChannel:
        channel = super().buildProtocol(addr)
        channel.requestFactory = ProxyRequest
        channel.maxHeaders = self.ctx.settings.max_headers
        channel.totalHeadersSize = self.ctx.settings.max_header_size
        channel.MAX_LENGTH = self.ctx.settings.max_header_size
        return channel

    def log(self, request: Any) -> None:
        """Access lines are written by the exchange, with more context."""
