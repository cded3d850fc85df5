"""CPU the audit journal adds per request: AnalyticsWriter.record() with and without the journal.

Both runs queue the same events on a writer whose store never flushes during
the measurement; the journal run also pays the row conversion, the JSON line,
one os.write to a file in a temporary data dir, and the settle bookkeeping
once the rows "commit". Rounds take turns; the fastest round of each is the
code's own cost on a shared machine.

    .venv/bin/python bench/journal_cpu.py [--rounds 30 --round-size 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from twisted.internet import defer, task  # noqa: E402

from analytics.conftest import make_event  # noqa: E402
from proxilion.analytics.writer import AnalyticsWriter  # noqa: E402
from proxilion.config import load_settings  # noqa: E402
from proxilion.metrics import Metrics  # noqa: E402


class _Store:
    kind, target = "bench", "none"

    async def open(self) -> list[int]:
        return []

    def insert(self, items, convert=None):  # noqa: ANN001 - the store protocol
        return defer.succeed(len(items))

    def ping(self):  # noqa: ANN201
        return defer.succeed(None)

    def is_data_error(self, error: BaseException) -> bool:
        return False

    def close(self) -> None:
        pass


def _writer(data_dir: str, journal: bool) -> AnalyticsWriter:
    settings = load_settings(
        options={"data_dir": data_dir, "analytics_flush_interval": 3600.0, "analytics_batch_size": 100000, "instance_id": "bench"},
        environ={},
    )
    writer = AnalyticsWriter(settings, Metrics(), task.Clock(), store=_Store(), io=lambda f, *a: defer.maybeDeferred(f, *a))
    writer.startService()
    if not journal:
        # The writer as it was before the journal: queue only.
        writer._journal.close()
        writer._to_journal = lambda event: None  # type: ignore[method-assign]
    return writer


def _round(writer: AnalyticsWriter, events: list) -> float:
    start = time.process_time()
    for event in events:
        writer.record(event)
    # What committing them costs the journal: settle, truncate.
    writer._settle(list(writer._queue))
    cpu = time.process_time() - start
    writer._queue.clear()
    return cpu / len(events)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--round-size", type=int, default=2000)
    args = parser.parse_args()
    events = [make_event(i) for i in range(args.round_size)]
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        with_journal, without = _writer(a, True), _writer(b, False)
        on, off = [], []
        for _ in range(args.rounds):
            on.append(_round(with_journal, events))
            off.append(_round(without, events))
        assert not os.path.getsize(os.path.join(a, "journal", os.listdir(os.path.join(a, "journal"))[0]))
    best_on, best_off = min(on) * 1e6, min(off) * 1e6
    med_on, med_off = sorted(on)[len(on) // 2] * 1e6, sorted(off)[len(off) // 2] * 1e6
    print(f"record() with journal:    best {best_on:.2f} µs, median {med_on:.2f} µs per request")
    print(f"record() without journal: best {best_off:.2f} µs, median {med_off:.2f} µs per request")
    print(f"journal adds:             best {best_on - best_off:.2f} µs, median {med_on - med_off:.2f} µs CPU per request")


if __name__ == "__main__":
    main()
