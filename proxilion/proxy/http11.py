"""The proxy port's HTTP/1.1 server: one lean protocol per connection, parsed by llhttp.

twisted.web's C{HTTPChannel}/C{Request} spent about 0.6 ms of CPU per proxied
request on line-by-line parsing, C{Headers} objects and Deferred chains.
This connection hands the bytes to C{httptools} (llhttp, the parser of
Node.js and uvicorn: strict about smuggling, obs-fold and bad framing) and
keeps headers as a list of byte pairs. The reactor, transports, producers and
TLS stay Twisted's.
"""

from __future__ import annotations

import collections
import time
from email.utils import formatdate
from typing import Any, Callable

import httptools
from twisted.internet.protocol import Protocol

from proxilion.proxy.deadline import Deadline
from proxilion.proxy.headers import first_header
from proxilion.transport import StreamTransport

__all__ = ["HTTPConnection", "HTTPRequest", "reason_phrase", "write_now"]

_REASONS = {
    100: b"Continue", 200: b"OK", 201: b"Created", 202: b"Accepted", 204: b"No Content",
    301: b"Moved Permanently", 302: b"Found", 304: b"Not Modified", 400: b"Bad Request",
    401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found", 405: b"Method Not Allowed",
    408: b"Request Timeout", 409: b"Conflict", 413: b"Content Too Large", 415: b"Unsupported Media Type",
    422: b"Unprocessable Content", 429: b"Too Many Requests", 431: b"Request Header Fields Too Large",
    499: b"Client Closed Request", 500: b"Internal Server Error", 502: b"Bad Gateway",
    503: b"Service Unavailable", 504: b"Gateway Timeout", 505: b"HTTP Version Not Supported", 529: b"Overloaded",
}
_NO_BODY_CODES = frozenset({204, 304})
# Complete requests waiting behind the one being answered (HTTP/1.1 pipelining);
# beyond this the socket is not read until the queue shrinks.
_MAX_PIPELINED = 8


def write_now(transport: Any, data: bytes) -> None:
    """Write C{data}, sending it at once when nothing is queued ahead of it.

    A plain C{transport.write} only buffers; the reactor then registers the
    socket for writing and sends on its next turn, two epoll calls and a
    loop iteration per response. Reads Twisted's TCP buffer attributes; any
    other transport (TLS, in memory) just gets C{write}.
    """
    # Only a plain TCP transport's own socket: a TLS wrapper forwards attribute reads to the TCP
    # transport under it (ProtocolWrapper.__getattr__), and its bytes must go through TLS; after
    # startTLS the TCP transport itself says TLS.
    sock = getattr(transport, "__dict__", {}).get("socket")
    if (
        sock is not None
        and not getattr(transport, "TLS", False)
        and not getattr(transport, "_tempDataBuffer", True)
        and len(getattr(transport, "dataBuffer", b"x")) == getattr(transport, "offset", -1)
        and transport.connected
        and not transport.disconnecting
    ):
        try:
            sent = sock.send(data)
        except OSError:
            # EAGAIN or a dead peer: the reactor's own write path deals with both.
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


def reason_phrase(code: int) -> bytes:
    return _REASONS.get(code, b"Unknown")


