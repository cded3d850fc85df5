"""Versioned schema migrations for the audit store, one list per dialect.

A migration is applied once, in order, and recorded in C{schema_migrations}.
Never edit a published migration: append a new version.
"""

from __future__ import annotations

__all__ = ["POSTGRESQL", "SQLITE"]

# request_id sorts bytewise on both stores (COLLATE "C" on PostgreSQL) so
# cursor paging returns the same pages from SQLite and PostgreSQL.
POSTGRESQL: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE audit_events (
                request_id        TEXT COLLATE "C" PRIMARY KEY,
                event_time        DOUBLE PRECISION NOT NULL,
                instance_id       TEXT NOT NULL,
                identity          TEXT NOT NULL,
                tenant            TEXT,
                provider          TEXT NOT NULL,
                model             TEXT,
                method            TEXT NOT NULL,
                path              TEXT NOT NULL,
                status            INTEGER NOT NULL,
                decision          TEXT NOT NULL,
                findings          TEXT NOT NULL,
                finding_count     INTEGER NOT NULL,
                bytes_in          BIGINT NOT NULL,
                bytes_out         BIGINT NOT NULL,
                streamed          BOOLEAN NOT NULL,
                duration_total    DOUBLE PRECISION NOT NULL,
                duration_upstream DOUBLE PRECISION,
                duration_overhead DOUBLE PRECISION,
                tokens_in         BIGINT,
                tokens_out        BIGINT,
                client_ip         TEXT,
                error             TEXT
            )""",
            "CREATE INDEX audit_events_time ON audit_events (event_time, request_id)",
            "CREATE INDEX audit_events_identity_time ON audit_events (identity, event_time)",
        ),
    ),
    (
        2,
        ("ALTER TABLE audit_events ADD COLUMN mode TEXT NOT NULL DEFAULT 'explicit'",),
    ),
    (
        3,
        ("ALTER TABLE audit_events ADD COLUMN rule TEXT",),
    ),
)

SQLITE: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE audit_events (
                request_id        TEXT PRIMARY KEY,
                event_time        REAL NOT NULL,
                instance_id       TEXT NOT NULL,
                identity          TEXT NOT NULL,
                tenant            TEXT,
                provider          TEXT NOT NULL,
                model             TEXT,
                method            TEXT NOT NULL,
                path              TEXT NOT NULL,
                status            INTEGER NOT NULL,
                decision          TEXT NOT NULL,
                findings          TEXT NOT NULL,
                finding_count     INTEGER NOT NULL,
                bytes_in          INTEGER NOT NULL,
                bytes_out         INTEGER NOT NULL,
                streamed          INTEGER NOT NULL,
                duration_total    REAL NOT NULL,
                duration_upstream REAL,
                duration_overhead REAL,
                tokens_in         INTEGER,
                tokens_out        INTEGER,
                client_ip         TEXT,
                error             TEXT
            )""",
            "CREATE INDEX audit_events_time ON audit_events (event_time, request_id)",
            "CREATE INDEX audit_events_identity_time ON audit_events (identity, event_time)",
        ),
    ),
    (
        2,
        ("ALTER TABLE audit_events ADD COLUMN mode TEXT NOT NULL DEFAULT 'explicit'",),
    ),
    (
        3,
        ("ALTER TABLE audit_events ADD COLUMN rule TEXT",),
    ),
)
