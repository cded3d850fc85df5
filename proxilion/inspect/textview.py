"""One text prepared for scanning: byte views that let cheap literal searches stand in for regexes.

Python's `re` is slow on patterns that may start with many characters, but a
search for a literal runs at memory speed. So the text is mapped, one byte per
character (indices unchanged), to character classes: every digit becomes
"0", every capital "A", every lower-case letter "a". A digit run is then a
literal search for "0", a capital followed by a digit is "A0", and so on;
the precise patterns and checksums only run around those few places.
"""

from __future__ import annotations

import re
import string
from typing import NamedTuple


def _table(mapping: dict[str, str], default: str) -> bytes:
    table = bytearray(default.encode() * 256)
    for chars, cls in mapping.items():
        for c in chars:
            table[ord(c)] = ord(cls)
    return bytes(table)


# Characters kept as themselves are the ones the triggers look for.
CLASS_TABLE = _table({
    string.digits: "0",
    string.ascii_uppercase: "A",
    string.ascii_lowercase: "a",
    ":": "=", "=": "=",
    **{c: c for c in " .-/()+@_\n\"'"},
}, "#")
# Characters that can appear in a key or token: a long run of them is a credential candidate.
TOKEN_TABLE = _table({string.ascii_letters + string.digits + "_-+/=.": "w"}, " ")


class Hit(NamedTuple):
    type: str
    start: int
    end: int


class TextView:
    __slots__ = ("text", "raw", "classes", "_lower", "_tokens")

    def __init__(self, text: str):
        self.text = text
        # One byte per code point: non-ASCII characters become "?", so indices match the str.
        self.raw = text.encode("ascii", "replace")
        self.classes = self.raw.translate(CLASS_TABLE)
        self._lower: bytes | None = None
        self._tokens: bytes | None = None

    @property
    def lower(self) -> bytes:
        if self._lower is None:
            self._lower = self.raw.lower()
        return self._lower

    @property
    def tokens(self) -> bytes:
        if self._tokens is None:
            self._tokens = self.raw.translate(TOKEN_TABLE)
        return self._tokens

    def has_context(self, pos: int, words: re.Pattern, width: int = 48) -> bool:
        """Whether one of `words` (see context_words) appears in the `width` characters before `pos`."""
        return words.search(self.lower, max(0, pos - width), pos) is not None


def context_words(*words: str) -> re.Pattern:
    """A matcher for whole context words in lower-cased bytes ("ach" must not match "each")."""
    alternation = b"|".join(re.escape(w.lower().encode("ascii")) for w in words)
    return re.compile(rb"(?<![a-z])(?:" + alternation + rb")(?![a-z])")
