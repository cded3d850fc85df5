"""PII edge cases: ITIN group ranges, phones in a phone layout, IBAN national checks."""

from __future__ import annotations

import pytest
from stdnum import iban as stdnum_iban

from proxilion.inspect.scanner import Scanner

SCANNER = Scanner()


def _types(text: str) -> list[tuple[str, str]]:
    return [(h.type, text[h.start:h.end]) for h in SCANNER.scan(text)]


def _iban(country: str, bban: str) -> str:
    """An IBAN with correct ISO 13616 mod-97 check digits around C{bban}."""
    return country + stdnum_iban.calc_check_digits(country + "00" + bban) + bban


# --- ITIN: 9XX-XX-XXXX with the group (4th-5th digits) in 50-65, 70-88, 90-92, 94-99 ---

@pytest.mark.parametrize("value", [
    "912-50-1234", "912-57-1234", "912-65-1234", "900-70-0001", "988-88-1234",
    "912-90-3456", "912-92-3456", "912-94-3456", "999-99-9999", "912 78 1234",
])
def test_itin_in_the_irs_group_ranges_is_found(value):
    assert _types(f"Her ITIN is {value} for the return.") == [("itin", value)]


@pytest.mark.parametrize("value", [
    "912-49-1234", "912-66-1234", "912-69-1234", "912-89-1234", "912-93-1234", "912-00-1234", "912-10-1234",
])
def test_nine_hundreds_outside_the_itin_groups_are_neither_itin_nor_ssn(value):
    assert _types(f"Her ITIN is {value} for the return.") == []
    assert _types(f"SSN {value} on file") == []


# --- Phones: a clear phone layout needs only a possible number; other forms stay strict ---

@pytest.mark.parametrize("value", [
    "(477) 738-0715",     # unassigned NANP area code, parenthesised
    "(477)738-0715",
    "+1 477 738 0715",    # + country code, grouped
    "+44 20 6429 5510",   # unassigned London range
    "+44 (0)20 6429 5510",
    "+1 (477) 738-0715",
    "+33 1 23 45 67 89",  # valid numbers are still found
    "(415) 555-2671",
])
def test_phone_layout_is_a_phone_even_where_the_range_is_unassigned(value):
    assert _types(f"Reach me at {value} tomorrow.") == [("phone", value)]


@pytest.mark.parametrize("text", [
    "Reach me at 477-738-0715 tomorrow.",  # dashed 3-3-4 without parentheses: still needs a valid number
    "call 4777380715 tonight",             # bare digits: strict
    "call 477 738 0715 tonight",           # spaced without +: strict
    "Reach me at +44 2064295510 tomorrow.",  # + but one bare run: strict
    "Reach me at +44 20 6429 551099 tomorrow.",  # too long to be possible
    "Reach me at +999 20 6429 5510 tomorrow.",   # no such country code
    "Reach me at (477) 738-071 tomorrow.",       # too short
])
def test_phone_lookalikes_outside_a_clear_layout_stay_strict(text):
    assert [t for t, _ in _types(text)] == []


@pytest.mark.parametrize("text", [
    "Revenue grew (2019) 450-2000 units across 12 regions.",
    "See pages 212-330 and 1998-2004 figures; build 4.2.1.1203 shipped.",
    "Order 123456789012 shipped in 3 boxes of 24 (total 72) on 2024-05-06.",
    "The ratio was (4:3) 1920x1080 at 60 Hz, +3 dB, 10 000 000 rows.",
    "Score +12 300 points (rank 477) in 2023 and 738-0715 km total.",
    "Temperature +20 64 29 in the log; ids (123) 456-7890 and (047) 738-0715.",
])
def test_ordinary_prose_with_numbers_gains_no_findings(text):
    assert _types(text) == []


# --- IBAN: ISO 13616 mod-97 and country length; national checks only where the rule is certain ---

@pytest.mark.parametrize("value", [
    _iban("DE", "370400440532013000"),
    _iban("FR", "20041010050500013M02606"),  # France's RIB key is not checked
    _iban("GB", "NWBK60161331926819"),
    # A Belgian bank code stdnum's bank list does not know: the national mod-97 holds, so it is found.
    _iban("BE", "112123456724"),
    _iban("ES", "21000418450200051332"),  # Spanish CCC check digits hold
    _iban("NO", "86011117947"),           # Norwegian mod-11 holds
])
def test_mod97_valid_iban_with_the_country_length_is_found(value):
    assert _types(f"Pay into IBAN {value} please.") == [("iban", value)]


@pytest.mark.parametrize("value", [
    _iban("BE", "112123456725"),          # Belgian national mod-97 fails
    _iban("ES", "21000418460200051332"),  # Spanish CCC check digits fail
    _iban("NO", "86011117948"),           # Norwegian mod-11 fails
    _iban("ME", "505000012345678952"),    # Montenegro national mod-97 fails
    _iban("DE", "3704004405320130001"),   # one character too long for Germany
    "DE89370400440532013001",             # mod-97 fails
])
def test_iban_failing_mod97_length_or_a_certain_national_rule_is_not_found(value):
    assert _types(f"Pay into IBAN {value} please.") == []
