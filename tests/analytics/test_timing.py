"""Writer timing driven by task.Clock: flush interval, batch trigger, backoff, stalls, shutdown deadline.

The store is a hand-written fake whose Deferreds the test fires; spool work
runs synchronously on real files, so no thread or reactor is involved.
"""

from __future__ import annotations

import os

import pytest
from twisted.internet import defer, task

from proxilion.analytics.writer import AnalyticsWriter

from .conftest import make_event, make_settings


class FakeStore:
    """Records each insert/ping with the Deferred the test fires."""

    kind = "fake"
    target = "memory"

    def __init__(self) -> None:
        self.calls: list[tuple[list, defer.Deferred]] = []
        self.closed = False

    async def open(self) -> list[int]:
        return []

    def insert(self, items, convert=None) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.calls.append((list(items), d))
        return d

    def ping(self) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.calls.append(([], d))
        return d

    def is_data_error(self, error: BaseException) -> bool:
        return isinstance(error, ValueError)

    def close(self) -> None:
        self.closed = True


def sync_io(f, *args):
    return defer.maybeDeferred(f, *args)


@pytest.fixture
def clock():
    return task.Clock()


@pytest.fixture
def store():
    return FakeStore()


@pytest.fixture
def writer(tmp_path, metrics, clock, store):
    settings = make_settings(tmp_path, analytics_flush_interval=1.0, analytics_batch_size=10)
    w = AnalyticsWriter(settings, metrics, clock, store=store, io=sync_io, stall_timeout=10.0, retry_max=8.0)
    w.startService()
    return w


def test_flushes_on_interval_not_before(writer, clock, store):
    for i in range(3):
        writer.record(make_event(i))
    clock.advance(0.99)
    assert store.calls == []
    clock.advance(0.01)
    assert [len(items) for items, _ in store.calls] == [3]


def test_full_batch_flushes_at_once_one_write_in_flight(writer, clock, store):
    for i in range(25):
        writer.record(make_event(i))
    clock.advance(0)
    assert [len(items) for items, _ in store.calls] == [10]
    store.calls[0][1].callback(10)
    store.calls[1][1].callback(10)
    assert [len(items) for items, _ in store.calls] == [10, 10]
    clock.advance(1.0)
    assert [len(items) for items, _ in store.calls] == [10, 10, 5]


def test_outage_backoff_spool_and_replay(writer, clock, store, tmp_path):
    for i in range(4):
        writer.record(make_event(i))
    clock.advance(1.0)
    store.calls[-1][1].errback(ConnectionError("refused"))
    assert writer.health() == "spooling"
    assert writer.status()["spool_bytes"] > 0 and writer.status()["queue_depth"] == 0

    # Probes at 0.5, then 1, 2, 4, capped at 8 seconds apart.
    waits = []
    for _ in range(6):
        before = len(store.calls)
        elapsed = 0.0
        while len(store.calls) == before:
            clock.advance(0.25)
            elapsed += 0.25
        waits.append(elapsed)
        store.calls[-1][1].errback(ConnectionError("refused"))
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]

    writer.record(make_event(10))
    clock.advance(1.0)  # still down: the new row is spooled on the tick
    assert writer.status()["queue_depth"] == 0

    while len(store.calls) == 7:
        clock.advance(0.25)
    store.calls[-1][1].callback(None)  # the probe succeeds
    assert writer.health() == "ok"
    replay, d = store.calls[-1]
    assert sorted(row[0] for row in replay) == ["req-000000", "req-000001", "req-000002", "req-000003", "req-000010"]
    assert writer.status()["spool_bytes"] > 0  # removed only after the commit
    d.callback(len(replay))
    assert writer.status()["spool_bytes"] == 0
    assert [n for n in os.listdir(tmp_path / "spool")] == []


def test_stalled_write_spools_and_recovers(writer, clock, store, metrics):
    for i in range(10):
        writer.record(make_event(i))
    clock.advance(0)
    hung = store.calls[0][1]
    clock.advance(9.9)
    assert writer.health() == "ok"
    clock.advance(0.1)
    assert writer.health() == "spooling"
    assert writer.status()["rows_spooled"] == 10
    assert metrics.registry.get_sample_value("proxilion_analytics_flush_failures_total", {"kind": "timeout"}) == 1
    # Records keep going to the spool while the write hangs; no second write starts.
    for i in range(10, 15):
        writer.record(make_event(i))
    clock.advance(30)
    assert len(store.calls) == 1
    assert writer.status()["rows_spooled"] == 15
    hung.callback(10)  # the database answers after all: replay (duplicates are ignored by the store)
    assert writer.health() == "ok"
    assert len(store.calls) == 2


def test_shutdown_deadline_with_hung_database(writer, clock, store):
    for i in range(10):
        writer.record(make_event(i))
    clock.advance(0)
    for i in range(10, 13):
        writer.record(make_event(i))
    stopped = writer.stopService()
    clock.advance(4.9)
    assert not stopped.called
    clock.advance(0.1)
    assert stopped.called
    status = writer.status()
    assert (status["rows_spooled"], status["rows_dropped"], status["queue_depth"]) == (13, 0, 0)
    assert not store.closed  # a pool thread is still busy; the process exit closes it


def test_shutdown_flushes_everything_when_database_answers(writer, clock, store):
    for i in range(15):
        writer.record(make_event(i))
    stopped = writer.stopService()
    assert [len(items) for items, _ in store.calls] == [10]
    store.calls[0][1].callback(10)
    store.calls[1][1].callback(5)
    assert stopped.called and store.closed
    assert writer.status()["rows_spooled"] == 0


def test_data_error_bisects_to_the_bad_row(writer, clock, store):
    for i in range(8):
        writer.record(make_event(i))
    clock.advance(1.0)
    bad = "req-000005"
    while store.calls and not store.calls[-1][1].called:
        items, d = store.calls[-1]
        if any(e.request_id == bad for e in items):
            d.errback(ValueError("out of range"))
        else:
            d.callback(len(items))
    assert writer.status()["rows_rejected"] == 1
    assert writer.status()["rows_written"] == 7
    assert len(store.calls) <= 1 + 2 * 3  # log2(8) levels, two halves each
