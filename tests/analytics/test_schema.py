"""The audit columns have one home (analytics/event.py): the DDL of both databases, the row tuple and
the event read back all follow it, and databases made by the migrations as first published still upgrade."""

from __future__ import annotations

import sqlite3

import attrs

from proxilion.analytics import migrations, store
from proxilion.analytics.event import AUDIT_COLUMNS, COLUMNS, AuditEvent, event_from_row, event_row

from .conftest import make_event

# Migration 1 as published: a database made by it must still upgrade to the current columns.
_PUBLISHED_V1 = """CREATE TABLE audit_events (
    request_id TEXT PRIMARY KEY, event_time REAL NOT NULL, instance_id TEXT NOT NULL, identity TEXT NOT NULL,
    tenant TEXT, provider TEXT NOT NULL, model TEXT, method TEXT NOT NULL, path TEXT NOT NULL,
    status INTEGER NOT NULL, decision TEXT NOT NULL, findings TEXT NOT NULL, finding_count INTEGER NOT NULL,
    bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL, streamed INTEGER NOT NULL, duration_total REAL NOT NULL,
    duration_upstream REAL, duration_overhead REAL, tokens_in INTEGER, tokens_out INTEGER, client_ip TEXT, error TEXT
)"""


def _table(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
    return [(name, kind, notnull) for _, name, kind, notnull, _, _ in conn.execute("PRAGMA table_info(audit_events)")]


def _migrate(conn: sqlite3.Connection, after: int = 0) -> None:
    for version, statements in migrations.SQLITE:
        if version > after:
            for statement in statements:
                conn.execute(statement)


def test_the_column_names_come_from_the_one_list():
    assert COLUMNS == tuple(column.name for column in AUDIT_COLUMNS)


def test_a_new_sqlite_database_has_every_column_in_order_with_its_declared_type(tmp_path):
    conn = sqlite3.connect(str(tmp_path / "new.db"))
    _migrate(conn)
    assert [name for name, _, _ in _table(conn)] == list(COLUMNS)
    for (name, kind, notnull), column in zip(_table(conn), AUDIT_COLUMNS):
        assert column.sqlite.startswith(kind), name
        assert bool(notnull) == ("NOT NULL" in column.sqlite), name


def test_a_database_made_by_the_published_first_migration_upgrades(tmp_path):
    conn = sqlite3.connect(str(tmp_path / "old.db"))
    conn.execute(_PUBLISHED_V1)
    fresh = sqlite3.connect(str(tmp_path / "new.db"))
    _migrate(fresh)
    _migrate(conn, after=1)
    assert _table(conn) == _table(fresh)


def test_the_postgresql_ddl_names_the_same_columns():
    create = migrations.POSTGRESQL[0][1][0]
    later = [s for _, statements in migrations.POSTGRESQL[1:] for s in statements]
    named = [line.split()[0] for line in create.splitlines()[1:-1]] + [s.split()[5] for s in later]
    assert named == list(COLUMNS)
    assert 'request_id TEXT COLLATE "C" PRIMARY KEY' in " ".join(create.split())


def test_a_row_reads_back_as_the_event_it_was_made_from(tmp_path):
    events = [make_event(i) for i in range(12)] + [make_event(99, mode="connect", tokens_in=3, tokens_out=4)]
    conn = sqlite3.connect(str(tmp_path / "a.db"), isolation_level=None)
    store.SQLiteStore._configure(conn)
    _migrate(conn)
    cursor = conn.cursor()
    assert store.SQLiteStore._insert(None, cursor, [event_row(e) for e in events]) == len(events)
    stored = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM audit_events ORDER BY request_id").fetchall()
    assert sorted((event_from_row(dict(zip(COLUMNS, row))) for row in stored), key=lambda e: e.request_id) == \
        sorted(events, key=lambda e: e.request_id)


def test_every_event_field_has_a_column():
    held = {column.field for column in AUDIT_COLUMNS if column.field is not None}
    assert held == {field.name for field in attrs.fields(AuditEvent)}


def test_the_row_truncates_the_client_address_when_asked_and_counts_the_findings():
    event = make_event(1, client_ip="203.0.113.77", findings={"email": 2, "aws_key": 1})
    row = dict(zip(COLUMNS, event_row(event, truncate=True)))
    assert row["client_ip"] == "203.0.113.0"
    assert row["findings"] == '{"aws_key":1,"email":2}' and row["finding_count"] == 3
    assert dict(zip(COLUMNS, event_row(event)))["client_ip"] == "203.0.113.77"
