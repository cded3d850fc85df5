"""Detectors for values made of digits: cards, SSN/ITIN, ABA, EIN, NPI, passports, phones, IPv4.

The trigger scan finds runs of digits and separators holding at least nine
digits (eight after "+"; no value here has fewer); the precise patterns and
checksums run only over each such cluster and a few characters around it.
"""

from __future__ import annotations

import ipaddress
import re

import phonenumbers

from proxilion.inspect import validators as v
from proxilion.inspect.textview import Hit, TextView, context_words, match_end
from proxilion.inspect.triggers import Pass, Trigger

_SEPARATORS = b" .-/()\t"
_CLUSTER_CHARS = frozenset(b"0123456789" + _SEPARATORS)
# A run of digits and separators, reported once: at its ninth digit (its eighth after "+",
# where an international number may have only eight).
_CLUSTER_TRIGGERS = (Trigger(rb"(?:^|[^0-9 .\-/()\t])[ .\-/()\t]*[0-9](?:[ .\-/()\t]*[0-9]){8}"),
                     Trigger(rb"\+[0-9](?:[ .\-/()\t]*[0-9]){7}"))
_RUN_REST = re.compile(rb"[0-9 .\-/()\t]*")
# A dotted quad, reported after the first digit of its last part.
_QUAD_TRIGGER = Trigger(rb"[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]")
# From that end back to where a dotted quad's "(?<![0-9.])" can start, and the lookbehind.
_QUAD_BACK = 14

_A = re.ASCII
# A value starts a word: no letter or digit before it, nor a dash joining it to one ("ID-4111...",
# "2021-078-05-1120"); a dash after a space or a colon is a minus sign or a bullet, which a
# model reads past ("card:-4111...").
_NOT_INSIDE = r"(?<![0-9A-Za-z])(?<![0-9A-Za-z]-)"
# A card's groups are apart by one separator, the same each time: nothing, one or two spaces, a
# dash, a dot, a slash, a tab, or a dash between spaces (as PDFs and spreadsheets print them); never a
# link in a longer dotted or dashed chain of numbers.
_CARD_SEP = r"(?: {1,2}|[-./\t]| - |)"
_CARD = re.compile(
    _NOT_INSIDE + r"(?<![0-9][./])(?:[0-9]{4}(?P<s>" + _CARD_SEP + r")[0-9]{4}(?P=s)[0-9]{4}(?P=s)[0-9]{1,4}"
    r"(?:(?P=s)[0-9]{1,3})?|3[0-9]{3}(?P<t>" + _CARD_SEP + r")[0-9]{6}(?P=t)[0-9]{4,5})(?![0-9A-Za-z]|[-./][0-9A-Za-z])", _A)
_SSN = re.compile(_NOT_INSIDE + r"(?<![0-9][.])[0-9]{3}([- .])[0-9]{2}\1[0-9]{4}(?![0-9A-Za-z]|[-.][0-9])", _A)
_NINE = re.compile(_NOT_INSIDE + r"[0-9]{9}(?![0-9A-Za-z]|-[0-9])", _A)
_TEN = re.compile(_NOT_INSIDE + r"[0-9]{10}(?![0-9A-Za-z]|-[0-9])", _A)
_EIN = re.compile(_NOT_INSIDE + r"[0-9]{2}-[0-9]{7}(?![0-9A-Za-z]|-[0-9])", _A)
# Dashes, dots or "(415) 555-2671"; plain spaces only after +1 (or with a phone word, see below).
# Not the tail of a longer dotted or dashed chain ("1.3.6.1.4.1.2011.212.555.1234", "JIRA-212-555-1234",
# "617-555-0123-7"): no digit or word joined to it by a dot or dash on either side.
_NANP = re.compile(
    r"(?<![0-9+])(?<![0-9A-Za-z][.-])(?:\+1[ .-]?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-]"
    r"|(?:1[.-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}([.-]))[2-9][0-9]{2}(?(1)\1|-))[0-9]{4}(?![0-9]|[.-][0-9])", _A)
_NANP_SPACED = re.compile(r"(?<![0-9+])[2-9][0-9]{2} [2-9][0-9]{2} [0-9]{4}(?![0-9])", _A)
_INTL = re.compile(r"(?<![0-9A-Za-z+])\+[1-9][0-9 .()-]{5,20}[0-9](?![0-9])", _A)
_IPV4 = re.compile(r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?!\.?[0-9])", _A)

_SSN_WORDS = context_words("ssn", "social security", "social sec", "ss#", "ss #")
_ABA_WORDS = context_words("routing", "aba", "rtn", "transit", "ach", "wire")
_NPI_WORDS = context_words("npi", "provider", "prescriber", "physician")
_EIN_WORDS = context_words("ein", "fein", "employer id", "employer identification", "tax id", "taxpayer id", "tin")
_PASSPORT_WORDS = context_words("passport")
_PHONE_WORDS = context_words("phone", "tel", "call", "mobile", "cell", "fax", "contact", "sms", "text me")
_ANY_ID_WORDS = context_words(*(
    "ssn|social security|social sec|ss#|ss #|routing|aba|rtn|transit|ach|wire|npi|provider|prescriber|"
    "physician|ein|fein|employer id|employer identification|tax id|taxpayer id|tin|passport|phone|tel|"
    "call|mobile|cell|fax|contact|sms|text me").split("|"))
_VERSION_WORDS = context_words("version", "release", "build")


