"""Log observers: one JSON object per line (default) or plain text, filtered by level."""

from __future__ import annotations

import atexit
import io
import json
import sys
import threading
import time
from typing import IO, Any

import orjson
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent, textFileLogObserver
from zope.interface import implementer

__all__ = ["make_observer", "AccessLogger", "JsonLineObserver", "LevelFilter"]

# Twisted's own bookkeeping keys, and keys that could carry request data we never log.
_SKIP = frozenset(
    {"log_logger", "log_source", "log_format", "log_level", "log_namespace", "log_time", "log_flattened", "log_trace",
     "log_io", "log_system", "log_text", "log_failure", "failure", "message", "format", "isError", "system", "time",
     "log_legacy", "why", "log_observer"}
)
# For lines orjson refuses; json.dumps builds a new encoder per call when given separators.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_FLUSH_AT_ONCE = frozenset({LogLevel.warn, LogLevel.error, LogLevel.critical})
_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn, "error": LogLevel.error}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _message(event: dict[str, Any]) -> str:
    fmt = event.get("log_format")
    if fmt is None:
        return formatEvent(event) if "message" in event else ""
    try:
        # str.format is several times faster than Twisted's formatter and covers our formats.
        return fmt.format_map(event)
    except Exception:
        return formatEvent(event)


class _Timestamps:
    """ISO 8601 UTC times with milliseconds, formatted once per millisecond (the date part once per second).

    The reactor handles requests in batches, so consecutive lines often share a millisecond.
    """

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""
        self._millisecond = -1
        self._text = ""

    def __call__(self, when: float) -> str:
        millisecond = int(when * 1000)
        if millisecond != self._millisecond:
            second = millisecond // 1000
            if second != self._second:
                self._second = second
                self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._millisecond = millisecond
            self._text = "%s.%03d+00:00" % (self._prefix, millisecond % 1000)
        return self._text


@implementer(ILogObserver)
class JsonLineObserver:
    """Write each event as one JSON line with its named fields.

    With a C{clock}, info and debug lines are flushed at most C{flush_delay}
    seconds after they are written, so a busy proxy makes one write call per
    batch of access lines instead of one per request; warnings and errors are
    flushed at once.
    """

    def __init__(self, out: IO[str], clock: Any = None, flush_delay: float = 0.05) -> None:
        self._out = out
        self._clock = clock
        self._flush_delay = flush_delay
        self._flush_call: Any = None
        self._time = _Timestamps()
        # Lines also come from worker threads (database calls); only the thread that built the
        # observer (the reactor's) may schedule a flush, and writes take turns.
        self._thread = threading.get_ident()
        self._lock = threading.Lock()

    def _flush(self) -> None:
        with self._lock:
            self._flush_call = None
            self._out.flush()

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level")
        record: dict[str, Any] = {
            "time": self._time(event.get("log_time", 0)),
            "level": level.name if level is not None else "info",
            "logger": event.get("log_namespace", ""),
            "message": _message(event),
        }
        record.update({key: value for key, value in event.items() if key not in _SKIP and key[0] != "_"})
        failure = event.get("log_failure")
        if failure is not None:
            record["error"] = failure.getErrorMessage()
            record["traceback"] = failure.getTraceback()
        try:
            # orjson: the JSON encoding was a fifth of an access line's CPU in the daemon.
            line = orjson.dumps(record).decode("utf-8")
        except TypeError:
            # Bytes, objects, odd keys, lone surrogates or integers beyond 64 bits: most lines
            # hold plain values only, so convert on demand.
            line = _ENCODER.encode({key: _jsonable(value) for key, value in record.items()})
        with self._lock:
            self._out.write(line + "\n")
            if self._clock is None or level in _FLUSH_AT_ONCE or threading.get_ident() != self._thread:
                self._out.flush()
            elif self._flush_call is None:
                self._flush_call = self._clock.callLater(self._flush_delay, self._flush)


class AccessLogger(Logger):
    """The L{Logger} of the per-request access line.

    Twisted's C{emit} checks the level by listing and sorting every
    C{LogLevel} constant on each call, several microseconds per request; this
    logger is only called with the levels its callers name.
    """

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: object) -> None:
        kwargs.update(
            log_logger=self,
            log_level=level,
            log_namespace=self.namespace,
            log_source=self.source,
            log_format=format,
            log_time=time.time(),
        )
        self.observer(kwargs)


@implementer(ILogObserver)
class LevelFilter:
    """Pass on events at C{level} or above.

    Twisted's C{FilteringLogObserver} with a C{LogLevelFilterPredicate} does
    the same through per-namespace lookups; one process-wide level is all we
    offer, and this observer sees every access line.
    """

    def __init__(self, observer: ILogObserver, level: LogLevel) -> None:
        self.observer = observer
        # A set lookup: comparing constants calls Python methods.
        self._passed = frozenset(known for known in LogLevel.iterconstants() if known >= level) | {None}

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("log_level") in self._passed:
            self.observer(event)


def buffered_stdout() -> IO[str]:
    """A buffered text stream on the process's standard output, flushed at exit.

    Under C{PYTHONUNBUFFERED=1} (our Dockerfile and systemd units set it, so
    that no traceback is ever held back) C{sys.stdout} makes one write call
    per line, which defeats the observer's batched flushes: one system call
    per access line. The observer decides when this stream is flushed.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return sys.stdout
    sys.stdout.flush()
    stream = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(fd, "w", closefd=False), 1 << 16), encoding="utf-8", errors="backslashreplace"
    )
    atexit.register(stream.flush)
    return stream


def make_observer(log_format: str, log_level: str, out: IO[str] | None = None, clock: Any = None) -> LevelFilter:
    """The process's log observer; pass the reactor as C{clock} to batch the flushes of info lines.

    Without C{out} it writes to L{buffered_stdout}.
    """
    out = out or buffered_stdout()
    observer = JsonLineObserver(out, clock) if log_format == "json" else textFileLogObserver(out)
    return LevelFilter(observer, _LEVELS[log_level])
