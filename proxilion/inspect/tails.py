"""Where a value still being written may start at the end of a streamed text.

A streamed text may leave up to the earliest place where a detector's value
could still be in progress: text after it may turn out to be part of a
finding once more arrives, text before it cannot. Each rule below is the
shape the built-in detectors' values can have while unfinished (see
scan_numbers, scan_codes, scan_context, scan_tokens, scan_structured,
scan_encoded), written broader than the values so that it never starts late:

- a run of non-space characters: every key, token, JWT, email address, URL,
  base64 or percent-encoded run and code (MBI, DEA, passport) is one, and so
  is every value named by a context word ("password is", "SSN:");
- a cluster of digits and the separators of scan_numbers (cards, phones, SSNs,
  dates, IBAN digits) from its first digit, "(" or "+";
- an IBAN in groups ("DE89 3704 0044") from its country code;
- a date spelled with a month ("March 3, 19", "3 March 19");
- an open armour: a PEM or SSH2 block until its END line, a PuTTY key file
  until its Private-MAC line.

A word of letters at the end is held only from where a value the policy acts
on may start in it, when the caller passes those values' shapes (see starts):
with the shipped policy an answer's "Tuesday" leaves at once, its "sk" does not.

Pure and ASCII-minded like the detectors: look-alike characters are folded
first, as the scanner folds them.
"""

from __future__ import annotations

import re

from proxilion.inspect.fold import fold
from proxilion.inspect.starts import WordRule

_A = re.ASCII
# scan_numbers' separators within a digit cluster, and what may open one.
_CLUSTER = re.compile(r"[0-9 .\-/()\t+]*", _A)
_CLUSTER_OPENERS = re.compile(r"[0-9(+]", _A)
_IBAN_TAIL = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{1,4})* ?\Z", _A)
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]{0,6}\.?"
_DATE_TAILS = (
    re.compile(rf"(?<![a-z]){_MONTH}(?: (?:[0-9]{{1,2}}[a-z]{{0,2}}(?:,? ?[0-9]{{0,4}})?)?)?\Z", _A | re.I),
    re.compile(r"(?<![0-9])[0-9]{1,2}[a-z]{0,2} (?:of )?(?:[a-z]{1,9}\.?(?:,? ?[0-9]{0,4})?)?\Z", _A | re.I),
)
# The longest IBAN or date in progress, spaces included: the rules above look no further back.
_SHORT_REACH = 48
# The opening and closing lines of PEM and SSH2 (SECSH) blocks: the detectors run such a
# block to its END line, however far, so it is open until then.
_BEGIN = re.compile(r"-{4,5} ?BEGIN", _A)
_END = re.compile(r"-{4,5} ?END [A-Z0-9 ]{0,40}?-{4,5}", _A)
# An END line may still take a fifth dash, or (a key in a JSON string) its escaped newline.
_AFTER_END = re.compile(r"(?:-|\\{0,2}n?|\n)\Z", _A)
_PUTTY_MAC = re.compile(r"Private-MAC: [0-9a-fA-F]+", _A)


def hold_from(text: str, reach: int, armour_reach: int, words: WordRule | None = None, before: str = "") -> int:
    """The index in C{text} from which a value may still be in progress (C{len(text)}: none).

    A candidate that started more than C{reach} characters before the end (an open key
    block: C{armour_reach}) is held from there only: the caller's bounds on one candidate.
    With C{words} (the shapes of the values the policy acts on, see starts), a word of
    letters at the end is held only from where such a value may start in it; C{before}
    is the text already sent, where a context word ("password is") may be.
    """
    folded = fold(text)
    folded_before = fold(before) if words is not None else None
    if folded_before is not None:
        before = folded_before.text
    if folded is None:
        return _hold_from(text, reach, armour_reach, words, before)
    at = _hold_from(folded.text, len(folded.text), len(folded.text), words, before)
    end = len(text)
    at = end if at >= len(folded.text) else folded.span(at, at + 1)[0]
    return max(at, min(end - reach, _open_armour(text, max(0, end - armour_reach))), 0)


def _hold_from(text: str, reach: int, armour_reach: int, words: WordRule | None, before: str) -> int:
    end = len(text)
    floor = max(0, end - reach)
    armour = _open_armour(text, max(0, end - armour_reach))
    if armour < floor:
        return armour
    # The trailing run of non-space characters.
    run = end
    while run > floor and not text[run - 1].isspace():
        run -= 1
    at = run if words is None or run == end else words.hold_in(text, run, before)
    # The trailing digit cluster, from its first digit, "(" or "+".
    cluster = _CLUSTER.match(text[floor:][::-1])
    if cluster is not None and cluster.end():
        opener = _CLUSTER_OPENERS.search(text, end - cluster.end())
        if opener is not None:
            at = min(at, opener.start())
    near = max(floor, end - _SHORT_REACH)
    tail = text[near:]
    for pattern in (_IBAN_TAIL, *_DATE_TAILS):
        m = pattern.search(tail)
        if m is not None:
            at = min(at, near + m.start())
    return max(floor, min(at, armour))


def _open_armour(text: str, floor: int) -> int:
    """Where the last key block still open at the end of C{text} starts (C{len(text)}: none)."""
    end = len(text)
    at = end
    begin = max(text.rfind("----BEGIN", floor), text.rfind("---- BEGIN", floor))
    if begin >= 0:
        opening = _BEGIN.search(text, max(floor, begin - 1))
        if opening is not None:
            closing = _END.search(text, opening.end())
            if closing is None or _AFTER_END.match(text, closing.end()):
                at = opening.start()
    putty = text.rfind("PuTTY-User-Key-File-", floor)
    if putty >= 0:
        mac = _PUTTY_MAC.search(text, putty)
        if mac is None or mac.end() == end:
            at = min(at, putty)
    return at
