"""A deadline that moves on every request but is rarely reached.

Scheduling and cancelling a Twisted C{DelayedCall} per request (a heap push
and, later, a heap compaction) costs more than the rest of a small timer's
life. Here moving the deadline only stores a time; the one pending call
notices when it fires and, if the deadline moved later, waits again.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["Deadline"]


class Deadline:
    """Call C{on_expire} once C{clock} passes the time last set (unless cleared first)."""

    __slots__ = ("_clock", "_on_expire", "_due", "_call")

    def __init__(self, clock: Any, on_expire: Callable[[], None]) -> None:
        self._clock = clock
        self._on_expire = on_expire
        self._due: float | None = None
        self._call: Any = None

    def set(self, seconds: float) -> None:
        """Expire C{seconds} from now (replacing any earlier setting)."""
        now = self._clock.seconds()
        due = self._due = now + seconds
        call = self._call
        if call is None:
            self._call = self._clock.callLater(seconds, self._fire)
        elif call.getTime() > due:
            # Only a sooner deadline needs the pending call moved.
            call.reset(seconds)

    def clear(self) -> None:
        """No deadline for now; the pending call, if any, will find nothing to do."""
        self._due = None

    def stop(self) -> None:
        """No deadline ever again: cancel the pending call."""
        self._due = None
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    @property
    def pending(self) -> bool:
        return self._due is not None

    def _fire(self) -> None:
        self._call = None
        due = self._due
        if due is None:
            return
        now = self._clock.seconds()
        if now < due:
            self._call = self._clock.callLater(due - now, self._fire)
            return
        self._due = None
        self._on_expire()
