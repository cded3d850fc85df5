"""The upstream HTTP/1.1 client: a keep-alive pool per host, responses parsed by llhttp.

Twisted's C{Agent} cost about 0.5 ms of CPU per request (URI objects,
C{Headers}, a state machine of Deferreds per response). This client writes
each request in one send, parses the answer with C{httptools} and hands the
body to a protocol whose transport is a pause/resume/stop producer, so the
relay keeps producer/consumer backpressure.
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import urlsplit

import httptools
from OpenSSL import SSL
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS, trustRootFromCertificates
from twisted.python.failure import Failure

from proxilion.proxy.deadline import Deadline
from proxilion.proxy.headers import first_header
from proxilion.proxy.http11 import write_now
from proxilion.transport import StreamTransport

__all__ = ["EndpointFactory", "network_endpoint", "UpstreamClient", "UpstreamResponse", "UpstreamTimeout", "UpstreamDisconnected", "UpstreamTLSError", "BodyDone", "BodyIncomplete", "BodyIdle"]

_MAX_TARGETS = 1024

# (scheme, host, port) -> where to connect; tests inject an in-memory one.
EndpointFactory = Callable[[str, str, int], IStreamClientEndpoint]


class UpstreamTimeout(Exception):
    """The upstream sent no response headers in time."""


class UpstreamDisconnected(Exception):
    """The upstream closed the connection, or sent a malformed answer, before its response headers."""


class UpstreamTLSError(UpstreamDisconnected):
    """The TLS handshake with the upstream failed; C{certificate} when its certificate did not verify."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"TLS handshake with the upstream failed: {reason}")
        self.certificate = "certificate" in reason.lower()


def _tls_reason(error: SSL.Error) -> str:
    """OpenSSL's reasons ("certificate verify failed"), without the library and function names."""
    reasons = [entry[-1] for entry in (error.args[0] if error.args and isinstance(error.args[0], list) else ()) if entry]
    return "; ".join(str(r) for r in reasons)[:200] or str(error)[:200]


class BodyDone(Exception):
    """The response body is complete."""


class BodyIncomplete(Exception):
    """The response body was cut short (upstream closed, malformed framing, or stopped by us)."""


class BodyIdle(BodyIncomplete):
    """The upstream sent nothing for longer than the body idle timeout; the body was cut."""


_BODY_DONE = BodyDone()


class UpstreamResponse:
    """Status and headers of an upstream answer; the body follows through L{deliver_body}."""

    __slots__ = ("code", "phrase", "headers", "length", "_connection")

    def __init__(self, code: int, phrase: bytes, headers: list[tuple[bytes, bytes]], length: int | None, connection: "_UpstreamConnection") -> None:
        self.code = code
        self.phrase = phrase
        # Raw (name, value) pairs in arrival order.
        self.headers = headers
        self.length = length
        self._connection = connection

    def header(self, name: bytes) -> bytes | None:
        return first_header(self.headers, name)

    def deliver_body(self, protocol: Protocol) -> None:
        """Feed the body to C{protocol}: C{makeConnection(producer)}, C{dataReceived}, then
        C{connectionLost} with a L{BodyDone} or L{BodyIncomplete} exception (not a
        C{Failure}: building one per response cost more than the rest of the relay)."""
        self._connection.deliver_body(protocol)


class _BodyProducer:
    """What a body protocol sees as its transport: pause, resume or stop the upstream read."""

    __slots__ = ("_connection",)

    def __init__(self, connection: "_UpstreamConnection") -> None:
        self._connection = connection

    def pauseProducing(self) -> None:
        transport = self._connection.transport
        if transport is not None and self._connection.connected:
            transport.pauseProducing()

    def resumeProducing(self) -> None:
        transport = self._connection.transport
        if transport is not None and self._connection.connected:
            transport.resumeProducing()

    def stopProducing(self) -> None:
        self._connection.abort()


