"""Detectors for credentials that are long tokens: cloud, SaaS and AI provider keys, JWTs, AWS secrets.

Every such key lies in a run of 16+ key characters, and the whole run is
matched against the key patterns. The trigger scan reports the runs worth it:
those holding a key's literal prefix (AKIA..., ghp_, glpat-, sk-, eyJ..., the
base64 of digits a Discord bot token starts with), and those starting within
200 characters after a word that a key without a prefix needs before it
("aws"/"secret" for AWS secrets, "datadog", "twilio", "jira"/"atlassian"/
"confluence" for Atlassian's older 24-character API tokens; "discord" for webhooks).

A token whose random part is a placeholder (`ghp_xxxx...`, `...EXAMPLE`,
`sk_live_1234567890abcdef...`) is no finding, and a token whose vendor embeds a
checksum (GitHub, npm, age) must carry a correct one.
"""

from __future__ import annotations

import base64
import binascii
import re

from proxilion.inspect import validators as v
from proxilion.inspect.placeholders import is_placeholder_token
from proxilion.inspect.textview import Hit, TextView, match_end
from proxilion.inspect.triggers import Pass, Trigger

_MIN_RUN = 16
_TRIGGERS = (
    Trigger(rb"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z2-7]{16}"
            rb"|gh[pousr]_|github_pat_|sk-|xox[abeoprs]-|xapp-|hooks\.slack\.com/|[sr]k_(?:live|test|prod)_|AIza|eyJ"
            rb"|gl(?:pat|dt|rt|rtr|ptt|ft|imt|agent|cbt|oas|soat|ffct)-|GR1348941"
            rb"|SK[0-9a-fA-F]{32}|SG\.[A-Za-z0-9_-]{22}\.|key-[0-9a-f]{32}|hf_|api_org_|npm_|pypi-AgE|dckr_(?:pat|oat)_"
            rb"|AccountKey=|SharedAccessKey=|NR(?:AK|II|IQ|RA|JS)-|NRAL|shp(?:at|ca|pa|ss)_|ATATT3|ATCTT3|ATBB"
            rb"|sq0(?:atp|csp)-|EAAA[A-Za-z0-9_-]{60}|AGE-SECRET-KEY-1|AC[0-9a-f]{32}"
            # Base64 of 12 ASCII digits, as a Discord bot token starts: each group of four characters
            # holds three digits, which fixes what each of the four can be.
            rb"|(?:M[Tjz]|N[DTjz]|O[DT])[AEIMQUYcgk][w-z0-5](?:[MNO][DTjz][AEIMQUYcgk][w-z0-5]){3}"),
    Trigger(rb"aws|secret|datadog|dd[_-]ap[ip]|twilio|discord|jira|atlassian|confluence|(?:akia|asia)[a-z2-7]{16}",
            caseless=True),
)
_KEY_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+/=.-")
_RUN = re.compile(rb"[A-Za-z0-9_+/=.\-]{%d,}" % _MIN_RUN)
_RUN_REST = re.compile(rb"[A-Za-z0-9_+/=.\-]*")
_CONTEXT_REACH = 200
# Context words the second trigger reports, and their lengths (where each starts).
_CONTEXT_WORDS = ((b"aws", 3), (b"secret", 6), (b"datadog", 7), (b"dd_api", 6), (b"dd-api", 6), (b"dd_app", 6),
                  (b"dd-app", 6), (b"twilio", 6), (b"discord", 7), (b"jira", 4), (b"atlassian", 9), (b"confluence", 10))

