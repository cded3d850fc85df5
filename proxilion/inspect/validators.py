"""Checks that separate real values from look-alikes (checksums, ranges, entropy).

Each takes the matched text and returns True when it is a plausible real
value. Checksums come from python-stdnum rather than being hand-written.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Callable

from stdnum import bic as _bic
from stdnum import iban as _iban
from stdnum import luhn as _luhn
from stdnum.es import ccc as _es_ccc
from stdnum.no import kontonr as _no_kontonr
from stdnum.us import ein as _ein
from stdnum.us import rtn as _rtn
from stdnum.us import ssn as _ssn

from proxilion.inspect.placeholders import is_placeholder as is_placeholder  # scan_context reads it from here


def digits_of(text: str) -> str:
    return "".join(c for c in text if "0" <= c <= "9")


def _luhn_ok(digits: str) -> bool:
    return _luhn.is_valid(digits)


def card_brand(digits: str) -> str | None:
    """The card network whose IIN range and length fit, or None."""
    n = len(digits)
    p2, p3, p4, p6 = int(digits[:2]), int(digits[:3]), int(digits[:4]), int(digits[:6])
    # Visa's 13-digit numbers are long retired, and 13 digits starting with 4 are mostly
    # German and Austrian EAN barcodes (400-440): only 16 and 19 count.
    if digits[0] == "4" and n in (16, 19):
        return "visa"
    if (51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16:
        return "mastercard"
    if p2 in (34, 37) and n == 15:
        return "amex"
    if (p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or 622126 <= p6 <= 622925) and 16 <= n <= 19:
        return "discover"
    if 3528 <= p4 <= 3589 and 16 <= n <= 19:
        return "jcb"
    if (300 <= p3 <= 305 or p2 in (36, 38, 39)) and 14 <= n <= 19:
        return "diners"
    if p2 == 62 and 16 <= n <= 19:
        return "unionpay"
    # Maestro's own ranges and Denmark's Dankort, 16-19 digits (Maestro's 12-15 digit cards are
    # rare and that short a run is more often an ID); Mir (Russia) 2200-2204.
    if (p4 in _MAESTRO or p4 == 5019) and 16 <= n <= 19:
        return "maestro"
    if 2200 <= p4 <= 2204 and 16 <= n <= 19:
        return "mir"
    return None


_MAESTRO = frozenset({5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763})


def credit_card(text: str) -> bool:
    digits = digits_of(text)
    return 13 <= len(digits) <= 19 and card_brand(digits) is not None and _luhn_ok(digits)


def ssn(text: str) -> bool:
    return _ssn.is_valid(digits_of(text))


# The IRS's ITIN groups (4th-5th digits): 50-65, 70-88, 90-92, 94-99. stdnum 2.2 still lacks
# 50-65 (added in 2011), so the ranges are kept here.
_ITIN_GROUPS = frozenset([*range(50, 66), *range(70, 89), 90, 91, 92, *range(94, 100)])


def itin(text: str) -> bool:
    digits = digits_of(text)
    return len(digits) == 9 and digits[0] == "9" and int(digits[3:5]) in _ITIN_GROUPS


def aba(text: str) -> bool:
    digits = digits_of(text)
    # The first two digits are a Federal Reserve routing symbol or a thrift/electronic prefix.
    head = int(digits[:2]) if len(digits) == 9 else -1
    return (0 <= head <= 12 or 21 <= head <= 32 or 61 <= head <= 72 or head == 80) and _rtn.is_valid(digits)


def _be_account(bban: str) -> bool:
    """Belgium: the last two digits are the first ten mod 97 (97 for 0)."""
    return int(bban[10:]) == (int(bban[:10]) % 97 or 97)


def _me_account(bban: str) -> bool:
    """Montenegro: the whole BBAN is 1 mod 97 (ISO 7064 MOD 97-10)."""
    return int(bban) % 97 == 1


# National check digits, only for countries where every account number carries them by one
# published rule. No bank directory is consulted (stdnum's Belgian check also looks the bank code up
# in its bank list, which misses banks added after it shipped); countries with per-bank or optional
# national checks (France's RIB key among them) are left to mod-97.
_NATIONAL_CHECKS: dict[str, Callable[[str], bool]] = {
    "BE": _be_account,
    "ES": _es_ccc.is_valid,
    "ME": _me_account,
    "NO": _no_kontonr.is_valid,
}


def iban(text: str) -> bool:
    """ISO 13616: mod-97 and the country's registered length and layout, then any certain national check."""
    value = text.replace(" ", "")
    if not _iban.is_valid(value, check_country=False):
        return False
    national = _NATIONAL_CHECKS.get(value[:2])
    return national is None or national(value[4:])


def swift_bic(text: str) -> bool:
    return _bic.is_valid(text)


def ein(text: str) -> bool:
    return _ein.is_valid(digits_of(text))


def npi(text: str) -> bool:
    digits = digits_of(text)
    return len(digits) == 10 and digits[0] in "12" and _luhn_ok("80840" + digits)


