"""The analytics writer: audit rows off the request path, batched, and never silently lost.

C{record()} first appends the row to the journal (L{proxilion.analytics.journal}:
one C{write(2)} on the reactor thread, so a killed process loses no row of an
answered request), then to a bounded in-memory queue. A timer (every
C{analytics_flush_interval}) or a full batch (C{analytics_batch_size} rows)
sends the queue to the store in batches, one database write in flight at a
time. While the database is down, slow past C{stall_timeout}, or the queue is
full, rows go to the disk spool instead; once the database answers again the
spool is replayed. Rows are dropped only when the spool is full or the disk
refuses them and the memory queue is full too; that is counted and logged at
critical level. A spool that fails (a full disk) is not tried again before a
backoff, so a full disk costs no work per request.

Rows committed or spooled are settled in the journal, whose files are then
truncated or removed; a previous run's journal is handed to the spool at start.
Apart from the journal's one write per row, file and database work happens in
threads; nothing here waits on them.
"""

from __future__ import annotations

import os
from collections import deque
from functools import partial
from typing import Any, Callable, Sequence

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from proxilion.analytics.event import AuditEvent, event_row, row_json
from proxilion.analytics.journal import Journal
from proxilion.analytics.spool import Segment, Spool
from proxilion.analytics.store import EventStore, open_store
from proxilion.component import Health
from proxilion.metrics import HEALTH_DEGRADED, HEALTH_OK

__all__ = ["AnalyticsWriter", "OK", "SPOOLING"]

OK: Health = "ok"
SPOOLING: Health = "spooling"

_RETRY_FIRST = 0.5
_DROP_LOG_EVERY = 10.0


