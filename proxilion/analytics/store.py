"""Audit stores: SQLite (default, one file per instance) and PostgreSQL (shared), and SQLite in memory for tests.

Both run every statement in C{twisted.enterprise.adbapi} threads and return
Deferreds. Inserts are idempotent on C{request_id}, so a batch written twice
(a replayed spool, a flush that committed after we gave up on it) leaves one
row.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import weakref
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

from twisted.enterprise import adbapi
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from proxilion.analytics import migrations, query
from proxilion.analytics.event import COLUMNS, AuditEvent, event_from_row

__all__ = ["EventStore", "MemoryStore", "PostgresStore", "SQLiteStore", "open_store", "redact_dsn"]

_COLUMN_LIST = ", ".join(COLUMNS)
# Arbitrary, fixed advisory lock keys: every replica must use the same ones.
_MIGRATION_LOCK = 0x50524F58_0001
_RETENTION_LOCK = 0x50524F58_0002


def redact_dsn(dsn: str) -> str:
    """C{dsn} with any password replaced, fit for logs and /status."""
    parts = urlsplit(dsn)
    if parts.password is None:
        netloc = parts.netloc
    else:
        host = parts.netloc.rpartition("@")[2]
        netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _Connection(adbapi.Connection):
    """A pooled connection that is dropped, not kept, once its rollback fails.

    adbapi's own reconnect logic logs a traceback per failure; while the
    database is down that is one traceback per retry.
    """

    def rollback(self) -> None:
        try:
            self._connection.rollback()
        except Exception:
            self._pool.disconnect(self._connection)


class _Pool(adbapi.ConnectionPool):
    connectionFactory = _Connection


class EventStore:
    """Operations on C{audit_events}; subclasses supply the dialect."""

    log = Logger()
    kind: str
    target: str
    _migrations: tuple[tuple[int, tuple[str, ...]], ...]
    _data_errors: tuple[type[BaseException], ...]

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._pool: adbapi.ConnectionPool | None = None
        self._read_pool: adbapi.ConnectionPool | None = None

    def is_data_error(self, error: BaseException) -> bool:
        """True when C{error} is about the rows (retrying the same rows fails again), not the database."""
        return isinstance(error, self._data_errors)

    def _sql(self, text: str) -> str:
        return text

    def _make_pools(self) -> None:
        raise NotImplementedError

    async def open(self) -> list[int]:
        """Connect and apply pending migrations; returns the versions this call applied.

        Safe to call again after a failure (the database was down at start).
        """
        if self._pool is None:
            self._make_pools()
        assert self._pool is not None
        await self._prepare()
        applied = await self._pool.runInteraction(self._migrate, self._reactor.seconds())
        for version in applied:
            self.log.info("analytics: applied migration {version} to {store}", version=version, store=self.target)
        return applied

    def _migrate(self, trans: Any, now: float) -> list[int]:
        self._lock_for_migrations(trans)
        trans.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        trans.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in trans.fetchall()}
        applied = []
        for version, statements in self._migrations:
            if version in done:
                continue
            for statement in statements:
                trans.execute(statement)
            trans.execute(self._sql("INSERT INTO schema_migrations (version, applied_at) VALUES (%s, %s)"), (version, now))
            applied.append(version)
        return applied

    async def _prepare(self) -> None:
        """Work before the first connection (none by default)."""

    def _lock_for_migrations(self, trans: Any) -> None:
        raise NotImplementedError

    def insert(self, items: Sequence[Any], convert: Callable[[Any], tuple] | None = None) -> defer.Deferred[int]:
        """Insert rows (L{COLUMNS} order) in one transaction, skipping request ids already stored.

        C{convert}, if given, turns each item into its row in the database
        thread, keeping that work off the reactor.
        """
        assert self._pool is not None
        return self._pool.runInteraction(self._convert_and_insert, items, convert)

    def _convert_and_insert(self, trans: Any, items: Sequence[Any], convert: Callable[[Any], tuple] | None) -> int:
        return self._insert(trans, items if convert is None else [convert(item) for item in items])

    def _insert(self, trans: Any, rows: Sequence[tuple]) -> int:
        raise NotImplementedError

    def ping(self) -> defer.Deferred[Any]:
        assert self._pool is not None
        return self._pool.runQuery("SELECT 1")

    def _reader(self) -> adbapi.ConnectionPool:
        pool = self._read_pool or self._pool
        assert pool is not None
        return pool

    def _select(self, trans: Any, statements: list[tuple[str, list[Any]]]) -> list[list[tuple]]:
        results = []
        for sql, params in statements:
            trans.execute(self._sql(sql), params)
            results.append([tuple(row) for row in trans.fetchall()])
        return results

    async def events(self, q: query.EventQuery) -> tuple[list[dict[str, Any]], str | None]:
        """One page of events (dicts keyed by column) and the cursor of the next page, if any."""
        (rows,) = await self._reader().runInteraction(self._select, [query.events_sql(q)])
        page = [self._decode(dict(zip(COLUMNS, row))) for row in rows[: q.limit]]
        cursor = None
        if len(rows) > q.limit:
            last = page[-1]
            cursor = query.encode_cursor(last["event_time"], last["request_id"])
        return page, cursor

    def _decode(self, row: dict[str, Any]) -> dict[str, Any]:
        row["streamed"] = bool(row["streamed"])
        return row

    async def summary(self, q: query.SummaryQuery) -> dict[str, Any]:
        results = await self._reader().runInteraction(self._select, query.summary_sql(q))
        return query.summarize(q, results)

    def delete_older_than(self, cutoff: float, limit: int) -> defer.Deferred[int | None]:
        """Delete up to C{limit} rows older than C{cutoff}; None when another replica is deleting."""
        assert self._pool is not None
        return self._pool.runInteraction(self._delete, cutoff, limit)

    def _delete(self, trans: Any, cutoff: float, limit: int) -> int | None:
        raise NotImplementedError

    _DELETE = (
        "DELETE FROM audit_events WHERE request_id IN"
        " (SELECT request_id FROM audit_events WHERE event_time < %s LIMIT %s)"
    )

    def close(self) -> None:
        for pool in (self._pool, self._read_pool):
            if pool is not None:
                pool.close()
        self._pool = self._read_pool = None


class SQLiteStore(EventStore):
    """One SQLite file in WAL mode. One writer connection, two readers.

    sqlite3 connections belong to the thread that made them: each pool's
    threads own their connections (C{check_same_thread=False} only lets the
    reactor thread close them at shutdown). The writer pool has exactly one
    thread, so writes are serialised and never wait on SQLite's own lock;
    readers run beside it thanks to WAL.
    """

    kind = "sqlite"
    _migrations = migrations.SQLITE
    _data_errors = (sqlite3.DataError, sqlite3.IntegrityError, sqlite3.InterfaceError, ValueError, TypeError, OverflowError)

    def __init__(self, reactor: Any, path: str) -> None:
        super().__init__(reactor)
        self.path = path
        self.target = path

    def _sql(self, text: str) -> str:
        return text.replace("%s", "?")

    @staticmethod
    def _configure(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: an audit row acknowledged by a commit survives a power cut.
        conn.execute("PRAGMA synchronous=FULL")

    def _make_pools(self) -> None:
        # Autocommit mode: each write opens its own BEGIN IMMEDIATE, so the
        # write lock is taken up front instead of failing mid-transaction.
        common: dict[str, Any] = {
            "check_same_thread": False,
            "isolation_level": None,
            "timeout": 30.0,
            "cp_openfun": self._configure,
            "cp_reactor": self._reactor,
        }
        self._pool = _Pool("sqlite3", self.path, cp_min=1, cp_max=1, **common)
        self._read_pool = _Pool("sqlite3", self.path, cp_min=1, cp_max=2, **common)

    async def _prepare(self) -> None:
        # The pool's only thread: the directory exists before it first connects.
        assert self._pool is not None
        directory = os.path.dirname(os.path.abspath(self.path))
        await deferToThreadPool(self._reactor, self._pool.threadpool, os.makedirs, directory, exist_ok=True)

    def _lock_for_migrations(self, trans: Any) -> None:
        trans.execute("BEGIN IMMEDIATE")

    def _insert(self, trans: Any, rows: Sequence[tuple]) -> int:
        # Many rows per statement, not executemany: sqlite3 releases the GIL
        # around every statement step, and executemany steps once per row.
        # While the reactor thread was busy each of those releases became a
        # GIL handoff, and a row cost 10-20x its CPU (bench/audit_insert_cpu.py).
        trans.execute("BEGIN IMMEDIATE")
        inserted = 0
        for start in range(0, len(rows), _SQLITE_ROWS_PER_STATEMENT):
            chunk = rows[start : start + _SQLITE_ROWS_PER_STATEMENT]
            trans.execute(_sqlite_insert(len(chunk)), [value for row in chunk for value in row])
            inserted += trans.rowcount
        return inserted

    def _delete(self, trans: Any, cutoff: float, limit: int) -> int:
        trans.execute("BEGIN IMMEDIATE")
        trans.execute(self._sql(self._DELETE), (cutoff, limit))
        return trans.rowcount


class _Inline:
    """The part of an adbapi pool the stores use, run at once on the calling thread."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def runInteraction(self, interaction: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        cursor = self._connection.cursor()
        try:
            result = interaction(cursor, *args, **kwargs)
        except Exception:
            if self._connection.in_transaction:
                self._connection.rollback()
            return defer.fail()
        if self._connection.in_transaction:
            self._connection.commit()
        return defer.succeed(result)

    def runQuery(self, sql: str, *args: Any) -> defer.Deferred[Any]:
        return self.runInteraction(lambda trans: trans.execute(sql, *args).fetchall())

    def close(self) -> None:
        self._connection.close()


