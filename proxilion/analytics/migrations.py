"""Versioned schema migrations for the audit store, one list per dialect, written from
L{proxilion.analytics.event.AUDIT_COLUMNS}.

A migration is applied once, in order, and recorded in C{schema_migrations}.
Never change what a published migration does: a new column is added to the
column list with the next C{since} version, which becomes its own C{ALTER TABLE}.
"""

from __future__ import annotations

from typing import Literal

from proxilion.analytics.event import AUDIT_COLUMNS

__all__ = ["POSTGRESQL", "SQLITE"]

Migrations = tuple[tuple[int, tuple[str, ...]], ...]

_INDEXES = (
    "CREATE INDEX audit_events_time ON audit_events (event_time, request_id)",
    "CREATE INDEX audit_events_identity_time ON audit_events (identity, event_time)",
)


def _migrations(dialect: Literal["sqlite", "postgresql"]) -> Migrations:
    width = max(len(column.name) for column in AUDIT_COLUMNS)
    first = [f"    {column.name:<{width}} {getattr(column, dialect)}" for column in AUDIT_COLUMNS if column.since == 1]
    create = "CREATE TABLE audit_events (\n" + ",\n".join(first) + "\n)"
    later = sorted({column.since for column in AUDIT_COLUMNS} - {1})
    return ((1, (create, *_INDEXES)),) + tuple(
        (version, tuple(f"ALTER TABLE audit_events ADD COLUMN {column.name} {getattr(column, dialect)}"
                        for column in AUDIT_COLUMNS if column.since == version))
        for version in later
    )


POSTGRESQL = _migrations("postgresql")
SQLITE = _migrations("sqlite")
