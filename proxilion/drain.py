"""In-flight tracking, the readiness/draining flag, and closing connections on drain."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred

__all__ = ["DrainState"]


class DrainState:
    """What the proxy is doing: starting, serving or draining, and how much is in flight.

    Every waiter of L{when_idle} gets its own Deferred, fired once nothing is
    in flight, so callbacks of one waiter never see another's result.
    """

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self.ready = False
        self.draining = False
        self.inflight = 0
        self._idle_waiters: list[Deferred[None]] = []
        self._channels: set[Any] = set()
        self._on_change = on_change or (lambda: None)

    # Requests
    def request_started(self) -> None:
        self.inflight += 1

    def request_finished(self) -> None:
        self.inflight -= 1
        self._check_idle()

    @property
    def idle(self) -> bool:
        """Nothing in flight, and no request still arriving (a client mid-upload expects its answer too)."""
        return self.inflight == 0 and not any(channel.busy for channel in self._channels)

    def _check_idle(self) -> None:
        if self._idle_waiters and self.idle:
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                d.callback(None)

    def when_idle(self) -> Deferred[None]:
        """A Deferred that fires when L{idle}."""
        d: Deferred[None] = Deferred()
        if self.idle:
            d.callback(None)
        else:
            self._idle_waiters.append(d)
        return d

    # Connections, so a drain can close the idle keep-alive ones.
    def channel_opened(self, channel: Any) -> None:
        self._channels.add(channel)

    def channel_closed(self, channel: Any) -> None:
        self._channels.discard(channel)
        self._check_idle()

    @property
    def open_connections(self) -> int:
        return len(self._channels)

    # Lifecycle
    def mark_ready(self) -> None:
        self.ready = True
        self._on_change()

    def start_draining(self) -> None:
        """Report draining on /health and /ready; responses from now on close their connection."""
        if not self.draining:
            self.draining = True
            self._on_change()

    def close_idle_connections(self) -> None:
        """Close keep-alive connections with no request in progress."""
        for channel in list(self._channels):
            channel.close_if_idle()

    def abort_all(self) -> None:
        """Cut every remaining connection (drain deadline passed)."""
        for channel in list(self._channels):
            channel.transport.abortConnection()

    def status(self) -> str:
        if self.draining:
            return "draining"
        return "healthy" if self.ready else "starting"

    def probe(self, readiness: bool) -> tuple[int, dict[str, Any]]:
        """The answer to a health probe on either port: its status code and JSON body.

        Readiness (C{/ready}, and both probes on the proxy port, which load balancers
        route by) is 200 only while serving; liveness (C{/health} on the admin port)
        fails only while draining, so a process still starting is not restarted.
        """
        status = self.status()
        ok = status == "healthy" if readiness else status != "draining"
        return (200 if ok else 503), {"status": "healthy" if ok else status, "inflight": self.inflight}
