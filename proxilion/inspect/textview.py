"""One text prepared for scanning: its bytes, one per character, so byte offsets are text offsets."""

from __future__ import annotations

import re
import sys
from typing import AnyStr, NamedTuple


class Hit(NamedTuple):
    type: str
    start: int
    end: int


class TextView:
    __slots__ = ("text", "raw")

    def __init__(self, text: str):
        self.text = text
        # One byte per code point: non-ASCII characters become "?", so indices match the str.
        self.raw = text.encode("ascii", "replace")

    def has_context(self, pos: int, words: re.Pattern[bytes], width: int = 48) -> bool:
        """Whether one of `words` (see context_words) appears in the `width` characters before `pos`."""
        start = max(0, pos - width)
        # One character more on the left so the word-boundary lookbehind sees what precedes the window.
        before = self.raw[max(0, start - 1):pos].lower()
        return words.search(before, 1 if start else 0) is not None


def context_words(*words: str) -> re.Pattern[bytes]:
    """A matcher for whole context words in lower-cased bytes ("ach" must not match "each")."""
    alternation = b"|".join(re.escape(w.lower().encode("ascii")) for w in words)
    return re.compile(rb"(?<![a-z])(?:" + alternation + rb")(?![a-z])")


def match_end(pattern: re.Pattern[AnyStr], data: AnyStr, pos: int, endpos: int = sys.maxsize) -> int:
    """Where C{pattern}'s match at C{pos} ends, for run patterns (C{[...]*}) that match everywhere."""
    m = pattern.match(data, pos, endpos)
    assert m is not None, "a run pattern matches the empty string"
    return m.end()
