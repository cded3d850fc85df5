"""Log observers: one JSON object per line (default) or plain text, filtered by level."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    textFileLogObserver,
)
from zope.interface import implementer

__all__ = ["make_observer", "JsonLineObserver"]

# Twisted's own bookkeeping keys, and keys that could carry request data we never log.
_SKIP = frozenset(
    {"log_logger", "log_source", "log_format", "log_level", "log_namespace", "log_time", "log_flattened", "log_trace",
     "log_io", "log_system", "log_text", "log_failure", "failure", "message", "format", "isError", "system", "time",
     "log_legacy", "why", "log_observer"}
)
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


@implementer(ILogObserver)
class JsonLineObserver:
    """Write each event as one JSON line with its named fields."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level")
        record: dict[str, Any] = {
            "time": datetime.fromtimestamp(event.get("log_time", 0), tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": level.name if level is not None else "info",
            "logger": event.get("log_namespace", ""),
            "message": _message(event),
        }
        for key, value in event.items():
            if key not in _SKIP and not key.startswith("_"):
                record[key] = _jsonable(value)
        failure = event.get("log_failure")
        if failure is not None:
            record["error"] = failure.getErrorMessage()
            record["traceback"] = failure.getTraceback()
        self._out.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._out.flush()


def make_observer(log_format: str, log_level: str, out: IO[str] | None = None) -> ILogObserver:
    out = out or sys.stdout
    observer = JsonLineObserver(out) if log_format == "json" else textFileLogObserver(out)
    return FilteringLogObserver(observer, [LogLevelFilterPredicate(defaultLogLevel=_LEVELS[log_level])])