def dea(text: str) -> bool:
    """Two letters, seven digits; (d1+d3+d5) + 2*(d2+d4+d6) ends in d7."""
    if len(text) != 9 or not text[2:].isdigit():
        return False
    d = [int(c) for c in text[2:]]
    return (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10 == d[6]


_MBI_ALPHA = frozenset("ACDEFGHJKMNPQRTUVWXY")
_MBI_ALNUM = _MBI_ALPHA | frozenset("0123456789")
_MBI_LAYOUT = "CAXNAXNAANN"  # C 1-9, A letter (no S L O I B Z), X letter or digit, N digit


def mbi(text: str) -> bool:
    value = text.replace("-", "")
    if len(value) != 11:
        return False
    for char, kind in zip(value, _MBI_LAYOUT):
        if kind == "C" and char not in "123456789":
            return False
        if kind == "A" and char not in _MBI_ALPHA:
            return False
        if kind == "X" and char not in _MBI_ALNUM:
            return False
        if kind == "N" and not char.isdigit():
            return False
    return True


def _b64url_json(part: str) -> object:
    padded = part + "=" * (-len(part) % 4)
    return json.loads(base64.urlsafe_b64decode(padded))


def _jwt_parts(text: str) -> tuple[object, object] | None:
    """The decoded header and payload of a JWT (payload None when it is not JSON), or None."""
    parts = text.split(".")
    if len(parts) != 3:
        return None
    try:
        header = _b64url_json(parts[0])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or "alg" not in header:
        return None
    try:
        return header, _b64url_json(parts[1])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return header, None


def jwt(text: str) -> bool:
    return _jwt_parts(text) is not None


def jwt_kind(text: str) -> str | None:
    """'kubernetes_service_account_token' for a service account's JWT, 'jwt' for others, None if no JWT.

    Legacy secret-based tokens say iss "kubernetes/serviceaccount"; projected (bound)
    tokens carry a "kubernetes.io" claim with the namespace and service account.
    """
    parts = _jwt_parts(text)
    if parts is None:
        return None
    payload = parts[1]
    if isinstance(payload, dict) and (payload.get("iss") == "kubernetes/serviceaccount" or "kubernetes.io" in payload):
        return "kubernetes_service_account_token"
    return "jwt"


_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE62_VALUE = {c: i for i, c in enumerate(_BASE62)}


def base62_crc32(token: str) -> bool:
    """GitHub's and npm's checksum: the last 6 characters are the base62 CRC32 of the 30 before them.

    ghp_, gho_, ghu_, ghs_, ghr_ and npm_ tokens are a prefix, 30 random base62
    characters and that checksum (github.blog, "Behind GitHub's new authentication
    token formats", 2021; npm's new access token format, 2021).
    """
    body = token[token.index("_") + 1:]
    if len(body) != 36:
        return False
    checksum = 0
    for c in body[30:]:
        value = _BASE62_VALUE.get(c)
        if value is None:
            return False
        checksum = checksum * 62 + value
    return checksum == binascii.crc32(body[:30].encode("ascii"))


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def bech32(text: str) -> bool:
    """The BIP-173 bech32 checksum, which age's AGE-SECRET-KEY-1... keys carry."""
    low = text.lower()
    sep = low.rfind("1")
    if sep < 1 or len(low) - sep < 7:
        return False
    hrp, data = low[:sep], low[sep + 1:]
    if any(c not in _BECH32 for c in data):
        return False
    checked = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + [_BECH32.index(c) for c in data]
    chk = 1
    for value in checked:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_BECH32_GEN):
            chk ^= gen if (top >> i) & 1 else 0
    return chk == 1


def luhn(text: str) -> bool:
    digits = digits_of(text)
    return bool(digits) and _luhn_ok(digits)


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values()) if n else 0.0


# Words joined by hyphens, slashes, dots or "#" ("oauth2-pkce", "text-embedding-3-small",
# "kv/data/app#v3"): names and descriptions in configs, not generated values.
_WORDS = re.compile(r"[A-Za-z]?[a-z0-9]*(?:[-/.#][a-z0-9]+)+")
# A digit inside a word ("P4ss.w0rd") is a password's, not a name's ("oauth2", "rs256", "90d").
_LEET = re.compile(r"[A-Za-z][0-9]+[A-Za-z]")


def high_entropy_secret(value: str) -> bool:
    """A value that looks generated rather than a word, a sentence or a placeholder."""
    if len(value) < 8 or len(value) > 256 or is_placeholder(value):
        return False
    if _WORDS.fullmatch(value) and not _LEET.search(value):
        return False
    return character_kinds(value) >= 2 and any(not c.isalpha() for c in value) and entropy(value) >= 3.0


def character_kinds(value: str) -> int:
    """How many of lower case, upper case, digits and symbols C{value} mixes."""
    return (any(c.islower() for c in value) + any(c.isupper() for c in value)
            + any(c.isdigit() for c in value) + any(not c.isalnum() for c in value))


VALIDATORS = {
    "luhn": luhn,
    "credit_card": credit_card,
    "iban": iban,
    "aba": aba,
    "npi": npi,
    "dea": dea,
    "ssn": ssn,
    "ein": ein,
    "bic": swift_bic,
    "mbi": mbi,
    "jwt": jwt,
    "entropy": high_entropy_secret,
    "base62_crc32": base62_crc32,
    "bech32": bech32,
}