class _UpstreamConnection(Protocol):
    """One upstream connection: one request at a time, reused while the server keeps it alive."""

    transport: StreamTransport  # type: ignore[assignment]  # see proxilion.transport

    def __init__(self, pool: "UpstreamClient", key: tuple[str, str, int]) -> None:
        self.pool = pool
        self.key = key
        self.idle_since = 0.0
        self._parser: Any = None
        self._waiting: Deferred[UpstreamResponse] | None = None
        self._deadline = Deadline(pool.reactor, self._timed_out)
        self._head_request = False
        self._status = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body_protocol: Protocol | None = None
        self._early_body: list[bytes] = []
        self._in_body = False
        self._close_delimited = False
        self._complete = False
        self._reusable = True
        self._lost: list[Deferred[None]] = []

    def connectionMade(self) -> None:
        try:
            self.transport.setTcpNoDelay(True)
        except Exception:
            pass

    # Sending
    def send(self, data: bytes, head_request: bool, timeout: float) -> Deferred[UpstreamResponse]:
        self._parser = httptools.HttpResponseParser(self)
        self._head_request = head_request
        self._status = b""
        self._headers = []
        self._body_protocol = None
        self._early_body = []
        self._in_body = False
        self._complete = False
        self._waiting = d = Deferred[UpstreamResponse](self._cancel)
        self._deadline.set(timeout)
        write_now(self.transport, data)
        return d

    def _cancel(self, d: Deferred[UpstreamResponse]) -> None:
        self._waiting = None
        self._deadline.clear()
        self.abort()
        d.errback(Failure(CancelledError()))

    def _timed_out(self) -> None:
        # One deadline per connection: for the response headers, then between body chunks.
        if self._waiting is not None:
            self._fail(UpstreamTimeout())
        elif self._in_body:
            self._end_body(BodyIdle())
        self.abort()

    def _fail(self, error: Exception) -> None:
        d, self._waiting = self._waiting, None
        self._deadline.clear()
        if d is not None:
            d.errback(Failure(error))

    def abort(self) -> None:
        self._reusable = False
        if self.transport is not None and self.connected:
            self.transport.abortConnection()

    # Receiving
    def dataReceived(self, data: bytes) -> None:
        if self._parser is None:
            # Bytes with no request outstanding: the connection is not in a state to reuse.
            self.abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._reusable = False
            if self._waiting is not None:
                self._fail(UpstreamDisconnected("malformed response"))
            self.abort()
            return
        if self._complete:
            self._finish_body()

    def on_status(self, status: bytes) -> None:
        self._status += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        code = parser.get_status_code()
        if code < 200:
            # An interim answer (100 Continue, 103 Early Hints): the real one follows.
            self._status = b""
            self._headers = []
            return
        d, self._waiting = self._waiting, None
        self._deadline.set(self.pool.body_idle_timeout)
        length = None
        chunked = False
        for name, value in self._headers:
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = True
        if not parser.should_keep_alive():
            self._reusable = False
        no_body = self._head_request or code in (204, 304)
        self._close_delimited = length is None and not chunked and not no_body
        self._in_body = True
        if self._head_request:
            # llhttp cannot be told the request was HEAD; the answer ends here and
            # the connection is not reused.
            self._reusable = False
            self._complete = True
        if d is not None:
            d.callback(UpstreamResponse(code, self._status, self._headers, None if no_body else length, self))

    def on_body(self, data: bytes) -> None:
        self._deadline.set(self.pool.body_idle_timeout)
        if self._body_protocol is not None:
            self._body_protocol.dataReceived(data)
        else:
            self._early_body.append(data)

    def on_message_complete(self) -> None:
        if self._in_body:
            self._complete = True

    def deliver_body(self, protocol: Protocol) -> None:
        self._body_protocol = protocol
        protocol.makeConnection(_BodyProducer(self))
        early, self._early_body = self._early_body, []
        for data in early:
            protocol.dataReceived(data)
        if self._complete:
            self._finish_body()
        elif not self.connected:
            self._end_body(BodyDone() if self._close_delimited else BodyIncomplete())

    def _finish_body(self) -> None:
        protocol = self._body_protocol
        if protocol is None:
            return
        self._body_protocol = None
        self._parser = None
        self._in_body = False
        self._deadline.clear()
        if self._reusable and self.connected:
            self.pool.release(self)
        elif self.connected:
            self.transport.loseConnection()
        # A body's end is the exception itself (Relay tells BodyDone apart), not a Failure.
        protocol.connectionLost(_BODY_DONE)  # type: ignore[arg-type]

    def _end_body(self, reason: Exception) -> None:
        protocol, self._body_protocol = self._body_protocol, None
        self._in_body = False
        if protocol is not None:
            protocol.connectionLost(reason)  # type: ignore[arg-type]  # as in _finish_body

    def connectionLost(self, reason: Any = None) -> None:
        self.connected = False
        self._deadline.stop()
        self._reusable = False
        self.pool.forget(self)
        if self._waiting is not None:
            if reason is not None and reason.check(SSL.Error):
                self._fail(UpstreamTLSError(_tls_reason(reason.value)))
            else:
                self._fail(UpstreamDisconnected("connection closed before the response"))
        elif self._in_body and not self._complete and self._body_protocol is not None:
            self._end_body(BodyDone() if self._close_delimited else BodyIncomplete())
        lost, self._lost = self._lost, []
        for d in lost:
            d.callback(None)

    def when_lost(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self.connected:
            self._lost.append(d)
        else:
            d.callback(None)
        return d

    @property
    def usable(self) -> bool:
        return bool(self.connected) and self._reusable


class _ConnectionFactory(Factory):
    # One "Starting factory" line per upstream connection is noise, not news.
    noisy = False

    def __init__(self, pool: "UpstreamClient", key: tuple[str, str, int]) -> None:
        self._pool = pool
        self._key = key

    def buildProtocol(self, addr: Any) -> _UpstreamConnection:
        return _UpstreamConnection(self._pool, self._key)


def network_endpoint(reactor: Any, connect_timeout: float, trust_root: Any = None) -> EndpointFactory:
    """The real network: TCP by host name, wrapped in TLS (verified against the host name) for https."""

    def endpoint(scheme: str, host: str, port: int) -> IStreamClientEndpoint:
        tcp: IStreamClientEndpoint = HostnameEndpoint(reactor, host, port, timeout=connect_timeout)
        return wrapClientTLS(optionsForClientTLS(host, trustRoot=trust_root), tcp) if scheme == "https" else tcp

    return endpoint


def trust_root_from_bundle(path: str) -> Any:
    """The certificates of a PEM bundle as a Twisted trust root; C{ValueError} (one line) when unusable."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"UPSTREAM_CA_BUNDLE: cannot read {path}: {e.strerror}") from None
    marker = b"-----END CERTIFICATE-----"
    blocks = [block + marker for block in data.split(marker) if b"-----BEGIN CERTIFICATE-----" in block]
    try:
        certificates = [Certificate.loadPEM(block) for block in blocks]
    except Exception:
        raise ValueError(f"UPSTREAM_CA_BUNDLE: {path} holds a certificate that does not parse") from None
    if not certificates:
        raise ValueError(f"UPSTREAM_CA_BUNDLE: {path} holds no PEM certificate")
    return trustRootFromCertificates(certificates)


class _Target:
    """A parsed upstream base URL: where to connect and what to send as Host and path prefix."""

    __slots__ = ("key", "host_header", "prefix", "endpoint")

    def __init__(self, base: str, endpoint_for: EndpointFactory) -> None:
        parts = urlsplit(base)
        scheme = parts.scheme
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        self.key = (scheme, host, port)
        default_port = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
        host_text = f"[{host}]" if ":" in host else host
        self.host_header = (host_text if default_port else f"{host_text}:{port}").encode("idna")
        self.prefix = parts.path.rstrip("/").encode("ascii")
        self.endpoint = endpoint_for(scheme, host, port)


class UpstreamClient:
    """Sends requests upstream through persistent keep-alive connections, at most C{pool_size} idle per host.

    @param endpoint_factory: where a (scheme, host, port) is reached; default
        L{network_endpoint}.
    """

    def __init__(
        self, reactor: Any, pool_size: int, connect_timeout: float, response_timeout: float,
        body_idle_timeout: float = 300.0, idle_timeout: float = 50.0,
        endpoint_factory: EndpointFactory | None = None, ca_bundle: str | None = None,
    ) -> None:
        self.reactor = reactor
        # UPSTREAM_CA_BUNDLE replaces the system store; verification itself never goes away.
        trust_root = trust_root_from_bundle(ca_bundle) if ca_bundle else None
        self._endpoint_for = endpoint_factory or network_endpoint(reactor, connect_timeout, trust_root)
        self.body_idle_timeout = body_idle_timeout
        self._pool_size = pool_size
        self._response_timeout = response_timeout
        # Below common server keep-alive timeouts (nginx 75 s, many APIs 60 s), so
        # a request is rarely written to a connection the server is closing.
        self._idle_timeout = idle_timeout
        self._targets: dict[str, _Target] = {}
        self._idle: dict[tuple[str, str, int], list[_UpstreamConnection]] = {}

    def _target(self, base: str) -> _Target:
        target = self._targets.get(base)
        if target is None:
            if len(self._targets) >= _MAX_TARGETS:
                self._targets.clear()
            target = self._targets[base] = _Target(base, self._endpoint_for)
        return target

    def request(self, method: bytes, base: str, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes | None) -> Deferred[UpstreamResponse]:
        """Send C{method} C{base}+C{path} with C{headers} (hop-by-hop already removed).

        Fails with L{UpstreamTimeout} when headers take longer than the
        response timeout, L{UpstreamDisconnected} when the connection closes
        first, or the endpoint's connection error. Cancelling aborts the request.
        """
        target = self._target(base)
        parts = [b"%s %s%s HTTP/1.1\r\nhost: %s\r\n" % (method, target.prefix, path, target.host_header)]
        for name, value in headers:
            parts.append(b"%s: %s\r\n" % (name, value))
        if body is not None:
            parts.append(b"content-length: %d\r\n\r\n" % len(body))
            parts.append(body)
        else:
            parts.append(b"\r\n")
        data = b"".join(parts)
        head_request = method == b"HEAD"
        connection = self._take_idle(target.key)
        if connection is not None:
            return connection.send(data, head_request, self._response_timeout)
        return self._connect_and_send(target, data, head_request)

    def _connect_and_send(self, target: _Target, data: bytes, head_request: bool) -> Deferred[UpstreamResponse]:
        connecting = target.endpoint.connect(_ConnectionFactory(self, target.key))
        sent: list[Deferred[UpstreamResponse]] = []

        def cancel(d: Deferred[UpstreamResponse]) -> None:
            d.errback(Failure(CancelledError()))
            (sent[0] if sent else connecting).cancel()

        result: Deferred[UpstreamResponse] = Deferred(cancel)

        def answered(response: UpstreamResponse) -> None:
            if not result.called:
                result.callback(response)

        def failed(failure: Failure) -> None:
            if not result.called:
                result.errback(failure)

        def connected(connection: _UpstreamConnection) -> None:
            if result.called:
                connection.abort()
                return
            d = connection.send(data, head_request, self._response_timeout)
            sent.append(d)
            d.addCallbacks(answered, failed)

        connecting.addCallbacks(connected, failed)
        return result

    def _take_idle(self, key: tuple[str, str, int]) -> _UpstreamConnection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = self.reactor.seconds()
        while idle:
            connection = idle.pop()
            if connection.usable and now - connection.idle_since < self._idle_timeout:
                return connection
            connection.abort()
        return None

    def release(self, connection: _UpstreamConnection) -> None:
        """A connection finished its response and may carry another request."""
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) >= self._pool_size:
            connection.transport.loseConnection()
            return
        connection.idle_since = self.reactor.seconds()
        idle.append(connection)

    def forget(self, connection: _UpstreamConnection) -> None:
        """A connection closed: it can no longer be taken from the idle list."""
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    def close(self) -> Deferred[Any]:
        """Close every idle connection (busy ones were finished or aborted by the drain)."""
        waits = []
        for idle in list(self._idle.values()):
            for connection in list(idle):
                waits.append(connection.when_lost())
                connection.transport.loseConnection()
        self._idle.clear()
        return DeferredList(waits)

