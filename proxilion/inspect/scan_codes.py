"""Detectors for capital-letter-and-digit codes: IBAN, DEA, Medicare MBI, letter-led passports."""

from __future__ import annotations

import re

from proxilion.inspect import validators as v
from proxilion.inspect.textview import Hit, TextView, context_words
from proxilion.inspect.triggers import Pass, Trigger

_A = re.ASCII
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])", _A)
# Grouped with dashes (AL47-2121-1009-...), one dash between every group of four.
_IBAN_DASHED = re.compile(r"[A-Z]{2}[0-9]{2}(?:-[A-Z0-9]{4}){2,7}(?:-[A-Z0-9]{1,4})?(?![A-Za-z0-9-])", _A)
_DEA = re.compile(r"[ABCDEFGHJKLMPRSTUX][A-Z9][0-9]{7}(?![A-Za-z0-9])", _A)
_MBI = re.compile(r"[1-9][A-Z][A-Z0-9][0-9]-?[A-Z][A-Z0-9][0-9]-?[A-Z]{2}[0-9]{2}(?![A-Za-z0-9])", _A)
_PASSPORT = re.compile(r"[A-Z][0-9]{8}(?![A-Za-z0-9])", _A)
_CODE_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
# A token starting like one of the codes above; reported where that beginning ends.
_TRIGGER = Trigger(rb"(?:^|[^A-Za-z0-9])(?:[A-Z]{2}[0-9]{2}|[A-Z][A-Z9][0-9]|[1-9][A-Z][A-Z0-9][0-9]|[A-Z][0-9]{8})")
_PASSPORT_WORDS = context_words("passport")


def _iban(text: str) -> int:
    """Length of the longest valid IBAN prefix of `text` (spaced groups may run into other words)."""
    candidate = text
    while len(candidate.replace(" ", "")) >= 15:
        if v.iban(candidate):
            return len(candidate)
        cut = candidate.rfind(" ")
        if cut < 0:
            break
        candidate = candidate[:cut]
    return 0


def find_codes(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    text, raw = view.text, view.raw
    done = 0
    for end in ends:
        start = end
        while start > 0 and raw[start - 1] in _CODE_CHARS:
            start -= 1
        # Non-ASCII letters are "?" in the bytes: a code must not continue a word.
        if start >= done and (start == 0 or not text[start - 1].isalnum()):
            done = max(_at(view, start, hits), start + 1)


def _at(view: TextView, start: int, hits: list[Hit]) -> int:
    """Try each code at a token start; returns the end of what was recognised."""
    text = view.text
    m = _IBAN.match(text, start) or _IBAN_DASHED.match(text, start)
    if m:
        length = _iban(m.group().replace("-", " "))
        if length:
            hits.append(Hit("iban", start, start + length))
            return start + length
    # Before DEA: a letter, "9" and seven digits can pass the DEA checksum too; "passport" decides.
    m = _PASSPORT.match(text, start)
    if m and view.has_context(start, _PASSPORT_WORDS):
        hits.append(Hit("passport", start, m.end()))
        return m.end()
    m = _DEA.match(text, start)
    if m and v.dea(m.group()):
        hits.append(Hit("dea", start, m.end()))
        return m.end()
    m = _MBI.match(text, start)
    if m and v.mbi(m.group()):
        hits.append(Hit("mbi", start, m.end()))
        return m.end()
    return start


PASSES = (Pass((_TRIGGER,), find_codes),)
