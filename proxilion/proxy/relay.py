"""Relay an upstream response body to the client as it arrives, with backpressure.

The relay is registered as the producer of the client's transport: when the
client reads slowly, Twisted pauses it, and it stops reading the upstream
socket, so a slow client never makes the proxy buffer a stream. A transform
(the stream redactor) is fed in slices of at most C{SLICE} bytes; once a
reactor turn has spent C{TURN_SECONDS} on them, the upstream read is paused
and the rest waits for the next turn, so other connections are served in
between however costly the answer is to inspect.

A stream in a Content-Encoding (a provider that ignored our request for
identity) comes with a L{content_coding.StreamDecoder}: the backlog then holds
coded bytes and hands the transform decoded slices, so a compressed read that
decodes to megabytes is fed, and held in memory, a slice at a time too.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Protocol as TypingProtocol, runtime_checkable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from proxilion.inspect.decide import block_message
from proxilion.inspect.findings import PASSED_THROUGH, TOO_MANY_FINDINGS, Action, Finding, TransformOutcome, Verdict
from proxilion.inspect.inspector import Inspector
from proxilion.providers import content_coding
from proxilion.providers.errors import ANSWER_BLOCKED, ANSWER_UNINSPECTABLE, error_body, refusal_headers, wire_dialect
from proxilion.providers.usage import usage_of
from proxilion.proxy.http11 import HTTPRequest
from proxilion.proxy.offload import PoolFull, ScanPool
from proxilion.proxy.upstream import BodyDone, BodyIdle

__all__ = ["Relay", "BodyTransform", "StreamTransform", "BufferedInspection"]

# Measured: a 1 KiB slice of finding-dense events (phone numbers, each validated) takes up to ~30 ms
# to redact on a loaded machine, 4 KiB up to ~150 ms. Ordinary chunks (a few events) are one slice,
# fed at once, so slicing adds no delay to them.
SLICE = 1024
TURN_SECONDS = 0.01


class BodyTransform(TypingProtocol):
    """A rewrite of a response body on its way through: L{BufferedInspection} (whole answers) or the
    stream redactor (proxilion.inspect.stream). An answer passed on untouched has no transform.

    C{blocked} turns True when the transform has ended the answer itself (an error body or
    event, the last bytes it returns); L{outcome} is read once the answer has ended.
    """

    blocked: bool
    # Whether a blocked answer's body is cut short after its error event (see HTTPRequest.finish_cut).
    cut_on_block: bool
    # Characters held back from the client now, and candidates that outgrew their bound so far.
    held_chars: int
    overflows: int
    # Bytes fed are not all inspected yet (a large event is scanned a piece per call): feed again.
    busy: bool

    def feed(self, chunk: bytes, arrived: float | None = None) -> bytes: ...

    def take_released(self) -> list[float]:
        """The arrival times (C{arrived} of L{feed}) of the content events released since the last call."""
        ...

    def finish(self) -> bytes:
        """The last bytes, at the end of the upstream body."""
        ...

    def finish_later(self) -> Deferred[bytes] | None:
        """What L{finish} returns, computed elsewhere (the scan pool); None: call L{finish}."""
        ...

    def outcome(self) -> TransformOutcome: ...


@runtime_checkable
class StreamTransform(BodyTransform, TypingProtocol):
    """A transform that can end the answer itself when the rest of it cannot be read (the stream redactor)."""

    def refuse(self, error_code: str, reason: str) -> bytes:
        """The last bytes of an answer refused as uninspectable (C{blocked} turns True)."""
        ...


class _Backlog:
    """Upstream bytes not fed to the transform yet, each with its arrival time, handed out in
    slices of at most C{SLICE} bytes."""

    def __init__(self) -> None:
        self._parts: deque[tuple[bytes, float]] = deque()
        # The transform is part way through a large event (C{busy}): it is fed b"" next, with the
        # event's arrival time, to go on scanning it.
        self._again: float | None = None

    def __bool__(self) -> bool:
        return bool(self._parts) or self._again is not None

    def append(self, data: bytes, arrived: float) -> None:
        self._parts.append((data, arrived))

    def again(self, arrived: float) -> None:
        self._again = arrived

    def clear(self) -> None:
        self._parts.clear()
        self._again = None

    def _resume(self) -> tuple[bytes, float] | None:
        arrived, self._again = self._again, None
        return None if arrived is None else (b"", arrived)

    def take(self) -> tuple[bytes, float] | None:
        """The next slice and its arrival time; None when nothing came of the bytes taken (coded bytes not decoded yet)."""
        resumed = self._resume()
        if resumed is not None:
            return resumed
        data, arrived = self._parts.popleft()
        if len(data) > SLICE:
            self._parts.appendleft((data[SLICE:], arrived))
            data = data[:SLICE]
        return data, arrived


class _DecodedBacklog(_Backlog):
    """Coded upstream bytes, handed out decoded: C{SLICE} decoded bytes at a time, whatever they decode to."""

    def __init__(self, decoder: content_coding.StreamDecoder, transform: StreamTransform) -> None:
        super().__init__()
        self.decoder = decoder
        self._transform = transform
        self._more = False  # the last slice was not empty: the decoder may hold more
        self._arrived = 0.0  # when the coded bytes being decoded arrived

    def __bool__(self) -> bool:
        return self._more or super().__bool__()

    def clear(self) -> None:
        super().clear()
        self._more = False

    def take(self) -> tuple[bytes, float] | None:
        """The next decoded slice; raises L{content_coding.CodingError} as the decoder does."""
        resumed = self._resume()
        if resumed is not None:
            return resumed
        self._more = False
        decoder = self.decoder
        out = decoder.read(SLICE)
        while not out and self._parts:
            data, self._arrived = self._parts.popleft()
            decoder.feed(data)
            out = decoder.read(SLICE)
        self._more = bool(out)
        return (out, self._arrived) if out else None

    def refused(self, error: content_coding.CodingError) -> bytes:
        """The transform's end of a stream that does not decode (or decodes past the size limit)."""
        if isinstance(error, content_coding.DecodedTooLarge):
            return self._transform.refuse("answer_too_large", "the streamed answer is larger than the size limit once decompressed")
        return self._transform.refuse("undecodable_answer", f"the streamed answer is not valid {error.coding[:32]} data")


