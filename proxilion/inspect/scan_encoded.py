"""Base64 and percent-encoding written inside prose: decoded, and scanned, when they hold text.

"Decode this: NDExMTExMTExMTExMTExMQ==" carries a card number a model reads
at once. A run of 16 or more base64 letters is decoded when it is text; the
decoded text is scanned with every built-in detector, and each finding there
makes the whole run a finding of its type, so redaction replaces the run.
Base64 split by spaces between its groups is not put back together.
(Strings that are base64 documents as a whole are decoded earlier, by the
walk in proxilion/providers/fields.py.)

Likewise a token holding percent escapes ("data:text/plain,card%204111%201111...",
a URL's query) is decoded and scanned; a finding makes the whole token a finding.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from urllib.parse import unquote

from proxilion.inspect.textview import Hit, TextView, match_end
from proxilion.inspect.triggers import Pass, Trigger
from proxilion.providers.fields import decoded_text

_MIN_RUN = 16
# Base64 switches between lower and upper case (or digit and upper case) every few letters,
# which prose and code rarely do; a class repeat ("20 base64 letters") would cost the shared
# trigger scan three times as much. Reported wherever it occurs; each run is decoded once.
_TRIGGER = Trigger(rb"[a-z0-9+/][A-Z][A-Za-z0-9+/]{0,3}[a-z0-9+/][A-Z]")
_RUN_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-")
_REST = re.compile(rb"[A-Za-z0-9+/_-]*={0,2}")
_UNPRINTABLE = re.compile(r"[^\t\n\r\x20-\x7e\xa0-\uffff]")

# Scans a decoded text with the built-in detectors: given by proxilion.inspect.scanner (see L{passes}).
ScanDecoded = Callable[[str], list[Hit]]


def find_encoded(scan_decoded: ScanDecoded, view: TextView, ends: list[int], hits: list[Hit]) -> None:
    raw = view.raw
    stop = 0
    for end in ends:
        if end <= stop:
            continue  # inside the run decoded last
        start = end
        while start > 0 and raw[start - 1] in _RUN_CHARS:
            start -= 1
        stop = match_end(_REST, raw, end)
        if stop - start < _MIN_RUN:
            continue
        text = decoded_text(view.text[start:stop])
        # Identifiers, hashes and paths decode to noise: only text that reads as text is scanned.
        if not text or len(_UNPRINTABLE.findall(text)) > len(text) // 10:
            continue
        for hit in scan_decoded(text):
            hits.append(Hit(hit.type, start, stop))


def find_percent_encoded(scan_decoded: ScanDecoded, view: TextView, ends: list[int], hits: list[Hit]) -> None:
    raw, text = view.raw, view.text
    stop = 0
    for end in ends:
        if end <= stop:
            continue  # inside the token decoded last
        start = end
        while start > 0 and raw[start - 1] not in _TOKEN_ENDS:
            start -= 1
        stop = match_end(_TOKEN_REST, raw, end)
        decoded = unquote(text[start:stop], errors="replace")
        for hit in scan_decoded(decoded):
            hits.append(Hit(hit.type, start, stop))


# A percent escape; the token around it runs to the nearest space or quote.
_PERCENT_TRIGGER = Trigger(rb"%[0-9A-Fa-f]{2}")
_TOKEN_ENDS = frozenset(b" \t\r\n\"'<>`")
_TOKEN_REST = re.compile(rb"[^ \t\r\n\"'<>`]*")


def passes(scan_decoded: ScanDecoded) -> tuple[tuple[Pass, ...], tuple[Pass, ...]]:
    """The percent pass and the base64 pass, both scanning what they decode with C{scan_decoded}.

    The base64 trigger is made only of character classes: it has a database of its own (see
    TriggerScanner); the percent trigger starts with a literal and joins the shared one.
    """
    return ((Pass((_PERCENT_TRIGGER,), partial(find_percent_encoded, scan_decoded)),),
            (Pass((_TRIGGER,), partial(find_encoded, scan_decoded)),))
