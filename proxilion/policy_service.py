"""The live inspection policy: loaded at start, reloaded on SIGHUP and when its file changes.

A reload that fails validation keeps the old policy; requests in flight keep
the L{Inspector} they started with, so a reload never drops a request.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from proxilion.component import Health
from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import PolicyError, load_policy
from proxilion.metrics import Metrics

__all__ = ["PolicyService"]

log = Logger(namespace="proxilion.policy")


def _stamp(path: str | None) -> tuple[float, int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime, st.st_size, st.st_ino)


class PolicyService(Service):
    """Holds the current L{Inspector}; C{inspector} is always a valid one."""

    name = "policy"  # type: ignore[assignment]  # Twisted's Service declares `name = None` without a type

    def __init__(self, path: str | None, metrics: Metrics, clock: Any, poll_interval: float = 2.0, handle_sighup: bool = False,
                 max_findings: int | None = None) -> None:
        self.path = path
        self._handle_sighup = handle_sighup
        self._metrics = metrics
        self._clock = clock
        self._poll_interval = poll_interval
        # Raises PolicyError at construction: an invalid file stops startup.
        self._max_findings = max_findings
        self.inspector = Inspector(load_policy(path), max_findings)
        self._stamp = _stamp(path)
        self._poller: LoopingCall | None = None
        self.last_error: str | None = None

    def startService(self) -> None:
        super().startService()
        if self._handle_sighup:
            # Signal handlers run between bytecodes: hop onto the reactor before touching state.
            signal.signal(signal.SIGHUP, lambda signum, frame: self._clock.callFromThread(self.reload, "SIGHUP"))
        if self.path is not None:
            self._poller = LoopingCall(self._check_file)
            self._poller.clock = self._clock
            self._poller.start(self._poll_interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._poller is not None and self._poller.running:
            self._poller.stop()

    def _check_file(self) -> None:
        stamp = _stamp(self.path)
        if stamp is not None and stamp != self._stamp:
            self._stamp = stamp
            self.reload("file changed")

    def reload(self, why: str = "SIGHUP") -> bool:
        """Load the policy file again; keep the current policy if the new one is invalid."""
        try:
            inspector = Inspector(load_policy(self.path), self._max_findings)
        except (PolicyError, OSError, ValueError) as e:
            self.last_error = str(e)
            self._metrics.policy_reloads.labels("error").inc()
            log.error("policy reload ({why}) rejected, keeping the current policy: {error}", why=why, error=str(e))
            return False
        self.inspector = inspector
        self.last_error = None
        self._metrics.policy_reloads.labels("ok").inc()
        log.info("policy reloaded ({why}) from {path}", why=why, path=self.path or "(shipped default)")
        return True

    def health(self) -> Health:
        return "ok" if self.last_error is None else "degraded"

    def status(self) -> dict[str, Any]:
        return {"state": self.health(), "file": self.path or "(shipped default)", "last_error": self.last_error}
