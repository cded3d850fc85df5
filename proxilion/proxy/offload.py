"""The scan pool: large bodies are decoded and inspected in worker processes, off the reactor.

The detectors' validators are Python, so a scan holds the GIL: in a thread it
would still stall the reactor (measured: /health waits for the GIL every time
the reactor thread makes a system call). Worker processes run the same core
(proxilion/inspect/worker.py), so verdicts and redacted bodies are the ones the
reactor would have produced. The queue is bounded: past C{workers + queue_size}
bodies in the pool, a new one is refused (L{PoolFull}, answered 503 and counted)
rather than queued forever.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from proxilion.inspect import worker
from proxilion.inspect.findings import Verdict
from proxilion.inspect.inspector import Inspector
from proxilion.metrics import Metrics

__all__ = ["ScanPool", "PoolFull"]

log = Logger(namespace="proxilion.scanpool")

# Workers yield the CPU to the reactor process: a large body waits a little longer for its verdict,
# while every other client's small request is answered on time.
NICENESS = 10
# A new worker unpickles its initializer before any job: a builtin, so the priority is lowered before
# the worker imports the inspection core (half a second of CPU at start and after a worker dies), not after.
WORKER_INITIALIZER = (os.nice, (NICENESS,))


class PoolFull(Exception):
    """Every worker is busy and the queue is full."""


class ScanPool(Service):
    name = "scanpool"  # type: ignore[assignment]  # Twisted's Service declares `name = None` without a type

    def __init__(self, reactor: Any, metrics: Metrics, workers: int, queue_size: int) -> None:
        self._reactor = reactor
        self._metrics = metrics
        self.workers = workers
        self.capacity = workers + queue_size
        self.pending = 0
        self._executor: ProcessPoolExecutor | None = None
        # The pickled policy of the inspector last seen (a reload makes a new inspector).
        self._policy: tuple[Inspector, tuple[int, int | None], bytes] | None = None

    def startService(self) -> None:
        super().startService()
        self._start_executor()

    def _start_executor(self) -> None:
        # forkserver: workers do not inherit the reactor, its threads or its sockets.
        self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("forkserver"),
                                             initializer=WORKER_INITIALIZER[0], initargs=WORKER_INITIALIZER[1])
        for _ in range(self.workers):
            self._executor.submit(worker.ready)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        executor, self._executor = self._executor, None
        if executor is None:
            return Deferred.fromCoroutine(_nothing())
        # The proxy has drained before this stops (reverse start order): nothing is waiting.
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), executor.shutdown, True, cancel_futures=True)

    def _policy_of(self, inspector: Inspector) -> tuple[tuple[int, int | None], bytes]:
        if self._policy is None or self._policy[0] is not inspector:
            key = (id(inspector), inspector.max_findings)
            self._policy = (inspector, key, pickle.dumps(inspector.policy))
        return self._policy[1], self._policy[2]

    def inspect(self, inspector: Inspector, direction: str, provider: str, path: str, body: bytes,
                identity: str | None, coding: bytes | None = None, limit: int = 0) -> Deferred[Verdict]:
        """The verdict on C{body} from a worker; fails with L{PoolFull} at once when the pool is full,
        or with the worker's exception (L{content_coding.CodingError} for a body that does not decode)."""
        if self._executor is None or self.pending >= self.capacity:
            self._metrics.scan_pool_rejected.inc()
            raise PoolFull()
        key, blob = self._policy_of(inspector)
        future = self._executor.submit(worker.inspect, key, blob, direction, provider, path, body, identity, coding, limit)
        self.pending += 1
        self._metrics.scan_pool_pending.set(self.pending)
        self._metrics.scan_pool_jobs.labels(direction).inc()
        d: Deferred[Verdict] = Deferred()

        def done(f: Future[Verdict]) -> None:
            self._reactor.callFromThread(self._finished, d, f)

        future.add_done_callback(done)
        return d

    def _finished(self, d: Deferred[Verdict], future: Future[Verdict]) -> None:
        self.pending -= 1
        self._metrics.scan_pool_pending.set(self.pending)
        error = future.exception()
        if isinstance(error, BrokenProcessPool) and self._executor is not None and self.running:
            # A worker died (killed, out of memory): this body fails closed, the next gets a new pool.
            log.error("a scan worker died; starting a new pool")
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._start_executor()
        if error is not None:
            d.errback(error)
        else:
            d.callback(future.result())


async def _nothing() -> None:
    return None
