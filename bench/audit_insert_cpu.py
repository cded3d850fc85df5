"""CPU per audit row inserted into SQLite, with the reactor thread idle and busy.

    python bench/audit_insert_cpu.py [--batches 8] [--batch-size 500]

The analytics writer inserts in a database thread while the reactor thread
runs Python. sqlite3 releases the GIL around each statement step, so the
number of statements per batch decides how many GIL handoffs a batch costs.
This compares C{executemany} (one step per row, what the store did before)
with L{SQLiteStore._insert} (many rows per statement), each in a thread,
once beside an idle main thread and once beside a busy one, and reports the
inserting thread's CPU per row (median over batches).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from proxilion.analytics import migrations  # noqa: E402
from proxilion.analytics.event import COLUMNS  # noqa: E402
from proxilion.analytics.store import SQLiteStore  # noqa: E402

_EXECUTEMANY = f"INSERT OR IGNORE INTO audit_events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"


def _connect(directory: str, name: str) -> sqlite3.Connection:
    conn = sqlite3.connect(os.path.join(directory, name), isolation_level=None, check_same_thread=False)
    SQLiteStore._configure(conn)
    for _, statements in migrations.SQLITE:
        for statement in statements:
            conn.execute(statement)
    return conn


def _rows(first: int, count: int) -> list[tuple]:
    now = time.time()
    return [
        (f"bench-{first + i:016x}", now, "inst-1", "key:0123456789abcdef", None, "openai", "gpt-4o-mini", "POST",
         "/v1/chat/completions", 200, "allow", "{}", 0, 1024, 900, 0, 0.0012, 0.0004, 0.0008, None, None, "127.0.0.1", None)
        for i in range(count)
    ]


def _executemany(cursor: sqlite3.Cursor, rows: list[tuple]) -> int:
    cursor.execute("BEGIN IMMEDIATE")
    cursor.executemany(_EXECUTEMANY, rows)
    return cursor.rowcount


def _store(cursor: sqlite3.Cursor, rows: list[tuple]) -> int:
    return SQLiteStore._insert(None, cursor, rows)  # type: ignore[arg-type]


def measure(conn: sqlite3.Connection, insert, busy: bool, batches: int, batch_size: int, first: int) -> float:
    per_row: list[float] = []

    def worker() -> None:
        cursor = conn.cursor()
        for b in range(batches):
            rows = _rows(first + b * batch_size, batch_size)
            started = time.thread_time()
            inserted = insert(cursor, rows)
            cursor.execute("COMMIT")
            per_row.append((time.thread_time() - started) / batch_size * 1e6)
            assert inserted == batch_size, inserted
            time.sleep(0.02)

    thread = threading.Thread(target=worker)
    thread.start()
    spin = 0
    while thread.is_alive():
        if busy:
            # Pure Python, as the reactor thread runs while the proxy is loaded.
            for i in range(1000):
                spin += i
        else:
            time.sleep(0.005)
    thread.join()
    return statistics.median(per_row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as directory:
        first = 0
        for name, insert in (("executemany", _executemany), ("store", _store)):
            conn = _connect(directory, f"{name}.db")
            for busy in (False, True):
                cpu = measure(conn, insert, busy, args.batches, args.batch_size, first)
                first += args.batches * args.batch_size
                results.setdefault(name, {})["busy_main_thread" if busy else "idle_main_thread"] = round(cpu, 1)
            conn.close()
    print(f"inserting thread CPU, us per row ({args.batches} batches of {args.batch_size}, median)")
    print(f"{'':14}{'main idle':>12}{'main busy':>12}")
    for name, figures in results.items():
        print(f"{name:14}{figures['idle_main_thread']:>12}{figures['busy_main_thread']:>12}")
    print("BENCH_JSON " + json.dumps(results))


if __name__ == "__main__":
    main()