_KEYS = re.compile(
    r"(?P<aws_access_key_id>(?<![A-Za-z0-9])"
    r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z2-7]{16}(?![A-Za-z0-9]))"
    r"|(?P<github_token>(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{50,255})"
    r"(?![A-Za-z0-9_]))"
    r"|(?P<anthropic_api_key>(?<![A-Za-z0-9_-])sk-ant-[A-Za-z0-9_-]{32,400})"
    r"|(?P<openai_api_key>(?<![A-Za-z0-9_-])sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,400}(?![A-Za-z0-9_-]))"
    r"|(?P<slack_token>(?<![A-Za-z0-9])(?:xoxe\.xox[bp]-|xox[abeoprs]-|xapp-)[A-Za-z0-9-]{10,250})"
    r"|(?P<slack_webhook_url>(?<![A-Za-z0-9.])hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{20,200})"
    r"|(?P<stripe_key>(?<![A-Za-z0-9])[sr]k_(?:live|test|prod)_[A-Za-z0-9]{20,250})"
    r"|(?P<google_api_key>(?<![A-Za-z0-9])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-]))"
    r"|(?P<jwt>(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*(?![A-Za-z0-9_-]))"
    r"|(?P<gitlab_token>(?<![A-Za-z0-9_-])(?:gl(?:pat|dt|rt|rtr|ptt|ft|imt|agent|cbt|oas|soat|ffct)-[A-Za-z0-9_.-]{19,299}[A-Za-z0-9_-]"
    r"|GR1348941[A-Za-z0-9_-]{20,80})(?![A-Za-z0-9_-]|\.[A-Za-z0-9_-]))"  # a full stop may end the sentence
    r"|(?P<twilio_api_key>(?<![A-Za-z0-9])SK[0-9a-fA-F]{32}(?![A-Za-z0-9]))"
    r"|(?P<sendgrid_api_key>(?<![A-Za-z0-9])SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-]))"
    r"|(?P<mailgun_api_key>(?<![A-Za-z0-9])key-[0-9a-f]{32}(?![A-Za-z0-9]))"
    r"|(?P<huggingface_token>(?<![A-Za-z0-9_])(?:hf_|api_org_)[A-Za-z]{34}(?![A-Za-z0-9_]))"
    r"|(?P<npm_token>(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9_]))"
    r"|(?P<pypi_token>(?<![A-Za-z0-9_-])pypi-AgE(?:IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{70,1000})"
    r"|(?P<dockerhub_token>(?<![A-Za-z0-9_])dckr_(?:pat|oat)_[A-Za-z0-9_-]{27,64}(?![A-Za-z0-9_-]))"
    r"|(?P<azure_storage_account_key>(?<=AccountKey=)[A-Za-z0-9+/]{86}==)"
    r"|(?P<azure_shared_access_key>(?<=SharedAccessKey=)[A-Za-z0-9+/]{43}=)"
    r"|(?P<newrelic_key>(?<![A-Za-z0-9_-])(?:NRAK-[A-Z0-9]{27}|NR(?:II|IQ)-[A-Za-z0-9_-]{32}|NRRA-[a-f0-9]{42}"
    r"|NRJS-[a-f0-9]{19})(?![A-Za-z0-9_-])|(?<![A-Za-z0-9])[a-f0-9]{36}NRAL(?![A-Za-z0-9]))"
    r"|(?P<shopify_token>(?<![A-Za-z0-9_])shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}(?![A-Za-z0-9_]))"
    r"|(?P<atlassian_token>(?<![A-Za-z0-9_-])(?:AT[AC]TT3[A-Za-z0-9_=-]{150,300}|ATBB[A-Za-z0-9]{32})(?![A-Za-z0-9_=-]))"
    r"|(?P<square_token>(?<![A-Za-z0-9_-])(?:sq0atp-[A-Za-z0-9_-]{22}|sq0csp-[A-Za-z0-9_-]{43}|EAAA[A-Za-z0-9_-]{60})"
    r"(?![A-Za-z0-9_-]))"
    r"|(?P<age_secret_key>(?<![A-Za-z0-9-])AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}(?![A-Za-z0-9]))"
    r"|(?P<discord_webhook_url>(?<![A-Za-z0-9.])discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,68}"
    r"(?![A-Za-z0-9_-]))"
    r"|(?P<discord_bot_token>(?<![A-Za-z0-9_.-])[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,38}"
    r"(?![A-Za-z0-9_-]|\.[A-Za-z0-9_-]))"
    # Without a prefix: hex keys named by the context before them (Datadog, Twilio).
    r"|(?P<hex32>(?<![A-Za-z0-9])[a-f0-9]{32}(?![A-Za-z0-9]))"
    r"|(?P<hex40>(?<![A-Za-z0-9+/])[a-f0-9]{40}(?![A-Za-z0-9+/=]))"
    r"|(?P<alnum24>(?<![A-Za-z0-9_+/.-])[A-Za-z0-9]{24}(?![A-Za-z0-9_+/=.-]))"
    r"|(?P<aws_secret_access_key>(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=]))",
    re.ASCII,
)
# "aws"/"secret" as words (aws_secret_access_key included), or an access key id nearby.
_AWS_SECRET_WORDS = re.compile(rb"(?<![a-z])(?:aws|secret)|(?<![a-z0-9])(?:akia|asia)[a-z2-7]{16}(?![a-z0-9])")
# A 32-hex value is Twilio's auth token after "twilio" or an account SID (AC + 32 hex) ...
_TWILIO_WORDS = re.compile(rb"(?<![a-z])twilio|(?<![a-z0-9])ac[0-9a-f]{32}(?![a-z0-9])")
# ... and a Datadog API key (32 hex) or application key (40 hex) after Datadog's names.
_DATADOG_WORDS = re.compile(rb"(?<![a-z])(?:datadog|dd[_-]api|dd[_-]app)")
# Atlassian API tokens made before 2023 are 24 letters and digits with no prefix.
_ATLASSIAN_WORDS = re.compile(rb"(?<![a-z])(?:jira|atlassian|confluence)")
# The fixed prefix of each family; what follows is the random part the placeholder rules judge.
_PREFIX = re.compile(
    r"gh[pousr]_|github_pat_|sk-(?:ant-|proj-|svcacct-|admin-)?|xoxe\.xox[bp]-|xox[a-z]-|xapp-|hooks\.slack\.com/"
    r"|[sr]k_(?:live|test|prod)_|AIza|gl[a-z]+-|GR1348941|SK|SG\.|key-|hf_|api_org_|npm_|pypi-AgE|dckr_(?:pat|oat)_"
    r"|NR[A-Z]{2}-|shp[a-z]{2}_|AT[AC]TT3|ATBB|sq0[a-z]{3}-|EAAA|AGE-SECRET-KEY-1|discord(?:app)?\.com/api/webhooks/"
    r"|A[A-Z]{3}(?=[A-Z2-7]{16}\Z)",
    re.ASCII,
)
_CHECKSUMMED = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "npm_")
# GitLab token kinds whose length GitLab's generator fixes (SecureRandom.hex(20) for trigger tokens,
# hex(32) for OAuth secrets, 16 bytes in base 36 for incoming mail; gitleaks and detect-secrets agree);
# the others are Devise.friendly_token (20) or up to 50, longer only in the routable form with a '.'.
_GITLAB_LENGTHS = {"glimt-": (25, 25), "glptt-": (40, 40), "gloas-": (64, 64), "glagent-": (50, 1024)}
_HEX = frozenset("0123456789abcdef")


