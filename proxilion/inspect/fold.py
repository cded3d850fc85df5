"""Fold look-alike characters to ASCII before scanning, so disguised values are still found.

A model reads "４１１１ １１１１ …" (full-width digits), "4111\\u200b1111…" (zero-width
spaces) or a number in Unicode tag characters ("ASCII smuggling") as the
plain value; the detectors, written for ASCII, would not. Scanning the folded
text and mapping each hit back to the original's offsets closes that gap;
the forwarded text is never changed by folding, only by redaction.

Pure: no Twisted, no I/O. ASCII texts (most traffic) are not touched.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
import unicodedata

__all__ = ["fold", "Folded"]


# Unicode's Default_Ignorable_Code_Point characters outside the format category: shown as
# nothing, so a model reads past them (variation selectors, the combining grapheme joiner,
# Hangul fillers, Mongolian variation selectors).
_IGNORABLE = frozenset(itertools.chain(
    (0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0), range(0x180B, 0x1810), range(0xFE00, 0xFE10),
    range(0xFFF0, 0xFFF9), range(0xE0100, 0xE01F0),
))
# Dashes a word processor puts in numbers ("078‑05‑1121" with non-breaking hyphens).
_MINUS_SIGNS = frozenset({0x2212, 0x2043, 0x2E3A, 0x2E3B})
# Cyrillic and Greek letters drawn exactly like Latin ones: "AKIA…EXAMPLЕ" with a Cyrillic Е
# reads as the key to a model and to people. (Unicode's confusables, the unambiguous part.)
_LOOKALIKES = dict(zip(
    "АВЕКМНОРСТХУЅІЈаеорсухѕіјԁԛԝΑΒΕΖΗΙΚΜΝΟΡΤΥΧοϲϳ",
    "ABEKMHOPCTXYSIJaeopcyxsijdqwABEZHIKMNOPTYXocj",
))


def _table() -> dict[int, str]:
    """Each foldable character and what it folds to ("" for characters that are dropped)."""
    table: dict[int, str] = {}
    for cp in itertools.chain(range(0x80, 0x10000), range(0x1D400, 0x1D800), range(0xE0000, 0xE01F0)):
        ch = chr(cp)
        category = unicodedata.category(ch)
        if ch in _LOOKALIKES:
            table[cp] = _LOOKALIKES[ch]
        elif 0xE0020 <= cp < 0xE007F:
            table[cp] = chr(cp - 0xE0000)  # tag characters spell ASCII invisibly
        elif category in ("Cf", "Mn", "Me") or cp in _IGNORABLE:
            # Zero-width, format and ignorable characters, and combining marks left on their own
            # (NFKC composes the ones that belong to a letter): models read past them.
            table[cp] = ""
        elif category == "Pd" or cp in _MINUS_SIGNS:
            table[cp] = "-"
        else:
            folded = unicodedata.normalize("NFKC", ch)
            if len(folded) == 1 and folded.isascii() and (folded.isprintable() or folded.isspace()):
                table[cp] = folded  # full-width forms, mathematical letters and digits, odd spaces
            elif unicodedata.decimal(ch, None) is not None:
                table[cp] = str(unicodedata.decimal(ch))  # digits of other scripts
    return table


@functools.lru_cache(maxsize=256)
def _character_class(codepoints: frozenset[int]) -> re.Pattern[str]:
    """A regex matching any one of C{codepoints}, written as ranges (cached: the same sets recur)."""
    ranges = []
    for _, group in itertools.groupby(enumerate(sorted(codepoints)), lambda pair: pair[1] - pair[0]):
        run = list(group)
        first, last = run[0][1], run[-1][1]
        ranges.append(re.escape(chr(first)) + ("-" + re.escape(chr(last)) if last > first else ""))
    return re.compile("[" + "".join(ranges) + "]")


_TABLE = _table()
# Regex passes find them, far cheaper than str.translate with a dict, which looks up every
# character. Astral characters get their own pattern: ranges outside the BMP make the
# character class slow, and a text without astral characters is told apart cheaply.
_FOLDABLE_BMP = _character_class(frozenset(cp for cp in _TABLE if cp < 0x10000))
_FOLDABLE_ASTRAL = re.compile("[\U0001D400-\U0001D7FF\U000E0000-\U000E01EF]")  # two ranges: fast to test


class Folded:
    """A folded text and the way back from its offsets to the original's."""

    __slots__ = ("text", "_shifts")

    def __init__(self, original: str, present: set[str]) -> None:
        dropped = frozenset(ord(ch) for ch in present if not _TABLE[ord(ch)])
        # The folded index at which each dropped character was: positions after it shift by one more.
        self._shifts = [m.start() - i for i, m in enumerate(_character_class(dropped).finditer(original))] if dropped else []
        text = original
        for ch in present:
            text = text.replace(ch, _TABLE[ord(ch)])
        self.text = text

    @property
    def same_offsets(self) -> bool:
        return not self._shifts

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original text's span for the folded span [start, end)."""
        shifts = self._shifts
        first = start + bisect.bisect_right(shifts, start)
        last = end - 1 + bisect.bisect_right(shifts, end - 1)
        return first, last + 1


def _has_astral(text: str) -> bool:
    return len(text.encode("utf-16-le", "surrogatepass")) != 2 * len(text)


def fold(text: str) -> Folded | None:
    """The folded form of C{text}, or None when nothing in it folds (ASCII text never does)."""
    if text.isascii():
        return None
    present = set(_FOLDABLE_BMP.findall(text))
    if _has_astral(text):
        present.update(ch for ch in _FOLDABLE_ASTRAL.findall(text) if ord(ch) in _TABLE)
    return Folded(text, present) if present else None
