"""The root service: children start in order and stop in reverse order, one after another.

Twisted's C{MultiService} stops its children concurrently, which would let the
analytics writer close while the proxy still drains; this root awaits each
child's stop before starting the next, each bounded by a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any, TypeVar

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError, ReactorNotRunning
from twisted.logger import ILogObserver, Logger
from twisted.python.failure import Failure

from proxilion.drain import DrainState
from proxilion.listen import listen_tcp
from proxilion.metrics import Metrics

__all__ = [
    "ProxilionService", "ListeningService", "ProxySiteService", "deadline", "stop_on_signals",
    "notify_systemd", "report_to_systemd", "exit_when_start_fails", "StartupError",
]

log = Logger(namespace="proxilion.service")

# The setting behind each listening service's port, named in the error when the port cannot be had.
_PORT_SETTINGS = {"proxy": "port", "admin": "admin_port"}


class StartupError(Exception):
    """A start failure whose message says all an operator needs: logged as one line, no traceback."""


def _cannot_listen(name: str, error: CannotListenError) -> StartupError:
    from proxilion.config import SPECS

    reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
    where = f"{error.interface or '0.0.0.0'}:{error.port}"
    spec = next((spec for spec in SPECS if spec.name == _PORT_SETTINGS.get(name)), None)
    hint = f"; choose another with --{spec.option}, env {spec.env} or `{spec.name}:` in the config file" if spec else ""
    return StartupError(f"cannot listen on {where} for the {name} port: {reason.lower()}{hint}")

# Seconds aborted requests get to wind down after the drain deadline.
_ABORT_SETTLE = 1.0


def deadline(clock: Any, d: Deferred[Any], seconds: float) -> Deferred[Any]:
    """Cancel C{d} if it has not fired within C{seconds}."""
    timer = clock.callLater(seconds, d.cancel)

    def done(result: Any) -> Any:
        if timer.active():
            timer.cancel()
        return result

    return d.addBoth(done)


def stop_on_signals(reactor: Any) -> None:
    """Make SIGTERM and SIGINT run the stop sequence and exit with status 0.

    Twisted's own handlers remember the signal, and twistd re-raises it on
    itself after a clean shutdown (exit 143/130), which Docker, systemd units
    and process supervisors report as a failure. Call once the reactor runs,
    after it has installed its handlers.
    """

    def stop(name: str) -> None:
        try:
            reactor.stop()
            log.info("received {signal}: stopping", signal=name)
        except ReactorNotRunning:
            # A second signal: the stop sequence is already running and is not cut short.
            log.info("received {signal} again: still stopping", signal=name)

    def handler(number: int, frame: Any) -> None:
        reactor.callFromThread(stop, signal.Signals(number).name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def notify_systemd(state: bytes) -> bool:
    """Send C{state} (e.g. C{b"READY=1"}) to systemd over C{$NOTIFY_SOCKET}; False if not under Type=notify."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        # An abstract-namespace socket.
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state, path)
    except OSError as e:
        log.warn("could not notify systemd ({state}): {error}", state=state.decode("ascii", "replace"), error=e)
        return False
    return True


def report_to_systemd(reactor: Any, root: "ProxilionService") -> None:
    """READY=1 once every child has started (the proxy port listens); STOPPING=1 when the stop begins."""

    def ready(result: None) -> None:
        notify_systemd(b"READY=1\nSTATUS=serving")
        return result

    root.started.addCallback(ready)
    reactor.addSystemEventTrigger("before", "shutdown", notify_systemd, b"STOPPING=1\nSTATUS=draining")


def exit_when_start_fails(reactor: Any, root: "ProxilionService") -> None:
    """A process that cannot start (port taken, ...) stops and exits 1, so supervisors notice."""

    def failed(failure: Failure) -> None:
        reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
        # Services start while the reactor is still starting up: stop once it runs.
        reactor.callWhenRunning(reactor.stop)

    root.started.addErrback(failed)


_T = TypeVar("_T")


def _each_own(shared: Deferred[None]) -> Deferred[None]:
    """A Deferred of the caller's own, fired with None when C{shared} fires; C{shared}'s result passes on unchanged."""
    d: Deferred[None] = Deferred()

    def fire(result: _T) -> _T:
        d.callback(None)
        return result

    shared.addBoth(fire)
    return d


