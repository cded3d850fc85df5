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
    """Runs passes over a view: one database scan, then each pass that has trigger ends."""

    def __init__(self, passes: Sequence[Pass]):
        self.passes = tuple(passes)
        patterns = []
        for index, p in enumerate(self.passes):
            for trigger in p.triggers:
                flags = (pyperscan.Flag.CASELESS,) if trigger.caseless else ()
                patterns.append(pyperscan.Pattern(trigger.pattern, *flags, tag=index))
        self._database = pyperscan.BlockDatabase(*patterns)
        # A scanner owns Hyperscan scratch space, which one thread at a time may use.
        self._local = threading.local()

    def run(self, view: TextView, hits: list[Hit]) -> None:
        local = self._local
        scanner = getattr(local, "scanner", None)
        if scanner is None:
            local.ends = [[] for _ in self.passes]
            scanner = local.scanner = self._database.build(local.ends, _collect)
        ends = local.ends
        try:
            scanner.scan(view.raw)
            if not any(ends):  # the common case: nothing to look at closer
                return
            found = [(p, sorted(e)) for p, e in zip(self.passes, ends) if e]
        finally:
            for e in ends:
                e.clear()
        for p, e in found:
            p.find(view, e, hits)