class MemoryStore(SQLiteStore):
    """SQLite in memory, queried on the reactor thread: for tests on a memory reactor, which runs no threads.

    Same migrations, inserts and queries as L{SQLiteStore}; every Deferred has
    fired when it is returned.
    """

    def __init__(self, reactor: Any) -> None:
        super().__init__(reactor, ":memory:")
        self.target = "memory"
        self._closed_with: list[AuditEvent] = []

    def _make_pools(self) -> None:
        # One connection: a second one to ":memory:" would be another, empty, database.
        self._pool = self._read_pool = _Inline(sqlite3.connect(":memory:", isolation_level=None))  # type: ignore[assignment]

    async def _prepare(self) -> None:
        """No directory to make."""

    def close(self) -> None:
        # The stop sequence closes the store after its last flush: those rows stay readable.
        self._closed_with = self.stored()
        super().close()

    def stored(self) -> list[AuditEvent]:
        """Every row, oldest insert first (after L{close}: the rows it held then)."""
        if self._pool is None:
            return list(self._closed_with)
        cursor = self._pool.runInteraction(lambda trans: trans.execute(
            f"SELECT {_COLUMN_LIST} FROM audit_events ORDER BY rowid").fetchall())
        rows: list[tuple[Any, ...]] = []
        cursor.addCallback(rows.extend)
        return [event_from_row(dict(zip(COLUMNS, row))) for row in rows]