def _gitlab(value: str, body: str) -> bool:
    low, high = next((n for p, n in _GITLAB_LENGTHS.items() if value.startswith(p)), (20, 50))
    if value.startswith("glptt-") and not set(body) <= _HEX:
        return False
    return low <= len(body) <= high or ("." in body and low == 20)


def _mixed(value: str) -> bool:
    """Random keys mix digits with both cases; words, slugs and hex digests do not."""
    return (any(c.isdigit() for c in value) and any(c.isupper() for c in value)
            and any(c.islower() for c in value))


def _body(value: str) -> str:
    """The part of a token after its fixed prefix."""
    m = _PREFIX.match(value)
    return value[m.end():] if m else value


def _random(value: str) -> bool:
    """A token part that reads as generated: two kinds of characters, and 3 bits of entropy per
    character (2.5 under 24 characters, where even random hex rarely reaches 3)."""
    return v.character_kinds(value) >= 2 and v.entropy(value) >= (3.0 if len(value) >= 24 else 2.5)


def _discord_id(part: str) -> bool:
    """A Discord bot token starts with the bot's numeric user id in base64."""
    try:
        decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (ValueError, binascii.Error):
        return False
    return 17 <= len(decoded) <= 20 and decoded.isdigit()


def _kind(view: TextView, kind: str, m: re.Match[str]) -> str | None:
    """The type of the match, or None when it is a look-alike or a placeholder."""
    value = m.group()
    if kind == "jwt":
        return v.jwt_kind(value)
    if kind == "hex32":
        if view.has_context(m.start(), _TWILIO_WORDS, _CONTEXT_REACH):
            kind = "twilio_auth_token"
        elif view.has_context(m.start(), _DATADOG_WORDS, _CONTEXT_REACH):
            kind = "datadog_api_key"
        else:
            return None
        return kind if _random(value) and not is_placeholder_token(value, value) else None
    if kind == "alnum24":
        ok = (view.has_context(m.start(), _ATLASSIAN_WORDS, _CONTEXT_REACH) and _mixed(value)
              and v.entropy(value) >= 3.5 and not is_placeholder_token(value, value))
        return "atlassian_token" if ok else None
    if kind == "hex40":
        ok = view.has_context(m.start(), _DATADOG_WORDS, _CONTEXT_REACH) and _random(value)
        return "datadog_app_key" if ok and not is_placeholder_token(value, value) else None
    body = _body(value)
    if is_placeholder_token(value, body):
        return None
    if kind in ("openai_api_key", "anthropic_api_key"):
        body = value.split("-", 2)[-1]
        # OpenAI keys carry "T3BlbkFJ" (base64 of "OpenAI"); the marker with an edited letter is a made-up key.
        ok = (_mixed(body) and v.entropy(body) >= 3.5
              and not ("BlbkFJ" in body and "T3BlbkFJ" not in body))
    elif kind == "gitlab_token":
        ok = _random(body) and _gitlab(value, body)
    elif kind == "aws_secret_access_key":
        ok = (_mixed(value) and v.entropy(value) >= 4.0
              and view.has_context(m.start(), _AWS_SECRET_WORDS, _CONTEXT_REACH))
    elif kind == "github_token" or kind == "npm_token":
        # Tokens of the checksummed formats have exactly 36 characters after the prefix;
        # a longer ghs_ is an installation token of the newer, longer kind.
        if value.startswith(_CHECKSUMMED) and (len(body) == 36 or not value.startswith("ghs_")):
            ok = v.base62_crc32(value)
        else:
            ok = any(c.isdigit() for c in value)
    elif kind == "age_secret_key":
        ok = v.bech32(value)
    elif kind == "discord_bot_token":
        ok = _discord_id(value.split(".", 1)[0]) and _random(value)
    elif kind in ("slack_token", "stripe_key"):
        ok = any(c.isdigit() for c in value)
        if kind == "stripe_key" and value[3:7] == "test":
            kind = "stripe_test_key"
    elif kind in ("aws_access_key_id", "google_api_key"):
        ok = True
    else:
        ok = _random(body)
    return kind if ok else None


