"""Detectors anchored on a marker: '@' (email), '-----BEGIN' (PEM), '://' (URL passwords),
':' or '=' after a secret's name (assignments) or between hex digits (IPv6), and context
words (SWIFT/BIC, dates of birth). The trigger scan reports where each marker ends."""

from __future__ import annotations

import datetime
import ipaddress
import re

from proxilion.inspect import validators as v
from proxilion.inspect.scan_credentials import ASSIGN_TRIGGER, assignment, is_code, is_secret_name
from proxilion.inspect.textview import Hit, TextView, match_end
from proxilion.inspect.triggers import Pass, Trigger

_A = re.ASCII

# --- email -----------------------------------------------------------------------------------
_LOCAL_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
# The top-level domain is letters, or punycode for a non-Latin one (xn--p1ai is .рф).
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+([A-Za-z]{2,24}|xn--[A-Za-z0-9]{2,59})(?![A-Za-z0-9-])", _A)
# "https://user:password@host": the password and host of a URL, not an address (url_credentials judges it).
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:\Z", _A)
# "icon@2x.png" and friends are file names, not addresses.
_FILE_SUFFIXES = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tif", "tiff"})
# Image names ("icon@2x.png") and names inside networks, which no mail reaches (kube contexts
# such as admin@prod.k8s.local, hosts such as ec2-user@ip-10-0-0-1.ec2.internal).
_NOT_MAIL_SUFFIXES = _FILE_SUFFIXES | {"local", "internal", "localhost", "lan", "localdomain", "cluster", "svc"}
# Login names of machines and services: git@github.com is an SSH user, no person.
_MACHINE_USERS = frozenset({"git", "ec2-user", "ubuntu", "centos", "debian", "root", "ssh", "deploy", "hg", "svn"})


