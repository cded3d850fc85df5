"""Detectors for credentials that are long tokens: cloud, SaaS and AI provider keys, JWTs, AWS secrets.

Every such key lies in a run of 16+ key characters, and the whole run is
matched against the key patterns. The trigger scan reports the runs worth it:
those holding a key's literal prefix (AKIA..., ghp_, sk-, eyJ...), and those
starting within 200 characters after a word an AWS secret needs before it.
"""

from __future__ import annotations

import re

from proxilion.inspect import validators as v
from proxilion.inspect.textview import Hit, TextView
from proxilion.inspect.triggers import Pass, Trigger

_MIN_RUN = 16
_TRIGGERS = (
    Trigger(rb"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z2-7]{16}"
            rb"|gh[pousr]_|github_pat_|sk-|xox[abprs]-|[sr]k_live_|AIza|eyJ"),
    Trigger(rb"aws|secret|(?:akia|asia)[a-z2-7]{16}", caseless=True),
)
_KEY_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+/=.-")
_RUN = re.compile(rb"[A-Za-z0-9_+/=.\-]{%d,}" % _MIN_RUN)
_RUN_REST = re.compile(rb"[A-Za-z0-9_+/=.\-]*")
_CONTEXT_REACH = 200
_AWS_WORD_ENDINGS = ((b"aws", 3), (b"secret", 6))

_KEYS = re.compile(
    r"(?P<aws_access_key_id>(?<![A-Za-z0-9])"
    r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z2-7]{16}(?![A-Za-z0-9]))"
    r"|(?P<github_token>(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{50,255})"
    r"(?![A-Za-z0-9_]))"
    r"|(?P<anthropic_api_key>(?<![A-Za-z0-9_-])sk-ant-[A-Za-z0-9_-]{32,400})"
    r"|(?P<openai_api_key>(?<![A-Za-z0-9_-])sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,400}(?![A-Za-z0-9_-]))"
    r"|(?P<slack_token>(?<![A-Za-z0-9])xox[abprs]-[A-Za-z0-9-]{10,250})"
    r"|(?P<stripe_key>(?<![A-Za-z0-9])[sr]k_live_[A-Za-z0-9]{20,250})"
    r"|(?P<google_api_key>(?<![A-Za-z0-9])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-]))"
    r"|(?P<jwt>(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*(?![A-Za-z0-9_-]))"
    r"|(?P<aws_secret_access_key>(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=]))",
    re.ASCII,
)
# "aws"/"secret" as words (aws_secret_access_key included), or an access key id nearby.
_AWS_SECRET_WORDS = re.compile(rb"(?<![a-z])(?:aws|secret)|(?<![a-z0-9])(?:akia|asia)[a-z2-7]{16}(?![a-z0-9])")


def _mixed(value: str) -> bool:
    """Random keys mix digits with both cases; words, slugs and hex digests do not."""
    return (any(c.isdigit() for c in value) and any(c.isupper() for c in value)
            and any(c.islower() for c in value))


def _valid(view: TextView, kind: str, m: re.Match) -> bool:
    value = m.group()
    if kind == "jwt":
        return v.jwt(value)
    if kind in ("openai_api_key", "anthropic_api_key"):
        body = value.split("-", 2)[-1]
        return _mixed(body) and v.entropy(body) >= 3.5
    if kind == "aws_secret_access_key":
        return (_mixed(value) and v.entropy(value) >= 4.0
                and view.has_context(m.start(), _AWS_SECRET_WORDS, 200))
    if kind in ("slack_token", "github_token", "stripe_key"):
        return any(c.isdigit() for c in value)
    return True


def _aws_word_start(raw: bytes, end: int) -> int:
    """Start of the AWS context word (or access key id) ending at `end`, or -1 for a key prefix."""
    tail = raw[max(0, end - 20):end].lower()
    for word, size in _AWS_WORD_ENDINGS:
        if tail.endswith(word):
            return end - size
    return end - 20 if tail.startswith((b"akia", b"asia")) else -1


def find_tokens(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    raw = view.raw
    runs: dict[int, int] = {}  # start -> end of each key-character run to match, deduplicated
    run_start = run_stop = -1
    for end in ends:
        if end > run_stop:  # not in the run found for the previous trigger
            run_start = end - 1
            while run_start > 0 and raw[run_start - 1] in _KEY_CHARS:
                run_start -= 1
            run_stop = _RUN_REST.match(raw, end).end()
        word = _aws_word_start(raw, end)
        if word < 0:
            runs[run_start] = run_stop
        else:
            # Runs that may start where this word still counts as the secret's context.
            for m in _RUN.finditer(raw, run_start, word + _CONTEXT_REACH + _MIN_RUN):
                runs[m.start()] = _RUN_REST.match(raw, m.end()).end()
    for start, stop in sorted(runs.items()):
        if stop - start >= _MIN_RUN:
            for m in _KEYS.finditer(view.text, start, stop):
                if _valid(view, m.lastgroup, m):
                    hits.append(Hit(m.lastgroup, m.start(), m.end()))


PASSES = (Pass(_TRIGGERS, find_tokens),)
