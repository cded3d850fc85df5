"""Disguised values (full-width digits, zero-width characters, tag characters) are found, and redacted in place."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

import streams
from proxilion.inspect.fold import fold
from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import load_policy, parse_policy

DEFAULT = Inspector(load_policy(None))
REDACT_ALL = Inspector(parse_policy({"rules": [{"id": "redact", "match": {"types": ["credit_card", "email", "aws_access_key_id"]},
                                                 "action": "redact"},
                                                {"id": "redact-out", "direction": "response",
                                                 "match": {"types": ["credit_card"]}, "action": "redact"}]}, environ={}))

FULL_WIDTH_CARD = "４１１１ １１１１ １１１１ １１１１"
ZERO_WIDTH_CARD = "4111\u200b1111\u200b1111\u200b1111"
TAG_CARD = "".join(chr(0xE0000 + ord(c)) for c in "4111111111111111")
ARABIC_INDIC_CARD = "٤١١١ ١١١١ ١١١١ ١١١١"


def _chat(text: str) -> bytes:
    return json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}).encode()


# Invisible characters that are not format characters: variation selectors (as emoji use them),
# the combining grapheme joiner, a Mongolian variation selector, a Hangul filler, an enclosing keycap.
INVISIBLE_CARDS = ["\ufe0f".join("4111111111111111"), "\u034f".join("4111111111111111"),
                   "4111\u180b1111\u180b1111\u180b1111", "4111\u31641111\u31641111\u31641111",
                   "\u20e3".join("4111111111111111"), "\U000E0101".join("4111111111111111")]
# Dashes from word processors and typesetting: non-breaking hyphen, en dash, minus sign.
DASHED_CARDS = ["4111\u20111111\u20111111\u20111111", "4111\u20131111\u20131111\u20131111",
                "4111\u22121111\u22121111\u22121111"]


@pytest.mark.parametrize("card", [FULL_WIDTH_CARD, ZERO_WIDTH_CARD, TAG_CARD, ARABIC_INDIC_CARD, *INVISIBLE_CARDS, *DASHED_CARDS])
def test_disguised_card_numbers_are_blocked(card):
    verdict = DEFAULT.inspect_request("openai", "/v1/chat/completions", _chat(f"my card is {card}, thanks"))
    assert verdict.action == "block"
    assert [f.type for f in verdict.findings] == ["credit_card"]


@pytest.mark.parametrize("value, kind", [(FULL_WIDTH_CARD, "CREDIT_CARD"), (ZERO_WIDTH_CARD, "CREDIT_CARD"),
                                         ("jane.roe＠example.org", "EMAIL"), ("AKIA\u200bZ3MVJQ5T4XW7PLQA", "AWS_ACCESS_KEY_ID")])
def test_disguised_values_are_redacted_in_the_original_text(value, kind):
    text = f"café: {value} — naïve"
    verdict = REDACT_ALL.inspect_request("openai", "/v1/chat/completions", _chat(text))
    assert verdict.action == "redact"
    sent = json.loads(verdict.body)["messages"][0]["content"]
    assert sent == f"café: [REDACTED:{kind}] — naïve"


def test_disguised_card_split_across_stream_events_is_redacted():
    text = f"Your card {FULL_WIDTH_CARD} is on file."
    data = streams.openai([text[:14], text[14:22], text[22:]])
    redactor = REDACT_ALL.stream_redactor("openai", "/v1/chat/completions")
    out = redactor.feed(data) + redactor.finish()
    assert streams.text_of("openai", out) == "Your card [REDACTED:CREDIT_CARD] is on file."


def test_ascii_text_is_not_folded():
    assert fold("plain ascii 4111 1111 1111 1111") is None


@given(st.text(alphabet=st.sampled_from(["a", "4", " ", "\u200b", "\u00ad", "\ufeff", "４", "é", "\U000E0031"]), max_size=40))
def test_every_folded_character_maps_back_to_the_original_character_it_came_from(text):
    folded = fold(text)
    if folded is None:
        return
    for i, ch in enumerate(folded.text):
        start, end = folded.span(i, i + 1)
        assert end == start + 1
        assert fold(text[start]) is None and text[start] == ch or fold(text[start]).text == ch


@pytest.mark.parametrize("ssn", ["078\u201105\u20111121", "078\u201305\u20131121", "078\u221205\u22121121"])
def test_ssn_with_typographic_dashes_is_blocked(ssn):
    verdict = DEFAULT.inspect_request("openai", "/v1/chat/completions", _chat(f"SSN {ssn} on the form"))
    assert [f.type for f in verdict.findings] == ["ssn"]


def test_email_with_a_variation_selector_is_redacted_whole():
    verdict = REDACT_ALL.inspect_request("openai", "/v1/chat/completions", _chat("mail jane.doe@exa\ufe0fmple.com today"))
    assert json.loads(verdict.body)["messages"][0]["content"] == "mail [REDACTED:EMAIL] today"


def test_cyrillic_and_greek_letters_drawn_like_latin_ones_do_not_hide_a_key():
    from proxilion.inspect.scanner import Scanner
    text = "key AKIAZ3MVJQ5T4XW7PLQ\u0410 and AKIAZ3MV\u0399Q5T4XW7PLQA here"  # Cyrillic А, Greek Ι
    hits = Scanner().scan(text)
    assert [h.type for h in hits] == ["aws_access_key_id", "aws_access_key_id"]
    assert [text[h.start:h.end] for h in hits] == ["AKIAZ3MVJQ5T4XW7PLQ\u0410", "AKIAZ3MV\u0399Q5T4XW7PLQA"]


def test_russian_and_greek_prose_raise_no_findings():
    from proxilion.inspect.scanner import Scanner
    text = ("Привет! Отчёт о продажах за третий квартал готов, проверьте раздел о рисках. "
            "Καλημέρα, η αναφορά για τον ΠΡΟΫΠΟΛΟΓΙΣΜΟ είναι έτοιμη. ") * 20
    assert Scanner().scan(text) == []
