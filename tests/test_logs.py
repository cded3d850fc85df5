"""Log observers: JSON lines, level filtering, and batched writes even under PYTHONUNBUFFERED."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from twisted.internet.task import Clock
from twisted.logger import Logger

from proxilion.logs import make_observer

_EMIT = textwrap.dedent(
    """
    import os, sys
    from twisted.internet.task import Clock
    from twisted.logger import Logger
    from proxilion.logs import make_observer
    clock = Clock()
    log = Logger(namespace="proxilion.access", observer=make_observer("json", "info", clock=clock))
    for i in range(3):
        log.info("line {n}", n=i)
    os.write(2, b"before-flush\\n")
    sys.stdin.readline()
    clock.advance(1)
    os.write(2, b"after-flush\\n")
    log.info("at exit {n}", n=3)
    """
)


def test_info_lines_are_written_in_one_batch_even_when_python_is_unbuffered():
    """Three info lines reach stdout together, when the flush is due, and a pending line at exit is not lost."""
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-u", "-c", _EMIT], stdin=subprocess.PIPE, stdout=w, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    os.close(w)
    marks = proc.stderr.readline()
    # Nothing is on stdout until the clock passes the flush delay.
    assert marks == b"before-flush\n"
    os.set_blocking(r, False)
    try:
        early = os.read(r, 65536)
    except BlockingIOError:
        early = b""
    assert early == b""
    proc.stdin.write(b"go\n")
    proc.stdin.close()
    assert proc.stderr.readline() == b"after-flush\n"
    proc.wait(timeout=30)
    os.set_blocking(r, True)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    assert [json.loads(line)["message"] for line in out.decode().splitlines()] == ["line 0", "line 1", "line 2", "at exit 3"]


def test_warnings_are_written_at_once_and_debug_lines_are_filtered(tmp_path):
    path = tmp_path / "log"
    with open(path, "w") as out:
        clock = Clock()
        log = Logger(namespace="proxilion.test", observer=make_observer("json", "info", out=out, clock=clock))
        log.debug("hidden")
        log.info("held {n}", n=1)
        log.warn("now {what}", what="x")
        written = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["level"], e["message"]) for e in written] == [("info", "held 1"), ("warn", "now x")]
    assert written[1]["what"] == "x"


def test_lines_with_values_json_cannot_take_directly_are_still_one_valid_json_object_each(tmp_path):
    """Bytes, huge integers, lone surrogates, non-string keys and objects are converted, never dropped or crashed on."""
    path = tmp_path / "log"
    with open(path, "w", encoding="utf-8") as out:
        log = Logger(namespace="proxilion.test", observer=make_observer("json", "info", out=out))
        log.info("plain {word}", word="café ✓")
        log.info("odd", raw=b"\xffbytes", big=2**70, surrogate="x\udcffy", keyed={1: "one"}, thing=object())
    first, second = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert first["message"] == "plain café ✓" and first["word"] == "café ✓"
    assert second["raw"] == "\ufffdbytes"
    assert second["big"] == 2**70
    assert second["surrogate"] == "x\udcffy"
    assert second["keyed"] == {"1": "one"}
    assert second["thing"].startswith("<object object")


def test_timestamps_are_utc_with_milliseconds():
    from proxilion.logs import _Timestamps

    stamp = _Timestamps()
    assert stamp(1764420000.1234) == "2025-11-29T12:40:00.123+00:00"
    assert stamp(1764420000.1239) == "2025-11-29T12:40:00.123+00:00"
    assert stamp(1764420001.5) == "2025-11-29T12:40:01.500+00:00"
    assert stamp(0.0) == "1970-01-01T00:00:00.000+00:00"


class _Out:
    def __init__(self) -> None:
        self.written: list[str] = []
        self.flushed: list[str] = []

    def write(self, text: str) -> None:
        self.written.append(text)

    def flush(self) -> None:
        self.flushed += self.written
        self.written = []


def test_a_line_from_a_worker_thread_is_flushed_at_once_without_touching_the_clock():
    """Only the reactor's thread may call callLater; a database thread's line is written out on the spot."""
    import threading

    out, clock = _Out(), Clock()
    log = Logger(namespace="proxilion.analytics", observer=make_observer("json", "info", out=out, clock=clock))
    log.info("from the reactor thread")
    worker = threading.Thread(target=lambda: log.info("from a worker thread"))
    worker.start()
    worker.join()
    assert [json.loads(line)["message"] for line in out.flushed] == ["from the reactor thread", "from a worker thread"]
    assert len(clock.getDelayedCalls()) == 1  # the reactor thread's one pending flush, now a no-op
