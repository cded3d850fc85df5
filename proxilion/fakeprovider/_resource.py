"""The fake provider's HTTP side: routing, scripting headers, the request record, streaming."""

from __future__ import annotations

import collections
import gzip
import http
import json
import os
import re
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import attrs
import brotli
import zstandard
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.python.failure import Failure
from twisted.web.http import Request as HTTPRequest
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from proxilion.fakeprovider import _wire

_JSON = b"application/json"
# A recorded body beyond this is cut: the record is for assertions, not archiving.
_RECORDED_BODY_LIMIT = 1 << 20
# Bytes a bulk stream writes per reactor turn before yielding to other connections.
_BULK_TURN_BYTES = 256 * 1024
_BULK_FRAME_TEXT = 8 * 1024
_DEFAULT_REPLY = "Hello from the fake provider."


_AZURE_KINDS = {"chat/completions": "chat", "completions": "completions",
                "embeddings": "embeddings"}


@attrs.frozen
class Route:
    """Which API a request is for, which error shape it gets, and what the URL says."""

    kind: str
    family: str
    model: str | None = None
    stream: bool = False
    sse: bool = False


_POST_ROUTES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], Route]]] = [
    (re.compile(r"/v1/chat/completions"), lambda m: Route("chat", "openai")),
    # The OpenAI-compatible endpoints of Gemini, Cohere and Bedrock speak OpenAI's chat format.
    (re.compile(r"/v1beta/openai/chat/completions|/compatibility/v1/chat/completions|/openai/v1/chat/completions"),
     lambda m: Route("chat", "openai")),
    (re.compile(r"/v1/completions"), lambda m: Route("completions", "openai")),
    (re.compile(r"/v1/embeddings"), lambda m: Route("embeddings", "openai")),
    (re.compile(r"/v1/responses"), lambda m: Route("responses", "openai")),
    (re.compile(r"/openai/deployments/([^/]+)/(chat/completions|completions|embeddings)"),
     lambda m: Route(_AZURE_KINDS[m[2]], "openai", unquote(m[1]))),
    (re.compile(r"/v1/messages"), lambda m: Route("messages", "anthropic")),
    (re.compile(r"/v1(?:beta|alpha)?/models/([^/:]+):(generateContent|streamGenerateContent)"),
     lambda m: Route("gemini", "gemini", unquote(m[1]), m[2] == "streamGenerateContent")),
    (re.compile(r"/v2/chat"), lambda m: Route("cohere2", "cohere")),
    (re.compile(r"/v1/chat"), lambda m: Route("cohere1", "cohere")),
    (re.compile(r"/model/([^/]+)/invoke(-with-response-stream)?"),
     lambda m: Route("invoke", "bedrock", unquote(m[1]), m[2] is not None)),
    (re.compile(r"/model/([^/]+)/converse(-stream)?"),
     lambda m: Route("converse", "bedrock", unquote(m[1]), m[2] is not None)),
]
_GET_ROUTES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], Route]]] = [
    (re.compile(r"/v1/models"), lambda m: Route("models", "openai")),
    (re.compile(r"/v1/models/([^/:]+)"), lambda m: Route("model", "openai", unquote(m[1]))),
]

_DIALECTS: dict[str, Any] = {
    "chat": _wire.OpenAIChat(),
    "completions": _wire.OpenAICompletions(),
    "responses": _wire.OpenAIResponses(),
    "messages": _wire.AnthropicMessages(),
    "gemini": _wire.Gemini(),
    "cohere2": _wire.CohereV2(),
    "cohere1": _wire.CohereV1(),
    "converse": _wire.BedrockConverse(),
}


def route(method: bytes, path: str) -> Route | None:
    table = _POST_ROUTES if method == b"POST" else _GET_ROUTES if method == b"GET" else ()
    for pattern, build in table:
        match = pattern.fullmatch(path)
        if match:
            return build(match)
    return None


