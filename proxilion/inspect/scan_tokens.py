"""Detectors for credentials that are long tokens: cloud, SaaS and AI provider keys, JWTs, AWS secrets.

Every such key is at least 16 key characters long, so only runs of 16+ such
characters (found by the trigger scan) are examined.
"""

from __future__ import annotations

import re

from proxilion.inspect import validators as v
from proxilion.inspect.textview import Hit, TextView
from proxilion.inspect.triggers import Pass, Trigger

_MIN_RUN = 16
# A run of key characters, reported once: at its 16th character.
_TRIGGER = Trigger(rb"(?:^|[^A-Za-z0-9_+/=.\-])[A-Za-z0-9_+/=.\-]{%d}" % _MIN_RUN)
_RUN_REST = re.compile(rb"[A-Za-z0-9_+/=.\-]*")

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


def find_tokens(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    for end in ends:
        for m in _KEYS.finditer(view.text, end - _MIN_RUN, _RUN_REST.match(view.raw, end).end()):
            if _valid(view, m.lastgroup, m):
                hits.append(Hit(m.lastgroup, m.start(), m.end()))


PASSES = (Pass((_TRIGGER,), find_tokens),)
