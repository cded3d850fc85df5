"""A full disk with the database down (issue #14, item 4), and the journal's bookkeeping, on task.Clock.

The spool's appends and the journal's write(2) raise ENOSPC as a full
filesystem does; the store is the hand-written fake of test_timing.
"""

from __future__ import annotations

import errno
import os
from typing import Any

import pytest
from twisted.internet import defer, task
from twisted.logger import Logger

from proxilion.analytics.event import event_row, row_json
from proxilion.analytics.writer import AnalyticsWriter

from .conftest import make_event, make_settings
from .test_timing import FakeStore


def _enospc(*_: Any) -> int:
    raise OSError(errno.ENOSPC, "No space left on device")


class Disk:
    """The writer's io and journal write, with a switch that fills the disk."""

    def __init__(self) -> None:
        self.full = False
        self.spool_calls = 0

    def io(self, f: Any, *args: Any) -> defer.Deferred:
        if getattr(f, "__name__", "") == "_spool_rows":
            self.spool_calls += 1
            if self.full:
                return defer.fail(OSError(errno.ENOSPC, "No space left on device"))
        return defer.maybeDeferred(f, *args)

    def write(self, fd: int, data: bytes) -> int:
        if self.full:
            _enospc()
        return os.write(fd, data)


class Logs:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, event: dict) -> None:
        self.events.append(event)

    def loud(self) -> list[str]:
        return [e["log_format"] for e in self.events if e["log_level"].name in ("warn", "error", "critical")]


@pytest.fixture
def clock() -> task.Clock:
    return task.Clock()


@pytest.fixture
def disk() -> Disk:
    return Disk()


@pytest.fixture
def logs() -> Logs:
    return Logs()


def _writer(tmp_path: Any, metrics: Any, clock: task.Clock, store: FakeStore, disk: Disk, logs: Logs, **options: Any) -> AnalyticsWriter:
    settings = make_settings(tmp_path, analytics_flush_interval=1.0, analytics_batch_size=10, analytics_queue_size=100, **options)
    w = AnalyticsWriter(settings, metrics, clock, store=store, io=disk.io, stall_timeout=10.0, retry_max=8.0, journal_write=disk.write)
    w.log = Logger(observer=logs)
    w.startService()
    return w


def _fail_pending(store: FakeStore, error: BaseException) -> None:
    for _, d in store.calls:
        if not d.called:
            d.errback(error)


def test_full_disk_is_not_retried_per_request(tmp_path, metrics, clock, disk, logs):
    store = FakeStore()
    writer = _writer(tmp_path, metrics, clock, store, disk, logs)
    disk.full = True
    for i in range(10):
        writer.record(make_event(i))
    clock.advance(0)
    _fail_pending(store, ConnectionError("database is locked"))
    assert writer.health() == "spooling"

    # Thousands of requests within one backoff: at most one spool attempt, and the rest dropped, counted.
    for i in range(10, 5010):
        writer.record(make_event(i))
        if i % 100 == 0:
            clock.advance(0.001)
    assert disk.spool_calls <= 2
    assert writer.status()["queue_depth"] == 100
    dropped = metrics.registry.get_sample_value("proxilion_analytics_rows_dropped_total")
    assert dropped == writer.status()["rows_dropped"] >= 4900
    assert metrics.registry.get_sample_value("proxilion_analytics_journal_skipped_total", {"reason": "error"}) == 5010

    # Spool attempts back off: 0.5 s, 1, 2, 4, 8, 8 (capped) apart, whatever the request rate.
    calls = disk.spool_calls
    for _ in range(300):
        writer.record(make_event(99999))
        clock.advance(0.1)
        _fail_pending(store, ConnectionError("database is locked"))
    assert disk.spool_calls - calls <= 7

    # Logs are rate-limited by time, not per request: 8000 records in 30 s of a full disk,
    # a line every 10 s or so for drops, journal and spool each.
    assert len(logs.loud()) <= 12, logs.loud()

    # The disk has room again: the next attempt spools the queue and the journal writes again.
    disk.full = False
    clock.advance(8.0)
    assert writer.status()["queue_depth"] == 0 and writer.status()["rows_spooled"] >= 100
    before = writer.status()["journal_bytes"]
    writer.record(make_event(123456))
    assert writer.status()["journal_bytes"] > before


