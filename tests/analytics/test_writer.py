"""AnalyticsWriter against real stores: a real PostgreSQL server and real SQLite files."""

from __future__ import annotations

import os
import sqlite3

import psycopg
import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task, threads

from proxilion.analytics.event import COLUMNS, event_from_row
from proxilion.analytics.store import PostgresStore
from proxilion.analytics.migrations import POSTGRESQL

from support.daemon import closed_port

from .conftest import make_event, make_settings, wait_for


def _read_rows(settings) -> list[dict]:
    """Every stored row, oldest first, read straight from the database (blocking: call in a thread)."""
    sql = f"SELECT {', '.join(COLUMNS)} FROM audit_events ORDER BY request_id"
    if settings.analytics_dsn:
        with psycopg.connect(settings.analytics_dsn) as conn:
            rows = conn.execute(sql).fetchall()
    else:
        conn = sqlite3.connect(os.path.join(settings.data_dir, "analytics.db"))
        try:
            rows = conn.execute(sql).fetchall()
        finally:
            conn.close()
    return [dict(zip(COLUMNS, row)) for row in rows]


def read_rows(settings) -> defer.Deferred:
    return threads.deferToThread(_read_rows, settings)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_kind(request):
    return request.param


@pytest.fixture
def settings_for(store_kind, tmp_path, request):
    def build(**options):
        dsn = request.getfixturevalue("pg_dsn") if store_kind == "postgresql" else None
        return make_settings(tmp_path / "data", dsn, **options)

    return build


@pytest_twisted.ensureDeferred
async def test_rows_equal_records(new_writer, settings_for, metrics, store_kind):
    settings = settings_for(analytics_batch_size=500)
    writer = new_writer(settings, metrics, reactor)
    writer.startService()
    events = [make_event(i) for i in range(1234)]
    for event in events:
        writer.record(event)
    await wait_for(lambda: writer.status()["rows_written"] == len(events), what="all rows written")
    await writer.stopService()

    rows = await read_rows(settings)
    assert [event_from_row(row) for row in rows] == events
    status = writer.status()
    assert status["store"] == store_kind
    assert (status["rows_spooled"], status["rows_dropped"], status["state"]) == (0, 0, "ok")
    assert metrics.registry.get_sample_value("proxilion_analytics_rows_written_total") == len(events)
    assert metrics.registry.get_sample_value("proxilion_health_check_status", {"component": "analytics"}) == 1.0


@pytest_twisted.ensureDeferred
async def test_client_ip_truncation(new_writer, settings_for, metrics):
    settings = settings_for(analytics_truncate_ip=True)
    writer = new_writer(settings, metrics, reactor)
    writer.startService()
    writer.record(make_event(1, client_ip="192.168.77.42"))
    writer.record(make_event(2, client_ip="2001:db8:aa:bb::1"))
    await wait_for(lambda: writer.status()["rows_written"] == 2)
    await writer.stopService()
    assert [row["client_ip"] for row in await read_rows(settings)] == ["192.168.77.0", "2001:db8:aa::"]


@pytest_twisted.ensureDeferred
async def test_data_error_isolated(new_writer, settings_for, metrics, store_kind):
    """A row the database refuses costs only that row: it goes to rejected.jsonl, the rest commit."""
    settings = settings_for(analytics_batch_size=64, analytics_flush_interval=0.2)
    bad = {17: {"tokens_in": 2**70}}
    if store_kind == "postgresql":
        bad[33] = {"model": "gpt\x00nul"}
    events = [make_event(i, **bad.get(i, {})) for i in range(50)]
    writer = new_writer(settings, metrics, reactor)
    writer.startService()
    for event in events:
        writer.record(event)
    await wait_for(lambda: writer.status()["rows_written"] + writer.status()["rows_rejected"] == 50, what="batch settled")
    await writer.stopService()

    stored = {row["request_id"] for row in await read_rows(settings)}
    assert stored == {e.request_id for i, e in enumerate(events) if i not in bad}
    with open(os.path.join(settings.data_dir, "spool", "rejected.jsonl")) as f:
        rejected = f.read()
    assert sorted(line.split('"request_id":"')[1][:10] for line in rejected.splitlines()) == [f"req-{i:06d}" for i in sorted(bad)]
    assert metrics.registry.get_sample_value("proxilion_analytics_flush_failures_total", {"kind": "data"}) >= len(bad)
    assert writer.status()["rows_dropped"] == 0


