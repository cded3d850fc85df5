"""Generic credentials: a value the text names as a secret, in the syntax people write it.

A secret's name (password, api_key, client_secret, ...) followed by an operator of some
language or format (`=`, `:`, `:=`, `=>`, `?=`, `.=`, `::=`, `<-`, `,` after a quoted name,
an XML element or `key="..." value="..."`), a comparison with a quoted literal (either
side), a C++ constructor, a `name "value";` directive, an HCL variable's default, a Java
properties line with a blank separator, a command-line option (`curl -u`, `mysql -p`,
`docker login -p`, `--password X`), a .netrc `password` token, or a .pgpass line. The trigger
scan reports where each marker ends; the value is read after it: quoted (any printable
character up to the closing quote), unquoted (up to white space or a separator), or a YAML
block scalar. A value is a finding when it looks generated, is not a placeholder, and,
unquoted, is not code (a call, subscript, attribute chain or plain name).
"""

from __future__ import annotations

import binascii
import functools
import re

from proxilion.inspect import validators as v
from proxilion.inspect.placeholders import is_placeholder, mostly_template
from proxilion.inspect.textview import Hit, TextView, match_end
from proxilion.inspect.triggers import Pass, Trigger

_A = re.ASCII

SECRET_NAME_SUFFIXES = (
    "password", "passwd", "passphrase", "pwd", "secret", "token", "apikey", "api_key", "api-key",
    "accesskey", "access_key", "secretkey", "secret_key", "privatekey", "private_key",
    "credential", "credentials", "authorization", "auth", "_pass", "-pass", "dbpass",
    "secrete",  # a common misspelling (client_secrete, app_secrete)
)
# Tokens that are no credentials: pagination cursors (nextPageToken), idempotency keys and
# anti-forgery tokens. Agents' tool results are full of the first.
NOT_SECRET_TOKENS = tuple(p + s + "token" for p in (
    "page", "next", "continuation", "cursor", "sync", "resume", "idempotency", "client", "csrf", "xsrf")
    for s in ("", "_", "-"))
_SUFFIXES_BYTES = tuple(n.encode() for n in SECRET_NAME_SUFFIXES)
_NOT_SECRET_BYTES = tuple(n.encode() for n in NOT_SECRET_TOKENS)
_NAMES = b"(?:" + b"|".join(re.escape(n).encode() for n in SECRET_NAME_SUFFIXES) + b")"
# Up to two parts after the secret's name that say whose or which it is (db_pass_secure,
# apikey_myservice, my_password_sec); the trigger allows them, _named_secret judges them.
_NAME_TAIL = rb"(?:[_-][A-Za-z0-9]{1,16}){0,2}"
# A part after the name that makes it the name of something about the secret, not the secret.
_ABOUT_SECRET = frozenset(b"""
    id ids type types kind mode url uri urls endpoint host path file dir name names hint label length len
    min max size count hash hashed salt digest algorithm algo expiry expires expiration exp ttl lifetime
    timeout at ts time date created updated header field param params arn version policy prompt regex pattern
    format env var ref source provider method store manager required enabled set reset rotation prefix
    suffix scope scopes cache limit template input help description error message msg text title flag
""".split())
_NAME_PARTS = 3  # the name itself and up to two parts after it


def _named_secret(raw: bytes, name_end: int) -> bool:
    """Whether the name ending at C{name_end} names a secret, maybe with parts after it."""
    low = raw[max(0, name_end - 48):name_end].lower()
    for _ in range(_NAME_PARTS):
        if low.endswith(_SUFFIXES_BYTES):
            return not low.endswith(_NOT_SECRET_BYTES)
        cut = max(low.rfind(b"_"), low.rfind(b"-"))
        part = low[cut + 1:]
        if cut <= 0 or not part.isalnum() or part in _ABOUT_SECRET:
            return False
        low = low[:cut]
    return False


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    raw = name.encode("ascii", "replace")
    return _named_secret(raw, len(raw))