def _context_word_start(raw: bytes, end: int) -> int:
    """Start of the context word (or key id) ending at `end`, or -1 when a key prefix ends there."""
    tail = raw[max(0, end - 34):end]
    low = tail.lower()
    for word, size in _CONTEXT_WORDS:
        if low.endswith(word):
            return end - size
    if len(tail) == 34 and tail.startswith(b"AC"):
        return end - 34  # a Twilio account SID
    return end - 20 if low[-20:].startswith((b"akia", b"asia")) else -1


# In a run longer than this (base64 pasted into a prompt) only windows around the triggers are
# matched: the whole run against every pattern would cost more than the rest of the scan.
_LONG_RUN = 2048
_BEFORE = 64    # a prefix trigger ends at most this far into its key (EAAA + 60)
_AFTER = 1100   # and the longest key (a PyPI macaroon) ends within this after it


def _windows(raw: bytes, ends: list[int]) -> list[tuple[int, int, int]]:
    """(start, stop, end of the run) of each stretch of key characters to match, merged and sorted."""
    found: list[tuple[int, int, int]] = []
    run_start = run_stop = -1
    for end in ends:
        if end > run_stop:  # not in the run found for the previous trigger
            run_start = end - 1
            while run_start > 0 and raw[run_start - 1] in _KEY_CHARS:
                run_start -= 1
            run_stop = match_end(_RUN_REST, raw, end)
        word = _context_word_start(raw, end)
        if word < 0:
            if run_stop - run_start > _LONG_RUN:
                found.append((max(run_start, end - _BEFORE), min(run_stop, end + _AFTER), run_stop))
            else:
                found.append((run_start, run_stop, run_stop))
        else:
            # Runs that may start where this word still counts as the key's context.
            for m in _RUN.finditer(raw, max(run_start, word - _LONG_RUN), word + _CONTEXT_REACH + _MIN_RUN):
                stop = _RUN_REST.match(raw, m.end()).end()  # type: ignore[union-attr]  # it matches the empty string
                found.append((m.start(), min(stop, word + _CONTEXT_REACH + _AFTER), stop))
    found.sort()
    merged: list[tuple[int, int, int]] = []
    for start, stop, run_end in found:
        if merged and start <= merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], stop), max(last[2], run_end))
        else:
            merged.append((start, stop, run_end))
    return merged


def find_tokens(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    for start, stop, run_end in _windows(view.raw, ends):
        if stop - start >= _MIN_RUN:
            for m in _KEYS.finditer(view.text, start, stop):
                if m.end() == stop < run_end:
                    continue  # cut by the window: the key's own trigger window holds it whole
                kind = _kind(view, m.lastgroup, m)  # type: ignore[arg-type]  # every alternative of _KEYS is named
                if kind is not None:
                    hits.append(Hit(kind, m.start(), m.end()))


PASSES = (Pass(_TRIGGERS, find_tokens),)
