"""SQLite inserts: whole batches in a few multi-row statements, duplicates skipped, values intact."""

from __future__ import annotations

import math
import sqlite3

from proxilion.analytics import migrations, store
from proxilion.analytics.event import COLUMNS, AuditEvent, event_row


def _connection(path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None)
    store.SQLiteStore._configure(conn)
    for _, statements in migrations.SQLITE:
        for statement in statements:
            conn.execute(statement)
    return conn


def _row(i: int) -> tuple:
    return event_row(
        AuditEvent(
            time=1700000000.0 + i, request_id=f"req-{i:06d}", instance_id="i-1", identity=f"key:{i:016x}", tenant=None,
            provider="openai", model="gpt-4o", method="POST", path="/v1/chat/completions", status=200, decision="allow",
            findings={"email": i % 3}, bytes_in=i, bytes_out=2 * i, streamed=bool(i % 2), duration_total=0.5,
            tokens_in=i if i % 5 else None, client_ip="203.0.113.9",
        )
    )


def test_batch_larger_than_a_statement_is_stored_whole_in_few_statements(tmp_path):
    conn = _connection(tmp_path / "a.db")
    statements: list[str] = []
    conn.set_trace_callback(lambda sql: statements.append(sql) if sql.startswith("INSERT") else None)
    count = 3 * store._SQLITE_ROWS_PER_STATEMENT + 7
    rows = [_row(i) for i in range(count)]

    cursor = conn.cursor()
    assert store.SQLiteStore._insert(None, cursor, rows) == count
    conn.execute("COMMIT")

    # One GIL release per statement step: per chunk, not per row.
    assert len(statements) == math.ceil(count / store._SQLITE_ROWS_PER_STATEMENT)
    stored = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM audit_events ORDER BY request_id").fetchall()
    assert stored == [tuple(int(v) if isinstance(v, bool) else v for v in row) for row in rows]


def test_rows_already_stored_are_skipped_and_not_counted(tmp_path):
    conn = _connection(tmp_path / "a.db")
    cursor = conn.cursor()
    assert store.SQLiteStore._insert(None, cursor, [_row(i) for i in range(10)]) == 10
    conn.execute("COMMIT")
    again = [_row(i) for i in range(5, 15)]
    assert store.SQLiteStore._insert(None, cursor, again) == 5
    conn.execute("COMMIT")
    assert conn.execute("SELECT count(*) FROM audit_events").fetchone() == (15,)


def test_rows_per_statement_stay_within_the_parameter_limit():
    limit = sqlite3.connect(":memory:").getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    assert 1 <= store._SQLITE_ROWS_PER_STATEMENT * len(COLUMNS) <= limit