class ProxilionService(Service):
    """Owns the children and runs the ordered start and stop."""

    def __init__(
        self,
        clock: Any,
        children: list[IService],
        stop_deadlines: dict[str, float] | None = None,
        log_observer: Any = None,
    ) -> None:
        self._clock = clock
        self._log_observer = log_observer
        self.children = list(children)
        self._stop_deadlines = stop_deadlines or {}
        self._stopping: Deferred[None] | None = None
        self.started: Deferred[None] = Deferred()

    def setServiceParent(self, parent: Any) -> None:
        # twistd looks up ILogObserver on its Application before it begins logging.
        if self._log_observer is not None and hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, self._log_observer)
        super().setServiceParent(parent)

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        for child in self.children:
            child.privilegedStartService()

    def startService(self) -> None:
        super().startService()
        Deferred.fromCoroutine(self._start()).addErrback(self._start_failed)

    def _start_failed(self, failure: Failure) -> None:
        if failure.check(StartupError):
            log.critical("startup failed: {error}", error=failure.getErrorMessage())
        else:
            log.failure("startup failed: {error}", failure=failure, error=failure.getErrorMessage())
        # Whoever runs the process (the twistd plugin) decides how to exit.
        self.started.errback(failure)

    async def _start(self) -> None:
        for child in self.children:
            await maybeDeferred(child.startService)
            log.info("started {name}", name=child.name)
        self.started.callback(None)

    def stopService(self) -> Deferred[None]:
        # A second stop request (a second SIGTERM) joins the first; it never skips steps.
        if self._stopping is None:
            super().stopService()
            self._stopping = Deferred.fromCoroutine(self._stop())
        return _each_own(self._stopping)

    async def _stop(self) -> None:
        for child in reversed(self.children):
            if not child.running:
                continue
            limit = self._stop_deadlines.get(child.name, 30.0)
            try:
                await deadline(self._clock, maybeDeferred(child.stopService), limit)
                log.info("stopped {name}", name=child.name)
            except Exception:
                log.failure("stopping {name} failed or exceeded {limit}s; continuing", name=child.name, limit=limit)


class ListeningService(Service):
    """Listens on a TCP port while running."""

    name: str  # type: ignore[assignment]  # Twisted's Service declares `name = None` without a type

    def __init__(self, name: str, reactor: Any, port: int, interface: str, factory: Any, reuse_port: bool = False) -> None:
        self.name = name
        self._reactor = reactor
        self._port_number = port
        self._interface = interface
        self._factory = factory
        self._reuse_port = reuse_port
        self.port: Any = None

    def startService(self) -> None:
        super().startService()
        try:
            self.port = listen_tcp(self._reactor, self._port_number, self._factory, self._interface, self._reuse_port)
        except CannotListenError as e:
            raise _cannot_listen(self.name, e) from None
        log.info("{name} listening on {interface}:{port}", name=self.name, interface=self._interface, port=self.port.getHost().port)

    def stop_listening(self) -> Deferred[None]:
        if self.port is None:
            return Deferred.fromCoroutine(_nothing())
        port, self.port = self.port, None
        return maybeDeferred(port.stopListening)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.stop_listening()


async def _nothing() -> None:
    return None


class ProxySiteService(ListeningService):
    """The proxy port; its stop is the drain (steps 1-4 of the stop sequence)."""

    def __init__(
        self,
        reactor: Any,
        settings: Any,
        factory: Any,
        drain: DrainState,
        metrics: Metrics,
        upstream: Any,
    ) -> None:
        super().__init__("proxy", reactor, settings.port, settings.bind, factory, settings.reuse_port)
        self._settings = settings
        self._drain = drain
        self._metrics = metrics
        self._upstream = upstream
        self._draining: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()
        self._drain.mark_ready()

    def begin_drain(self) -> Deferred[None]:
        """Run the drain (without exiting); every caller gets its own Deferred."""
        if self._draining is None:
            self._draining = Deferred.fromCoroutine(self._drain_steps())
        return _each_own(self._draining)

    async def _drain_steps(self) -> None:
        drain, clock = self._drain, self._reactor
        drain.start_draining()
        self._metrics.draining.set(1)
        log.info("draining: /health reports 503 for {grace}s while still serving", grace=self._settings.drain_grace)
        if self._settings.drain_grace > 0:
            await _sleep(clock, self._settings.drain_grace)
        await self.stop_listening()
        drain.close_idle_connections()
        log.info("stopped accepting; waiting for {n} in-flight request(s)", n=drain.inflight)
        try:
            await _until_idle(clock, drain, self._settings.drain_timeout)
        except Exception:
            log.warn("drain timeout: aborting {n} request(s) still in flight", n=drain.inflight)
            drain.abort_all()
            # Aborted requests finish (and write their audit rows) as their
            # connections close, a few reactor turns later: give them that.
            try:
                await _until_idle(clock, drain, _ABORT_SETTLE)
            except Exception:
                log.warn("{n} aborted request(s) did not finish; their audit rows are lost", n=drain.inflight)
        drain.close_idle_connections()
        await self._upstream.close()
        log.info("drained")

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return self.begin_drain()


async def _until_idle(clock: Any, drain: DrainState, seconds: float) -> None:
    """Wait until nothing is in flight (or fail after C{seconds}).

    The last request signals idle from inside its own completion, before it
    has recorded its audit row; resuming one reactor turn later lets it finish,
    so the stop sequence never flushes analytics ahead of that row.
    """
    await deadline(clock, drain.when_idle(), seconds)
    await _sleep(clock, 0)


def _sleep(clock: Any, seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    clock.callLater(seconds, d.callback, None)
    return d
