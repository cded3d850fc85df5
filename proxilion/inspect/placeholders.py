"""Placeholders: values written where a secret goes that are not one.

Documentation, templates and tutorials are full of them (`AKIAIOSFODNN7EXAMPLE`,
`${API_TOKEN}`, `<your-key>`, `sk_live_xxxxxxxxxxxx`, `INSERT_KEY_HERE`), and
flagging them teaches people to ignore findings. They are recognised by rule,
so unseen ones are too; the short list of vendors' published example keys
only covers those that look random.

`is_placeholder` judges a whole value (an assigned password, a URL password);
`is_placeholder_token` judges the part of a vendor token after its fixed
prefix. Each returns the rule that matched through `placeholder_reason`.
Pure: no I/O.
"""

from __future__ import annotations

import re

# Example keys vendors print in their documentation that look random: the rules below
# cannot tell them from real keys, and they are pasted from the docs every day.
DOCUMENTED_EXAMPLES = frozenset({
    "AKIAIOSFODNN7EXAMPLE",                          # AWS access key id
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",      # AWS secret access key
    "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",      # AWS secret access key (IAM docs)
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",              # Stripe API reference
    "pk_test_TYooMQauvdEDq54NiTphI7jx",
    "sk_test_BQokikJOvBiI2HlWgH4olfQ2",
    "sk_test_26PHem9AhJZvU623DfE1x4sd",
    "ghp_16C7e42F292c6912E7710c838347Ae178B4a",      # GitHub docs
    "gho_16C7e42F292c6912E7710c838347Ae178B4a",
    "110201543:AAHdqTcvCH1vGWJxfSe1ofSAs0K5PALDsaw",  # Telegram Bot API docs
})

# Template syntax: shell/compose variables (a name, then maybe a default: "${DB_PASS:-x}",
# GitHub's "${{ secrets.X }}"), Jinja/Helm/Mustache, printf, angle brackets, code that reads
# the value from the environment.
_TEMPLATE = re.compile(
    r"\$\{\{?[ \t]*[A-Za-z_][A-Za-z0-9_.]*(?:[:?+=-][^{}]*)?[ \t]*\}\}?|\{\{[^{}]*\}\}|\$\([^)]*\)"
    r"|%\([A-Za-z_]+\)[sd]|%[sd]\Z|\A%[sd]|<[^<>]{1,64}>|\A\$[A-Za-z_][A-Za-z0-9_]*\Z"
    r"|\A\[?redacted|\Aprocess\.env|\Aos\.environ",
    re.ASCII | re.IGNORECASE,
)
# A template stands for the whole value when the text around its fields is connective
# ("sk-${KEY}", "${USER}:${PASS}"); a random value may hold "${" or "{{" among its
# characters ("m{{h}o)p${e]nob(ody[finds>") and is no template.
_LITERAL_ALNUM = 8
_ALNUM = re.compile(r"[A-Za-z0-9]", re.ASCII)


def mostly_template(value: str, fields: re.Pattern[str]) -> bool:
    """Whether C{fields} occur in C{value} and leave fewer than 8 letters or digits outside them."""
    rest, count = fields.subn("", value)
    return count > 0 and len(_ALNUM.findall(rest)) < _LITERAL_ALNUM
# Words that say "put yours here" or "this is not real", anywhere in the value
# ("sk-...your-key-here...", "MyFakePassword", "INSERT_KEY_HERE", "RANDOMSTRINGHERE").
_TELLTALE = re.compile(
    r"your|here|change_?me|replace|insert|example|placeholder|dummy|redacted|notreal|not_?a_?real|foobar|lorem",
    re.ASCII | re.IGNORECASE,
)
# Whole values that are a word, not a secret.
_WORDS = frozenset({
    "password", "passwd", "secret", "changeme", "example", "placeholder", "redacted",
    "your_password", "your-password", "yourpassword", "null", "none", "true", "false",
    "undefined", "string", "token", "api_key", "apikey", "test", "sample",
})
# Upper-case words joined by '_' or '-' with no digit: a name standing in for a value
# (API_KEY, SECRET_TOKEN_VALUE, MY-TOKEN), as real values mix in digits or lower case.
_SHOUTED_WORDS = re.compile(r"[A-Z]+(?:[_-][A-Z]+)*", re.ASCII)
# Masking and elision: four or more of x, *, #, • or a dot run ("sk-proj-****abcd", "ghp_...").
_MASK = re.compile(r"[xX*#\u2022]{4,}|\.\.\.|\u2026", re.ASCII)
_SEQUENCES = ("0123456789", "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_RUN = 4  # shortest ascending or descending run counted as typed, not random


def _sequential_share(body: str) -> float:
    """Share of C{body} in runs of 4+ consecutive characters of an alphabet ("abcd", "9876", "0123")."""
    covered = 0
    i, n = 0, len(body)
    while i < n:
        j = i + 1
        step = _step(body[i], body[j]) if j < n else 0
        if step:
            while j + 1 < n and _step(body[j], body[j + 1]) == step:
                j += 1
            if j - i + 1 >= _RUN:
                covered += j - i + 1
                i = j + 1
                continue
        i += 1
    return covered / n if n else 0.0


def _step(a: str, b: str) -> int:
    """+1 or -1 when C{b} follows or precedes C{a} in one alphabet (9 then 0 wraps, as typed), else 0."""
    for alphabet in _SEQUENCES:
        i, j = alphabet.find(a), alphabet.find(b)
        if i >= 0 and j >= 0:
            if j - i in (1, 1 - len(alphabet)):
                return 1
            if i - j in (1, 1 - len(alphabet)):
                return -1
    return 0


def _low_variety_reason(body: str) -> str | None:
    if len(set(body)) <= 2:
        return "two characters or fewer"
    if max(body.count(c) for c in set(body)) * 2 >= len(body):
        return "mostly one repeated character"
    if _sequential_share(body) >= 0.5:
        return "mostly a sequential alphabet"
    return None


def placeholder_reason(value: str) -> str | None:
    """Why C{value}, a whole value, is a placeholder, or None when it may be a real secret."""
    if not value:
        return "empty"
    if value in DOCUMENTED_EXAMPLES:
        return "a vendor's documented example"
    if value.lower() in _WORDS:
        return "a word"
    if mostly_template(value, _TEMPLATE):
        return "template syntax"
    if _MASK.search(value):
        return "masked or elided"
    if _TELLTALE.search(value):
        return "placeholder wording"
    if _SHOUTED_WORDS.fullmatch(value):
        return "upper-case words"
    return _low_variety_reason(value)


def token_placeholder_reason(token: str, body: str) -> str | None:
    """Why a vendor token is a placeholder: C{token} whole, C{body} its part after the fixed prefix.

    Only rules that a random body cannot trip by chance apply: documented examples,
    masks, telltale words, a body made of words in upper case, one character or a
    sequence; and AWS's convention of ending an example in EXAMPLE or EXAMPLEKEY.
    """
    if token in DOCUMENTED_EXAMPLES:
        return "a vendor's documented example"
    if "EXAMPLE" in body:
        return "a vendor's documented example"
    if _MASK.search(body) or _TEMPLATE.search(body):
        return "masked or elided"
    if _TELLTALE.search(body):
        return "placeholder wording"
    if _SHOUTED_WORDS.fullmatch(body) and "_" in body:
        return "upper-case words"
    return _low_variety_reason(body)


def is_placeholder(value: str) -> bool:
    return placeholder_reason(value) is not None


def is_placeholder_token(token: str, body: str) -> bool:
    return token_placeholder_reason(token, body) is not None
