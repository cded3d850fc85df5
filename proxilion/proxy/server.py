"""The proxy port: health answers, refusals of bad requests, and dispatch to L{Exchange}.

Every request goes to the same place, so there is no resource tree: the
connection hands each complete request to an exchange.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.protocol import Factory

from proxilion.analytics.event import Decision, Mode
from proxilion.providers.errors import error_body
from proxilion.providers.names import PROVIDER_NAMES
from proxilion.proxy import proxy_protocol
from proxilion.proxy.context import ProxyContext
from proxilion.proxy.exchange import Exchange, bounded_method, log_refused
from proxilion.proxy.headers import request_id
from proxilion.proxy.http11 import HTTPConnection, HTTPRequest, reason_phrase
from proxilion.proxy.identity import is_trusted
from proxilion.proxy.routing import provider_for_host
from proxilion.tls.connect import check_intercepted, handle_connect

__all__ = ["ProxyFactory", "ProxyConnection"]


def _guess_provider(uri: bytes | None, host: bytes | None) -> str:
    """Best-effort provider for errors raised before routing (so the error has its shape)."""
    if uri and uri.startswith(b"/proxy/"):
        target = uri[7:].split(b"/", 1)[0].split(b"?", 1)[0].decode("latin-1").lower()
        return target if target in PROVIDER_NAMES else (provider_for_host(target) or "unknown")
    if host:
        return provider_for_host(host.decode("latin-1").split(":")[0]) or "unknown"
    return "unknown"


class ProxyConnection(HTTPConnection):
    """A client connection on the proxy port, tracked for draining."""

    def __init__(self, ctx: ProxyContext) -> None:
        settings = ctx.settings
        super().__init__(ctx.clock, settings.max_body_size, settings.max_headers, settings.max_header_size, settings.client_timeout)
        self.ctx = ctx
        # Bytes of a PROXY protocol header still being read, or None once past it
        # (or when it is not expected: off, or a peer that is not a trusted proxy,
        # whose PROXY line is then malformed HTTP).
        self._proxy_header: bytes | None = None
        # How the client reached us: explicit (plain HTTP), connect or transparent (TLS interception).
        self.mode: Mode = "explicit"
        # The intercepting TLS handshake (proxilion.tls), once one started.
        self.tls: Any = None
        # Set by a CONNECT answer: switches the connection once the parser let go of it.
        self.switch: Callable[[bytes], bool] | None = None
        # A blind CONNECT tunnel: where the client's bytes go, and who hears of the close.
        self.relay: Callable[[bytes], None] | None = None
        self.on_relay_lost: Callable[[], None] | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        settings = self.ctx.settings
        if settings.proxy_protocol and is_trusted(self.peer_ip, settings.trusted_proxies):
            self._proxy_header = b""
        self.ctx.drain.channel_opened(self)

    def dataReceived(self, data: bytes) -> None:
        if self.relay is not None:
            self.relay(data)
            return
        if self._proxy_header is None:
            super().dataReceived(data)
            return
        buffered = self._proxy_header + data
        try:
            parsed = proxy_protocol.parse(buffered)
        except proxy_protocol.ProxyHeaderError:
            # A trusted proxy that does not speak it is misconfigured: nothing it sends can be attributed.
            self._proxy_header = None
            self._closing = True
            self.ctx.metrics.rejected_requests.labels("invalid_proxy_header").inc()
            self.transport.loseConnection()
            return
        if parsed is None:
            self._proxy_header = buffered
            return
        source, length = parsed
        self._proxy_header = None
        if source is not None:
            self.peer_ip = source
        rest = buffered[length:]
        if rest:
            super().dataReceived(rest)

    def connectionLost(self, reason: Any = None) -> None:
        super().connectionLost(reason)
        if self.tls is not None:
            self.tls.lost()
        if self.on_relay_lost is not None:
            self.on_relay_lost()
        self.ctx.drain.channel_closed(self)

    def upgraded(self, rest: bytes) -> bool:
        switch, self.switch = self.switch, None
        return switch(rest) if switch is not None else False

    def dispatch(self, request: HTTPRequest) -> None:
        if request.method in (b"GET", b"HEAD"):
            path = request.uri.split(b"?", 1)[0]
            if path == b"/health" or path == b"/ready":
                self._health(request)
                return
        if request.method == b"CONNECT":
            handle_connect(self, request, self.ctx.interception)
            return
        if self.mode != "explicit" and not check_intercepted(self, request):
            return
        Exchange(self.ctx, request, self.mode).start()

    def _health(self, request: HTTPRequest) -> None:
        drain = self.ctx.drain
        code, answer = drain.probe(readiness=True)
        body = json.dumps(answer).encode("ascii")
        request.set_code(code)
        request.response_headers += [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            (b"cache-control", b"no-store"),
        ]
        if drain.draining:
            request.close_after()
        request.write(body)
        request.finish()

    def refuse(self, status: int, message: str, code: str, parsing: Any) -> None:
        """Answer a request that is malformed, too large or too slow, then close."""
        uri = parsing.url if parsing is not None else None
        partial, provider, rid = self._unfinished(self.parsed_method(parsing), uri, parsing.headers if parsing is not None else [])
        body = error_body(provider, status, message, code)
        # Its audit row is journaled before the answer leaves.
        self._account(partial, provider, rid, uri, status, code, len(body), 0)
        if self.transport is not None and not self.lost:
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nx-request-id: %s\r\nconnection: close\r\n\r\n%s"
                % (status, reason_phrase(status), len(body), rid, body)
            )
            self.transport.loseConnection()
        self.ctx.metrics.rejected_requests.labels(code).inc()

    def abandoned(self, method: bytes, uri: bytes, headers: list[tuple[bytes, bytes]], bytes_in: int) -> None:
        """The client closed before its request was dispatched: its 499 row, as L{Exchange} records a later leave."""
        if method in (b"GET", b"HEAD") and uri.split(b"?", 1)[0] in (b"/health", b"/ready"):
            # Health checks are answered without a row; an abandoned one gets none either.
            return
        partial, provider, rid = self._unfinished(method, uri or None, headers)
        self._account(partial, provider, rid, uri or None, 499, "client_disconnected", 0, bytes_in)

    def _unfinished(self, method: bytes, uri: bytes | None, headers: list[tuple[bytes, bytes]]) -> tuple[HTTPRequest, str, bytes]:
        """A request that never became an exchange, its provider as far as it can be told, and its request id."""
        partial = HTTPRequest(self, method, uri or b"", b"1.1", headers, b"", False)
        return partial, _guess_provider(uri, partial.header(b"host")), request_id(partial.header(b"x-request-id"))

    def _account(self, partial: HTTPRequest, provider: str, rid: bytes, uri: bytes | None, status: int, code: str,
                 bytes_out: int, bytes_in: int, decision: Decision = "rejected") -> None:
        """Metrics, access line and audit row of a request that never became an exchange."""
        ctx = self.ctx
        method = bounded_method(partial.method.decode("latin-1"))
        ctx.metrics.http_requests.labels(provider, method, str(status)).inc()
        log_refused(ctx.access_log, rid, provider, method, uri, status, code, decision)
        if ctx.record_refused is not None:
            ctx.record_refused(partial, rid, provider, method, uri, status, code, bytes_out, bytes_in=bytes_in, decision=decision,
                              mode=self.mode)


class ProxyFactory(Factory):
    """Builds proxy connections sharing one L{ProxyContext}."""

    noisy = False

    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx

    def buildProtocol(self, addr: Any) -> ProxyConnection:
        connection = ProxyConnection(self.ctx)
        connection.factory = self
        return connection
