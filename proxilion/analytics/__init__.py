"""Audit trail: one row per request, batched into SQLite or PostgreSQL, spooled to disk during outages."""

from proxilion.analytics.event import AuditEvent
from proxilion.analytics.store import EventStore, PostgresStore, SQLiteStore, open_store
from proxilion.analytics.writer import AnalyticsWriter

__all__ = ["AnalyticsWriter", "AuditEvent", "EventStore", "PostgresStore", "SQLiteStore", "open_store"]
