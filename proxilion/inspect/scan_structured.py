"""Credentials recognised by their surroundings rather than by one run of key characters.

A Telegram bot token and a Braintree access token hold ':' or '$', an Azure
shared access signature is one parameter of a query string, a Google Cloud key
is the private_key of a JSON document whose type is service_account, and
PuTTY and SSH2 private key files are armoured in their own way. The trigger
scan reports each marker's end; the value is read around it.
"""

from __future__ import annotations

import re

from proxilion.inspect import validators as v
from proxilion.inspect.placeholders import is_placeholder_token
from proxilion.inspect.textview import Hit, TextView
from proxilion.inspect.triggers import Pass, Trigger

_A = re.ASCII
_MAX_KEY = 32768


def _random(part: str) -> bool:
    """Generated, not typed: two kinds of characters, 3 bits of entropy per character, no placeholder."""
    return v.character_kinds(part) >= 2 and v.entropy(part) >= 3.0 and not is_placeholder_token(part, part)


# --- Telegram bot tokens: "<bot id>:AA<33 characters>", often after "bot" in an API URL ------------
_TELEGRAM = re.compile(r"(?:(?<=bot)|(?<![A-Za-z0-9_]))[0-9]{8,10}:(AA[A-Za-z0-9_-]{33})(?![A-Za-z0-9_-])", _A)
_TELEGRAM_TRIGGER = Trigger(rb"[0-9]:AA[A-Za-z0-9_-]{33}")


def find_telegram(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    for end in ends:
        colon = end - 36
        m = _TELEGRAM.search(view.text, max(0, colon - 10), end + 1)
        if m and m.end(1) == end and _random(m.group(1)[2:]) and not is_placeholder_token(m.group(), m.group(1)):
            hits.append(Hit("telegram_bot_token", m.start(), m.end()))


# --- PayPal/Braintree access tokens: access_token$production$<merchant>$<32 hex> ------------------
_BRAINTREE = re.compile(r"access_token\$(production|sandbox)\$[0-9a-z]{16}\$([0-9a-f]{32})(?![A-Za-z0-9])", _A)


def find_braintree(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    for end in ends:
        start = view.text.rfind("access_token$", max(0, end - 30), end)
        m = _BRAINTREE.match(view.text, start) if start >= 0 else None
        if m and _random(m.group(2)):
            kind = "braintree_access_token" if m.group(1) == "production" else "braintree_sandbox_token"
            hits.append(Hit(kind, m.start(), m.end()))


# --- Azure shared access signatures: sig=<base64 HMAC> in a query with sv=/se= -------------------
# The signature is base64 of an HMAC-SHA256, percent-encoded or not.
_SAS_SIG = re.compile(r"(?:[A-Za-z0-9+/]|%2[BbFf]){40,90}(?:=|%3[Dd]){0,2}", _A)
_QUERY_END = frozenset(b" \t\r\n\"'<>`")
_SAS_FIELDS = re.compile(r"(?:^|[?&;])(?:sv|se|sp|sr|ss|srt|spr|st|skoid)=", _A)


def find_sas(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    raw, text = view.raw, view.text
    for end in ends:
        m = _SAS_SIG.match(text, end)
        if not m:
            continue
        start = end
        while start > 0 and end - start < 1024 and raw[start - 1] not in _QUERY_END:
            start -= 1
        stop = m.end()
        while stop < len(raw) and stop - end < 1024 and raw[stop] not in _QUERY_END:
            stop += 1
        # Two of the SAS parameters besides sig: its version, expiry, permissions, resource.
        query = text[start:end - 4] + text[m.end():stop]
        if len(_SAS_FIELDS.findall(query)) >= 2 and _random(m.group()):
            hits.append(Hit("azure_sas_token", m.start(), m.end()))


# --- Google Cloud service-account JSON keys ----------------------------------------------------------
# The document may be raw JSON or JSON inside a JSON string (quotes escaped).
_SA_KEY = re.compile(r'\\?"private_key\\?"\s*:\s*\\?"', _A)
_SA_VALUE = re.compile(r"-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----.{0,%d}?-----END [A-Z ]{0,20}PRIVATE KEY-----"
                       r"(?:\\\\n|\\n|\n)?" % _MAX_KEY, _A | re.DOTALL)
_SA_REACH = 8192


def find_service_accounts(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    text = view.text
    searched = 0  # each stretch of text is searched for "private_key" once, however many triggers
    for end in ends:
        for key in _SA_KEY.finditer(text, max(searched, end - _SA_REACH), end + _SA_REACH):
            m = _SA_VALUE.match(text, key.end())
            if m:
                hits.append(Hit("gcp_service_account_key", m.start(), m.end()))
        searched = max(searched, end + _SA_REACH)


# --- PuTTY and SSH2 (SECSH) private key files ---------------------------------------------------------
_PUTTY_START = "PuTTY-User-Key-File-"
_PUTTY_MAC = re.compile(r"Private-MAC: [0-9a-fA-F]+", _A)
_SSH2_BEGIN = re.compile(r"-{4,5} ?BEGIN SSH2 ENCRYPTED PRIVATE KEY ?-{4,5}", _A)
_SSH2_END = re.compile(r"-{4,5} ?END SSH2 ENCRYPTED PRIVATE KEY ?-{4,5}", _A)


def find_key_files(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    """A PuTTY key file runs to its Private-MAC line, an SSH2 key to its END line.

    The closing line found for one trigger serves the triggers before it, so text full
    of headers without one is searched once, not once per header.
    """
    text = view.text
    done = 0
    closing: dict[str, tuple[int, re.Match[str] | None]] = {}  # kind -> (searched from, next closing line)

    def next_closing(kind: str, pattern: re.Pattern[str], pos: int) -> re.Match[str] | None:
        cached = closing.get(kind)
        if cached is None or cached[0] > pos or (cached[1] is not None and cached[1].start() < pos):
            cached = closing[kind] = (pos, pattern.search(text, pos))
        m = cached[1]
        return m if m is not None and m.end() - pos <= _MAX_KEY else None

    for end in ends:
        if end <= done:
            continue
        start = end - len(_PUTTY_START) - 3
        if text.startswith(_PUTTY_START, start):
            stop = next_closing("putty", _PUTTY_MAC, end)
            if stop:
                hits.append(Hit("private_key", start, stop.end()))
                done = stop.end()
            continue
        m = _SSH2_BEGIN.search(text, max(0, end - 45), end + 6)
        if m:
            stop = next_closing("ssh2", _SSH2_END, m.end())
            if stop:
                hits.append(Hit("private_key", m.start(), stop.end()))
                done = stop.end()


PASSES = (
    Pass((_TELEGRAM_TRIGGER,), find_telegram),
    Pass((Trigger(rb"access_token\$(?:production|sandbox)\$"),), find_braintree),
    Pass((Trigger(rb"[?&;]sig="),), find_sas),
    Pass((Trigger(rb"service_account\\?\""),), find_service_accounts),
    Pass((Trigger(rb"PuTTY-User-Key-File-[0-9]: |BEGIN SSH2 ENCRYPTED PRIVATE KEY"),), find_key_files),
)
