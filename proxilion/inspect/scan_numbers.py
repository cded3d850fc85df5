"""Detectors for values made of digits: cards, SSN/ITIN, ABA, EIN, NPI, passports, phones, IPv4.

A cheap literal search finds digit clusters; the precise patterns and
checksums run only over each cluster and a few characters around it.
"""

from __future__ import annotations

import ipaddress
import re

import phonenumbers

from proxilion.inspect import validators as v
from proxilion.inspect.textview import Hit, TextView, context_words

# In the class view: digits and separators (7+ characters), or a dotted quad.
_CLUSTER = re.compile(rb"0[0 .\-/()]{5,}0")
# Starts with the literal "0." so the regex engine can skip ahead fast.
_QUAD = re.compile(rb"0\.0{1,3}\.0{1,3}\.0")

_A = re.ASCII
_CARD = re.compile(
    r"(?<![0-9A-Za-z-])(?:[0-9]{4}(?P<s>[ -]?)[0-9]{4}(?P=s)[0-9]{4}(?P=s)[0-9]{1,4}(?:(?P=s)[0-9]{1,3})?"
    r"|3[0-9]{3}(?P<t>[ -]?)[0-9]{6}(?P=t)[0-9]{4,5})(?![0-9A-Za-z])", _A)
_SSN = re.compile(r"(?<![0-9A-Za-z-])[0-9]{3}([- ])[0-9]{2}\1[0-9]{4}(?![0-9A-Za-z]|-[0-9])", _A)
_NINE = re.compile(r"(?<![0-9A-Za-z-])[0-9]{9}(?![0-9A-Za-z]|-[0-9])", _A)
_TEN = re.compile(r"(?<![0-9A-Za-z-])[0-9]{10}(?![0-9A-Za-z]|-[0-9])", _A)
_EIN = re.compile(r"(?<![0-9A-Za-z-])[0-9]{2}-[0-9]{7}(?![0-9A-Za-z]|-[0-9])", _A)
# Dashes, dots or "(415) 555-2671"; plain spaces only after +1 (or with a phone word, see below).
_NANP = re.compile(
    r"(?<![0-9+])(?:\+1[ .-]?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-]"
    r"|(?:1[.-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}([.-]))[2-9][0-9]{2}(?(1)\1|-))[0-9]{4}(?![0-9])", _A)
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


def _phone(candidate: str, region: str | None) -> bool:
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number)


def _public_ip(view: TextView, m: re.Match) -> bool:
    if m.start() > 0 and view.text[m.start() - 1] in "vV":
        return False
    try:
        address = ipaddress.ip_address(m.group())
    except ValueError:
        return False
    return address.is_global and not view.has_context(m.start(), _VERSION_WORDS, 24)


def _scan_cluster(view: TextView, start: int, we: int, hits: list[Hit]) -> None:
    """Run only the patterns the cluster's shape allows (digit count, separators) over it."""
    text, classes = view.text, view.classes
    # A few characters back so "+1 (", "(" and lookbehinds see their context.
    ws = max(0, start - 4)
    digits = classes.count(b"0", ws, we)
    if digits < 9:
        return
    cluster = classes[ws:we]
    if digits >= 13:
        for m in _CARD.finditer(text, ws, we):
            if v.credit_card(m.group()):
                hits.append(Hit("credit_card", m.start(), m.end()))
    separated = b"-" in cluster or b" " in cluster
    if separated:
        for m in _SSN.finditer(text, ws, we):
            if v.ssn(m.group()):
                hits.append(Hit("ssn", m.start(), m.end()))
            elif v.itin(m.group()):
                hits.append(Hit("itin", m.start(), m.end()))
    if view.has_context(start, _ANY_ID_WORDS):
        _context_ids(view, ws, we, hits)
    if digits >= 10 and (separated or b"(" in cluster or b"." in cluster):
        for m in _NANP.finditer(text, ws, we):
            if _phone(m.group(), "US"):
                hits.append(Hit("phone", m.start(), m.end()))
    if b"+" in cluster:
        for m in _INTL.finditer(text, ws, we):
            if 8 <= len(v.digits_of(m.group())) <= 15 and _phone(m.group(), None):
                hits.append(Hit("phone", m.start(), m.end()))


def _ipv4(view: TextView, ws: int, we: int, hits: list[Hit]) -> None:
    for m in _IPV4.finditer(view.text, ws, we):
        if _public_ip(view, m):
            hits.append(Hit("ip_address", m.start(), m.end()))


def _context_ids(view: TextView, ws: int, we: int, hits: list[Hit]) -> None:
    """Numbers that are only told apart from order numbers by a word before them."""
    text = view.text
    for m in _NINE.finditer(text, ws, we):
        value, pos = m.group(), m.start()
        if view.has_context(pos, _SSN_WORDS) and v.ssn(value):
            hits.append(Hit("ssn", pos, m.end()))
        elif view.has_context(pos, _ABA_WORDS) and v.aba(value):
            hits.append(Hit("aba_routing", pos, m.end()))
        elif view.has_context(pos, _PASSPORT_WORDS):
            hits.append(Hit("passport", pos, m.end()))
    for m in _TEN.finditer(text, ws, we):
        value, pos = m.group(), m.start()
        if view.has_context(pos, _NPI_WORDS) and v.npi(value):
            hits.append(Hit("npi", pos, m.end()))
        elif view.has_context(pos, _PHONE_WORDS) and _phone(value, "US"):
            hits.append(Hit("phone", pos, m.end()))
    for m in _NANP_SPACED.finditer(text, ws, we):
        if view.has_context(m.start(), _PHONE_WORDS) and _phone(m.group(), "US"):
            hits.append(Hit("phone", m.start(), m.end()))
    for m in _EIN.finditer(text, ws, we):
        if view.has_context(m.start(), _EIN_WORDS) and v.ein(m.group()):
            hits.append(Hit("ein", m.start(), m.end()))


def find_numbers(view: TextView, hits: list[Hit]) -> None:
    for m in _CLUSTER.finditer(view.classes):
        _scan_cluster(view, m.start(), m.end(), hits)
    for m in _QUAD.finditer(view.classes):
        _ipv4(view, max(0, m.start() - 2), m.end() + 2, hits)