def test_probe_answering_does_not_reset_the_backoff(tmp_path, metrics, clock, disk, logs):
    """SQLite on a full disk answers SELECT 1 and fails every insert: no warning/info pair every 0.5 s."""
    store = FakeStore()
    writer = _writer(tmp_path, metrics, clock, store, disk, logs)
    writer.record(make_event(0))
    clock.advance(1.0)
    _fail_pending(store, ConnectionError("database or disk is full"))
    probes = []
    for _ in range(40):
        clock.advance(0.25)
        for items, d in list(store.calls):
            if d.called:
                continue
            if items:
                d.errback(ConnectionError("database or disk is full"))
            else:
                probes.append(clock.seconds())
                d.callback(None)
        writer.record(make_event(1))
    gaps = [b - a for a, b in zip(probes, probes[1:])]
    assert gaps and gaps == sorted(gaps) and gaps[-1] >= 2.0, gaps
    assert len(logs.loud()) <= 2, logs.loud()


def test_can_keep_only_false_when_journal_database_and_spool_all_fail(tmp_path, metrics, clock, disk, logs):
    store = FakeStore()
    writer = _writer(tmp_path, metrics, clock, store, disk, logs)
    assert writer.can_keep()
    disk.full = True
    writer.record(make_event(0))  # the journal fails
    assert writer.can_keep()  # the database still takes rows
    clock.advance(1.0)
    _fail_pending(store, ConnectionError("down"))  # database down: its rows go to the spool, which fails
    writer.record(make_event(1))  # and the journal still fails
    assert not writer.can_keep()
    disk.full = False
    clock.advance(30.0)  # backoffs over: the journal and the spool are tried again
    assert writer.can_keep()


def test_journal_truncated_once_committed_and_removed_at_stop(tmp_path, metrics, clock, disk, logs):
    store = FakeStore()
    writer = _writer(tmp_path, metrics, clock, store, disk, logs)
    journal = tmp_path / "journal"
    for i in range(3):
        writer.record(make_event(i))
    (active,) = os.listdir(journal)
    lines = (journal / active).read_bytes().splitlines()
    assert [line.decode() for line in lines] == [row_json(event_row(make_event(i))) for i in range(3)]
    clock.advance(1.0)
    items, d = store.calls[-1]
    d.callback(len(items))
    assert (journal / active).stat().st_size == 0
    writer.record(make_event(3))
    stopped = writer.stopService()
    store.calls[-1][1].callback(1)
    assert stopped.called
    assert os.listdir(journal) == []


def test_previous_runs_journal_is_replayed_at_start(tmp_path, metrics, clock, disk, logs):
    journal = tmp_path / "journal"
    journal.mkdir()
    rows = [row_json(event_row(make_event(i))) + "\n" for i in range(5)]
    (journal / "journal-000000000007.jsonl").write_text("".join(rows[:3]))
    (journal / "journal-000000000008.jsonl").write_text("".join(rows[3:]))
    store = FakeStore()
    writer = _writer(tmp_path, metrics, clock, store, disk, logs)
    clock.advance(1.0)
    replayed = []
    while store.calls and not store.calls[-1][1].called:
        items, d = store.calls[-1]
        replayed += [row[0] for row in items]
        d.callback(len(items))
        clock.advance(1.0)
    assert sorted(replayed) == [f"req-{i:06d}" for i in range(5)]
    assert os.listdir(journal) == ["journal-000000000009.jsonl"]
    assert writer.status()["spool_bytes"] == 0