class _DateHeader:
    """The Date header value, formatted at most once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode("ascii")
        return self._value


_date = _DateHeader()


class HTTPRequest:
    """One request on a connection, and the writer of its response."""

    __slots__ = (
        "connection", "method", "uri", "version", "headers", "body", "persistent", "code", "phrase",
        "response_headers", "started_writing", "finished", "on_lost", "before_end", "_chunked", "_no_body", "_body_left",
        "_trailer_names", "_trailers",
    )

    def __init__(self, connection: "HTTPConnection", method: bytes, uri: bytes, version: bytes,
                 headers: list[tuple[bytes, bytes]], body: bytes, persistent: bool) -> None:
        self.connection = connection
        self.method = method
        self.uri = uri
        self.version = version
        # (name, value) pairs in arrival order, names lower-cased.
        self.headers = headers
        self.body = body
        self.persistent = persistent
        self.code = 200
        self.phrase: bytes | None = None
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.started_writing = False
        self.finished = False
        # Called (no arguments) if the client goes away before the response is finished.
        self.on_lost: Callable[[], None] | None = None
        # Called (no arguments) once, just before the response's last bytes are written:
        # the audit journal's moment, so no client holds an answer the journal lacks.
        self.before_end: Callable[[], None] | None = None
        # Body bytes still to come under a Content-Length; None while unknown or chunked.
        self._body_left: int | None = None
        self._chunked = False
        self._no_body = False
        # Trailer fields announced in the head, and their values, sent after a chunked body's last chunk.
        self._trailer_names: tuple[bytes, ...] = ()
        self._trailers: list[tuple[bytes, bytes]] = []

    # The request
    def header(self, name: bytes) -> bytes | None:
        """The first value of header C{name} (lower-case), or None."""
        return first_header(self.headers, name)

    def header_values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]

    @property
    def peer_ip(self) -> str:
        return self.connection.peer_ip

    # The response
    def set_code(self, code: int, phrase: bytes | None = None) -> None:
        self.code = code
        self.phrase = phrase

    def set_header(self, name: bytes, value: bytes) -> None:
        """Set response header C{name} (lower-case), replacing any earlier value."""
        headers = self.response_headers
        if any(key == name for key, _ in headers):
            headers = self.response_headers = [(k, v) for k, v in headers if k != name]
        headers.append((name, value))

    def announce_trailer(self, name: bytes) -> None:
        """Announce trailer field C{name} (lower-case) in the head; L{set_trailer} gives its value.

        Only a chunked body has trailers: a body with a length, or sent to an
        HTTP/1.0 client, announces and sends none.
        """
        if name not in self._trailer_names:
            self._trailer_names += (name,)

    def set_trailer(self, name: bytes, value: bytes) -> None:
        """The value of announced trailer field C{name}, sent after the last chunk."""
        if name in self._trailer_names:
            self._trailers = [(k, v) for k, v in self._trailers if k != name]
            self._trailers.append((name, value))

    def close_after(self) -> None:
        """Close the connection once this response is done (and tell the client so)."""
        self.persistent = False

    def _head(self) -> bytes:
        code = self.code
        parts = [b"HTTP/1.1 %d %s\r\n" % (code, self.phrase or reason_phrase(code))]
        framed = False
        for name, value in self.response_headers:
            if name == b"content-length":
                framed = True
                self._body_left = int(value) if value.isdigit() else None
            parts.append(b"%s: %s\r\n" % (name, value))
        self._no_body = self.method == b"HEAD" or code in _NO_BODY_CODES or code < 200
        if not framed and not self._no_body:
            if self.version == b"1.1":
                self._chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
                if self._trailer_names:
                    parts.append(b"trailer: %s\r\n" % b", ".join(self._trailer_names))
            else:
                # An HTTP/1.0 client learns where the body ends from the close.
                self.persistent = False
        if not self.persistent:
            parts.append(b"connection: close\r\n")
        elif self.version == b"1.0":
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"date: %s\r\n\r\n" % _date())
        return b"".join(parts)

    def _ending(self) -> None:
        callback = self.before_end
        if callback is not None:
            self.before_end = None
            callback()

    def _ends_with(self, data: bytes) -> bool:
        """True when writing C{data} completes a Content-Length body (or a body-less response)."""
        if self._no_body:
            return True
        left = self._body_left
        if left is None:
            return False
        left -= len(data)
        self._body_left = left
        return left <= 0

    def write(self, data: bytes) -> None:
        transport = self.connection.transport
        if self.finished or transport is None:
            return
        if not self.started_writing:
            self.started_writing = True
            head = self._head()
            if self._ends_with(data):
                self._ending()
            if self._no_body or not data:
                write_now(transport, head)
            elif self._chunked:
                write_now(transport, b"%s%x\r\n%s\r\n" % (head, len(data), data))
            else:
                write_now(transport, head + data)
            return
        if self._no_body or not data:
            return
        if self._ends_with(data):
            self._ending()
        if self._chunked:
            write_now(transport, b"%x\r\n%s\r\n" % (len(data), data))
        else:
            write_now(transport, data)

    def finish(self) -> None:
        if self.finished:
            return
        if not self.started_writing:
            if first_header(self.response_headers, b"content-length") is None and self.method != b"HEAD" and self.code not in _NO_BODY_CODES:
                self.response_headers.append((b"content-length", b"0"))
            self.write(b"")
        elif self._chunked and self.connection.transport is not None:
            self._ending()
            fields = b"".join(b"%s: %s\r\n" % field for field in self._trailers)
            write_now(self.connection.transport, b"0\r\n%s\r\n" % fields)
        # A body that ends with the connection (HTTP/1.0 without a length) ends here.
        self._ending()
        self.finished = True
        self.connection.request_done(self)

    def finish_cut(self) -> None:
        """End the response without ending its chunked body, then close once what was written is sent.

        The client sees an error event, then a body cut short: an error even to an SDK that
        reads past error events (Cohere's)."""
        if self.finished:
            return
        self.persistent = False
        self._ending()
        self.finished = True
        self.connection.request_done(self)

    def register_producer(self, producer: Any) -> None:
        """Pause C{producer} (a streaming producer) while the client's socket buffer is full."""
        transport = self.connection.transport
        if transport is not None and not self.connection.lost:
            transport.registerProducer(producer, True)

    def unregister_producer(self) -> None:
        transport = self.connection.transport
        if transport is not None and transport.producer is not None:
            transport.unregisterProducer()

    def abort(self) -> None:
        """Cut the connection: the only honest signal that a started body is incomplete."""
        if self.connection.transport is not None:
            self.connection.transport.abortConnection()


class _Parsing:
    """The request being parsed: its parts so far."""

    __slots__ = ("url", "headers", "body", "size", "body_size", "head_size", "expect_continue", "rejected")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        # Bytes of request line and headers, as parsed.
        self.size = 0
        self.body_size = 0
        # Bytes received while the head was incomplete; -1 once it is.
        self.head_size = 0
        self.expect_continue = False
        self.rejected = False


class HTTPConnection(Protocol):
    """An HTTP/1.1 connection: parses requests, answers them one at a time, in order.

    Subclasses implement L{dispatch} (a complete request), L{refuse}
    (answer before the request is complete: 400, 408, 413, 431) and
    L{abandoned} (the client left before its request was dispatched).
    """

    transport: StreamTransport  # type: ignore[assignment]  # see proxilion.transport

    def __init__(self, clock: Any, max_body: int, max_headers: int, max_head_size: int, idle_timeout: float) -> None:
        self.clock = clock
        self.max_body = max_body
        self.max_headers = max_headers
        self.max_head_size = max_head_size
        self.idle_timeout = idle_timeout
        self.current: HTTPRequest | None = None
        self.lost = False
        self.peer_ip = "unknown"
        self._queue: collections.deque[HTTPRequest] = collections.deque()
        self._parsing: _Parsing | None = None
        self._parser: Any = None
        self._deadline = Deadline(clock, self._timed_out)
        self._paused = False
        self._closing = False
        # A request refused while earlier ones are still being answered: its
        # refusal is written (and recorded) once they are.
        self._refusal: tuple[int, str, str, _Parsing | None] | None = None

    # Twisted protocol
    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.peer_ip = getattr(peer, "host", None) or "unknown"
        self._parser = httptools.HttpRequestParser(self)
        try:
            # Small answers and SSE events leave at once instead of waiting on Nagle.
            self.transport.setTcpNoDelay(True)
        except Exception:
            pass
        self._deadline.set(self.idle_timeout)

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        parsing = self._parsing
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            # Upgrade and CONNECT: the request itself was parsed (and answered);
            # what follows is HTTP again only if the answer switched the connection.
            if not self.upgraded(data[e.args[0]:] if e.args else b""):
                self._end_after_answers()
            return
        except httptools.HttpParserError:
            self._reject(400, "Malformed HTTP request.", "bad_request", self._parsing or parsing)
            return
        parsing = self._parsing
        if parsing is not None and not parsing.rejected and parsing.head_size >= 0:
            # Still inside the head: bound what the parser is holding for us.
            parsing.head_size += len(data)
            if parsing.head_size > self.max_head_size:
                self._reject(431, "Request headers too large.", "headers_too_large")

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True
        self._deadline.stop()
        current, queued = self.current, list(self._queue)
        self.current = None
        self._queue.clear()
        if current is not None and not current.finished and current.on_lost is not None:
            current.on_lost()
        for request in queued:
            # Complete, but waiting behind another request: never dispatched.
            self.abandoned(request.method, request.uri, request.headers, len(request.body))
        parsing, self._parsing = self._parsing, None
        if parsing is not None and not parsing.rejected and not self._closing:
            # The client left halfway through a request (part of its head or
            # body): it is still a request, and gets its row. A close between
            # requests (no byte of a next one) leaves C{_parsing} unset.
            self.abandoned(self.parsed_method(parsing), parsing.url, parsing.headers, parsing.body_size)
        self._refuse_pending()

    # llhttp callbacks
    def on_message_begin(self) -> None:
        self._parsing = _Parsing()
        if self.current is None and not self._queue:
            # The idle deadline becomes the slow-client deadline for this request.
            self._deadline.set(self.idle_timeout)

    def on_url(self, url: bytes) -> None:
        # llhttp calls back only between on_message_begin (which sets it) and on_message_complete.
        parsing: _Parsing = self._parsing  # type: ignore[assignment]
        parsing.url += url
        parsing.size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        parsing: _Parsing = self._parsing  # type: ignore[assignment]  # as in on_url
        if parsing.rejected:
            return
        name = name.lower()
        parsing.headers.append((name, value))
        parsing.size += len(name) + len(value) + 4
        if len(parsing.headers) > self.max_headers:
            self._reject(431, "Too many request headers.", "too_many_headers")
        elif parsing.size > self.max_head_size:
            self._reject(431, "Request headers too large.", "headers_too_large")
        elif name == b"expect" and value.lower() == b"100-continue":
            parsing.expect_continue = True

    def on_headers_complete(self) -> None:
        parsing: _Parsing = self._parsing  # type: ignore[assignment]  # as in on_url
        if parsing.rejected:
            return
        # The head is complete: from here on, bytes are body.
        parsing.head_size = -1
        version = self._parser.get_http_version()
        if version not in ("1.0", "1.1"):
            self._reject(505, "HTTP version %s is not supported; send HTTP/1.1." % version[:8], "http_version_not_supported")
            return
        if version == "1.0" and first_header(parsing.headers, b"transfer-encoding") is not None:
            # HTTP/1.0 has no Transfer-Encoding (RFC 9112 section 6.1): its framing cannot be trusted.
            self._reject(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request.", "bad_request")
            return
        # llhttp has rejected malformed and conflicting lengths already.
        length = first_header(parsing.headers, b"content-length")
        if length is not None and int(length) > self.max_body:
            # Refused before reading (and before any "100 Continue").
            self._reject(413, "Request body too large: limit is %d bytes." % self.max_body, "request_too_large")
            return
        if parsing.expect_continue and self._parser.get_http_version() == "1.1" and self.current is None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, data: bytes) -> None:
        parsing: _Parsing = self._parsing  # type: ignore[assignment]  # as in on_url
        if parsing.rejected:
            return
        parsing.body_size += len(data)
        if parsing.body_size > self.max_body:
            self._reject(413, "Request body too large: limit is %d bytes." % self.max_body, "request_too_large")
            return
        parsing.body.append(data)

    def on_message_complete(self) -> None:
        parsing, self._parsing = self._parsing, None
        if parsing is None or parsing.rejected or self._closing:
            return
        body = b"".join(parsing.body)
        parser = self._parser
        request = HTTPRequest(
            self, parser.get_method(), parsing.url, parser.get_http_version().encode("ascii"),
            parsing.headers, body, parser.should_keep_alive(),
        )
        if self.current is None:
            self._deadline.clear()
            self.current = request
            self.dispatch(request)
        else:
            self._queue.append(request)
            if len(self._queue) >= _MAX_PIPELINED and not self._paused:
                self._paused = True
                self.transport.pauseProducing()

    # Requests
    def dispatch(self, request: HTTPRequest) -> None:
        raise NotImplementedError

    def refuse(self, status: int, message: str, code: str, parsing: _Parsing | None) -> None:
        raise NotImplementedError

    def upgraded(self, rest: bytes) -> bool:
        """The parser stopped after an Upgrade or CONNECT request; C{rest} followed it.

        True when the connection was switched (and reads on); False to close
        once the requests received are answered.
        """
        return False

    def reset_parser(self) -> None:
        """A new parser, for a connection that speaks HTTP again after a CONNECT."""
        self._parser = httptools.HttpRequestParser(self)
        self._closing = False
        self._deadline.set(self.idle_timeout)

    def abandoned(self, method: bytes, uri: bytes, headers: list[tuple[bytes, bytes]], bytes_in: int) -> None:
        """The connection was lost with this request received but never dispatched (partial, or queued)."""

    def parsed_method(self, parsing: _Parsing | None) -> bytes:
        """The method of the request being parsed, or b"" while it is not known.

        llhttp reports a method only once the request line reached the URL;
        before that C{get_method} answers whatever its zeroed state maps to.
        """
        if parsing is None or not parsing.url:
            return b""
        try:
            return self._parser.get_method()
        except Exception:
            return b""

    def request_done(self, request: HTTPRequest) -> None:
        """The response to C{request} is complete: close, or go on with the next request."""
        if request is not self.current:
            return
        self.current = None
        if self.lost:
            return
        if not request.persistent:
            self._closing = True
            self._queue.clear()
            self.transport.loseConnection()
            return
        if self._refusal is not None and not self._queue:
            self._refuse_pending()
            return
        if self._queue:
            nxt = self._queue.popleft()
            if self._paused and len(self._queue) < _MAX_PIPELINED:
                self._paused = False
                self.transport.resumeProducing()
            self.current = nxt
            self.dispatch(nxt)
            return
        self._deadline.set(self.idle_timeout)

    @property
    def busy(self) -> bool:
        """A request is being received or answered."""
        return self.current is not None or self._parsing is not None or bool(self._queue)

    def close_if_idle(self) -> None:
        if not self.busy and not self.lost:
            self._closing = True
            self.transport.loseConnection()

    # Refusals and timers
    def _reject(self, status: int, message: str, code: str, parsing: _Parsing | None = None) -> None:
        parsing = parsing or self._parsing
        if parsing is not None and parsing.rejected:
            # Refused already (the parser may still fail on what follows): one answer per request.
            return
        if parsing is not None:
            parsing.rejected = True
        self._closing = True
        if self.current is not None or self._queue:
            # A pipelined request behind answers still going out: writing the
            # refusal now would interleave it with them. It waits its turn.
            if self._refusal is None:
                self._refusal = (status, message, code, parsing)
            return
        self._deadline.stop()
        self.refuse(status, message, code, parsing)

    def _refuse_pending(self) -> None:
        refusal, self._refusal = self._refusal, None
        if refusal is not None:
            self._deadline.stop()
            self.refuse(*refusal)

    def _end_after_answers(self) -> None:
        """Read nothing more; close once the requests already received are answered."""
        self._closing = True
        last = self._queue[-1] if self._queue else self.current
        if last is not None:
            last.persistent = False

    def _timed_out(self) -> None:
        if self._parsing is not None:
            self._reject(408, "The request was not received in time.", "request_timeout")
        elif self.current is None and not self._queue:
            self._closing = True
            self.transport.loseConnection()