# A layout only a phone number is written in: a parenthesised area code with separators, or "+", a
# country code on its own and further groups ("+44 20 6429 5510", "+44 (0)20 ...").
_PHONE_LAYOUT = re.compile(r"(?:1[.-])?\([2-9][0-9]{2}\) ?[0-9]{3}[ .-][0-9]{4}"
                           r"|\+(?P<cc>[0-9]{1,3})(?:[ .-]\(?[0-9]+\)?[0-9]*){2,}", _A)


def _phone(candidate: str, region: str | None) -> bool:
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return False
    if phonenumbers.is_valid_number(number):
        return True
    # In a phone layout a number in an unassigned range (a Faker-style one) is still someone's
    # phone to a reader, so a possible length is enough; bare or 3-3-4 runs stay valid-only.
    layout = _PHONE_LAYOUT.fullmatch(candidate)
    return (layout is not None and layout.group("cc") in (None, str(number.country_code))
            and phonenumbers.is_possible_number(number))


def _public_ip(view: TextView, m: re.Match[str]) -> bool:
    if m.start() > 0 and view.text[m.start() - 1] in "vV":
        return False
    try:
        address = ipaddress.ip_address(m.group())
    except ValueError:
        return False
    return address.is_global and not view.has_context(m.start(), _VERSION_WORDS, 24)


def _scan_cluster(view: TextView, start: int, we: int, hits: list[Hit]) -> None:
    """Run only the patterns the cluster's shape allows (digit count, separators) over it."""
    text = view.text
    # A few characters back so "+1 (", "(" and lookbehinds see their context, and two on
    # so lookaheads see what follows ("4111111111111111A" is an identifier, not a card).
    ws = max(0, start - 4)
    see = min(len(text), we + 2)
    cluster = view.raw[ws:we]
    digits = len(cluster) - len(cluster.translate(None, b"0123456789"))
    if digits >= 13:
        for m in _CARD.finditer(text, ws, see):
            if v.credit_card(m.group()):
                hits.append(Hit("credit_card", m.start(), m.end()))
    separated = b"-" in cluster or b" " in cluster or b"." in cluster
    if separated:
        for m in _SSN.finditer(text, ws, see):
            if m.group(1) == "." and not view.has_context(m.start(), _SSN_WORDS):
                continue  # dotted, it may be a version or a measurement: only after an SSN word
            if v.ssn(m.group()):
                hits.append(Hit("ssn", m.start(), m.end()))
            elif v.itin(m.group()):
                hits.append(Hit("itin", m.start(), m.end()))
    if view.has_context(start, _ANY_ID_WORDS):
        _context_ids(view, ws, see, hits)
    if digits >= 10 and (separated or b"(" in cluster or b"." in cluster):
        for m in _NANP.finditer(text, ws, see):
            if _phone(m.group(), "US"):
                hits.append(Hit("phone", m.start(), m.end()))
    if b"+" in cluster:
        for m in _INTL.finditer(text, ws, see):
            if 8 <= len(v.digits_of(m.group())) <= 15 and _phone(m.group(), None):
                hits.append(Hit("phone", m.start(), m.end()))


def _context_ids(view: TextView, ws: int, see: int, hits: list[Hit]) -> None:
    """Numbers that are only told apart from order numbers by a word before them (in text[ws:see])."""
    text = view.text
    for m in _NINE.finditer(text, ws, see):
        value, pos = m.group(), m.start()
        if view.has_context(pos, _SSN_WORDS) and v.ssn(value):
            hits.append(Hit("ssn", pos, m.end()))
        elif view.has_context(pos, _ABA_WORDS) and v.aba(value):
            hits.append(Hit("aba_routing", pos, m.end()))
        elif view.has_context(pos, _PASSPORT_WORDS):
            hits.append(Hit("passport", pos, m.end()))
    for m in _TEN.finditer(text, ws, see):
        value, pos = m.group(), m.start()
        if view.has_context(pos, _NPI_WORDS) and v.npi(value):
            hits.append(Hit("npi", pos, m.end()))
        elif view.has_context(pos, _PHONE_WORDS) and _phone(value, "US"):
            hits.append(Hit("phone", pos, m.end()))
    for m in _NANP_SPACED.finditer(text, ws, see):
        if view.has_context(m.start(), _PHONE_WORDS) and _phone(m.group(), "US"):
            hits.append(Hit("phone", m.start(), m.end()))
    for m in _EIN.finditer(text, ws, see):
        if view.has_context(m.start(), _EIN_WORDS) and v.ein(m.group()):
            hits.append(Hit("ein", m.start(), m.end()))


def find_numbers(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    raw = view.raw
    stop = 0
    for end in ends:
        if end <= stop:  # the run was reported by both triggers
            continue
        start = end
        while start > 0 and raw[start - 1] in _CLUSTER_CHARS:
            start -= 1
        stop = match_end(_RUN_REST, raw, end)
        run = raw[start:stop]
        # The cluster runs from the run's first digit to its last.
        _scan_cluster(view, stop - len(run.lstrip(_SEPARATORS)), start + len(run.rstrip(_SEPARATORS)), hits)


def find_quads(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    found = 0
    for end in ends:
        for m in _IPV4.finditer(view.text, max(found, end - _QUAD_BACK), end + 2):
            if _public_ip(view, m):
                hits.append(Hit("ip_address", m.start(), m.end()))
            found = m.end()


PASSES = (Pass(_CLUSTER_TRIGGERS, find_numbers), Pass((_QUAD_TRIGGER,), find_quads))