PLANTED = [
    "sk-proj-PLANTEDsecretVALUE1234567890",
    "AIzaPLANTEDgoogleKEY0987654321",
    "ghp_PLANTEDtokenVALUE",
    "PLANTEDpassw0rd",
    "PLANTEDsignatureABCDEF",
]


@pytest_twisted.ensureDeferred
async def test_planted_secrets_never_stored(new_writer, settings_for, metrics, store_kind):
    settings = settings_for()
    paths = [
        f"/v1/chat/completions?key={PLANTED[0]}",
        f"/v1beta/models/gemini-pro:generateContent?alt=sse&key={PLANTED[1]}",
        f"/openai/deployments/x/chat/completions?api-version=2024-02-01&api-key={PLANTED[0]}",
        f"/v1/messages?access_token={PLANTED[2]}&beta=true",
        f"/model/x/invoke?X-Amz-Signature={PLANTED[4]}&X-Amz-Security-Token={PLANTED[2]}",
        f"/v1/chat?password={PLANTED[3]}#frag-{PLANTED[3]}",
        f"/v1/chat?x-goog-api-key={PLANTED[1]}&Token={PLANTED[2]}",
    ]
    writer = new_writer(settings, metrics, reactor)
    writer.startService()
    for i, path in enumerate(paths):
        writer.record(make_event(i, path=path))
    await wait_for(lambda: writer.status()["rows_written"] == len(paths))
    await writer.stopService()

    rows = await read_rows(settings)
    assert [row["path"] for row in rows] == [
        "/v1/chat/completions?key=REDACTED",
        "/v1beta/models/gemini-pro:generateContent?alt=sse&key=REDACTED",
        "/openai/deployments/x/chat/completions?api-version=2024-02-01&api-key=REDACTED",
        "/v1/messages?access_token=REDACTED&beta=true",
        "/model/x/invoke?X-Amz-Signature=REDACTED&X-Amz-Security-Token=REDACTED",
        "/v1/chat?password=REDACTED",
        "/v1/chat?x-goog-api-key=REDACTED&Token=REDACTED",
    ]
    dump = repr(rows)
    if store_kind == "sqlite":
        for name in os.listdir(settings.data_dir):
            if name.startswith("analytics.db"):
                with open(os.path.join(settings.data_dir, name), "rb") as f:
                    dump += f.read().decode("latin-1")
    for secret in PLANTED:
        assert secret not in dump


@pytest_twisted.ensureDeferred
async def test_postgres_outage_mid_stream(new_writer, postgres, pg_dsn, tmp_path, metrics):
    """PostgreSQL stopped and restarted under a steady stream: every event ends with exactly one row."""
    settings = make_settings(tmp_path, pg_dsn, analytics_batch_size=200)
    writer = new_writer(settings, metrics, reactor)
    writer.startService()
    await wait_for(lambda: writer._opened, what="store opened")
    recorded = []
    seen_states = set()

    def tick():
        event = make_event(len(recorded), request_id=f"stream-{len(recorded):06d}")
        recorded.append(event)
        writer.record(event)
        seen_states.add(writer.health())

    stream = task.LoopingCall(tick)
    stream.start(0.002)
    down = False
    try:
        await task.deferLater(reactor, 0.7, lambda: None)
        down = True
        await threads.deferToThread(postgres.stop)
        await task.deferLater(reactor, 1.0, lambda: None)
        assert writer.health() == "spooling"
        await threads.deferToThread(postgres.start)
        down = False
        await task.deferLater(reactor, 0.7, lambda: None)
    finally:
        stream.stop()
        if down:
            await threads.deferToThread(postgres.start)
    await wait_for(
        lambda: writer.health() == "ok" and writer.status()["spool_bytes"] == 0 and writer.status()["queue_depth"] == 0,
        timeout=30,
        what="spool replayed",
    )
    await writer.stopService()

    rows = await read_rows(settings)
    assert [row["request_id"] for row in rows] == [e.request_id for e in recorded]
    assert [event_from_row(row) for row in rows] == recorded
    assert "spooling" in seen_states
    status = writer.status()
    assert status["rows_spooled"] > 0 and status["rows_dropped"] == 0
    assert metrics.registry.get_sample_value("proxilion_analytics_flush_failures_total", {"kind": "connection"}) >= 1


