"""The scanner: runs every detector over texts and returns hits (type and span, never values)."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence

from typing import Any

import attrs

from proxilion.inspect import validators
from proxilion.inspect.catalog import BUILTIN
from proxilion.inspect.findings import SEVERITY_RANK
from proxilion.inspect.fold import fold
from proxilion.inspect import (scan_codes, scan_context, scan_credentials, scan_encoded, scan_numbers, scan_structured,
                               scan_tokens)
from proxilion.inspect.scan_context import find_keyed_secret
from proxilion.inspect.scan_credentials import is_secret_name
from proxilion.inspect.textview import Hit, TextView
from proxilion.inspect.triggers import TriggerScanner



def _scan_decoded(text: str) -> list[Hit]:
    """Decoded base64 and percent-encoded text is scanned by the built-in detectors."""
    return _DECODED.scan(text)


_PERCENT_PASSES, _BASE64_PASSES = scan_encoded.passes(_scan_decoded)
# Base64 in prose has a database of its own (see TriggerScanner).
_BUILTIN = TriggerScanner(scan_numbers.PASSES + scan_codes.PASSES + scan_tokens.PASSES + scan_structured.PASSES
                          + scan_context.PASSES + scan_credentials.PASSES + _PERCENT_PASSES, _BASE64_PASSES)


class Budget:
    """Where a scan may stop early: at C{max_hits} hits, or at the first hit of a C{stop_types} type.

    C{stopped} says why it stopped ("too_many" or "decided"), None when it ran to the end.
    """

    __slots__ = ("max_hits", "stop_types", "stopped")

    def __init__(self, max_hits: int | None = None, stop_types: frozenset[str] = frozenset()) -> None:
        self.max_hits = max_hits
        self.stop_types = stop_types
        self.stopped: str | None = None


class _Stop(Exception):
    pass


class _BudgetedHits(list[Any]):
    """A hit list that ends the scan (by raising out of the detector that appends) once the budget says so."""

    def __init__(self, budget: Budget) -> None:
        super().__init__()
        self.budget = budget

    def append(self, hit: Hit) -> None:
        super().append(hit)
        budget = self.budget
        if hit.type in budget.stop_types:
            budget.stopped = "decided"
            raise _Stop
        if budget.max_hits is not None and len(self) > budget.max_hits:
            budget.stopped = "too_many"
            raise _Stop

    def extend(self, hits: Iterable[Hit]) -> None:
        for hit in hits:
            self.append(hit)


# Joins the texts of one body so they are scanned in one go; no detector matches across it.
SEPARATOR = "\n\x00\n"


@attrs.frozen
class CustomDetector:
    """A detector from the policy file: a regex, an optional validator and context words."""

    name: str
    pattern: re.Pattern[str] = attrs.field(repr=lambda p: repr(p.pattern))
    category: str
    severity: str
    compliance: tuple[str, ...] = ()
    validator: str | None = None
    context: re.Pattern[bytes] | None = attrs.field(default=None, repr=lambda p: 'set' if p else 'None')
    context_window: int = 48

    def find(self, view: TextView, hits: list[Hit]) -> None:
        check = validators.VALIDATORS[self.validator] if self.validator else None
        for m in self.pattern.finditer(view.text):
            if m.end() == m.start():
                continue
            if self.context is not None and not view.has_context(m.start(), self.context, self.context_window):
                continue
            if check is not None and not check(m.group()):
                continue
            hits.append(Hit(self.name, m.start(), m.end()))


class Scanner:
    def __init__(self, custom: Sequence[CustomDetector] = (), disabled: Iterable[str] = ()):
        self.custom = tuple(custom)
        self.disabled = frozenset(disabled)
        self.rank = {t: SEVERITY_RANK[d.severity] for t, d in BUILTIN.items()}
        self.rank.update({c.name: SEVERITY_RANK[c.severity] for c in self.custom})

    def scan(self, text: str, key: str | None = None, budget: Budget | None = None) -> list[Hit]:
        """Hits in `text`, sorted and without overlaps. `key` is the JSON key the text was under."""
        hits: list[Hit] = [] if budget is None else _BudgetedHits(budget)
        try:
            self._run(text, hits)
        except _Stop:
            pass
        find_keyed_secret(text, key, hits)
        return self._resolve(hits)

    def scan_many(self, texts: Sequence[str], keys: Sequence[str | None], budget: Budget | None = None) -> list[list[Hit]]:
        """Hits per text, offsets relative to each text; scanned as one joined text for speed.

        With a C{budget} the scan may stop early (see L{Budget}); the hits found until then are returned.
        """
        if not texts:
            return []
        hits: list[Hit] = [] if budget is None else _BudgetedHits(budget)
        try:
            self._run(SEPARATOR.join(texts), hits)
        except _Stop:
            pass
        per_text: list[list[Hit]] = [[] for _ in texts]
        if hits:
            _split(hits, texts, per_text)
        for index, key in enumerate(keys):
            if key and is_secret_name(key):
                find_keyed_secret(texts[index], key, per_text[index])
        return [self._resolve(h) if h else h for h in per_text]

    def _run(self, text: str, hits: list[Hit]) -> None:
        folded = fold(text)
        if folded is None:
            self._run_view(TextView(text), hits)
        elif folded.same_offsets:
            self._run_view(TextView(folded.text), hits)
        else:
            found: list[Hit] = _BudgetedHits(hits.budget) if isinstance(hits, _BudgetedHits) else []
            try:
                self._run_view(TextView(folded.text), found)
            finally:
                # Mapped back even when the budget stopped the scan (slice assignment: not counted twice).
                hits[len(hits):] = [Hit(h.type, *folded.span(h.start, h.end)) for h in found]

    def _run_view(self, view: TextView, hits: list[Hit]) -> None:
        _BUILTIN.run(view, hits)
        for detector in self.custom:
            detector.find(view, hits)

    def _resolve(self, hits: list[Hit]) -> list[Hit]:
        """Drop disabled types; of overlapping hits keep the most severe, then the longest."""
        rank = self.rank
        hits = sorted((h for h in hits if h.type not in self.disabled), key=lambda h: (h.start, -h.end))
        kept: list[Hit] = []
        for hit in hits:
            if kept and hit.start < kept[-1].end:
                last = kept[-1]
                if _named(last, hit):
                    continue
                if _named(hit, last) or (rank[hit.type], hit.end - hit.start) > (rank[last.type], last.end - last.start):
                    kept[-1] = hit
                continue
            kept.append(hit)
        return kept


def _named(hit: Hit, other: Hit) -> bool:
    """Whether C{hit} names what the generic secret C{other} only suspects: a vendor's token on the same span.

    A Stripe test key assigned to api_key is a stripe_test_key (and its lower severity), not a generic_secret.
    """
    return other.type == "generic_secret" and hit.type != "generic_secret" and (hit.start, hit.end) == (other.start, other.end)


def _split(hits: list[Hit], texts: Sequence[str], per_text: list[list[Hit]]) -> None:
    """Hand each hit in the joined texts to its text, with offsets relative to that text."""
    starts = []
    offset = 0
    for text in texts:
        starts.append(offset)
        offset += len(text) + len(SEPARATOR)
    for hit in hits:
        index = bisect.bisect_right(starts, hit.start) - 1
        base = starts[index]
        if hit.end <= base + len(texts[index]):
            per_text[index].append(Hit(hit.type, hit.start - base, hit.end - base))


# The scanner of decoded text: the built-in detectors alone (no custom ones, none disabled).
_DECODED = Scanner()
