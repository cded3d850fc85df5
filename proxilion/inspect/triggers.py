"""One pass over a text that finds every place a built-in detector must look.

Each detector declares its triggers: patterns cheaper and broader than the
value it looks for, but never missing one ("nine digits among separators",
"a name like password then ':' or '='"). All triggers are compiled into one
Vectorscan (Hyperscan) database, which scans the text once at hundreds of MB/s
and reports the end of every trigger match; the precise patterns and
checksums then run only around those few places, in Python. Patterns that
could report at every character of a long run (digits, tokens) start with a
character that cannot be in the run, so a run is reported once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple

import pyperscan

from proxilion.inspect.textview import Hit, TextView


class Trigger(NamedTuple):
    pattern: bytes
    caseless: bool = False


class Pass(NamedTuple):
    """A detector: its triggers, and the function given the view and the sorted trigger ends."""

    triggers: tuple[Trigger, ...]
    find: Callable[[TextView, list[int], list[Hit]], None]


def _collect(ends: list[list[int]], index: int, _start: int, end: int) -> pyperscan.Scan:
    ends[index].append(end)
    return pyperscan.Scan.Continue


class TriggerScanner:
    """Runs passes over a view: one scan per database, then each pass that has trigger ends.

    Each group of passes gets a database of its own: most triggers hold literals that
    Hyperscan looks for first, and one pattern made only of character classes, put with
    them, made the whole database three times slower.
    """

    def __init__(self, *groups: Sequence[Pass]):
        self.passes = tuple(p for group in groups for p in group)
        self._databases = []
        index = 0
        for group in groups:
            patterns = []
            for p in group:
                for trigger in p.triggers:
                    flags = (pyperscan.Flag.CASELESS,) if trigger.caseless else ()
                    patterns.append(pyperscan.Pattern(trigger.pattern, *flags, tag=index))
                index += 1
            self._databases.append(pyperscan.BlockDatabase(*patterns))
        # A scanner owns Hyperscan scratch space, which one thread at a time may use.
        self._local = threading.local()

    def run(self, view: TextView, hits: list[Hit]) -> None:
        local = self._local
        scanners = getattr(local, "scanners", None)
        if scanners is None:
            local.ends = [[] for _ in self.passes]
            scanners = local.scanners = [database.build(local.ends, _collect) for database in self._databases]
        ends = local.ends
        try:
            raw = view.raw
            for scanner in scanners:
                scanner.scan(raw)
            if not any(ends):  # the common case: nothing to look at closer
                return
            found = [(p, sorted(e)) for p, e in zip(self.passes, ends) if e]
        finally:
            for e in ends:
                e.clear()
        for p, e in found:
            p.find(view, e, hits)