@pytest_twisted.ensureDeferred
async def test_stop_while_down_spools_and_next_start_replays(new_writer, postgres, pg_dsn, tmp_path, metrics):
    settings = make_settings(tmp_path, pg_dsn)
    first = new_writer(settings, metrics, reactor)
    first.startService()
    await wait_for(lambda: first._opened, what="store opened")
    await threads.deferToThread(postgres.stop)
    try:
        events = [make_event(i) for i in range(300)]
        for event in events:
            first.record(event)
        await first.stopService()
        assert first.status()["rows_spooled"] == 300
        assert first.status()["rows_dropped"] == 0
        spool = os.path.join(settings.data_dir, "spool")
        assert sum(os.path.getsize(os.path.join(spool, n)) for n in os.listdir(spool)) > 0

        # The next process starts while the database is still down: startup must not fail.
        second = new_writer(settings, metrics, reactor)
        second.startService()
        await wait_for(lambda: second.health() == "spooling", what="second writer notices the outage")
    finally:
        await threads.deferToThread(postgres.start)
    await wait_for(lambda: second.status()["spool_bytes"] == 0 and second.health() == "ok", timeout=30, what="replay")
    await second.stopService()
    assert [event_from_row(row) for row in await read_rows(settings)] == events
    assert [n for n in os.listdir(spool) if n != "rejected.jsonl"] == []


@pytest_twisted.ensureDeferred
async def test_two_stores_migrate_once(pg_dsn):
    stores = [PostgresStore(reactor, pg_dsn), PostgresStore(reactor, pg_dsn)]
    try:
        applied = await defer.gatherResults([defer.ensureDeferred(s.open()) for s in stores])
    finally:
        for s in stores:
            s.close()
    every = [version for version, _ in POSTGRESQL]
    assert sorted(applied) == [[], every]

    def versions():
        with psycopg.connect(pg_dsn) as conn:
            return conn.execute("SELECT version FROM schema_migrations").fetchall()

    assert sorted(await threads.deferToThread(versions)) == [(v,) for v in every]


@pytest_twisted.ensureDeferred
async def test_two_writers_start_together(new_writer, pg_dsn, tmp_path, metrics):
    writers = [
        new_writer(make_settings(tmp_path / name, pg_dsn, instance_id=name), metrics, reactor) for name in ("a", "b")
    ]
    for writer in writers:
        writer.startService()
    for n, writer in enumerate(writers):
        writer.record(make_event(n))
    await wait_for(lambda: all(w.status()["rows_written"] == 1 for w in writers))
    for writer in writers:
        await writer.stopService()
    assert len(await read_rows(writers[0]._settings)) == 2


@pytest_twisted.ensureDeferred
async def test_full_spool_and_database_down_counts_drops(new_writer, tmp_path, metrics):
    """Database unreachable, a spool and a journal that hold a handful of rows: the rest are counted as dropped,
    or as deferred while the journal still holds them."""
    dead = f"postgresql://postgres@127.0.0.1:{closed_port()}/none"
    settings = make_settings(
        tmp_path, dead, analytics_queue_size=100, analytics_spool_max_bytes=2000, analytics_journal_max_bytes=20000
    )
    writer = new_writer(settings, metrics, reactor)
    writer.startService()
    await wait_for(lambda: writer.health() == "spooling", what="outage noticed")
    for i in range(350):
        writer.record(make_event(i))
    await task.deferLater(reactor, 0.2, lambda: None)
    await writer.stopService()

    status = writer.status()
    assert 0 < status["rows_spooled"] < 10
    assert status["rows_deferred"] > 0 and status["rows_dropped"] > 0
    assert status["rows_spooled"] + status["rows_dropped"] + status["rows_deferred"] == 350
    assert metrics.registry.get_sample_value("proxilion_analytics_rows_dropped_total") == status["rows_dropped"]
    assert status["spool_bytes"] <= 2000


@pytest_twisted.ensureDeferred
async def test_retention_deletes_old_rows(new_writer, settings_for, metrics):
    settings = settings_for(analytics_retention_days=30)
    now = reactor.seconds()
    old = [make_event(i, time=now - 40 * 86400 - i) for i in range(23)]
    new = [make_event(100 + i, time=now - 86400 - i) for i in range(5)]
    writer = new_writer(settings, metrics, reactor, retention_first=0.3, retention_batch=7)
    writer.startService()
    await wait_for(lambda: writer._opened, what="store opened")
    for event in old + new:
        writer.record(event)

    async def remaining():
        return {row["request_id"] for row in await read_rows(settings)}

    deadline = reactor.seconds() + 15
    while await remaining() != {e.request_id for e in new}:
        assert reactor.seconds() < deadline, "retention did not run"
        await task.deferLater(reactor, 0.1, lambda: None)
    await writer.stopService()