def find_emails(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    raw = view.raw
    for end in ends:
        pos = end - 2
        start = pos
        while start > 0 and pos - start < 64 and raw[start - 1] in _LOCAL_CHARS:
            start -= 1
        while start < pos and raw[start] in b".-":
            start += 1
        m = _DOMAIN.match(view.text, pos + 1) if start < pos else None
        if (m and m.group(1).lower() not in _NOT_MAIL_SUFFIXES and not _machine_address(view.text[start:pos], m.group())
                and not _URL_PASSWORD.search(view.text, max(0, start - 128), start)):
            hits.append(Hit("email", start, m.end()))


def _machine_address(local: str, domain: str) -> bool:
    """SSH logins and bot addresses, not people's: git@github.com:acme/repo.git,
    ec2-user@host.compute.amazonaws.com, noreply@github.com, 123+bot@users.noreply.github.com."""
    local = local.lower()
    return local in _MACHINE_USERS or domain.lower().endswith(".noreply.github.com") or local.startswith(("noreply", "no-reply"))


# --- PEM private keys --------------------------------------------------------------------------
_PEM_BEGIN = re.compile(r"-----BEGIN (?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY(?: BLOCK)?-----", _A)
_PEM_END = re.compile(r"-----END [A-Z ]{0,30}PRIVATE KEY(?: BLOCK)?-----", _A)
# Without an END line the key runs until its base64 (or JSON-escaped newlines) stops.
_PEM_BODY = re.compile(r"(?:[A-Za-z0-9+/=\s:,-]|\\[nr])*", _A)
_PEM_MAX = 32768


def find_private_keys(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    text = view.text
    done = 0
    for end in ends:
        pos = end - len("-----BEGIN")
        m = _PEM_BEGIN.match(text, pos) if pos >= done else None
        if m:
            stop_m = _PEM_END.search(text, m.end(), m.end() + _PEM_MAX)
            done = stop_m.end() if stop_m else match_end(_PEM_BODY, text, m.end(), m.end() + _PEM_MAX)
            hits.append(Hit("private_key", pos, done))


# --- passwords in URLs ---------------------------------------------------------------------------
_DB_SCHEMES = frozenset({
    "postgres", "postgresql", "mysql", "mariadb", "mongodb", "mongodb+srv", "redis", "rediss",
    "amqp", "amqps", "mssql", "sqlserver", "oracle", "cockroachdb", "clickhouse", "couchdb",
    "neo4j", "cassandra", "memcached", "snowflake", "db2", "postgresql+psycopg", "postgresql+psycopg2",
    "mysql+pymysql", "mysql+mysqldb",
})
_SCHEME_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_USERINFO = re.compile(r"([^\s:/@'\"<>]{0,128}):([^\s@/'\"<>]{1,256})@[A-Za-z0-9.\-_\[\]]", _A)


def find_url_passwords(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    raw = view.raw
    for end in ends:
        pos = end - 3
        m = _USERINFO.match(view.text, end)
        # A password that repeats the user name is a development default (postgres:postgres@localhost).
        if m and not v.is_placeholder(m.group(2)) and m.group(2).strip("*x") and m.group(2).lower() != m.group(1).lower():
            start = pos
            while start > 0 and raw[start - 1] in _SCHEME_CHARS:
                start -= 1
            scheme = view.text[start:pos].lower()
            if scheme.startswith("jdbc:"):
                scheme = scheme[5:]
            kind = "database_url" if scheme in _DB_SCHEMES else "url_credentials"
            hits.append(Hit(kind, m.start(2), m.end(2)))


# --- name = value secrets, and IPv6 -------------------------------------------------------------
_VALUE = re.compile(r"(?:(?:Bearer|Basic|Token)\s+)?([^\s\"'`,;)}\]<>]{8,256})", _A)
_HEX_COLON = frozenset(b"0123456789abcdefABCDEF:")
# Two colons with only hex digits and dots between: a run that may be an IPv6 address.
_IPV6_TRIGGER = Trigger(rb":[0-9A-Fa-f.]*:")
_IPV6_REST = re.compile(rb"[0-9A-Fa-f:.]*")
_IPV6_TAIL = re.compile(rb"[0-9A-Fa-f:.]*\Z")
_IPV6_CHARS = frozenset(b"0123456789abcdefABCDEF:.")
_WORD_CHARS = frozenset(b"ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ_")


# The longest address: eight groups, or six and an IPv4 address ("ffff:…:ffff:255.255.255.255").
_IPV6_MAX = 45


def _ipv6(view: TextView, op: int, hits: list[Hit]) -> int:
    """End of the IPv6 address around `op`, or 0 when there is none."""
    raw = view.raw
    # Bounded reads: a run longer than any address is none, and each of its colons is looked
    # at (":1:" * 3000 took 4 s when every colon walked the whole run).
    lo = max(0, op - _IPV6_MAX - 1)
    tail = _IPV6_TAIL.search(raw, lo, op)
    start = tail.start() if tail else op
    end = match_end(_IPV6_REST, raw, op, op + _IPV6_MAX + 2)
    if (start == lo and lo > 0 and raw[lo - 1] in _IPV6_CHARS) or op - start > _IPV6_MAX or end - op > _IPV6_MAX:
        return 0
    candidate = view.text[start:end].rstrip(".:")
    if candidate.count(":") < 2:
        return 0
    if (start > 0 and raw[start - 1] in _WORD_CHARS) or (end < len(raw) and raw[end] in _WORD_CHARS):
        return end  # a path in code: std::fs, boost::asio, crate::db::pool
    groups = [g for g in candidate.split(":") if g]
    if len(groups) < 3 and all(len(g) <= 2 for g in groups):
        return end  # a::b, C::D, arr[::2]: too short for an address anyone writes
    try:
        address = ipaddress.IPv6Address(candidate)
    except ValueError:
        return 0
    if address.is_global:
        hits.append(Hit("ip_address", start, start + len(candidate)))
    return end


def _ipv6_op(raw: bytes, op: int) -> bool:
    """A ':' between hex digits or colons: where an IPv6 address may be."""
    return 0 < op < len(raw) - 1 and raw[op - 1] in _HEX_COLON and raw[op + 1] in _HEX_COLON


def _first_ipv6_op(raw: bytes, colon: int) -> int:
    """The first IPv6 ':' up to `colon` in its run of IPv6 characters, or -1."""
    start = colon
    while start > 0 and raw[start - 1] in _IPV6_CHARS:
        start -= 1
    op = raw.find(b":", start, colon + 1)
    while op != -1 and not _ipv6_op(raw, op):
        op = raw.find(b":", op + 1, colon + 1)
    return op


def find_assignments(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    """Operators after a secret's name, and the first IPv6 ':' of each run with two colons."""
    raw = view.raw
    ops = {end - 1 for end in ends}
    # An address is judged once, from its first ':'; the other colons in it are skipped.
    run_stop = -1
    for end in ends:
        if raw[end - 1] == 58 and end > run_stop:
            op = _first_ipv6_op(raw, end - 1)
            if op >= 0:
                ops.add(op)
                run_stop = match_end(_IPV6_REST, raw, end)
    skip = 0
    for op in sorted(ops):
        if op < skip:
            continue
        nxt = _ipv6(view, op, hits) if raw[op] == 58 and _ipv6_op(raw, op) else 0
        if nxt:
            skip = nxt
        else:
            assignment(view, op, hits)


# "my password is Tr0ub4dor&3": a secret named in prose rather than assigned.
_PROSE_TRIGGER = Trigger(rb"(?:password|passphrase|passwd|passcode|pass|pw)s? (?:is|was|would be):? ", caseless=True)


def find_prose_passwords(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    text = view.text
    for end in ends:
        if end < len(text) and text[end] in "'\"`":
            end += 1  # the password is 'Qz8#kLm2pW'
        m = _VALUE.match(text, end)
        if m is None:
            continue
        value = m.group(1).rstrip(".,;:!?")
        # Prose is full of words after "is": only a value mixing three kinds of characters
        # ("Qz8kLm2pW9x", not "expired123") is taken for a password.
        if v.high_entropy_secret(value) and v.character_kinds(value) >= 3 and not is_code(value):
            hits.append(Hit("generic_secret", m.start(1), m.start(1) + len(value)))


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


def _word_at(raw: bytes, pos: int) -> bool:
    return pos == 0 or not chr(raw[pos - 1]).isalpha()


def _real_date(m: re.Match[str]) -> bool:
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


def find_context_words(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    raw, text = view.raw, view.text
    for end in ends:
        tail = raw[max(0, end - 5):end].lower()
        if tail.endswith(_BIC_WORDS):
            pos = end - (5 if tail.endswith(b"swift") else 3)
            if _word_at(raw, pos) and not (end < len(raw) and chr(raw[end]).isalpha()):
                for m in _BIC.finditer(text, pos, pos + 64):
                    if v.swift_bic(m.group()):
                        hits.append(Hit("swift_bic", m.start(), m.end()))
                        break
        else:
            pos = end - next(len(w) for w in _DOB_WORDS if tail.endswith(w))
            if _word_at(raw, pos):
                for m in _DATE.finditer(text, pos, pos + 64):
                    if _real_date(m):
                        hits.append(Hit("date_of_birth", m.start(), m.end()))
                        break


PASSES = (
    Pass((Trigger(rb"@[A-Za-z0-9]"),), find_emails),
    Pass((Trigger(rb"-----BEGIN"),), find_private_keys),
    Pass((Trigger(rb"://"),), find_url_passwords),
    Pass((ASSIGN_TRIGGER, _IPV6_TRIGGER), find_assignments),
    Pass((_PROSE_TRIGGER,), find_prose_passwords),
    Pass((Trigger(b"|".join(re.escape(w) for w in _BIC_WORDS + _DOB_WORDS), caseless=True),),
         find_context_words),
)