class BufferedInspection:
    """Hold a JSON answer whole, inspect it, then release it (redacted or replaced by an error).

    An answer larger than C{limit} is not buffered: that would let one answer
    take the process's memory. Like any answer that cannot be scanned it
    follows the policy's C{on_scanner_error}: blocked (a 422 in the
    provider's shape, the default), or released uninspected as it comes, and
    C{uninspected} says so. Either way C{error_code} names what happened.

    An answer in a Content-Encoding (C{coding}) is decoded, within C{limit}, and
    released decoded; one that does not decode is refused.
    """

    def __init__(self, inspector: Inspector, provider: str, path: str, identity: str | None, limit: int,
                 pool: ScanPool | None = None, offload_bytes: int = 0, coding: bytes | None = None) -> None:
        self._coding = coding
        self._inspector = inspector
        # Answers larger than offload_bytes are inspected in the scan pool, off the reactor.
        self._pool = pool
        self._offload_bytes = offload_bytes
        self._provider = provider
        self._dialect = wire_dialect(provider, path)  # whose error shape the client reads
        self._path = path
        self._identity = identity
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self.uninspected = False
        self.error_code: str | None = None
        self.findings: tuple[Finding, ...] = ()
        self.action: Action | None = None
        self.blocked = False
        self.cut_on_block = False  # a refusal replaces the whole answer: nothing to cut
        self.held_chars = self.overflows = 0  # a stream's measures: a whole answer has none
        self.busy = False
        self.status: int | None = None
        self.scan_seconds: float | None = None
        self.tokens: tuple[int | None, int | None] = (None, None)
        self.headers: tuple[tuple[str, str], ...] = ()
        self.rule: str | None = None

    def _refuse(self, status: int, message: str, code: str, rule: str | None = None) -> bytes:
        """Replace the answer with an error no SDK retries (see L{ANSWER_BLOCKED})."""
        self.blocked = True
        self.action = "block"
        self.status = status
        self.headers = refusal_headers(self._dialect, status)
        return error_body(self._dialect, status, message, code, rule=rule)

    def _undecodable(self, e: content_coding.CodingError) -> bytes:
        if isinstance(e, content_coding.DecodedTooLarge):
            self.error_code = "answer_too_large"
            return self._refuse(ANSWER_UNINSPECTABLE, f"The answer is larger than {self._limit} bytes once decompressed; "
                                "Proxilion cannot inspect it, so it was not passed on.", "uninspectable_answer")
        self.error_code = "undecodable_answer"
        return self._refuse(ANSWER_UNINSPECTABLE, f"The provider's answer is not valid {e.coding[:32]} data; "
                            "Proxilion cannot inspect it, so it was not passed on.", "uninspectable_answer")

    def feed(self, chunk: bytes, arrived: float | None = None) -> bytes:
        if self.uninspected:
            return chunk
        if self.blocked:
            return b""
        self._parts.append(chunk)
        self._size += len(chunk)
        if self._size > self._limit:
            held, self._parts = b"".join(self._parts), []
            # A compressed answer cannot pass as it came: its Content-Encoding header was dropped.
            if self._inspector.policy.settings.on_scanner_error == "allow" and self._coding is None:
                self.uninspected = True
                self.error_code = "answer_too_large_uninspected"
                return held
            self.error_code = "answer_too_large"
            return self._refuse(ANSWER_UNINSPECTABLE, f"The answer is larger than {self._limit} bytes; "
                                "Proxilion cannot inspect it, so it was not passed on.", "uninspectable_answer")
        return b""

    def finish(self) -> bytes:
        if self.uninspected or self.blocked:
            return b""
        body = b"".join(self._parts)
        self._parts = []
        if self._coding is not None:
            try:
                body = content_coding.decode(body, self._coding, self._limit)
            except content_coding.CodingError as e:
                return self._undecodable(e)
        return self._judged(self._inspector.inspect_response(self._provider, self._path, body, self._identity))

    def outcome(self) -> TransformOutcome:
        action = self.action or ("block" if self.blocked else "allow")
        return TransformOutcome(action, self.findings, self.error_code, self.scan_seconds, self.tokens, self.status,
                                self.headers, self.rule)

    def take_released(self) -> list[float]:
        """A whole answer is one event, not measured as a stream's content events are."""
        return []

    def finish_later(self) -> Deferred[bytes] | None:
        """What L{finish} returns, from the scan pool, for an answer too large to inspect on the reactor;
        None when L{finish} should be called instead."""
        if self._pool is None or self.uninspected or self.blocked:
            return None
        coding = self._coding
        if coding is None and self._size <= self._offload_bytes:
            return None
        body = b"".join(self._parts)
        self._parts = []
        if coding is not None and self._size <= self._offload_bytes:
            # Small ones are decoded here, up to the size the reactor inspects itself.
            limit = min(self._offload_bytes, self._limit)
            try:
                self._parts = [content_coding.decode(body, coding, limit)]
                self._coding = None
                return None
            except content_coding.DecodedTooLarge as e:
                if limit == self._limit:
                    return succeed(self._undecodable(e))
            except content_coding.CodingError as e:
                return succeed(self._undecodable(e))
        try:
            d = self._pool.inspect(self._inspector, "response", self._provider, self._path, body, self._identity,
                                   coding, self._limit)
        except PoolFull:
            self.error_code = "scan_pool_full"
            return succeed(self._refuse(ANSWER_UNINSPECTABLE, "Proxilion was too busy inspecting other large answers "
                                        "to inspect this one, so it was not passed on.", "scan_pool_full"))

        def failed(failure: Failure) -> bytes:
            if failure.check(content_coding.CodingError):
                return self._undecodable(failure.value)
            # A scan that did not finish (a worker died) fails closed, as the scanner's own errors do.
            return self._judged(self._inspector._scanner_error(body, 0.0))

        return d.addCallbacks(self._judged, failed)

    def _judged(self, verdict: Verdict) -> bytes:
        if verdict.document is not None:
            self.tokens = usage_of(verdict.document)
        self.findings = verdict.findings
        self.action = verdict.action
        self.scan_seconds = verdict.scan_seconds
        self.rule = verdict.rule
        if verdict.code == TOO_MANY_FINDINGS:
            self.error_code = TOO_MANY_FINDINGS
        elif verdict.error:
            self.error_code = "scanner_error"
        if verdict.action == "block":
            if verdict.error:
                return self._refuse(ANSWER_UNINSPECTABLE, block_message("Answer", None, (), verdict.message.removeprefix("blocked: ")),
                                    "uninspectable_answer")
            if verdict.code is not None:
                return self._refuse(ANSWER_BLOCKED, block_message("Answer", None, (), verdict.message.removeprefix("blocked: ")),
                                    verdict.code)
            return self._refuse(ANSWER_BLOCKED, block_message("Answer", verdict.rule, verdict.findings), "blocked_by_policy",
                                verdict.rule)
        return verdict.body


