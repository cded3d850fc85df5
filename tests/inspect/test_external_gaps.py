"""Gaps the external evaluation set (tests/data/external) showed, each pinned by a small case.

Values are generated here or are the upstream examples themselves; the whole
set is scored by tests/inspect/test_external_set.py.
"""

from __future__ import annotations

import random
import string

import pytest

from proxilion.inspect.scanner import Scanner

SCANNER = Scanner()
_RNG = random.Random(19)


def _types(text: str) -> list[tuple[str, str]]:
    return [(h.type, text[h.start:h.end]) for h in SCANNER.scan(text)]


def _chars(alphabet: str, n: int) -> str:
    return "".join(_RNG.choice(alphabet) for _ in range(n))


_B62 = string.ascii_letters + string.digits


@pytest.mark.parametrize("token", [
    "glptt-" + _chars("0123456789abcdef", 40),
    "gloas-" + _chars(_B62 + "_-", 64),
    "glimt-" + _chars(_B62, 25),
    "glsoat-" + _chars(_B62, 20),
    "GR1348941" + _chars(_B62, 20),
    "glpat-" + _chars(_B62, 27) + ".01.1" + _chars("0123456789abcdefghijklmnopqrstuvwxyz", 8),
])
def test_gitlab_tokens_of_their_documented_length_are_found(token):
    assert _types(f"token {token} here") == [("gitlab_token", token)]


@pytest.mark.parametrize("token", [
    "glptt-" + _chars(_B62, 40),                          # trigger tokens are hex
    "gloas-" + _chars(_B62, 44),                          # OAuth secrets are 64
    "glimt-" + _chars(_B62, 35),                          # incoming-mail tokens are 25
    "glsoat-" + _chars(_B62, 51),                         # at most 50
    "GR1348941PREfix_helloworld380_testin_pretty_long_token_long_",
])
def test_gitlab_tokens_of_another_length_are_not(token):
    assert not any(t == "gitlab_token" for t, _ in _types(f"token {token} here"))


def test_openai_marker_with_an_edited_letter_is_a_made_up_key():
    assert _types("sk-proj-Xi8tdMjHV6pmbBbwilTeT4BlbkFJ3UDnpdEwNNm6wVBpYM0o") == []
    real = "sk-proj-" + _chars(_B62, 20) + "T3BlbkFJ" + _chars(_B62, 20)
    assert _types(real) == [("openai_api_key", real)]


def test_pypi_macaroon_cut_short_is_not_a_token():
    short = "pypi-AgEIcHlwaS5vcmcCJDU3OTM1MjliLWIyYTYtNDEwOC05NzRkLTM0MjNiNmEwNWIzYgACF1sxLFsibWluaW1h"
    assert _types(short) == []


def test_stripe_prod_restricted_key_is_a_live_key():
    key = "rk_prod_" + _chars(_B62, 99)
    assert _types(f"STRIPE={key}") == [("stripe_key", key)]


def test_telegram_documentation_token_is_a_placeholder():
    assert _types("https://api.telegram.org/bot110201543:AAHdqTcvCH1vGWJxfSe1ofSAs0K5PALDsaw/getMe") == []


def test_url_password_is_not_an_email_address():
    assert not any(t == "email" for t, _ in _types("clone https://bob:Xk9mq2Lp7w@git.acme.io/repo.git"))
    assert _types("write to jane.doe@acme.io") == [("email", "jane.doe@acme.io")]


def test_punycode_top_level_domain_is_an_email_domain():
    assert _types("a@xn--d1acufc.xn--p1ai") == [("email", "a@xn--d1acufc.xn--p1ai")]


@pytest.mark.parametrize("number", ["5019717010103742", "6759649826438453", "6759 6498 2643 8453"])
def test_maestro_and_dankort_cards(number):
    assert _types(f"card {number} please") == [("credit_card", number)]


def test_atlassian_legacy_token_needs_its_context():
    token = "HXe8DGg1iJd2AopzyxkFB7F2"
    assert _types(f"JIRA_API_TOKEN={token}") == [("atlassian_token", token)]
    assert _types(f"confluence token: {token}") == [("atlassian_token", token)]
    assert _types(f"build id {token} passed") == []
    assert _types("jira ticket ABCDEFGHIJKLMNOPQRSTUVWX is open") == []


def test_iban_grouped_with_dashes():
    assert _types("pay AL47-2121-1009-0000-0002-3569-8741 now") == [("iban", "AL47-2121-1009-0000-0002-3569-8741")]
    assert _types("pay AL47-2121-1009-0000-0002-3569-8740 now") == []  # mod-97 fails
    assert _types("ticket AB12-ABCD-1234-5678") == []


@pytest.mark.parametrize("token", [
    "GR1348941" + _chars(_B62, 20),
    "glpat-" + _chars(_B62, 20),
    "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe." + _chars(_B62, 30),
])
def test_a_token_ending_a_sentence_is_found_without_its_full_stop(token):
    """A full stop after a token whose body may hold dots ends the sentence, not the match (the
    streamed property test found `GR1348941...` followed by '. ' missed)."""
    (found,) = _types(f"the token is {token}. Keep it safe.")
    assert found[1] == token