# --- is an unquoted value code? -------------------------------------------------------------------
# Names in code are words (snake_case, camelCase, an acronym before a word: HTTPBasicAuth),
# digits after a word (boto3, b64encode), an acronym at the end (finishDH, toJSON); a random
# value mixes cases inside its "words".
# Each word starts where the case turns up, or after digits, so a name splits one way only
# (no nested repeats that could backtrack).
_WORD_TAIL = r"[a-z]+(?:[0-9]+[a-z]*)?"
_PART = rf"(?:[A-Z]+[0-9]*|(?:[A-Z]{{2,}}(?=[A-Z][a-z]))?[A-Z]?{_WORD_TAIL}(?:[A-Z]{_WORD_TAIL})*(?:[A-Z]+(?![a-z]))?)"
_NAME = rf"\$?_*{_PART}(?:_+{_PART})*_*"
_SEP = r"\.|::|\?\.|->"
_CHAIN = rf"{_NAME}(?:(?:{_SEP}){_NAME})*"
_ARG = rf"(?:\*{{0,2}}(?:{_CHAIN}|[0-9]+)(?:[=:](?:{_CHAIN}|[0-9]+))?)"
# A chain of names (os.environ, request.headers.get, std::env::var, &config.password), then
# maybe calls or subscripts whose argument is a name or a number, closed or not
# ("tokenizer.encode(text)", "config[", "create_token(identity=user.id)", "b64encode(os.urandom(32))").
_CODE_REF = re.compile(rf"[&*]?({_CHAIN})((?:[(\[]{_ARG}?[)\]]*)+)?", _A)
_CODE_SEP = re.compile(_SEP, _A)
_DIGIT_RUN = re.compile(r"[0-9]+", _A)
_INNER_DIGIT = re.compile(r"[0-9][^0-9]", _A)
# One name without digits (user_password, SECRET_KEY, csrfToken).
_CODE_NAME = re.compile(rf"\$?_*[A-Za-z]+(?:_+[A-Za-z]+)*_*", _A)


def is_code(value: str) -> bool:
    """An unquoted value that is a call, a subscript, an attribute chain or a plain name.

    A call or subscript may have one run of digits in each name (base64.b64encode), an
    attribute chain only at the end of a name (boto3.session), so "P4ss.w0rd" is a value.
    """
    m = _CODE_REF.fullmatch(value)
    if not m:
        return False
    if m.group(2):
        return all(len(_DIGIT_RUN.findall(name)) <= 1 for name in _CODE_SEP.split(m.group(1)))
    if _CODE_NAME.fullmatch(value):
        return True
    names = _CODE_SEP.split(value)
    return len(names) > 1 and not any(_INNER_DIGIT.search(name) for name in names)


# The start of a call or subscript of a name ("b64encode(userpass).decode()", "params[-1]",
# "Optional[Token]=None"): code, whatever follows.
_CALL_START = re.compile(rf"[&*]?({_CHAIN})[(\[]", _A)
_OPENERS = "([{<&*."
_TRAILERS = ")]}>:;,."


def _first_unbalanced_closer(value: str) -> int:
    depth = {"(": 0, "[": 0, "{": 0}
    for i, c in enumerate(value):
        if c in depth:
            depth[c] += 1
        elif c in ")]}":
            opener = _CLOSERS[c]
            if depth[opener] == 0:
                return i
            depth[opener] -= 1
    return len(value)


def code_like(value: str) -> bool:
    """An unquoted value that is code: a reference (L{is_code}) once the brackets and punctuation
    around it are set aside ("(self.username", "(optional)", "Credentials):"), a call or subscript
    of a name, or a name closed by a bracket it never opened ("token=token).kill()")."""
    core = value.lstrip(_OPENERS).rstrip(_TRAILERS)
    if is_code(core):
        return True
    m = _CALL_START.match(core)
    if m and all(len(_DIGIT_RUN.findall(name)) <= 1 for name in _CODE_SEP.split(m.group(1))):
        return True
    cut = _first_unbalanced_closer(value)
    return cut < len(value) and is_code(value[:cut].lstrip(_OPENERS))