class Relay(Protocol):
    """Copy a response body to C{request}; C{on_done(error)} fires once, error None on success.

    When the body fails before anything was written to the client, C{on_done}
    gets the error with the response unsent, and must answer the client.
    C{on_end}, called as a transformed answer's last bytes are about to be
    written (its transform's outcome final), may still set headers if none
    left yet, and returns bytes to write after the last ones.
    """

    # The upstream body's producer (pause, resume, stop), not a socket.
    transport: IPushProducer  # type: ignore[assignment]

    def __init__(
        self,
        request: HTTPRequest,
        on_done: Callable[[str | None], None],
        transform: BodyTransform | None = None,
        clock: Any = None,
        timer: Callable[[], float] = time.perf_counter,
        on_end: Callable[[], bytes] | None = None,
        decoder: content_coding.StreamDecoder | None = None,
        metrics: Any = None,
    ) -> None:
        """C{decoder} undoes the stream's Content-Encoding; it comes with a L{StreamTransform}."""
        self._request = request
        self._on_end = on_end
        self._on_done = on_done
        self.transform = transform
        self._clock = clock  # schedules the next slice; only needed with a transform
        self._timer = timer
        self._metrics = metrics  # the added delay and held text of streamed answers
        self._overflows = 0
        self._client_gone = False
        self._ended = False
        self._error: str | None = None
        self.bytes_out = 0
        # Upstream bytes not fed to the transform yet; bounded: the upstream read is paused while
        # it is not empty, so it grows by one read at most.
        self._backlog = _Backlog()
        if decoder is not None:
            assert isinstance(transform, StreamTransform), "a decoder comes with a transform that can refuse"
            self._backlog = _DecodedBacklog(decoder, transform)
        self._later: Any = None
        self._lost: BaseException | None = None  # the upstream body ended while the backlog was fed
        self._client_paused = False

    def outcome(self) -> TransformOutcome:
        """How the answer's transform ended; read once the answer has ended."""
        return self.transform.outcome() if self.transform is not None else PASSED_THROUGH

    def connectionMade(self) -> None:
        self._request.register_producer(self)

    # The client transport's producer: paused when the client or the backlog says so.
    def pauseProducing(self) -> None:
        self._client_paused = True
        if self._lost is None:
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._client_paused = False
        if not self._backlog and self._lost is None:
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        if self._lost is None:
            self.transport.stopProducing()

    def _write(self, data: bytes) -> None:
        if data:
            self.bytes_out += len(data)
            self._request.write(data)

    def _write_last(self, data: bytes) -> None:
        """The transform's last bytes; when nothing was written yet they are the whole body,
        sent with the transform's status, if it set one, and their length."""
        tail = self._on_end() if self._on_end is not None else b""
        if tail:
            data += tail
        if not self._request.started_writing:
            outcome = self.transform.outcome() if self.transform is not None else PASSED_THROUGH
            if outcome.status is not None:
                self._request.set_code(outcome.status)
                for name, value in outcome.headers:
                    self._request.set_header(name.lower().encode("ascii"), value.encode("ascii"))
            self._request.set_header(b"content-length", b"%d" % len(data))
        self._write(data)

    def dataReceived(self, data: bytes) -> None:
        if self._client_gone or self._ended:
            return
        if self.transform is None:
            self._write(data)
            return
        self._backlog.append(data, self._timer())
        if self._later is None:
            self._feed()

    def _feed(self) -> None:
        """Feed the backlog to the transform until it is empty or this turn's time is spent."""
        self._later = None
        transform, backlog = self.transform, self._backlog
        assert transform is not None
        start = self._timer()
        while backlog:
            if self._client_gone:
                backlog.clear()
                self._settle()
                return
            try:
                item = backlog.take()
            except content_coding.CodingError as error:
                assert isinstance(backlog, _DecodedBacklog)
                out = backlog.refused(error)
            else:
                if item is None:
                    continue
                data, arrived = item
                out = transform.feed(data, arrived)
            if transform.blocked:
                # The transform ended the answer: the stream redactor with the provider's error
                # event, or an answer too large to inspect with an error body and its own status.
                backlog.clear()
                self._write_last(out)
                self._observe()
                self._ended = True
                self._request.unregister_producer()
                if transform.cut_on_block and self._request.started_writing:
                    self._request.finish_cut()
                else:
                    self._request.finish()
                if self._lost is None:
                    self.transport.stopProducing()
                self._settle()
                return
            self._write(out)
            self._observe()
            if transform.busy:
                # The rest of a large event is scanned in the next feeds, a turn's time at a time.
                backlog.again(arrived)
            if backlog and self._timer() - start >= TURN_SECONDS:
                if self._lost is None:
                    self.transport.pauseProducing()
                self._later = self._clock.callLater(0, self._feed)
                return
        if self._lost is not None:
            reason, self._lost = self._lost, None
            self.connectionLost(reason)
        elif not self._client_paused:
            self.transport.resumeProducing()

    def _last(self) -> bytes:
        """The transform's last bytes at the end of the upstream body (the error event of a compressed
        stream cut short)."""
        transform, backlog = self.transform, self._backlog
        assert transform is not None
        if isinstance(backlog, _DecodedBacklog):
            try:
                backlog.decoder.end()
            except content_coding.CodingError as error:
                return backlog.refused(error)
        return transform.finish()

    def _observe(self) -> None:
        """Each content event just written: its delay since its bytes came from the upstream."""
        metrics, transform = self._metrics, self.transform
        if transform is None:
            return
        released = transform.take_released()  # taken even unmeasured: the transform keeps them until then
        if metrics is None:
            return
        if released:
            now = self._timer()
            for arrived in released:
                metrics.stream_hold_seconds.observe(now - arrived)
            metrics.stream_held_chars.observe(transform.held_chars)
        if transform.overflows > self._overflows:
            metrics.stream_candidate_overflows.inc(transform.overflows - self._overflows)
            self._overflows = transform.overflows

    def _settle(self) -> None:
        """The upstream body ended while the backlog was fed: its end, held back, is reported now.

        From then on the upstream connection may serve another request: it is never touched again."""
        if self._lost is not None:
            self._lost = None
            self._on_done(self._error)

    def _finish_with(self, data: bytes) -> None:
        """The transform's last bytes, once the scan pool has inspected the answer."""
        if self._client_gone:
            self._on_done(self._error)
            return
        self._write_last(data)
        self._request.finish()
        self._on_done(None)

    def client_gone(self) -> None:
        """The client disconnected: stop reading upstream, which closes that connection."""
        if not self._client_gone:
            self._client_gone = True
            self._error = self._error or "client_disconnected"
            if not self._ended and self._lost is None:
                self.transport.stopProducing()

    def connectionLost(self, reason: BaseException | None = None) -> None:
        if self._backlog and not (self._client_gone or self._ended):
            # The body is complete upstream, but not yet fed: it ends once the backlog is.
            self._lost = reason
            return
        if self._client_gone or self._ended:
            self._on_done(self._error)
            return
        self._request.unregister_producer()
        if isinstance(reason, BodyDone) and self._error is None:
            if self.transform is not None:
                pending = self.transform.finish_later()
                if pending is not None:
                    # The upstream body is complete: nothing more to read or stop.
                    self._ended = True
                    pending.addCallback(self._finish_with)
                    return
                self._write_last(self._last())
                self._observe()
            self._request.finish()
            self._on_done(None)
            return
        error = self._error or ("upstream_idle_timeout" if isinstance(reason, BodyIdle) else "upstream_disconnected")
        if not self._request.started_writing:
            # Nothing reached the client (an answer held for inspection): C{on_done} answers with an error.
            self._on_done(error)
            return
        # Headers are gone already: cutting the connection is the only honest
        # way to tell the client the body is incomplete.
        self._request.abort()
        self._on_done(error)