def _short(error: BaseException) -> str:
    """Class and first line of an error: enough to diagnose, too short to carry row data."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:160]}" if text else type(error).__name__


class _Write:
    """One database operation in flight: a batch insert, or a probe when C{items} is empty."""

    def __init__(self, items: list[Any], started: float) -> None:
        self.items = items
        self.started = started
        # Events held only in memory: what must be spooled if we give up on this write.
        self.live: list[AuditEvent] = [item for item in items if isinstance(item, AuditEvent)]
        self.replayed = len(items) - len(self.live)
        self.stalled = False
        self.stall_call: Any = None


class AnalyticsWriter(Service):
    """Batches L{AuditEvent}s into the configured store, with a disk spool for outages.

    @param reactor: provides IReactorTime and IReactorThreads (a
        C{task.Clock} will do when C{store} and C{io} are given).
    @param store: the store; default from C{settings} (SQLite or PostgreSQL).
    @param io: runs a blocking spool function off the reactor and returns a
        Deferred; default: a dedicated one-thread pool.
    @param shutdown_timeout: seconds C{stopService} spends flushing before it
        spools what is left.
    @param stall_timeout: seconds a database write may take before its rows
        are spooled and the writer treats the database as down.
    """

    log = Logger()
    name = "analytics"  # type: ignore[assignment]  # Twisted's Service declares `name = None` without a type

    def __init__(
        self,
        settings: Any,
        metrics: Any,
        reactor: Any,
        *,
        store: EventStore | None = None,
        io: Callable[..., defer.Deferred[Any]] | None = None,
        shutdown_timeout: float = 5.0,
        stall_timeout: float = 10.0,
        retry_max: float = 30.0,
        retention_interval: float = 3600.0,
        retention_first: float = 60.0,
        retention_batch: int = 5000,
        journal_write: Callable[[int, bytes], int] = os.write,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._reactor = reactor
        self._store = store if store is not None else open_store(settings, reactor)
        self._io = io
        self._io_pool: ThreadPool | None = None
        self._spool = Spool(os.path.join(settings.data_dir, "spool"), settings.analytics_spool_max_bytes)
        self._journal = Journal(
            os.path.join(settings.data_dir, "journal"), settings.analytics_journal_max_bytes, reactor, journal_write
        )
        # id(event) -> its journal generation, while its fate is open. An id is
        # unique among live objects, and a pending event is alive.
        self._journaled: dict[int, int] = {}
        self._journal_leftovers: list[str] = []
        self._journal_logged_at: float | None = None
        self._batch_size = settings.analytics_batch_size
        self._queue_size = settings.analytics_queue_size
        self._interval = settings.analytics_flush_interval
        self._truncate = settings.analytics_truncate_ip
        self._shutdown_timeout = shutdown_timeout
        self._stall_timeout = stall_timeout
        self._retry_max = retry_max
        self._retention_interval = retention_interval
        self._retention_first = retention_first
        self._retention_batch = retention_batch

        self._queue: deque[AuditEvent] = deque()
        self._state = OK
        self._opened = False
        self._stopping = False
        self._stopped = False
        self._due = False
        self._pump_call: Any = None
        self._ticker: task.LoopingCall | None = None
        self._retry_call: Any = None
        self._retention_call: Any = None
        self._attempt = 0
        self._write: _Write | None = None
        # Halves of a batch that hit a data error, tried before anything else.
        self._split: deque[list[Any]] = deque()
        self._spool_writes = 0
        # Spool backoff after a failed or full spool write: no spill before this time.
        self._spool_retry_at: float | None = None
        self._spool_attempt = 0
        # Set from the first failed database call to the next committed batch:
        # one warning per outage, however often a probe answers in between.
        self._outage = False
        self._replay: deque[tuple] = deque()
        self._replay_segment: str | None = None
        self._replay_outstanding = 0
        self._replay_loading = False
        self._waiters: list[tuple[defer.Deferred[None], Any]] = []
        self._last_error: str | None = None
        self._last_flush: float | None = None
        self._dropped_unlogged = 0
        self._drop_reason = ""
        self._drop_logged_at: float | None = None
        self._counts = {"written": 0, "spooled": 0, "dropped": 0, "rejected": 0, "deferred": 0}
        self._started: defer.Deferred[None] | None = None

    # -- the request path ----------------------------------------------

    def record(self, event: AuditEvent) -> None:
        """Journal C{event} (one write) and queue it for the database. O(1); never raises, never waits."""
        try:
            if self._stopped:
                self._drop(1, "recorded after the writer stopped")
                return
            self._to_journal(event)
            if len(self._queue) >= self._queue_size:
                if self._spool_writes or not self._spool_ready():
                    self._lose([event], "memory queue full while the spool is busy or failing")
                    return
                self._spill()
            self._queue.append(event)
            if len(self._queue) >= self._batch_size and self._pump_call is None and self._write is None:
                self._pump_call = self._reactor.callLater(0, self._pump)
        except Exception:
            self.log.failure("analytics: record failed")

    def can_keep(self) -> bool:
        """True while a new row can reach the journal, the database or the spool (AUDIT_FAIL_CLOSED asks)."""
        return self._journal.usable() or (self._state == OK and self._opened) or (self._io is not None and self._spool_ready())

    # -- the journal ---------------------------------------------------

    def _to_journal(self, event: AuditEvent) -> None:
        gen = self._journal.append((row_json(event_row(event, self._truncate)) + "\n").encode())
        if gen is not None:
            self._journaled[id(event)] = gen
            return
        reason = "error" if self._journal.last_error is not None and self._journal.bytes < self._journal.max_bytes else "full"
        self._metrics.analytics_journal_skipped.labels(reason=reason).inc()
        now = self._reactor.seconds()
        if self._journal_logged_at is None or now - self._journal_logged_at >= _DROP_LOG_EVERY:
            self._journal_logged_at = now
            self.log.error(
                "analytics: audit journal unavailable ({reason}: {error}); rows are not crash-safe until it recovers",
                reason=reason,
                error=self._journal.last_error,
            )

    def _settle(self, events: Sequence[Any]) -> None:
        """C{events} are committed or fsynced in the spool: the journal no longer needs them."""
        journaled = self._journaled
        for event in events:
            gen = journaled.pop(id(event), None)
            if gen is not None:
                self._journal.settle(gen)

    def _lose(self, events: Sequence[AuditEvent], reason: str) -> None:
        """C{events} leave memory unwritten: journaled ones wait in the journal for the next start, the rest are lost."""
        lost = 0
        for event in events:
            gen = self._journaled.pop(id(event), None)
            if gen is None:
                lost += 1
            else:
                self._journal.pin(gen)
        deferred = len(events) - lost
        if deferred:
            self._metrics.analytics_rows_deferred.inc(deferred)
            self._counts["deferred"] += deferred
        if lost:
            self._drop(lost, reason)

    # -- queries and health --------------------------------------------

    def store(self) -> EventStore:
        return self._store

    def health(self) -> Health:
        return self._state

    def status(self) -> dict[str, Any]:
        return {
            "store": self._store.kind,
            "target": self._store.target,
            "state": self._state,
            "queue_depth": len(self._queue),
            "spool_bytes": self._spool.size,
            "journal_bytes": self._journal.bytes,
            "writing": self._write is not None,
            "rows_written": self._counts["written"],
            "rows_spooled": self._counts["spooled"],
            "rows_dropped": self._counts["dropped"],
            "rows_rejected": self._counts["rejected"],
            "rows_deferred": self._counts["deferred"],
            "last_flush": self._last_flush,
            "last_error": self._last_error,
        }

    # -- service lifecycle ---------------------------------------------

    def _spool_io(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        """Run a blocking spool function off the reactor (C{_io} is set while the service runs)."""
        if self._io is None:
            return defer.fail(RuntimeError("analytics: spool I/O while the writer is stopped"))
        return self._io(fn, *args)

    def startService(self) -> None:
        Service.startService(self)
        self._stopping = self._stopped = False
        if self._io is None:
            self._io_pool = ThreadPool(minthreads=1, maxthreads=1, name="analytics-spool")
            self._io_pool.start()
            self._io = partial(deferToThreadPool, self._reactor, self._io_pool)
        self._set_health()
        try:
            # Before the proxy port opens: every row from now on has a journal file.
            self._journal_leftovers = self._journal.start()
        except OSError as e:
            self.log.critical(
                "analytics: journal directory {directory} unusable ({error}); rows are lost if the process dies",
                directory=self._journal.directory,
                error=_short(e),
            )
        self._started = defer.ensureDeferred(self._start())
        self._started.addErrback(lambda f: self.log.failure("analytics: start failed", f))
        self._started.addBoth(lambda _: self._notify())

    async def _start(self) -> None:
        try:
            waiting = await self._spool_io(self._spool.load)
        except OSError as e:
            self.log.critical(
                "analytics: spool directory {directory} unusable ({error}); rows will be lost if the database fails",
                directory=self._spool.directory,
                error=_short(e),
            )
        else:
            if self._journal_leftovers:
                try:
                    waiting += await self._spool_io(self._spool.adopt, self._journal_leftovers)
                except OSError as e:
                    self.log.error("analytics: cannot move the previous run's journal to the spool ({error})", error=_short(e))
                self._journal_leftovers = []
            if waiting:
                self.log.info("analytics: {bytes} bytes of spooled rows to replay", bytes=waiting)
        if self._stopping:
            return
        self._ticker = task.LoopingCall(self._tick)
        self._ticker.clock = self._reactor
        self._ticker.start(self._interval, now=False)
        if self._settings.analytics_retention_days:
            self._retention_call = self._reactor.callLater(self._retention_first, self._retention)
        await self._open()

    async def _open(self) -> None:
        self._write = _Write([], self._reactor.seconds())
        try:
            await self._store.open()
        except Exception as e:
            self._write = None
            self._failed_connection(e, "open")
        else:
            self._write = None
            self._opened = True
            self.log.info("analytics: writing to {store} {target}", store=self._store.kind, target=self._store.target)
            self._recovered()
        self._notify()

    def stopService(self) -> defer.Deferred[None]:
        Service.stopService(self)
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        self._stopping = True
        for call in (self._pump_call, self._retry_call, self._retention_call):
            if call is not None and call.active():
                call.cancel()
        self._pump_call = self._retry_call = self._retention_call = None
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        deadline = self._reactor.seconds() + self._shutdown_timeout
        if self._started is not None and not self._started.called:
            await self._until_change(deadline)
        self._pump()
        while (self._queue or self._write or self._split) and self._state == OK and self._reactor.seconds() < deadline:
            await self._until_change(deadline)
        left = self._abandon()
        if left:
            self.log.warn("analytics: shutting down with {count} rows unwritten; spooling them", count=len(left))
            await self._to_spool(left)
        while self._spool_writes:
            await self._until_change(None)
        if self._queue:
            self._lose(list(self._queue), "shutdown: spool unavailable")
            self._queue.clear()
        self._stopped = True
        self._journal.close()
        self._log_drops(force=True)
        if self._write is None:
            self._store.close()
        else:
            self.log.warn("analytics: a database call is still running; its connection closes at process exit")
        if self._io_pool is not None:
            self._spool_io(self._spool.close)
            self._io_pool.stop()
            self._io_pool = None
            self._io = None
        self._metrics.analytics_queue_depth.set(0)

    def _abandon(self) -> list[AuditEvent]:
        """Every event not yet committed nor spooled; the in-flight write may still commit (harmlessly)."""
        left: list[AuditEvent] = []
        if self._write is not None:
            left.extend(self._write.live)
            self._write.live = []
        for items in self._split:
            left.extend(item for item in items if isinstance(item, AuditEvent))
        self._split.clear()
        left.extend(self._queue)
        self._queue.clear()
        self._drop_replay()
        return left

    # -- waiting -------------------------------------------------------

    def _until_change(self, deadline: float | None) -> defer.Deferred[None]:
        """A Deferred fired at the next state change, or at C{deadline}."""
        d: defer.Deferred[None] = defer.Deferred()
        timer = None
        if deadline is not None:
            timer = self._reactor.callLater(max(0.0, deadline - self._reactor.seconds()), self._wake, d)
        self._waiters.append((d, timer))
        return d

    def _wake(self, d: defer.Deferred[None]) -> None:
        self._waiters = [(w, t) for (w, t) in self._waiters if w is not d]
        d.callback(None)

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for d, timer in waiters:
            if timer is not None and timer.active():
                timer.cancel()
            d.callback(None)

    # -- the pump: decides the next database or spool operation --------

    def _tick(self) -> None:
        self._due = True
        self._pump()

    def _pump(self) -> None:
        self._pump_call = None
        self._metrics.analytics_queue_depth.set(len(self._queue))
        if self._stopped:
            return
        if self._state == SPOOLING:
            if self._queue and not self._spool_writes and self._spool_ready():
                self._spill()
            return
        if self._write is not None or not self._opened:
            return
        if self._split:
            self._start_write(self._split.popleft())
        elif self._queue and (self._due or self._stopping or len(self._queue) >= self._batch_size):
            batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
            if not self._queue:
                self._due = False
            self._start_write(batch)
        elif self._stopping:
            return
        elif self._replay:
            chunk = [self._replay.popleft() for _ in range(min(self._batch_size, len(self._replay)))]
            self._start_write(chunk)
        elif self._spool.size and self._replay_segment is None and not self._replay_loading:
            self._load_segment()
        self._metrics.analytics_queue_depth.set(len(self._queue))

    def _start_write(self, items: list[Any]) -> None:
        write = _Write(items, self._reactor.seconds())
        self._write = write
        write.stall_call = self._reactor.callLater(self._stall_timeout, self._stalled, write)
        d = self._store.insert(items, self._row) if items else self._store.ping()
        d.addCallbacks(self._written, self._write_failed, callbackArgs=(write,), errbackArgs=(write,))
        d.addErrback(lambda f: self.log.failure("analytics: write bookkeeping failed", f))

    def _row(self, item: Any) -> tuple:
        return item if isinstance(item, tuple) else event_row(item, self._truncate)

    def _finish(self, write: _Write) -> None:
        if write.stall_call is not None and write.stall_call.active():
            write.stall_call.cancel()
        if self._write is write:
            self._write = None

    def _written(self, _: Any, write: _Write) -> None:
        self._finish(write)
        self._settle(write.live)
        if write.items:
            if self._outage:
                self._outage = False
                self._attempt = 0
                self.log.info("analytics: database writes succeed again")
            self._metrics.analytics_flush_duration.observe(self._reactor.seconds() - write.started)
            self._metrics.analytics_rows_written.inc(len(write.items))
            self._counts["written"] += len(write.items)
            self._last_flush = self._reactor.seconds()
        if write.stalled:
            self.log.info("analytics: a stalled database write finished after all")
        if write.replayed:
            self._replayed(write.replayed)
        if self._state == SPOOLING and not self._stopped:
            self._recovered()
        self._pump()
        self._notify()

    def _write_failed(self, failure: Failure, write: _Write) -> None:
        self._finish(write)
        error = failure.value
        if write.items and self._store.is_data_error(error) and not self._stopped:
            self._data_error(write, error)
        else:
            if write.replayed:
                self._drop_replay()
            if not write.stalled and write.live and not self._stopped:
                self._to_spool(write.live)
            write.live = []
            if not self._stopped:
                self._failed_connection(error, "write" if write.items else "probe")
        self._pump()
        self._notify()

    def _stalled(self, write: _Write) -> None:
        write.stalled = True
        self._metrics.analytics_flush_failures.labels(kind="timeout").inc()
        self.log.warn(
            "analytics: database write of {rows} rows still running after {seconds}s; spooling",
            rows=len(write.items),
            seconds=self._stall_timeout,
        )
        if write.live:
            self._to_spool(write.live)
            write.live = []
        self._enter_spooling("timeout: database write stalled")

    # -- data errors: isolate the bad row ------------------------------

    def _data_error(self, write: _Write, error: BaseException) -> None:
        self._metrics.analytics_flush_failures.labels(kind="data").inc()
        items = write.items
        if len(items) > 1:
            middle = len(items) // 2
            self._split.appendleft(items[middle:])
            self._split.appendleft(items[:middle])
            return
        (item,) = items
        # Replaying it would only be refused again: the rejected spool is its place now.
        self._settle(items)
        row = self._row(item)
        self.log.error(
            "analytics: database refused row {request_id} ({error}); kept in the rejected spool",
            request_id=row[0],
            error=_short(error),
        )
        self._counts["rejected"] += 1
        if write.replayed:
            self._replayed(1)
        d = self._spool_io(self._spool.reject, [row])
        def kept_or_drop(kept: bool) -> None:
            if not kept:
                self._drop(1, "rejected row: spool full")

        d.addCallbacks(
            kept_or_drop,
            lambda f: self._drop(1, f"rejected row: {_short(f.value)}"),
        )

    # -- outages -------------------------------------------------------

    def _failed_connection(self, error: BaseException, during: str) -> None:
        self._metrics.analytics_flush_failures.labels(kind="connection").inc()
        self._last_error = _short(error)
        level = self.log.debug if self._outage or self._state != OK else self.log.warn
        self._outage = True
        level(
            "analytics: database unavailable during {during} ({error}); spooling to {spool}",
            during=during,
            error=self._last_error,
            spool=self._spool.directory,
        )
        self._enter_spooling(self._last_error)

    def _enter_spooling(self, reason: str) -> None:
        self._last_error = reason
        if self._state == OK:
            self._state = SPOOLING
            self._drop_replay()
            self._set_health()
        if self._queue and not self._spool_writes and self._spool_ready():
            self._spill()
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        if self._stopping or (self._retry_call is not None and self._retry_call.active()):
            return
        delay = min(self._retry_max, _RETRY_FIRST * 2**self._attempt)
        self._attempt += 1
        self._retry_call = self._reactor.callLater(delay, self._retry)

    def _retry(self) -> None:
        self._retry_call = None
        if self._stopping or self._write is not None:
            # A stalled write still holds the lane; its outcome decides.
            self._schedule_retry()
            return
        if not self._opened:
            defer.ensureDeferred(self._open())
        else:
            self._start_write([])

    def _recovered(self) -> None:
        if self._state == SPOOLING:
            # A probe that answers proves little (SQLite on a full disk answers
            # SELECT 1 and fails every insert): the backoff and the outage end
            # with the first committed batch (see _written).
            self.log.debug("analytics: database answers again; writing and replaying the spool")
        self._state = OK
        if not self._outage:
            self._attempt = 0
        self._last_error = None
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        self._set_health()
        self._pump()

    def _set_health(self) -> None:
        value = HEALTH_OK if self._state == OK else HEALTH_DEGRADED
        self._metrics.health_check_status.labels(component="analytics").set(value)

    # -- spool ---------------------------------------------------------

    def _spill(self) -> None:
        events = list(self._queue)
        self._queue.clear()
        if self._io is None:
            self._lose(events, "memory queue full before the writer started")
            return
        self._to_spool(events)

    def _to_spool(self, events: Sequence[AuditEvent]) -> defer.Deferred[None]:
        self._spool_writes += 1
        events = list(events)
        d = self._spool_io(self._spool_rows, events)
        d.addCallback(self._spooled, events)
        d.addErrback(self._spool_failed, events)
        d.addBoth(self._spool_done)
        return d

    def _spool_rows(self, events: list[AuditEvent]) -> tuple[int, OSError | None]:
        return self._spool.append([event_row(e, self._truncate) for e in events])

    def _spooled(self, result: tuple[int, OSError | None], events: list[AuditEvent]) -> None:
        done, error = result
        self._metrics.analytics_rows_spooled.inc(done)
        self._counts["spooled"] += done
        self._settle(events[:done])
        if done < len(events):
            reason = _short(error) if error is not None else f"spool full ({self._spool.max_bytes} bytes)"
            self._spool_backoff(reason)
            self._keep_or_drop(events[done:], reason)
        else:
            self._spool_retry_at = None
            self._spool_attempt = 0

    def _spool_failed(self, failure: Failure, events: list[AuditEvent]) -> None:
        reason = _short(failure.value)
        self._spool_backoff(reason)
        self._keep_or_drop(events, reason)

    def _spool_ready(self) -> bool:
        return self._spool_retry_at is None or self._reactor.seconds() >= self._spool_retry_at

    def _spool_backoff(self, reason: str) -> None:
        """No spill before a delay that doubles with each failure: a full disk must not be retried per request."""
        delay = min(self._retry_max, _RETRY_FIRST * 2**self._spool_attempt)
        if self._spool_attempt == 0 or delay >= self._retry_max:
            # Once when it starts failing, then at most once per longest delay.
            self.log.warn("analytics: spool write failed ({reason}); next attempt in {delay}s", reason=reason, delay=delay)
        self._spool_attempt += 1
        self._spool_retry_at = self._reactor.seconds() + delay

    def _spool_done(self, _: Any) -> None:
        self._spool_writes -= 1
        self._notify()

    def _keep_or_drop(self, events: list[AuditEvent], reason: str) -> None:
        """Put unspoolable events back in memory while there is room; the rest are lost."""
        room = 0 if self._stopped else max(0, self._queue_size - len(self._queue))
        kept = events[:room]
        self._queue.extendleft(reversed(kept))
        if len(events) > room:
            self._lose(events[room:], reason)

    def _drop(self, count: int, reason: str) -> None:
        self._metrics.analytics_rows_dropped.inc(count)
        self._counts["dropped"] += count
        self._dropped_unlogged += count
        self._drop_reason = reason
        self._log_drops()

    def _log_drops(self, force: bool = False) -> None:
        now = self._reactor.seconds()
        if not self._dropped_unlogged:
            return
        if force or self._drop_logged_at is None or now - self._drop_logged_at >= _DROP_LOG_EVERY:
            self.log.critical(
                "analytics: {count} AUDIT ROWS LOST ({reason}); {total} lost since start",
                count=self._dropped_unlogged,
                reason=self._drop_reason,
                total=self._counts["dropped"],
            )
            self._dropped_unlogged = 0
            self._drop_logged_at = now

    # -- replay --------------------------------------------------------

    def _load_segment(self) -> None:
        self._replay_loading = True
        d = self._spool_io(self._spool.oldest)
        d.addCallbacks(self._segment_loaded, self._segment_failed)
        d.addBoth(lambda _: self._notify())

    def _segment_loaded(self, segment: Segment | None) -> None:
        self._replay_loading = False
        if segment is None or self._state != OK or self._stopping:
            return
        if segment.damaged:
            self._drop(segment.damaged, f"damaged lines in spool segment {segment.name}")
        self.log.info("analytics: replaying {rows} spooled rows from {segment}", rows=len(segment.rows), segment=segment.name)
        self._replay_segment = segment.name
        self._replay.extend(segment.rows)
        self._replay_outstanding = len(segment.rows)
        self._replayed(0)

    def _segment_failed(self, failure: Failure) -> None:
        self._replay_loading = False
        self.log.error("analytics: cannot read the spool ({error})", error=_short(failure.value))

    def _replayed(self, count: int) -> None:
        """C{count} replayed rows are committed (or rejected); remove the segment once all are."""
        self._replay_outstanding -= count
        name = self._replay_segment
        if name is None or self._replay_outstanding > 0 or self._replay:
            return
        self._replay_segment = None
        d = self._spool_io(self._spool.remove, name)
        d.addErrback(lambda f: self.log.error("analytics: cannot remove replayed {segment} ({error})", segment=name, error=_short(f.value)))
        d.addBoth(lambda _: self._pump())

    def _drop_replay(self) -> None:
        """Forget the segment being replayed; it stays on disk and is replayed again later."""
        self._replay.clear()
        self._replay_segment = None
        self._replay_outstanding = 0
        self._split = deque(items for items in self._split if any(isinstance(i, AuditEvent) for i in items))

    # -- retention -----------------------------------------------------

    def _retention(self) -> None:
        self._retention_call = None
        d = defer.ensureDeferred(self._delete_old())
        d.addErrback(lambda f: self.log.warn("analytics: retention failed ({error})", error=_short(f.value)))
        d.addBoth(self._schedule_retention)

    def _schedule_retention(self, _: Any) -> None:
        if not self._stopping:
            self._retention_call = self._reactor.callLater(self._retention_interval, self._retention)

    async def _delete_old(self) -> None:
        if self._state != OK or not self._opened:
            return
        cutoff = self._reactor.seconds() - self._settings.analytics_retention_days * 86400
        total = 0
        while not self._stopping:
            deleted = await self._store.delete_older_than(cutoff, self._retention_batch)
            if deleted is None:
                self.log.debug("analytics: another replica is applying retention")
                break
            total += deleted
            if deleted < self._retention_batch:
                break
            # Small batches with pauses: inserts never wait long behind a delete.
            await task.deferLater(self._reactor, 0.05, lambda: None)
        if total:
            self.log.info("analytics: retention deleted {rows} rows older than {days} days", rows=total, days=self._settings.analytics_retention_days)
