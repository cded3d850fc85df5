"""A small RESP2 client protocol: the rate limiter's connection to one Redis server.

Why not txredisapi's protocol: one decision through it cost ~280 µs of CPU
(bench/ratelimit_bench.py, 2-core box), mostly its reply path: a line
parser that decodes every line, three Deferreds per command, and a
C{callLater(0)} after every bulk string, so each pipelined reply waits for
a reactor pass of its own and every command leaves in its own C{send()}.
This protocol parses replies with index arithmetic over the received bytes,
fires one Deferred per command, and times commands out with one timer per
connection instead of one per call. See docs/RATE_LIMITING.md (figures).

Replies: C{+status} and bulk strings as C{str} (bulk strings that are not
UTF-8 stay C{bytes}), integers as C{int}, nil as C{None}, arrays as lists.
An error reply fails the command's Deferred with L{ResponseError} (inside
an array it is the element's value).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet import defer, protocol
from twisted.python.failure import Failure

from proxilion.transport import StreamTransport

__all__ = ["ResponseError", "RedisUnavailable", "RespProtocol", "describe", "encode", "encode_args"]

# Consecutive timeouts after which a connection is presumed dead and dropped.
TIMEOUTS_BEFORE_ABORT = 3
# No reply the limiter asks for comes near this (CLUSTER SLOTS of a large
# cluster is the biggest); more means a confused stream: drop the connection.
MAX_BUFFER = 16 * 1024 * 1024


class RedisUnavailable(Exception):
    """Redis could not answer in time: down, unreachable, timed out or read-only."""


class ResponseError(Exception):
    """An error reply from Redis (MOVED, ASK, NOSCRIPT, WRONGPASS, ...)."""


def encode_args(args: Any) -> bytes:
    """The RESP bulk strings for C{args} (str, bytes, int or float), without the array header."""
    out = []
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode("utf-8")
        elif isinstance(arg, int):
            arg = b"%d" % arg
        elif isinstance(arg, float):
            arg = repr(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def encode(*args: Any) -> bytes:
    """One command as a RESP array of bulk strings."""
    return b"*%d\r\n" % len(args) + encode_args(args)


def describe(reason: Failure) -> str:
    """Why a connection ended, readable: pyOpenSSL's error lists become "TLS error: certificate verify failed"."""
    error = reason.value
    args = getattr(error, "args", ())
    if type(error).__module__.startswith("OpenSSL") and args and isinstance(args[0], list) and args[0]:
        return "TLS error: " + "; ".join(str(item[-1]) for item in args[0])
    if type(error).__name__ == "VerificationError":  # service_identity: the certificate names another host
        return "TLS error: the server certificate does not match the host name"
    return reason.getErrorMessage()