@attrs.frozen
class Script:
    """What the `x-fake-*` request headers ask of this answer."""

    reply: str | None = None
    status: int | None = None
    error: str | None = None
    delay: float = 0.0
    chunks: int | None = None
    chunk_delay: float | None = None
    stream_bytes: int | None = None
    gzip: bool = False
    encoding: str | None = None

    @classmethod
    def from_headers(cls, headers: Headers) -> Script:
        """Parse the scripting headers; a bad value raises ValueError naming the header."""
        found = {}
        for name in ("reply", "status", "error", "delay", "chunks", "chunk-delay",
                     "stream-bytes", "gzip", "encoding"):
            raw = headers.getRawHeaders(b"x-fake-" + name.encode())
            if raw:
                found[name] = _header_text(raw[-1])
        if not found:
            return _NO_SCRIPT
        try:
            return cls(
                reply=found.get("reply"),
                status=_bounded(int, found, "status", 100, 599),
                error=found.get("error"),
                delay=_bounded(float, found, "delay", 0, 86400) or 0.0,
                chunks=_bounded(int, found, "chunks", 1, 100000),
                chunk_delay=_bounded(float, found, "chunk-delay", 0, 3600),
                stream_bytes=_bounded(int, found, "stream-bytes", 0, 1 << 40),
                gzip=found.get("gzip") == "1",
                encoding=_choice(found, "encoding", tuple(_ENCODERS)),
            )
        except ValueError as e:
            raise ValueError(f"bad x-fake-{e.args[0]} header") from None


_NO_SCRIPT = Script()

_ENCODERS: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress,
             "zstd": lambda data: zstandard.ZstdCompressor().compress(data)}


class _StreamCoder:
    """Compresses a stream as it is written, flushed after each write so every event can be decoded on arrival."""

    def __init__(self, encoding: str) -> None:
        if encoding in ("gzip", "deflate"):
            z = zlib.compressobj(6, zlib.DEFLATED, 31 if encoding == "gzip" else 15)
            self._piece = lambda data: z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
            self._end: Callable[[], bytes] = z.flush
        elif encoding == "br":
            b = brotli.Compressor()
            self._piece = lambda data: b.process(data) + b.flush()
            self._end = b.finish
        else:
            c = zstandard.ZstdCompressor().compressobj()
            self._piece = lambda data: c.compress(data) + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            self._end = c.flush

    def write(self, data: bytes, last: bool) -> bytes:
        return self._piece(data) + self._end() if last else self._piece(data)


