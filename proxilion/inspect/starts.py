"""Where, inside a plain word ending a streamed text, a value the policy acts on may start.

A streamed text ending in a word of letters ("Tues", "agreed") is held only if
the word may grow into a value that the policy redacts or blocks in that
direction; a value it only logs may leave as it arrives. Each detector family
declares the shapes its values can have while they are still a word of letters
(see scan_tokens, scan_structured, scan_codes, scan_context, scan_credentials):

- a fixed prefix, or the start of one ("s" and "sk" of "sk-", "AIza", "eyJ");
- letters the value itself may begin with (AWS key ids: "A" and capitals;
  New Relic license keys: hex letters; IBAN country codes; an email's local part);
- a value named by a context word before it ("password is", "aws", "jira").

Words with digits or token punctuation are held whole by tails, as before; a
type missing here is held as any word may be. Base64 and percent-encoded runs
are the exception the shapes do not cover: a plain word that ended an earlier
event and is glued to such a run has left, and the rest of the run is redacted.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

import attrs

from proxilion.inspect.catalog import BUILTIN
from proxilion.inspect.policy import Rule
from proxilion.inspect.scan_credentials import SECRET_NAME_SUFFIXES

_A = re.ASCII
# Letters (in any case) as the detectors' ASCII classes read them.
_ANY = "[A-Za-z]+"
# The detectors' left edge of a value: it cannot start inside a word.
_EDGE = "(?<![A-Za-z0-9])"


def _prefixes(*literals: str) -> str:
    """A word that is a start of one of the prefixes, or (a prefix of letters only) goes on after it."""
    alternatives: set[str] = set()
    for literal in literals:
        letters = re.sub("[^A-Za-z].*", "", literal, flags=re.S)
        alternatives.update(re.escape(letters[:n]) for n in range(1, len(letters) + 1))
        if letters == literal:
            alternatives.add(re.escape(literal) + "[A-Za-z]*")
    return _EDGE + "(?:" + "|".join(sorted(alternatives, key=lambda a: (-len(a), a))) + ")"


_GITLAB = ("glpat-", "gldt-", "glrt-", "glrtr-", "glptt-", "glft-", "glimt-", "glagent-", "glcbt-", "gloas-",
           "glsoat-", "glffct-", "GR1348941")
# Each type's shapes as a word of letters; types with no entry here are held as any word.
SHAPES: dict[str, str] = {
    "credit_card": "", "ssn": "", "itin": "", "aba_routing": "", "ein": "", "npi": "", "phone": "",
    "mbi": "", "telegram_bot_token": "", "database_url": "", "url_credentials": "", "azure_sas_token": "",
    "gcp_service_account_key": "", "twilio_auth_token": "", "datadog_api_key": "", "datadog_app_key": "",
    "aws_secret_access_key": "", "generic_secret": "", "swift_bic": "", "date_of_birth": "",
    "email": _ANY,
    "ip_address": _EDGE + "[A-Fa-f]+",  # an IPv6 address's first group
    # A code's capitals, from the start of their run (see scan_codes).
    "iban": _EDGE + "[A-Z]+",
    "dea": _EDGE + "[A-Z]+",
    "passport": _EDGE + "[A-Z]+",
    "aws_access_key_id": _EDGE + "A[A-Z]*",
    "github_token": _prefixes("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    "openai_api_key": _prefixes("sk-"),
    "anthropic_api_key": _prefixes("sk-"),
    "slack_token": _prefixes(*(f"xox{c}-" for c in "abeoprs"), "xapp-"),
    "slack_webhook_url": _prefixes("hooks."),
    "stripe_key": _prefixes("sk_", "rk_"),
    "stripe_test_key": _prefixes("sk_", "rk_"),
    "google_api_key": _prefixes("AIza"),
    "jwt": _prefixes("eyJ"),
    "kubernetes_service_account_token": _prefixes("eyJ"),
    "private_key": "PuTTY|PuTT|PuT|Pu|P",  # PEM and SSH2 blocks open with dashes
    "gitlab_token": _prefixes(*_GITLAB),
    "twilio_api_key": _prefixes("SK"),
    "sendgrid_api_key": _prefixes("SG."),
    "mailgun_api_key": _prefixes("key-"),
    "huggingface_token": _prefixes("hf_", "api_org_"),
    "npm_token": _prefixes("npm_"),
    "pypi_token": _prefixes("pypi-"),
    "dockerhub_token": _prefixes("dckr_"),
    "azure_storage_account_key": _prefixes("AccountKey="),
    "azure_shared_access_key": _prefixes("SharedAccessKey="),
    "newrelic_key": _prefixes("NRAK-", "NRII-", "NRIQ-", "NRRA-", "NRJS-") + "|" + _EDGE + "[a-f]+",
    "shopify_token": _prefixes("shpat_", "shpca_", "shppa_", "shpss_"),
    "atlassian_token": _prefixes("ATATT3", "ATCTT3", "ATBB"),
    "square_token": _prefixes("sq0atp-", "sq0csp-", "EAAA"),
    "braintree_access_token": _prefixes("access_token$"),
    "braintree_sandbox_token": _prefixes("access_token$"),
    "age_secret_key": _prefixes("AGE-"),
    "discord_webhook_url": _prefixes("discord.", "discordapp."),
    # The base64 of a numeric user id: its first two letters (see scan_tokens' trigger).
    "discord_bot_token": _EDGE + "(?:(?:M[Tjz]|N[DTjz]|O[DT])[A-Za-z]*|[MNO])",
}
# Context words, seen in the text before a word, that make it a value of the type whatever its letters.
CONTEXTS: dict[str, str] = {
    "generic_secret": "|".join(map(re.escape, SECRET_NAME_SUFFIXES)) + r"|pass|pw|(?<!\S)-[pu]\b|--user",
    "aws_secret_access_key": r"aws|secret|akia|asia",
    "twilio_auth_token": r"twilio|ac[0-9a-f]{32}",
    "datadog_api_key": r"datadog|dd[_-]ap",
    "datadog_app_key": r"datadog|dd[_-]ap",
    "atlassian_token": r"jira|atlassian|confluence",
    "swift_bic": r"swift|bic",
    "passport": r"passport",
    "date_of_birth": r"born|birth|dob|d\.o\.b",
}
# How far before a word its context word may be (scan_tokens' _CONTEXT_REACH, the widest).
CONTEXT_REACH = 200
# A word of letters, perhaps in an opening quote or bracket and closed by punctuation ("slowly).").
_WORD = re.compile(r"[\"'(\[]?([A-Za-z]+)[.,;:)\]\"']{0,2}\Z", _A)


@attrs.frozen
class WordRule:
    """The shapes of the values a policy acts on, in one direction, as a word of letters."""

    starts: re.Pattern[str] | None
    context: re.Pattern[str] | None

    def hold_in(self, text: str, run: int, before: str = "") -> int:
        """Where in the word C{text[run:]} a value may start (C{len(text)}: nowhere), or C{run}
        when it is not a plain word; C{before} is the text already sent before C{text}."""
        word = _WORD.match(text, run)
        if word is None:
            return run
        if self.context is not None:
            seen = text[max(0, run - CONTEXT_REACH):run]
            if len(seen) < CONTEXT_REACH and before:
                seen = before[len(seen) - CONTEXT_REACH:] + seen
            if self.context.search(seen.lower()):
                return run
        if self.starts is None:
            return len(text)
        # Only the letters can start a value; the punctuation around them ends or opens one.
        letters = text[:word.end(1)]
        m = self.starts.search(letters, word.start(1))
        return len(text) if m is None else m.start()


@functools.lru_cache(maxsize=64)
def word_rule(types: frozenset[str]) -> WordRule:
    shapes = [SHAPES.get(t, _ANY) for t in sorted(types)]
    shapes = [s for s in shapes if s]
    contexts = [CONTEXTS[t] for t in sorted(types) if t in CONTEXTS]
    return WordRule(re.compile("(?:" + "|".join(shapes) + r")\Z", _A) if shapes else None,
                    re.compile("|".join(contexts), _A) if contexts else None)


@functools.lru_cache(maxsize=256)
def acted_types(rules: tuple[Rule, ...]) -> frozenset[str]:
    """The built-in types some rule in C{rules} may redact or block (any min_count, any priority:
    broader than what decide gives, never narrower)."""
    return frozenset(t for t, d in BUILTIN.items()
                     if any(r.action in ("redact", "block") and r.selects(t, d.category, d.severity) for r in rules))


def words_for(rules: Iterable[Rule]) -> WordRule:
    return word_rule(acted_types(tuple(rules)))