def _bulk(data: bytes) -> str | bytes:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def _parse(buf: bytes, pos: int) -> tuple[Any, int] | None:
    """The reply starting at C{pos} and the position after it, or None when incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind = buf[pos]
    if kind == 58:  # ":" integer
        return int(buf[pos + 1 : end]), end + 2
    if kind == 36:  # "$" bulk string
        size = int(buf[pos + 1 : end])
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if len(buf) < stop + 2:
            return None
        return _bulk(buf[end + 2 : stop]), stop + 2
    if kind == 42:  # "*" array
        count = int(buf[pos + 1 : end])
        if count < 0:
            return None, end + 2
        items = []
        pos = end + 2
        for _ in range(count):
            parsed = _parse(buf, pos)
            if parsed is None:
                return None
            items.append(parsed[0])
            pos = parsed[1]
        return items, pos
    if kind == 43:  # "+" status
        return buf[pos + 1 : end].decode("utf-8", "replace"), end + 2
    if kind == 45:  # "-" error
        return ResponseError(buf[pos + 1 : end].decode("utf-8", "replace")), end + 2
    raise ValueError(f"unexpected RESP type byte {kind!r}")


class RespProtocol(protocol.Protocol):
    """Pipelined commands on one connection; replies come back in order.

    C{request(payload, timeout)} writes an encoded command and returns a
    Deferred for its reply. Connection trouble and timeouts fail it with
    L{RedisUnavailable}; error replies with L{ResponseError}. A timeout does
    not desynchronise the stream: the late reply is read and dropped.
    """

    transport: StreamTransport  # type: ignore[assignment]  # see proxilion.transport

    def __init__(self, name: str, clock: Any) -> None:
        self.name = name
        self.clock = clock
        self._buffer = b""
        # [deferred, deadline] per command written, in order; deferred is
        # None once the command timed out.
        self._pending: deque[list[Any]] = deque()
        self._timer: Any = None
        self._timeouts = 0
        self._lost = False
        self._tcp: Any = None

    def connectionMade(self) -> None:
        # Commands are small and latency-bound: never hold one back for an ACK.
        # Under TLS the switch is on the TCP transport below the TLS one.
        transport: Any = self.transport  # whichever transport in the stack has the switch
        while transport is not None and not hasattr(transport, "setTcpNoDelay"):
            transport = getattr(transport, "transport", None)
        if transport is not None:
            transport.setTcpNoDelay(True)
        self._tcp = transport

    # Sending.

    def request(self, payload: bytes, timeout: float) -> defer.Deferred:
        if self._lost or self.transport is None:
            return defer.fail(RedisUnavailable(f"not connected to {self.name}"))
        d: defer.Deferred[Any] = defer.Deferred()
        deadline = self.clock.seconds() + timeout
        self._pending.append([d, deadline])
        self.transport.write(payload)
        tcp = self._tcp
        if len(self._pending) == 1 and tcp is not None and not tcp.disconnecting:
            # Nothing else in flight: send now, not after the reactor's next
            # pass, which would add that pass to the decision's latency. With
            # calls in flight, writes wait and leave together in one send().
            # (Never while closing: that doWrite would end the close, unseen.)
            tcp.doWrite()
        timer = self._timer
        if timer is None:
            self._timer = self.clock.callLater(timeout, self._check_timeouts)
        elif timer.getTime() > deadline:
            # A short call behind a long one (CLUSTER SLOTS): fire earlier.
            timer.reset(timeout)
        return d

    def command(self, *args: Any, timeout: float) -> defer.Deferred:
        return self.request(encode(*args), timeout)

    # Timeouts: one timer for the connection, armed for the earliest deadline.

    def _check_timeouts(self) -> None:
        # The reactor runs due timers before it reads sockets: after a stall (a
        # busy or descheduled process) a reply already waiting in the socket
        # would be failed as a timeout. Decide one I/O pass later instead.
        self._timer = self.clock.callLater(0, self._expire, self.clock.seconds())

    def _expire(self, due: float) -> None:
        self._timer = None
        expired = [entry for entry in self._pending if entry[0] is not None and entry[1] <= due]
        for entry in expired:
            d, entry[0] = entry[0], None
            if not d.called:
                d.errback(RedisUnavailable(f"{self.name} did not answer in time"))
        if expired:
            self._timeouts += len(expired)
            if self._timeouts >= TIMEOUTS_BEFORE_ABORT and self.transport is not None:
                self.transport.abortConnection()
                return
        waiting = [entry[1] for entry in self._pending if entry[0] is not None]
        if waiting:
            self._timer = self.clock.callLater(max(0.0, min(waiting) - self.clock.seconds()), self._check_timeouts)

    # Receiving.

    def dataReceived(self, data: bytes) -> None:
        buf = self._buffer + data if self._buffer else data
        pos, size = 0, len(buf)
        try:
            while pos < size:
                parsed = _parse(buf, pos)
                if parsed is None:
                    break
                pos = parsed[1]
                self._reply(parsed[0])
        except (ValueError, IndexError) as e:
            self._broken(f"unreadable reply ({e})")
            return
        self._buffer = buf[pos:] if pos < size else b""
        if len(self._buffer) > MAX_BUFFER:
            self._broken("reply larger than the buffer limit")

    def _reply(self, value: Any) -> None:
        if not self._pending:
            raise ValueError("a reply nobody asked for")
        d = self._pending.popleft()[0]
        if d is None or d.called:  # timed out or cancelled meanwhile
            return
        self._timeouts = 0
        if type(value) is ResponseError:
            if str(value).startswith("READONLY"):
                # A failover demoted our master: reconnect, which rediscovers it.
                self.transport.abortConnection()
                d.errback(RedisUnavailable(f"{self.name} is read-only (failover)"))
                return
            d.errback(value)
        else:
            d.callback(value)

    def _broken(self, why: str) -> None:
        self._buffer = b""
        self._fail_all(RedisUnavailable(f"{self.name}: {why}"))
        if self.transport is not None:
            self.transport.abortConnection()

    def _fail_all(self, error: Exception) -> None:
        pending, self._pending = self._pending, deque()
        for d, _ in pending:
            if d is not None and not d.called:
                d.errback(Failure(error))

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._lost = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._fail_all(RedisUnavailable(f"{self.name}: connection lost ({describe(reason)})"))
