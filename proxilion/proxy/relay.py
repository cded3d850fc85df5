"""Relay an upstream response body to the client as it arrives, with backpressure.

The upstream body's transport is registered as the client request's
producer: when the client reads slowly, Twisted pauses it, which stops reading
the upstream socket, so a slow client never makes the proxy buffer a stream.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol as TypingProtocol

from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import PotentialDataLoss, ResponseDone
from twisted.web.http import Request

__all__ = ["Relay", "BodyTransform"]


class BodyTransform(TypingProtocol):
    """A streaming rewrite of a response body (e.g. the SSE redactor)."""

    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class Relay(Protocol):
    """Copy a response body to C{request}; C{on_done(error)} fires once, error None on success."""

    def __init__(
        self,
        request: Request,
        clock: Any,
        idle_timeout: float,
        on_done: Callable[[str | None], None],
        transform: BodyTransform | None = None,
    ) -> None:
        self._request = request
        self._clock = clock
        self._idle_timeout = idle_timeout
        self._on_done = on_done
        self._transform = transform
        self._idle_call: Any = None
        self._client_gone = False
        self._error: str | None = None
        self.bytes_out = 0

    def connectionMade(self) -> None:
        self._request.registerProducer(self.transport, True)
        self._idle_call = self._clock.callLater(self._idle_timeout, self._idle_expired)

    def dataReceived(self, data: bytes) -> None:
        self._idle_call.reset(self._idle_timeout)
        if self._client_gone:
            return
        if self._transform is not None:
            data = self._transform.feed(data)
        if data:
            self.bytes_out += len(data)
            self._request.write(data)

    def _idle_expired(self) -> None:
        self._error = "upstream_idle_timeout"
        self.transport.stopProducing()

    def client_gone(self) -> None:
        """The client disconnected: stop reading upstream, which closes that connection."""
        if not self._client_gone:
            self._client_gone = True
            self._error = self._error or "client_disconnected"
            self.transport.stopProducing()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        if self._client_gone:
            self._on_done(self._error)
            return
        self._request.unregisterProducer()
        if reason.check(ResponseDone, PotentialDataLoss) and self._error is None:
            if self._transform is not None:
                tail = self._transform.finish()
                if tail:
                    self.bytes_out += len(tail)
                    self._request.write(tail)
            self._request.finish()
            self._on_done(None)
            return
        # Headers are gone already: cutting the connection is the only honest
        # way to tell the client the body is incomplete.
        self._request.channel.transport.abortConnection()
        self._on_done(self._error or "upstream_disconnected")