def _sqlite_variable_limit() -> int:
    probe = sqlite3.connect(":memory:")
    try:
        return probe.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    finally:
        probe.close()


# Within this SQLite build's limit on parameters per statement (999 before 3.32).
_SQLITE_ROWS_PER_STATEMENT = max(1, min(256, _sqlite_variable_limit() // len(COLUMNS)))


@functools.lru_cache(maxsize=_SQLITE_ROWS_PER_STATEMENT)
def _sqlite_insert(rows: int) -> str:
    values = "(" + ", ".join("?" for _ in COLUMNS) + ")"
    return f"INSERT OR IGNORE INTO audit_events ({_COLUMN_LIST}) VALUES " + ", ".join([values] * rows)


class PostgresStore(EventStore):
    """A shared PostgreSQL database through psycopg 3.

    Inserts COPY a batch into a per-connection temporary table and move it
    with one C{INSERT ... ON CONFLICT DO NOTHING}: one round trip per batch
    and far faster than row-by-row statements (see bench/analytics_bench.py).
    """

    kind = "postgresql"
    _migrations = migrations.POSTGRESQL

    # Seconds and counts: a dead or unreachable server is noticed instead of
    # holding a pool thread for the kernel's default (hours).
    _CONNECT_ARGS = {
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 30000,
        "application_name": "proxilion-analytics",
    }

    def __init__(self, reactor: Any, dsn: str, insert_mode: str = "copy") -> None:
        import psycopg

        super().__init__(reactor)
        self._dsn = dsn
        self._staged: weakref.WeakSet[Any] = weakref.WeakSet()
        self.target = redact_dsn(dsn)
        self._data_errors = (psycopg.DataError, psycopg.IntegrityError, ValueError, TypeError, OverflowError)
        self._insert_impl: Callable[[Any, Sequence[tuple]], int] = {
            "copy": self._insert_copy,
            "executemany": self._insert_executemany,
        }[insert_mode]

    def _make_pools(self) -> None:
        # The writer keeps one write in flight; the other threads serve a
        # retention batch and API queries beside it.
        self._pool = _Pool(
            "psycopg", conninfo=self._dsn, cp_min=1, cp_max=4, cp_reactor=self._reactor, **self._CONNECT_ARGS
        )

    def _lock_for_migrations(self, trans: Any) -> None:
        # Transaction-scoped: released by the commit that records the versions.
        trans.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))

    def _insert(self, trans: Any, rows: Sequence[tuple]) -> int:
        return self._insert_impl(trans, rows)

    def _insert_copy(self, trans: Any, rows: Sequence[tuple]) -> int:
        connection = trans._connection._connection
        if connection not in self._staged:
            # Temporary tables live as long as their connection: create one per
            # connection, committed on its own so a failed batch cannot roll it back.
            trans.execute("CREATE TEMP TABLE IF NOT EXISTS audit_stage (LIKE audit_events) ON COMMIT DELETE ROWS")
            connection.commit()
            self._staged.add(connection)
        with trans.copy(f"COPY audit_stage ({_COLUMN_LIST}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        trans.execute(
            f"INSERT INTO audit_events ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM audit_stage"
            " ON CONFLICT (request_id) DO NOTHING"
        )
        return trans.rowcount

    _INSERT = (
        f"INSERT INTO audit_events ({_COLUMN_LIST}) VALUES ({', '.join('%s' for _ in COLUMNS)})"
        " ON CONFLICT (request_id) DO NOTHING"
    )

    def _insert_executemany(self, trans: Any, rows: Sequence[tuple]) -> int:
        trans.executemany(self._INSERT, rows)
        return len(rows)

    def _delete(self, trans: Any, cutoff: float, limit: int) -> int | None:
        # One replica at a time: the others skip this round instead of queueing.
        trans.execute("SELECT pg_try_advisory_xact_lock(%s)", (_RETENTION_LOCK,))
        if not trans.fetchone()[0]:
            return None
        trans.execute(self._DELETE, (cutoff, limit))
        return trans.rowcount


def open_store(settings: Any, reactor: Any) -> EventStore:
    """The store C{settings} name: PostgreSQL for a postgresql:// DSN, else SQLite in data_dir."""
    dsn = settings.analytics_dsn
    if dsn and urlsplit(dsn).scheme in ("postgresql", "postgres"):
        return PostgresStore(reactor, dsn)
    path = ""
    if dsn:
        parts = urlsplit(dsn)
        path = parts.netloc + parts.path
    return SQLiteStore(reactor, path or os.path.join(settings.data_dir, "analytics.db"))