def _choice(found: dict[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = found.get(name)
    if value is not None and value not in allowed:
        raise ValueError(name)
    return value


def _set_status(request: Request, status: int) -> None:
    """Twisted lacks reason phrases for some codes (429); SDKs show them in messages."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Overloaded" if status == 529 else "Status"
    request.setResponseCode(status, phrase.encode("ascii"))


def _header_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _bounded(kind: type, found: dict[str, str], name: str, low: float, high: float) -> Any:
    if name not in found:
        return None
    try:
        value = kind(found[name])
    except ValueError:
        raise ValueError(name) from None
    if not low <= value <= high:
        raise ValueError(name)
    return value


class _QuietSite(Site):
    """A Site without access logging: the request record is the fake's access log,
    and a log line per request would cost more than answering it."""

    displayTracebacks = False

    def log(self, request: HTTPRequest) -> None:
        pass


def make_site(*, clock: IReactorTime, chunk_delay: float = 0.01,
              record_limit: int = 1000) -> Site:
    """A Site serving a new `FakeProvider` (reachable as `site.resource`)."""
    provider = FakeProvider(clock=clock, chunk_delay=chunk_delay, record_limit=record_limit)
    # No form parsing: the fake never reads HTML forms, and Twisted's form check
    # parses every POST's Content-Type with the email parser (a quarter of its cost).
    return _QuietSite(provider, parsePOSTFormSubmission=False)


class FakeProvider(Resource):
    """A test double of the AI providers' HTTP APIs.

    Answers echo the last user text; streams (`"stream": true`, Gemini's
    `:streamGenerateContent`, Bedrock's `invoke-with-response-stream` and
    `converse-stream` in AWS event-stream frames) send it word by word,
    `chunk_delay` seconds apart.
    Request headers script an answer:

    - `x-fake-reply: <text>`: answer this text instead;
    - `x-fake-status: <code>`: answer with this status; 4xx/5xx get the
      provider's error body, whose message is `x-fake-error` (sent verbatim as
      the body when it is a JSON object);
    - `x-fake-delay: <seconds>`: wait before the response headers (3600 hangs);
    - `x-fake-chunks: <n>`, `x-fake-chunk-delay: <seconds>`: shape a stream;
    - `x-fake-gzip: 1`: gzip the answer whatever the request's
      Accept-Encoding says; `x-fake-encoding: gzip|deflate|br|zstd` likewise,
      streams too (flushed after each event, as a streaming server does);
    - `x-fake-stream-bytes: <n>`: stream at least n bytes of the provider's
      frames, generated as the client reads (implies streaming, except on
      Bedrock, whose streaming is chosen by the path).

    Every request except the control API's is kept in `requests` (the last
    `record_limit`); `GET /_fake/requests` lists them, `DELETE` clears them,
    `GET /_fake/stats` gives `stats()`. `in_flight`, `disconnects` and
    `bytes_streamed` show whether a client (such as the proxy) really went away
    or stopped reading.
    """

    isLeaf = True

    def __init__(self, *, clock: IReactorTime, chunk_delay: float = 0.01,
                 record_limit: int = 1000) -> None:
        super().__init__()
        self._clock = clock
        self.chunk_delay = chunk_delay
        self._record: collections.deque[dict[str, Any]] = collections.deque(maxlen=record_limit)
        self.in_flight = 0
        self.disconnects = 0
        self.bytes_streamed = 0

    @property
    def requests(self) -> list[dict[str, Any]]:
        return list(self._record)

    def clear_requests(self) -> int:
        count = len(self._record)
        self._record.clear()
        return count

    def stats(self) -> dict[str, int]:
        return {"in_flight": self.in_flight, "disconnects": self.disconnects,
                "bytes_streamed": self.bytes_streamed, "recorded": len(self._record)}

    def render(self, request: Request) -> bytes | int:
        path = request.path.decode("utf-8", "replace")
        if path.startswith("/_fake/"):
            return self._control(request, path)
        body = request.content.read() if request.content is not None else b""
        self._remember(request, path, body)
        found = route(request.method, path)
        if found is None:
            return self._plain_error(request, "openai", 404, f"no fake route for {path}")
        try:
            script = Script.from_headers(request.requestHeaders)
        except ValueError as e:
            return self._plain_error(request, found.family, 400, str(e))
        if script.delay:
            self._delay(request, found, body, script)
            return NOT_DONE_YET
        return self._answer(request, found, body, script)

    # --- control API ---

    def _control(self, request: Request, path: str) -> bytes:
        request.setHeader(b"content-type", _JSON)
        if path == "/_fake/requests" and request.method == b"GET":
            return _wire.dumps({"requests": list(self._record)})
        if path == "/_fake/requests" and request.method == b"DELETE":
            return _wire.dumps({"cleared": self.clear_requests()})
        if path == "/_fake/stats" and request.method == b"GET":
            return _wire.dumps(self.stats())
        request.setResponseCode(404)
        return _wire.dumps({"error": {"message": f"no control route {path}"}})

    def _remember(self, request: Request, path: str, body: bytes) -> None:
        headers = {
            name.decode("latin-1").lower(): ", ".join(v.decode("latin-1") for v in values)
            for name, values in request.requestHeaders.getAllRawHeaders()
        }
        query = request.uri.partition(b"?")[2].decode("utf-8", "replace")
        self._record.append({
            "method": request.method.decode("latin-1"), "path": path, "query": query,
            "headers": headers,
            "body": body[:_RECORDED_BODY_LIMIT].decode("utf-8", "replace"),
            "body_length": len(body), "time": self._clock.seconds(),
        })

    # --- answers ---

    def _delay(self, request: Request, found: Route, body: bytes, script: Script) -> None:
        call = self._clock.callLater(script.delay, self._answer_later, request, found, body,
                                     script)
        self._track(request, call)

    def _answer_later(self, request: Request, found: Route, body: bytes,
                      script: Script) -> None:
        result = self._answer(request, found, body, script)
        if result is not NOT_DONE_YET:
            request.write(result)
            request.finish()

    def _track(self, request: Request, pending: IDelayedCall | None = None) -> None:
        """Count the request in flight until it ends; a lost client cancels `pending`."""
        self.in_flight += 1

        def ended(result: object) -> None:
            self.in_flight -= 1
            if isinstance(result, Failure):
                self.disconnects += 1
                if pending is not None and pending.active():
                    pending.cancel()

        request.notifyFinish().addBoth(ended)

    def _plain_error(self, request: Request, family: str, status: int, message: str) -> bytes:
        body, headers = _wire.error_reply(family, status, message)
        _set_status(request, status)
        for name, value in headers.items():
            request.setHeader(name, value)
        return self._json(request, body)

    @staticmethod
    def _json(request: Request, body: bytes) -> bytes:
        request.setHeader(b"content-type", _JSON)
        request.setHeader(b"content-length", b"%d" % len(body))
        return body

    def _answer(self, request: Request, found: Route, body: bytes, script: Script) -> bytes | int:
        request.setHeader(b"x-request-id", b"req_" + os.urandom(12).hex().encode())
        if script.status is not None and script.status >= 400:
            return self._scripted_error(request, found.family, script)
        if found.kind == "models":
            return self._json(request, _wire.models_reply())
        if found.kind == "model":
            return self._json(request, _wire.dumps(_wire.model_object(found.model or "")))
        try:
            parsed = json.loads(body) if body else {}
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            return self._plain_error(request, found.family, 400,
                                     "request body is not a JSON object")
        model = str(parsed.get("model") or found.model or "fake-model")
        if found.kind == "embeddings":
            return self._json(request, _wire.embeddings_reply(parsed, model))
        dialect = (_wire.bedrock_invoke_dialect(parsed) if found.kind == "invoke"
                   else _DIALECTS[found.kind])
        conversation = dialect.conversation(parsed)
        text = script.reply
        if text is None:
            text = _wire.last_user_text(conversation) or _DEFAULT_REPLY
        options = parsed.get("stream_options")
        ex = _wire.Exchange(
            ident=os.urandom(12).hex(), created=int(self._clock.seconds()), model=model,
            prompt_tokens=max(1, sum(_wire.tokens(t) + 3 for _, t in conversation)),
            include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        )
        if script.status is not None:
            _set_status(request, script.status)
        if found.family == "bedrock":
            # Bedrock streams by path (invoke-with-response-stream, converse-stream), never by body.
            wanted = found.stream
        else:
            wanted = script.stream_bytes is not None or (
                found.stream if found.kind == "gemini" else parsed.get("stream") is True)
        if not wanted:
            reply = dialect.reply(ex, text)
            encoding = "gzip" if script.gzip else script.encoding
            if encoding is not None:
                # Compressed whatever the client accepts, as a misbehaving gateway might.
                request.setHeader(b"content-encoding", encoding.encode("ascii"))
                reply = _ENCODERS[encoding](reply)
            return self._json(request, reply)
        if found.kind == "invoke":
            stream = _wire.bedrock_invoke_stream(parsed, ex)
        elif found.kind == "gemini" and found.stream and (request.args.get(b"alt") if request.args else None) != [b"sse"]:
            stream = _DIALECTS["gemini"].array_stream(ex)
        else:
            stream = _DIALECTS[found.kind].stream(ex)
        self._stream(request, stream, text, script)
        return NOT_DONE_YET

    def _scripted_error(self, request: Request, family: str, script: Script) -> bytes:
        status = script.status or 500
        if script.error and script.error.lstrip().startswith("{"):
            _set_status(request, status)
            return self._json(request, script.error.encode("utf-8"))
        return self._plain_error(request, family, status,
                                 script.error or f"fake provider error {status}")

    def _stream(self, request: Request, stream: _wire.Stream, text: str, script: Script) -> None:
        request.setHeader(b"content-type", stream.content_type)
        request.setHeader(b"cache-control", b"no-cache")
        if not script.delay:
            self._track(request)
        write: _Write = self._write
        encoding = "gzip" if script.gzip else script.encoding
        if encoding is not None:
            request.setHeader(b"content-encoding", encoding.encode("ascii"))
            coder = _StreamCoder(encoding)

            def write(request: Request, data: bytes, last: bool = False) -> None:
                self._write(request, coder.write(data, last))
        if script.stream_bytes is not None:
            _BulkStream(self._clock, request, write, stream, script.stream_bytes).start()
            return
        delay = self.chunk_delay if script.chunk_delay is None else script.chunk_delay
        pieces = _wire.split_text(text, script.chunks)
        _PacedStream(self._clock, request, write, stream, pieces, delay).start()

    def _write(self, request: Request, data: bytes, last: bool = False) -> None:
        self.bytes_streamed += len(data)
        request.write(data)


# Writes a piece of a stream; C{last} for its end (a compressed stream's trailer follows it).
_Write = Callable[..., None]


class _PacedStream:
    """Writes the head at once, then one delta every `delay` seconds, then the tail."""

    def __init__(self, clock: IReactorTime, request: Request, write: _Write,
                 stream: _wire.Stream, pieces: list[str], delay: float) -> None:
        self._clock = clock
        self._write = write
        self._request = request
        self._stream = stream
        self._pieces = iter(pieces)
        self._delay = delay
        self._call: IDelayedCall | None = None

    def start(self) -> None:
        self._request.notifyFinish().addErrback(self._lost)
        self._write(self._request, self._stream.head())
        self._call = self._clock.callLater(self._delay, self._next)

    def _next(self) -> None:
        self._call = None
        piece = next(self._pieces, None)
        if piece is None:
            self._write(self._request, self._stream.tail(), last=True)
            self._request.finish()
            return
        self._write(self._request, self._stream.delta(piece))
        self._call = self._clock.callLater(self._delay, self._next)

    def _lost(self, reason: Failure) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()


@implementer(IPushProducer)
class _BulkStream:
    """Streams at least `size` bytes of well-formed frames, generated as the client reads.

    A push producer: the transport pauses it when its buffer is full, so an
    unread stream costs one buffer, not `size` bytes.
    """

    def __init__(self, clock: IReactorTime, request: Request, write: _Write,
                 stream: _wire.Stream, size: int) -> None:
        self._clock = clock
        self._send = write
        self._request = request
        self._stream = stream
        self._remaining = size
        self._paused = False
        self._done = False
        self._call: IDelayedCall | None = None

    def start(self) -> None:
        self._request.notifyFinish().addErrback(lambda _: self.stopProducing())
        self._request.registerProducer(self, True)
        self._write(self._stream.head())
        self._schedule()

    def _write(self, data: bytes, last: bool = False) -> None:
        self._remaining -= len(data)
        self._send(self._request, data, last=last)

    def _schedule(self) -> None:
        if self._call is None and not self._paused and not self._done:
            self._call = self._clock.callLater(0, self._produce)

    def _produce(self) -> None:
        self._call = None
        budget = _BULK_TURN_BYTES
        while budget > 0 and not self._paused and not self._done:
            if self._remaining <= 0:
                self._done = True
                self._write(self._stream.tail(), last=True)
                self._request.unregisterProducer()
                self._request.finish()
                return
            frame = self._stream.delta("x" * min(_BULK_FRAME_TEXT, max(1, self._remaining)))
            self._write(frame)
            budget -= len(frame)
        self._schedule()

    def pauseProducing(self) -> None:
        self._paused = True
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def resumeProducing(self) -> None:
        self._paused = False
        self._schedule()

    def stopProducing(self) -> None:
        self._done = True
        self.pauseProducing()
