"""The external evaluation set: other authors' detector tests, scored with Proxilion's scanner.

tests/data/external/*.jsonl (see its README) holds one example a line: a text,
the type expected ("none" for a must-not-match example), whether that type is
one Proxilion claims ("scope"), and where the example came from. A positive
counts as found when a hit of the expected type covers the expected span (the
whole text when the source gives none); a negative counts as a false positive
when any hit at all lands in it. Out-of-scope examples are scored apart.
"""

from __future__ import annotations

import json
import pathlib
from collections import Counter
from collections.abc import Iterable

import attrs

from proxilion.inspect.scanner import Scanner

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "external"


@attrs.frozen
class Example:
    text: str
    expect: str
    scope: str
    source: str
    rule: str
    start: int | None = None
    end: int | None = None
    why: str = ""


@attrs.frozen
class Score:
    planted: Counter[str]         # in-scope positives per expected type
    found: Counter[str]
    negatives: Counter[str]       # in-scope negatives per source rule or file (the look-alike kind)
    flagged: Counter[str]
    missed: list[Example]
    false_positives: list[tuple[Example, list[str]]]
    out_of_scope: int

    def recall(self, kind: str) -> float:
        return self.found[kind] / self.planted[kind]

    def fp_rate(self) -> float:
        total = sum(self.negatives.values())
        return sum(self.flagged.values()) / total if total else 0.0


def load(paths: Iterable[pathlib.Path] | None = None) -> list[Example]:
    examples = []
    for path in sorted(paths or DATA.glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                examples.append(Example(row["text"], row["expect"], row["scope"], row["source"], row["rule"],
                                        row.get("start"), row.get("end"), row.get("why", "")))
    return examples


def score(examples: Iterable[Example], scanner: Scanner | None = None) -> Score:
    scanner = scanner or Scanner()
    planted, found, negatives, flagged = Counter(), Counter(), Counter(), Counter()
    missed, false_positives, out = [], [], 0
    for ex in examples:
        if ex.scope != "in":
            out += 1
            continue
        hits = scanner.scan(ex.text)
        if ex.expect == "none":
            kind = f"{ex.source}:{ex.rule}"
            negatives[kind] += 1
            if hits:
                flagged[kind] += 1
                false_positives.append((ex, [h.type for h in hits]))
            continue
        planted[ex.expect] += 1
        start, end = (ex.start, ex.end) if ex.start is not None else (0, len(ex.text))
        if ex.start is not None:
            ok = any(h.type == ex.expect and h.start <= start and end <= h.end for h in hits)
        else:  # the source gives the line, not the span: the value is somewhere in it
            ok = any(h.type == ex.expect for h in hits)
        if ok:
            found[ex.expect] += 1
        else:
            missed.append(ex)
    return Score(planted, found, negatives, flagged, missed, false_positives, out)
