"""Detectors anchored on a marker: '@' (email), '-----BEGIN' (PEM), '://' (URL passwords),
':' or '=' (secrets assigned to names, IPv6), and context words (SWIFT/BIC, dates of birth)."""

from __future__ import annotations

import datetime
import functools
import ipaddress
import re

from proxilion.inspect import validators as v
from proxilion.inspect.textview import Hit, TextView

_A = re.ASCII

# --- email -----------------------------------------------------------------------------------
_LOCAL_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+([A-Za-z]{2,24})(?![A-Za-z0-9-])", _A)
# "icon@2x.png" and friends are file names, not addresses.
_FILE_SUFFIXES = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tif", "tiff"})


def find_emails(view: TextView, hits: list[Hit]) -> None:
    raw = view.raw
    pos = raw.find(b"@")
    while pos != -1:
        start = pos
        while start > 0 and pos - start < 64 and raw[start - 1] in _LOCAL_CHARS:
            start -= 1
        while start < pos and raw[start] in b".-":
            start += 1
        m = _DOMAIN.match(view.text, pos + 1) if start < pos else None
        if m and m.group(1).lower() not in _FILE_SUFFIXES:
            hits.append(Hit("email", start, m.end()))
            pos = raw.find(b"@", m.end())
        else:
            pos = raw.find(b"@", pos + 1)


# --- PEM private keys --------------------------------------------------------------------------
_PEM_BEGIN = re.compile(r"-----BEGIN (?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY(?: BLOCK)?-----", _A)
_PEM_END = re.compile(r"-----END [A-Z ]{0,30}PRIVATE KEY(?: BLOCK)?-----", _A)
# Without an END line the key runs until its base64 (or JSON-escaped newlines) stops.
_PEM_BODY = re.compile(r"(?:[A-Za-z0-9+/=\s:,-]|\\[nr])*", _A)
_PEM_MAX = 32768


def find_private_keys(view: TextView, hits: list[Hit]) -> None:
    text = view.text
    pos = text.find("-----BEGIN")
    while pos != -1:
        m = _PEM_BEGIN.match(text, pos)
        if not m:
            pos = text.find("-----BEGIN", pos + 10)
            continue
        end = _PEM_END.search(text, m.end(), m.end() + _PEM_MAX)
        stop = end.end() if end else _PEM_BODY.match(text, m.end(), m.end() + _PEM_MAX).end()
        hits.append(Hit("private_key", pos, stop))
        pos = text.find("-----BEGIN", stop)


# --- passwords in URLs ---------------------------------------------------------------------------
_DB_SCHEMES = frozenset({
    "postgres", "postgresql", "mysql", "mariadb", "mongodb", "mongodb+srv", "redis", "rediss",
    "amqp", "amqps", "mssql", "sqlserver", "oracle", "cockroachdb", "clickhouse", "couchdb",
    "neo4j", "cassandra", "memcached", "snowflake", "db2", "postgresql+psycopg", "postgresql+psycopg2",
    "mysql+pymysql", "mysql+mysqldb",
})
_SCHEME_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_USERINFO = re.compile(r"[^\s:/@'\"<>]{0,128}:([^\s@/'\"<>]{1,256})@[A-Za-z0-9.\-_\[\]]", _A)


def find_url_passwords(view: TextView, hits: list[Hit]) -> None:
    raw = view.raw
    pos = raw.find(b"://")
    while pos != -1:
        m = _USERINFO.match(view.text, pos + 3)
        if m and not v.is_placeholder(m.group(1)) and m.group(1).strip("*x"):
            start = pos
            while start > 0 and raw[start - 1] in _SCHEME_CHARS:
                start -= 1
            scheme = view.text[start:pos].lower()
            if scheme.startswith("jdbc:"):
                scheme = scheme[5:]
            kind = "database_url" if scheme in _DB_SCHEMES else "url_credentials"
            hits.append(Hit(kind, m.start(1), m.end(1)))
        pos = raw.find(b"://", pos + 3)


# --- name = value secrets, and IPv6 -------------------------------------------------------------
SECRET_NAME_SUFFIXES = (
    "password", "passwd", "passphrase", "pwd", "secret", "token", "apikey", "api_key", "api-key",
    "accesskey", "access_key", "secretkey", "secret_key", "privatekey", "private_key",
    "credential", "credentials", "authorization", "auth",
)
_VALUE = re.compile(r"(?:(?:Bearer|Basic|Token)\s+)?([^\s\"'`,;)}\]<>]{8,256})", _A)
_HEX_COLON = frozenset(b"0123456789abcdefABCDEF:")
_IPV6_CHARS = frozenset(b"0123456789abcdefABCDEF:.")


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    return name.lower().endswith(SECRET_NAME_SUFFIXES)


_SUFFIXES_BYTES = tuple(n.encode() for n in SECRET_NAME_SUFFIXES)