# --- is a value a secret? --------------------------------------------------------------------------
# str.format and f-string fields ("{}", "{masked}", "{auth!r}") and epytext ("L{bytes}"): templates.
_FORMAT_FIELD = re.compile(r"\{[A-Za-z0-9_.!\[\]]{0,32}\}", _A)
# Regular expressions: character ranges and classes ("token=([a-z0-9]+)").
_REGEX = re.compile(r"a-z|A-Z|0-9|\\[dwsS][+*]|\[\^", _A)
# Words joined by underscores ("google_api_key", "fake_access_token"), quoted or not: a name.
_WORDS = re.compile(r"_*[A-Za-z]+(?:_+[A-Za-z]+)+_*", _A)
# A URL or URN names where a credential is, not the credential (passwords in URLs are
# url_credentials/database_url; "urn:ietf:params:oauth:token-type:jwt").
_LOCATOR = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://|urn:", _A | re.IGNORECASE)
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})+(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", _A)
_PRINTABLE = re.compile(r"[ -~]+", _A)


def _encoded_placeholder(value: str) -> bool:
    """Base64 of a placeholder, as Kubernetes Secrets hold their data ("Y2hhbmdlbWU=" is "changeme")."""
    if not _BASE64.fullmatch(value):
        return False
    try:
        decoded = binascii.a2b_base64(value).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return _PRINTABLE.fullmatch(decoded) is not None and is_placeholder(decoded)


def secret_value(value: str, quoted: bool) -> bool:
    """Generated-looking and no placeholder, format field or pattern; unquoted, also no code."""
    return (v.high_entropy_secret(value) and (quoted or not code_like(value)) and not _WORDS.fullmatch(value)
            and not _LOCATOR.match(value) and not mostly_template(value, _FORMAT_FIELD)
            and not _REGEX.search(value)
            and not _encoded_placeholder(value))


# --- reading the value after an operator -----------------------------------------------------------
_MAX = 256
_SPACE = b" \t"
_QUOTES = b"\"'`"
# Where an unquoted value ends: white space, quotes, separators of lists and statements, a tag.
_UNQUOTED = re.compile(r"[^\s\"'`,;<]{1,%d}" % _MAX, _A)
_UNQUOTED_QUERY = re.compile(r"[^\s\"'`,;<&]{1,%d}" % _MAX, _A)
_CLOSERS = {")": "(", "]": "[", "}": "{", ">": "<"}
# YAML block scalar header: '|' or '>' with chomping/indentation indicators, then the line ends.
_BLOCK_HEADER = re.compile(r"[|>][-+0-9]{0,2}[ \t]*(?:#[^\n]*)?\r?\n", _A)
_INDENT = re.compile(r"[ \t]*", _A)
_AUTH_SCHEME = re.compile(r"(?:Bearer|Basic|Token|Bot|ApiKey)[ \t]+", _A | re.IGNORECASE)
_DIGEST_RESPONSE = re.compile(r"[Dd]igest[ \t][^\n]{0,512}?response=\"?([0-9a-fA-F]{32,128})", _A)
# A type between a name and '=' ("password: &str = ", "apiKey: string = ", "x: Optional[str] = ").
_TYPED = re.compile(r"[ \t]*&?(?:'[a-z]+[ \t]+)?(?:mut[ \t]+)?[A-Za-z_][A-Za-z0-9_.]*"
                    r"(?:<[^<>=\n]{0,40}>|\[[^\[\]=\n]{0,40}\])?\??(?:[ \t]*\|[ \t]*None)?[ \t]+=(?![=>])", _A)


def _strip_unbalanced(text: str, start: int, end: int) -> int:
    """End of an unquoted value without closing brackets it never opened ("{user: a, password: X}")."""
    while end > start and text[end - 1] in _CLOSERS:
        closer = text[end - 1]
        if text.count(_CLOSERS[closer], start, end) >= text.count(closer, start, end):
            break
        end -= 1
    return end


def _closing(text: str, pos: int, delim: str) -> int:
    """Index of the quote closing a value that starts at C{pos}, on the same line; -1 when none.

    str.find, not a loop over characters: texts dense with names of secrets stay cheap.
    """
    line_end = text.find("\n", pos, pos + _MAX + len(delim))
    limit = line_end if line_end >= 0 else min(len(text), pos + _MAX + len(delim))
    i = text.find(delim, pos, limit)
    while i >= 0 and delim[0] != "\\" and _escaped(text, i, pos):
        i = text.find(delim, i + 1, limit)
    return i


def _escaped(text: str, i: int, pos: int) -> bool:
    """Whether the character at C{i} follows an odd run of backslashes (r'Xk9\"mq2')."""
    run = 0
    while i - run > pos and text[i - run - 1] == "\\":
        run += 1
    return run % 2 == 1


def _block_scalar(view: TextView, pos: int) -> tuple[int, int, str] | None:
    """The content of a YAML block scalar whose header ('|', '>-', ...) is at C{pos}."""
    text = view.text
    m = _BLOCK_HEADER.match(text, pos)
    if not m:
        return None
    indent = match_end(_INDENT, text, m.end()) - m.end()
    if indent == 0:
        return None
    first = stop = m.end() + indent
    parts = []
    while True:  # the lines indented at least as deep as the first belong to the block
        line_end = text.find("\n", stop)
        line_end = len(text) if line_end < 0 else line_end
        parts.append(text[stop:line_end].strip())
        end = stop + len(text[stop:line_end].rstrip())
        nxt = line_end + 1
        if nxt >= len(text) or match_end(_INDENT, text, nxt) - nxt < indent or end - first > _MAX:
            return first, end, "".join(parts)
        stop = nxt + indent


def read_value(view: TextView, k: int, query: bool = False) -> tuple[int, int, str, bool] | None:
    """The value starting at C{k} (after the operator): (start, end, value, quoted), or None.

    A quoted value runs to its closing quote on the same line and may hold any printable
    character but white space (a sentence in quotes is a description, not a secret).
    C{query}: the name stood in a URL query, where '&' ends an unquoted value.
    """
    text, raw = view.text, view.raw
    n = len(raw)
    while k < n and raw[k] in _SPACE:
        k += 1
    if k >= n:
        return None
    if raw[k] in b"rbu@" and k + 1 < n and raw[k + 1] in _QUOTES:
        k += 1  # Python's r"..." and b"...", Objective-C's @"..."
    delim = ""
    if raw[k] == 92 and k + 1 < n and raw[k + 1] in b"\"'":
        delim = text[k:k + 2]  # a quote escaped inside a string: "{\"password\": \"...\"}"
    elif raw[k] in _QUOTES:
        delim = text[k] * 3 if text.startswith(text[k] * 3, k) else text[k]
    if delim:
        start = k + len(delim)
        close = _closing(text, start, delim)
        if close >= 0:
            scheme = _AUTH_SCHEME.match(text, start, close)  # "Authorization": "Bearer ..."
            if scheme:
                start = scheme.end()
            value = text[start:close]
            if any(c.isspace() for c in value):
                return None
            # Backticks hold a command (shell) or code (Markdown), judged as unquoted code is.
            return start, close, value, delim[-1] != "`"
        k = start  # no closing quote (a cut-off text): read it as unquoted
        if k >= n:
            return None
    if raw[k] in b"|>":
        block = _block_scalar(view, k)
        return None if block is None else (block[0], block[1], block[2], False)
    if raw[k] in b"Dd":
        d = _DIGEST_RESPONSE.match(text, k)
        if d:
            return d.start(1), d.end(1), d.group(1), True
    scheme = _AUTH_SCHEME.match(text, k)
    if scheme:
        k = scheme.end()
    m = (_UNQUOTED_QUERY if query else _UNQUOTED).match(text, k)
    if not m:
        return None
    end = _strip_unbalanced(text, k, m.end())
    return k, end, text[k:end], False


def _judge(view: TextView, k: int, hits: list[Hit], query: bool = False) -> None:
    found = read_value(view, k, query)
    if found and secret_value(found[2], found[3]):
        hits.append(Hit("generic_secret", found[0], found[1]))


# --- name, operator, value -------------------------------------------------------------------------
# Between a name and its operator: quotes, a closing subscript, an escaped quote, blanks.
_BETWEEN = rb"[\]\"'`\\ \t]{0,4}"
# A C array's size between its name and '=' (char password[] = "...", char secret[25] = "...").
_SUBSCRIPT = rb"(?:\[[0-9]{0,4}\])?"
_C_ARRAY = re.compile(rb"\[[0-9]{0,4}\][ \t]*\Z", _A)
ASSIGN_TRIGGER = Trigger(
    _NAMES + _NAME_TAIL + _SUBSCRIPT + _BETWEEN + rb"(?:[?.+!]?[:=]|<-)"  # = : := => ?= .= ::= <- != (YAML, JSON, headers)
    + rb"|" + _NAMES + rb"[\"'][ \t]*,"                    # define('DB_PASSWORD', '...')
    + rb"|" + _NAMES + rb">"                               # <password>...</password>
    + rb"|" + _NAMES + rb"[\"'][ \t]+value[ \t]*="         # <add key="DbPassword" value="..."/>
    + rb"|" + _NAMES + rb"[ \t]+(?:string|\[\]byte)[ \t]*=",  # var token string = "..."
    caseless=True)
_OP_PREFIX = b"?.+:!"
_BETWEEN_CHARS = b"]\"'`\\ \t"
_XML_NAME = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")
_KEY_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_VALUE_ATTR = re.compile(rb"[\"'][ \t]+value[ \t]*\Z", _A | re.IGNORECASE)
_GO_TYPE = re.compile(rb"[ \t]+(?:string|\[\]byte)[ \t]*\Z", _A | re.IGNORECASE)


def assignment(view: TextView, op: int, hits: list[Hit]) -> None:
    """The value after the operator ending at C{op}, when a secret's name stands before it."""
    raw = view.raw
    c = raw[op]
    after = op + 1
    if c == 62:  # '>': an XML element <password>...</password>
        _element(view, op, hits)
        return
    if c == 44:  # ',': a quoted name as a call's first argument, the value as its second
        i = op
        while i > 0 and raw[i - 1] in _SPACE:
            i -= 1
        start = i - 1
        while start > 0 and raw[start - 1] in _KEY_CHARS:
            start -= 1
        opening = start - 1
        while opening > 0 and raw[opening - 1] in _SPACE:
            opening -= 1
        # Lists of names (["access_token", "refresh_token"]) are no pairs; nor is a name in the value.
        if opening > 0 and raw[opening - 1] == 40 and raw[start - 1] == raw[i - 1] and _named_secret(raw, i - 1):
            found = read_value(view, after)
            if found and found[3] and secret_value(found[2], True) and not code_like(found[2]):
                hits.append(Hit("generic_secret", found[0], found[1]))
        return
    # "if (api_key == '...')": a literal compared with a secret is the secret written out;
    # compared with a name ("token == expected") it is code.
    comparison = c == 61 and (raw[op - 1] == 33 or (after < len(raw) and raw[after] == 61))
    if comparison:
        while after < len(raw) and after - op < 3 and raw[after] == 61:
            after += 1
    elif c == 61 and after < len(raw) and raw[after] == 62:
        after += 1  # '=>'
    head = raw[max(0, op - 40):op]
    typed_name = _VALUE_ATTR.search(head) or _GO_TYPE.search(head) if c == 61 else None
    if typed_name:  # the name ends at the quote before value= or at the blank before the Go type
        i = op - len(head) + typed_name.start()
    else:
        i = op - 1 if c == 45 else op  # '<-'
        while i > 0 and op - i < 3 and raw[i - 1] in _OP_PREFIX:
            i -= 1
        array = _C_ARRAY.search(raw[max(0, i - 10):i])
        if array:
            i -= len(array.group())
        stop = i
        while i > 0 and stop - i < 4 and raw[i - 1] in _BETWEEN_CHARS:
            i -= 1
    if not _named_secret(raw, i):
        return
    if comparison:
        found = read_value(view, after)
        if found and found[3] and secret_value(found[2], True):
            hits.append(Hit("generic_secret", found[0], found[1]))
        return
    if c == 58:  # ':' then a type and '=': a typed declaration
        typed = _TYPED.match(view.text, after)
        if typed:
            after = typed.end()
    while after < len(raw) and after - op < 4 and raw[after] in b":=":
        after += 1  # ':=' and '::=' reported at their first character
    name_start = i
    while name_start > 0 and i - name_start < 64 and raw[name_start - 1] in _KEY_CHARS:
        name_start -= 1
    before = raw[name_start - 1] if name_start > 0 else 0
    if c == 58 and before == 58:
        return  # one part of a colon path: urn:ietf:params:oauth:grant-type:..., AWS::Auth::AccountId
    _judge(view, after, hits, query=before in b"?&")


def _element(view: TextView, op: int, hits: list[Hit]) -> None:
    raw = view.raw
    start = op
    while start > 0 and op - start < 64 and raw[start - 1] in _XML_NAME:
        start -= 1
    if start == 0 or raw[start - 1] != 60:  # not "<name>" ("</password>", "a->token>")
        return
    close = view.text.find("</", op + 1, op + 2 + _MAX)
    value = view.text[op + 1:close].strip() if close > 0 else ""
    if value and not any(c.isspace() for c in value) and secret_value(value, False):
        begin = view.text.index(value, op + 1)
        hits.append(Hit("generic_secret", begin, begin + len(value)))


# --- a literal before the name, C++ constructors, directives ---------------------------------------
_NAME_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_REVERSED = re.compile(r"([\"'])[ \t]*[!=]==?[ \t]*[A-Za-z0-9_.$]*\Z", _A)


def _line_start(text: str, pos: int) -> int:
    """Where the line holding C{pos} starts, looked for at most _MAX back (-1 when further):
    a text that is one long line dense with triggers stays linear."""
    lo = max(0, pos - _MAX)
    i = text.rfind("\n", lo, pos)
    return i + 1 if i >= 0 or lo == 0 else -1


def _name_ends(raw: bytes, ends: list[int]) -> list[int]:
    """The trigger ends that end a name (a name's tail is optional, so a name reports several)."""
    return [end for end in ends if end >= len(raw) or raw[end] not in _NAME_CHARS]


def find_reversed_comparison(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    """if ("..." == password): the literal before a comparison with a secret's name."""
    text, raw = view.text, view.raw
    for end in _name_ends(raw, ends):
        if not _named_secret(raw, end):
            continue
        line = _line_start(text, end)
        m = _REVERSED.search(text, max(line, end - 64), end) if line >= 0 else None
        if m is None:
            continue
        close = m.start(1)
        start = text.rfind(m.group(1), line, close) + 1
        value = text[start:close]
        if start > 0 and value and not any(c.isspace() for c in value) and secret_value(value, True):
            hits.append(Hit("generic_secret", start, close))


def find_constructed(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    """std::string secret("...") and secret.assign("..."): the trigger ends at the opening quote."""
    for end in ends:
        _judge_quoted(view, end - 1, hits)


def find_directive(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    """A configuration directive: a line that is a secret's name, a quoted value and ';'
    (BIND's secret "..."; in a key clause)."""
    text, raw = view.text, view.raw
    for end in ends:
        quote = name_end = end - 1
        while name_end > 0 and raw[name_end - 1] in _SPACE:
            name_end -= 1
        name_start = name_end
        while name_start > 0 and raw[name_start - 1] in _KEY_CHARS:
            name_start -= 1
        line = _line_start(text, name_start)
        if line < 0 or text[line:name_start].strip(" \t") or not _named_secret(raw, name_end):
            continue
        close = _closing(text, end, '"')
        if close > 0 and text[close + 1:close + 2] == ";":
            _judge_quoted(view, quote, hits)


# --- HCL variable defaults, Java properties with a blank separator --------------------------------
_HCL_DEFAULT = re.compile(r"[ \t]*default[ \t]*=", _A)
_PROPERTIES_LINE = re.compile(r"[ \t]*([A-Za-z0-9_-]+\.[A-Za-z0-9_.-]+)[ \t]+(\S+)[ \t\r]*(?:\n|\Z)", _A)


def find_hcl_default(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    """variable "db_password" { default = "..." }: the default of a variable named as a secret."""
    text = view.text
    for end in ends:
        close = text.find("\n}", end, end + 4 * _MAX)
        stop = close if close >= 0 else min(len(text), end + 4 * _MAX)
        line = end
        while 0 <= line < stop:  # each line of the block: its default, if it has one
            m = _HCL_DEFAULT.match(text, line + 1)
            if m:
                _judge(view, m.end(), hits)
                break
            line = text.find("\n", line + 1, stop)


def find_properties_blank(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    """db.password Xk9mq2Lp7v: a Java properties line whose key names a secret and whose separator
    is a blank; only a dotted key alone on its line with one word after it (prose has more)."""
    text, raw = view.text, view.raw
    for end in ends:
        line = _line_start(text, end)
        m = _PROPERTIES_LINE.match(text, line, min(len(text), end + _MAX)) if line >= 0 else None
        if m and m.start(2) == end and _named_secret(raw, m.end(1)):
            _judge(view, m.start(2), hits)


def _judge_quoted(view: TextView, k: int, hits: list[Hit]) -> None:
    found = read_value(view, k)
    if found and found[3] and secret_value(found[2], True):
        hits.append(Hit("generic_secret", found[0], found[1]))


# --- command lines ----------------------------------------------------------------------------------
_CURL = re.compile(r"(?:^|[\s;&|(])(?:curl|wget|http|https|xh)[ \t]", _A)
_MYSQL = re.compile(r"(?:^|[\s;&|(/])(?:mysql|mysqldump|mysqladmin|mysqlimport|mysqlcheck|mariadb|mariadb-dump)[ \t]", _A)
_LOGIN = re.compile(r"(?:^|[\s;&|(/])(?:docker|podman|buildah|skopeo|nerdctl|helm[ \t]+registry)[ \t]+login[ \t]", _A)


class _Command:
    """Whether a command (curl, mysql, docker login) comes before a position on its line.

    Each line is searched once, however many options it holds: the first match on the line
    is the one any option after it follows.
    """

    def __init__(self, pattern: re.Pattern[str], text: str) -> None:
        self.pattern, self.text = pattern, text
        self.line = self.stop = self.at = -1

    def before(self, pos: int) -> bool:
        if not self.line <= pos <= self.stop:
            text = self.text
            self.line = text.rfind("\n", 0, pos) + 1
            self.stop = text.find("\n", pos) % (len(text) + 1)  # -1 (no newline): the end of the text
            m = self.pattern.search(text, self.line, self.stop)
            self.at = m.end() if m else -1
        return 0 <= self.at <= pos


def find_curl_user(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    """curl -u user:password (also wget, HTTPie): the part after the first ':'."""
    curl = _Command(_CURL, view.text)
    for end in ends:
        if not curl.before(end):
            continue
        found = read_value(view, end)
        if found is None or ":" not in found[2]:
            continue
        user, _, password = found[2].partition(":")
        if password and password.lower() != user.lower() and secret_value(password, found[3]):
            start = found[0] + len(user) + 1
            hits.append(Hit("generic_secret", start, start + len(password)))


def find_login_password(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    """docker login -p SECRET (podman, buildah, skopeo, nerdctl, helm registry)."""
    login = _Command(_LOGIN, view.text)
    for end in ends:
        if login.before(end):
            _judge(view, end, hits)


def find_mysql_password(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    """mysql -pSECRET: the password glued to -p (with a blank after -p, the next word is a database)."""
    mysql = _Command(_MYSQL, view.text)
    for end in ends:
        if mysql.before(end):
            _judge(view, end - 1, hits)  # the trigger ends after the password's first character


def find_option_value(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    """--password SECRET, --github-token SECRET: an option named as a secret, then its value as the next word."""
    raw = view.raw
    for end in ends:
        if end < len(raw) and raw[end] not in b"-$":
            _judge(view, end, hits)


# --- .netrc and .pgpass -----------------------------------------------------------------------------
_NETRC_TRIGGER = Trigger(rb"password[ \t]+")
_NETRC_BEFORE = re.compile(r"(?:^|\s)(?:machine\s+\S+|default)(?:\s+(?:login|account|port)\s+\S+)+\s+\Z", _A)


def find_netrc(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    text = view.text
    for end in ends:
        word = text.rfind("password", max(0, end - 16), end)
        lo = max(0, word - 300)
        # str.find first: prose says "password" often, "machine" or "default" before it rarely.
        if word >= 0 and (text.find("machine", lo, word) >= 0 or text.find("default", lo, word) >= 0) \
                and _NETRC_BEFORE.search(text, lo, word):
            _judge(view, end, hits)


# host:port:database:user:password, where ':' and '\' inside a field are escaped with '\'.
_PGPASS_TRIGGER = Trigger(rb":(?:[0-9]{1,5}|\*):")
_FIELD = r"(?:[^:\\\s]|\\.)+"
_PGPASS = re.compile(rf"[ \t]*{_FIELD}:(?:[0-9]{{1,5}}|\*):{_FIELD}:{_FIELD}:({_FIELD})[ \t\r]*", _A)


def find_pgpass(view: TextView, ends: list[int], hits: list[Hit]) -> None:
    text = view.text
    done = -1
    for end in ends:
        start = text.rfind("\n", 0, end) + 1
        if start == done:
            continue
        done = start
        stop = text.find("\n", end)
        stop = len(text) if stop < 0 else stop
        m = _PGPASS.fullmatch(text, start, stop) if stop - start <= 2 * _MAX else None
        if m and secret_value(m.group(1), True):
            hits.append(Hit("generic_secret", m.start(1), m.end(1)))


_NAMED = _NAMES + _NAME_TAIL
PASSES = (
    Pass((Trigger(rb"[\"'][ \t]*[!=]==?[ \t]*[A-Za-z0-9_.$]{0,40}" + _NAMED, caseless=True),), find_reversed_comparison),
    Pass((Trigger(rb"string[ \t]+[A-Za-z0-9_]{0,30}" + _NAMED + rb"[ \t]*[({][ \t]*\"", caseless=True),
          Trigger(_NAMED + rb"\.assign\([ \t]*\"", caseless=True)), find_constructed),
    Pass((Trigger(_NAMED + rb"[ \t]+\"", caseless=True),), find_directive),
    Pass((Trigger(rb"variable[ \t]+\"[A-Za-z0-9_-]{0,40}" + _NAMED + rb"\"[ \t]*\{", caseless=True),), find_hcl_default),
    Pass((Trigger(rb"\." + _NAMED + rb"[ \t]+", caseless=True),), find_properties_blank),
    Pass((Trigger(rb"[ \t](?:-u|--user)[ \t=]"),), find_curl_user),
    Pass((Trigger(rb"[ \t]-p[ \t]"),), find_login_password),
    Pass((Trigger(rb"[ \t]-p[^ \t\r\n\-]"),), find_mysql_password),
    Pass((Trigger(rb"[ \t]--[a-z0-9-]{0,24}" + _NAMES + rb"[ \t]", caseless=True),), find_option_value),
    Pass((_NETRC_TRIGGER,), find_netrc),
    Pass((_PGPASS_TRIGGER,), find_pgpass),
)