def _assignment(view: TextView, op: int, hits: list[Hit]) -> None:
    raw = view.raw
    i = op
    while i > 0 and op - i < 3 and raw[i - 1] in b"\"' ":
        i -= 1
    # Cheap test first (in C): does the name before the operator end like a secret's name?
    if not view.lower.endswith(_SUFFIXES_BYTES, max(0, i - 16), i):
        return
    k = op + 1
    while k < len(raw) and k - op < 4 and raw[k] in b"\"' =":
        k += 1
    m = _VALUE.match(view.text, k)
    if m and v.high_entropy_secret(m.group(1)):
        hits.append(Hit("generic_secret", m.start(1), m.end(1)))


def _ipv6(view: TextView, op: int, hits: list[Hit]) -> int:
    """End of the IPv6 address around `op`, or 0 when there is none."""
    raw = view.raw
    start, end = op, op + 1
    while start > 0 and raw[start - 1] in _IPV6_CHARS:
        start -= 1
    while end < len(raw) and raw[end] in _IPV6_CHARS:
        end += 1
    candidate = view.text[start:end].rstrip(".:")
    if candidate.count(":") < 2:
        return 0
    try:
        address = ipaddress.IPv6Address(candidate)
    except ValueError:
        return 0
    if address.is_global:
        hits.append(Hit("ip_address", start, start + len(candidate)))
    return end


def find_assignments(view: TextView, hits: list[Hit]) -> None:
    raw, classes = view.raw, view.classes
    size = len(raw)
    pos = classes.find(b"=")
    while pos != -1:
        nxt = 0
        if (raw[pos] == 58 and 0 < pos < size - 1  # ':' between hex digits or colons
                and raw[pos - 1] in _HEX_COLON and raw[pos + 1] in _HEX_COLON):
            nxt = _ipv6(view, pos, hits)
        if not nxt:
            _assignment(view, pos, hits)
        pos = classes.find(b"=", max(nxt, pos + 1))


def find_keyed_secret(text: str, key: str | None, hits: list[Hit]) -> None:
    """A JSON string whose key names a secret ({"password": "..."}) is judged as an assignment."""
    if key and is_secret_name(key):
        value = text.strip()
        if value and v.high_entropy_secret(value) and not any(c.isspace() for c in value):
            start = text.index(value)
            hits.append(Hit("generic_secret", start, start + len(value)))


# --- context words: SWIFT/BIC, dates of birth --------------------------------------------------
_BIC = re.compile(r"(?<![A-Za-z0-9])[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?(?![A-Za-z0-9])", _A)
_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]{0,6}\.?"
_DATE = re.compile(
    r"(?<![0-9])(?P<a>[0-9]{1,4})(?P<s>[/.-])(?P<b>[0-9]{1,2})(?P=s)(?P<c>[0-9]{2,4})(?![0-9])"
    rf"|(?<![a-z]){_MONTHS} [0-9]{{1,2}}(?:st|nd|rd|th)?,? (?:19|20)[0-9]{{2}}(?![0-9])"
    rf"|(?<![0-9])[0-9]{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTHS},? (?:19|20)[0-9]{{2}}(?![0-9])",
    re.ASCII | re.IGNORECASE)
_DOB_WORDS = (b"born", b"birth", b"dob", b"d.o.b")
_BIC_WORDS = (b"swift", b"bic")


def _word_at(lower: bytes, pos: int) -> bool:
    return pos == 0 or not chr(lower[pos - 1]).isalpha()


def _real_date(m: re.Match) -> bool:
    if m.group("a") is None:
        return True
    a, b, c = int(m.group("a")), int(m.group("b")), int(m.group("c"))
    if len(m.group("a")) == 4:
        orders = [(a, b, c)]
    else:
        year = c + (1900 if c >= 30 else 2000) if len(m.group("c")) == 2 else c
        orders = [(year, a, b), (year, b, a)]
    for year, month, day in orders:
        try:
            date = datetime.date(year, month, day)
        except ValueError:
            continue
        return 1900 <= date.year <= datetime.date.today().year
    return False


def find_context_words(view: TextView, hits: list[Hit]) -> None:
    lower, text = view.lower, view.text
    for word in _BIC_WORDS:
        pos = lower.find(word)
        while pos != -1:
            if _word_at(lower, pos) and not chr(lower[pos + len(word)] if pos + len(word) < len(lower) else 32).isalpha():
                for m in _BIC.finditer(text, pos, pos + 64):
                    if v.swift_bic(m.group()):
                        hits.append(Hit("swift_bic", m.start(), m.end()))
                        break
            pos = lower.find(word, pos + len(word))
    for word in _DOB_WORDS:
        pos = lower.find(word)
        while pos != -1:
            if _word_at(lower, pos):
                for m in _DATE.finditer(text, pos, pos + 64):
                    if _real_date(m):
                        hits.append(Hit("date_of_birth", m.start(), m.end()))
                        break
            pos = lower.find(word, pos + len(word))
