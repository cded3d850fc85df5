"""Every text a model reads in a JSON body, with its location, and the rewrite that puts texts back.

All providers share one rule: every string value is scanned, wherever it is,
so a field nobody listed cannot carry a value past the proxy. Strings that
are themselves JSON (tool-call arguments, tool results) are opened and walked
in turn so a redaction keeps them valid JSON. Large integers are scanned as
their digits. Base64 data (a data: URL, a long blob, or a "data"-like field)
is decoded when it holds UTF-8 text, a text document the model will read,
and that text is scanned; other blobs (images, audio, PDFs) hold no text to
match and are skipped.
"""

from __future__ import annotations

import base64
import codecs
import json
import math
import re
import secrets
from typing import Any, AnyStr, Iterable, NamedTuple


class Embedded:
    """Path marker: the string at the path so far is JSON; what follows is a path inside it."""

    def __repr__(self) -> str:
        return "EMBEDDED"


EMBEDDED = Embedded()


class Encoded:
    """Path marker, always last: the string at the path so far is base64 holding UTF-8 text."""

    def __repr__(self) -> str:
        return "BASE64"


BASE64 = Encoded()


class ObjectKey:
    """Path marker, always last: the text is the key at the path so far, not its value."""

    def __repr__(self) -> str:
        return "KEY"


KEY = ObjectKey()


class Flattened:
    """Path marker, always last: the text is the JSON of the container at the path so far, nested
    too deep to walk; a redacted text is parsed back into its place."""

    def __repr__(self) -> str:
        return "DEEP"


DEEP = Flattened()
# Object keys a model reads like any text: scanned unless plainly a word of a schema: a
# lower-case start, letters and underscores only ("role", "max_tokens", "inlineData"). Every
# value a detector finds has a digit, a symbol, a capital first letter or more length.
_PLAIN_KEY = re.compile(r"[a-z][A-Za-z_]{0,23}\Z")
# Plain keys seen so far (schema words, the same in every request); bounded, never values.
_PLAIN_KEYS: set[str] = set()
_PLAIN_KEYS_MAX = 4096
# Fields that carry base64 documents however short: Anthropic's source.data, OpenAI's
# file_data, Bedrock's bytes.
_BASE64_KEYS = frozenset({"data", "file_data", "bytes"})
# Standard or URL-safe alphabet (google-genai sends URL-safe), padded or not.
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}\Z")
# Enough of a blob to tell text from images and PDFs before decoding all of it.
_SAMPLE = 4096
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Long base64, also wrapped in lines (MIME style): decoded if it holds text, else skipped.
_BASE64_BLOB = re.compile(r"[A-Za-z0-9+/\r\n]{256,}={0,2}\s*\Z")
# The same in the URL-safe alphabet: decoded if it holds text, else scanned as it is, since
# long identifiers and tokens are written with the same characters.
_URLSAFE_BLOB = re.compile(r"[A-Za-z0-9_\r\n-]{256,}={0,2}\s*\Z")
# Integers this large may be card, account or phone numbers written without quotes.
_MIN_SCANNED_INT = 10**8
_INTEGER_DIGITS = re.compile(r"-?[0-9]*")
# Whole floats up to here are scanned as their digits (the longest card has 19).
_MAX_SCANNED_FLOAT = 1e20
# Floats from here on may be integers orjson could not hold (see walk).
_INEXACT = float(2**63)
_MAX_DEPTH = 64


# A JSON path: keys and indexes, with the EMBEDDED/BASE64/KEY/DEEP markers.
Path = tuple[Any, ...]


class TextField(NamedTuple):
    path: Path | None  # None when walked without paths
    text: str
    key: str | None

    @property
    def location(self) -> str:
        return format_path(self.path)

    @property
    def is_key(self) -> bool:
        return self.path is not None and bool(self.path) and self.path[-1] is KEY


# TextField's generated __new__ is a Python function; the tuple constructor skips it.
_new_field = tuple.__new__
# First characters of strings that may be embedded JSON (after whitespace) or a data: URL.
_SPECIAL_FIRST = "{[ \n\td"


# Keys written out in locations: no digit, "@" or odd character, which values have and schema
# words do not; others (and keys that hold a finding) are written "[…]".
_SHOWN_KEY = re.compile(r"[A-Za-z_][A-Za-z_ .$-]{0,39}\Z")


def format_path(path: Path | None, hidden: frozenset[str] | set[str] = frozenset()) -> str:
    """A path as people write it: C{messages[0].content}; keys in C{hidden} (keys that hold a
    finding) or shaped like values are written C{[…]}, so a location never repeats a value."""
    out: list[str] = []
    for part in path or ():
        if part is EMBEDDED:
            out.append(">")
        elif part is BASE64:
            out.append("<base64>")
        elif part is KEY:
            out.append("<key>")
        elif part is DEEP:
            out.append("<json>")
        elif isinstance(part, int):
            out.append(f"[{part}]")
        elif part in hidden or not _SHOWN_KEY.match(part):
            out.append("[…]")
        elif _IDENT.match(part):
            out.append(part if not out or out[-1] == ">" else "." + part)
        else:
            out.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(out) or "$"


def secret_keys(fields: list[TextField], hits: list[list[Any]]) -> set[str]:
    """The object keys among C{fields} (walked with paths) that hold a finding: not written in locations."""
    return {field.path[-2] for field, found in zip(fields, hits) if found and field.is_key and field.path is not None}


class LiteralNumber:
    """A JSON number beyond a double's range (1e400), kept as written.

    As a float it would be infinity, written back as "Infinity", which no
    provider accepts; a redacted body must change nothing but the redacted texts.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"LiteralNumber({self.text!r})"


def _parse_float(text: str) -> float | LiteralNumber:
    value = float(text)
    return value if math.isfinite(value) else LiteralNumber(text)


# json.loads for documents that may be written back: numbers out of a double's range are kept.
loads = json.JSONDecoder(parse_float=_parse_float).decode


def dumps(doc: Any, ensure_ascii: bool = False) -> str:
    literals: list[str] = []
    marker = ""

    def literal(value: Any) -> str:
        nonlocal marker
        if not isinstance(value, LiteralNumber):
            raise TypeError(f"{type(value).__name__} is not JSON serializable")
        # A string holding a fresh random marker stands in for the number, then gives way to it.
        marker = marker or f"proxilion-number-{secrets.token_hex(16)}-"
        literals.append(value.text)
        return f"{marker}{len(literals) - 1}"

    out = json.dumps(doc, ensure_ascii=ensure_ascii, separators=(",", ":"), default=literal)
    if literals:
        out = re.sub(f'"{marker}([0-9]+)"', lambda m: literals[int(m[1])], out)
    return out


def encode(doc: Any) -> bytes:
    """C{doc} as compact UTF-8 JSON; all escaped (ASCII) when it holds a lone surrogate, which has no UTF-8 form."""
    try:
        return dumps(doc).encode("utf-8")
    except UnicodeEncodeError:
        return dumps(doc, ensure_ascii=True).encode("ascii")


def is_blob(text: str) -> bool:
    if text.startswith("data:") and ";base64," in text[:100]:
        return True
    return len(text) >= 256 and _BASE64_BLOB.match(text) is not None


class RepeatedKey(Exception):
    """A JSON object repeats a key: parsers keep one of its values, and the provider may read the other."""


def check_keys_kept(source: AnyStr, dumped: AnyStr) -> None:
    """Raise L{RepeatedKey} if parsing C{source} dropped an object member; C{dumped} is the parsed document re-encoded.

    Each member puts a colon in both texts and colons inside strings appear in
    both, so a colon fewer in C{dumped} means a member was dropped, unless the
    source wrote a colon in a string as an escape (\\u003a), which could
    make up for it. The counts are cheap; only a body they do not clear is
    parsed again to make sure.
    """
    # Most bodies hold no backslash, found at memchr speed; the five-character search is slower.
    if isinstance(source, str):
        same = source.count(":") == dumped.count(":") and ("\\" not in source or "\\u003" not in source)
    else:
        same = source.count(b":") == dumped.count(b":") and (b"\\" not in source or b"\\u003" not in source)
    if not same and _repeats_a_key(source):
        raise RepeatedKey()


def _repeats_a_key(source: str | bytes) -> bool:
    repeated = False

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        members = dict(pairs)
        repeated = repeated or len(members) != len(pairs)
        return members

    json.loads(source, object_pairs_hook=pairs_hook)
    return repeated


def _embedded(text: str) -> Any:
    stripped = text.lstrip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        inner = loads(text)
    except ValueError:
        return None
    if not isinstance(inner, (dict, list)):
        return None
    check_keys_kept(text, dumps(inner))
    return inner


def _data_url(text: str) -> tuple[str, str]:
    """(prefix, data): a data: URL's "data:<type>;base64," and what follows it; ("", text) for bare base64."""
    if not text.startswith("data:"):
        return "", text
    head, _, data = text.partition(",")
    return head + ",", data


class _Base64Style(NamedTuple):
    """How a base64 string was written, so a redacted text is encoded back the same way."""

    urlsafe: bool
    padded: bool
    line: int  # characters per line; 0 when on one line
    newline: str
    ends_with_newline: bool


def _standard(data: str) -> tuple[str, _Base64Style] | None:
    """C{data} as padded standard base64 on one line, and how it was written; None if it is not base64."""
    newline = "\r\n" if "\r\n" in data else "\n"
    lines = data.split(newline) if "\n" in data else [data]
    ends_with_newline = len(lines) > 1 and lines[-1] == ""
    if ends_with_newline:
        lines.pop()
    compact = "".join(lines)
    urlsafe = "-" in compact or "_" in compact
    if urlsafe:
        if "+" in compact or "/" in compact:
            return None
        compact = compact.translate(_FROM_URLSAFE)
    padded = compact.endswith("=") or len(compact) % 4 == 0
    if len(compact) % 4 == 1:
        return None
    line = len(lines[0]) if len(lines) > 1 else 0
    return compact + "=" * (-len(compact) % 4), _Base64Style(urlsafe, padded, line, newline, ends_with_newline)


def _encode_like(raw: bytes, style: _Base64Style) -> str:
    text = base64.b64encode(raw).decode("ascii")
    if style.urlsafe:
        text = text.translate(_TO_URLSAFE)
    if not style.padded:
        text = text.rstrip("=")
    if style.line:
        text = style.newline.join(text[i:i + style.line] for i in range(0, len(text), style.line))
    return text + style.newline if style.ends_with_newline else text


_FROM_URLSAFE = str.maketrans("-_", "+/")
_TO_URLSAFE = str.maketrans("+/", "-_")


def decoded_text(text: str) -> str | None:
    """The text a base64 string (bare or a data: URL; standard or URL-safe, padded or not,
    on one line or wrapped) holds, in UTF-8, UTF-16 with a byte order mark or a single-byte
    Windows/Latin-1 encoding; None for anything else."""
    decoded = _decoded(_standard(_data_url(text)[1]))
    return decoded[0] if decoded is not None else None


def _decoded(standard: tuple[str, _Base64Style] | None) -> tuple[str, str] | None:
    """(text, encoding) of a base64 text document (given by L{_standard}), else None."""
    if standard is None:
        return None
    data = standard[0]
    try:
        head = base64.b64decode(data[:_SAMPLE], validate=True)
        encoding = _text_encoding(head)
        if encoding is None:
            return None
        raw = head if len(data) <= _SAMPLE else base64.b64decode(data, validate=True)
        if encoding == "utf-8":
            # A stray byte that is not UTF-8 past the sample stays a byte (and is written back as one).
            decoded = raw.decode(encoding, "surrogateescape")
        else:
            try:
                decoded = raw.decode(encoding)
            except UnicodeDecodeError:
                if encoding != "cp1252":
                    return None
                encoding = "latin-1"
                decoded = raw.decode(encoding)
    except ValueError:
        return None
    return decoded, encoding


_UNPRINTABLE = bytes(b for b in range(256) if not (32 <= b < 127 or b in b"\t\n\r"))
_CONTROL_BYTES = bytes(b for b in range(128) if b < 32 and b not in b"\t\n\r" or b == 127)


def _text_encoding(head: bytes) -> str | None:
    """The encoding of the first bytes of a document that is text, else None (images, PDFs, audio).

    Text is UTF-8, UTF-16 (every other byte zero when mostly ASCII), or mostly printable ASCII in
    a single-byte encoding. A file signature, a stray control byte or a NUL before the text does
    not make it binary: compressed and encoded data is about a third printable.
    """
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    half = len(head) // 2
    if half >= 8:
        odd, even = head[1::2].count(0), head[0::2].count(0)
        if odd >= 0.6 * half and even < 0.1 * half:
            return "utf-16-le"
        if even >= 0.6 * half and odd < 0.1 * half:
            return "utf-16-be"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        pass
    else:
        # Valid UTF-8 of mostly control bytes (zeros, small integers) is binary data.
        return "utf-8" if len(head.translate(None, _CONTROL_BYTES)) >= 0.75 * len(head) else None
    if len(head.translate(None, _UNPRINTABLE)) < 0.75 * len(head):
        return None
    # cp1252 leaves five bytes undefined, Latin-1 none.
    try:
        head.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _binary(standard: tuple[str, _Base64Style] | None) -> bool:
    """Whether a base64 string (given by L{_standard}) that holds no text is binary data (an
    image, a PDF): it opens with a file format's signature, or its letters run over the whole
    alphabet. A list of card numbers or keys, one per line, is base64 too, but written with few
    letters: it is scanned as it is."""
    if standard is None:
        return False
    data = standard[0][:_SAMPLE]
    try:
        head = base64.b64decode(data[:64], validate=True)
    except ValueError:
        return False
    return head.startswith(_SIGNATURES) or head[4:8] == b"ftyp" or len(set(data)) >= _BINARY_ALPHABET


# The first bytes of common binary formats: PNG, JPEG, GIF, PDF, ZIP (and Office files), gzip,
# RIFF (WAV, WebP, AVI), Ogg, FLAC, MP3, Matroska/WebM, TIFF, BMP, 7z, xz, bzip2, WebAssembly, ELF.
_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"%PDF", b"PK\x03\x04", b"\x1f\x8b", b"RIFF", b"OggS",
               b"fLaC", b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\x1a\x45\xdf\xa3", b"II*\x00",
               b"MM\x00*", b"BM", b"7z\xbc\xaf", b"\xfd7zXZ", b"BZh", b"\x00asm", b"\x7fELF")
_BINARY_ALPHABET = 48


def _string(text: str, path: Path | None, key: str | None, out: list[TextField], depth: int) -> None:
    # Cheap first-character tests keep the common case (plain prose) fast.
    first = text[:1]
    if first in ("{", "[", " ", "\n", "\t") and depth < _MAX_DEPTH:
        inner = _embedded(text)
        if inner is not None:
            _value(inner, None if path is None else path + (EMBEDDED,), key, out, depth + 1)
            return
    if not text:
        return
    blob = (first == "d" or len(text) >= 256) and is_blob(text)
    if blob or (key in _BASE64_KEYS and _BASE64_TEXT.match(text)) or (len(text) >= 256 and _URLSAFE_BLOB.match(text)):
        standard = _standard(_data_url(text)[1])
        decoded = _decoded(standard)
        if decoded and decoded[0]:
            out.append(TextField(None if path is None else path + (BASE64,), decoded[0], key))
            return
        if blob and _binary(standard):
            return
    out.append(TextField(path, text, key))


class InexactNumber(ValueError):
    """A document parsed by orjson holds a float that may have been an integer literal beyond 64 bits."""


class _InexactFloats(list[TextField]):
    """The fields of a walk over an orjson document: a large float there raises L{InexactNumber}."""


def walk(doc: Any, paths: bool = True, skip: frozenset[str] = frozenset(), orjson_doc: bool = False) -> list[TextField]:
    """Every scannable text in `doc` in document order, with its path unless `paths` is False.

    Keys in `skip` are left out when `doc` is an object (its top level only).

    Without paths (each field's path is None) the walk is cheaper; a caller
    that needs the path of a few fields walks again with paths: the order is the same.

    With C{orjson_doc}, a float of 2**63 or more (either sign) raises
    L{InexactNumber}: orjson reads integers beyond 64 bits as floats, whose
    digits would be neither scanned nor written back exactly; the caller parses
    again with the json module, which keeps them.
    """
    out: list[TextField] = _InexactFloats() if orjson_doc else []
    if skip and isinstance(doc, dict):
        doc = {key: value for key, value in doc.items() if key not in skip}
    _value(doc, () if paths else None, None, out, 0)
    return out


def _float(value: float, path: Path | None, key: str | None, out: list[TextField]) -> None:
    if type(out) is _InexactFloats and not -_INEXACT < value < _INEXACT:
        raise InexactNumber()
    if _MIN_SCANNED_INT <= abs(value) < _MAX_SCANNED_FLOAT and value.is_integer():
        # "seed": 4111111111111111.0 holds a card number's digits as surely as an integer does.
        out.append(_new_field(TextField, (path, str(int(value)), key)))


def _value(doc: Any, path: Path | None, key: str | None, out: list[TextField], depth: int) -> None:
    if isinstance(doc, str):
        _string(doc, path, key, out, depth)
    elif isinstance(doc, (dict, list)):
        _container(doc, path, key, out, depth)
    elif isinstance(doc, int) and not isinstance(doc, bool) and abs(doc) >= _MIN_SCANNED_INT:
        out.append(TextField(path, str(doc), key))
    elif isinstance(doc, LiteralNumber):
        # Its integer digits, as for any long number ("4111111111111111e300" holds a card's).
        digits = _INTEGER_DIGITS.match(doc.text)
        assert digits is not None  # a LiteralNumber's text is a JSON number: it starts with digits
        out.append(TextField(path, digits.group(), key))
    elif isinstance(doc, float):
        _float(doc, path, key, out)


def _container(doc: dict[Any, Any] | list[Any], path: Path | None, key: str | None, out: list[TextField], depth: int) -> None:
    if depth >= _MAX_DEPTH:
        out.append(TextField(None if path is None else path + (DEEP,), dumps(doc), key))
        return
    is_dict = isinstance(doc, dict)
    depth += 1
    members: Iterable[tuple[Any, Any]] = doc.items() if isinstance(doc, dict) else enumerate(doc)
    for k, value in members:
        child_key = k if is_dict else key
        child_path = None if path is None else path + (k,)
        if is_dict and k not in _PLAIN_KEYS:
            if _PLAIN_KEY.match(k) is None:
                out.append(_new_field(TextField, (None if child_path is None else child_path + (KEY,), k, None)))
            elif len(_PLAIN_KEYS) < _PLAIN_KEYS_MAX:
                _PLAIN_KEYS.add(k)
        kind = type(value)
        if kind is str:
            # Plain prose, the common case, can be neither embedded JSON nor a blob (see _string).
            if value[:1] not in _SPECIAL_FIRST and (len(value) < 256 or " " in value) and child_key not in _BASE64_KEYS:
                out.append(_new_field(TextField, (child_path, value, child_key)))
            else:
                _string(value, child_path, child_key, out, depth)
        elif kind is dict or kind is list:
            _container(value, child_path, child_key, out, depth)
        elif kind is int:
            # Counts, indexes and timestamps: only numbers long enough to be a value are scanned.
            if abs(value) >= _MIN_SCANNED_INT:
                out.append(_new_field(TextField, (child_path, str(value), child_key)))
        elif kind is float:
            _float(value, child_path, child_key, out)
        elif isinstance(value, (dict, list, int, LiteralNumber)):
            _value(value, child_path, child_key, out, depth)


def _set(doc: Any, path: Path, value: Any) -> Any:
    if not path:
        return value
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return doc


def _get(doc: Any, path: Path) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def rewrite(doc: Any, replacements: dict[Path, str]) -> Any:
    """Put new texts at their paths (re-encoding embedded JSON strings); returns the new root."""
    nested: dict[Path, dict[Path, str]] = {}
    renamed: list[tuple[Path, str]] = []
    for path, value in replacements.items():
        if EMBEDDED in path:
            cut = path.index(EMBEDDED)
            nested.setdefault(path[:cut], {})[path[cut + 1:]] = value
        elif path and path[-1] is BASE64:
            outer = path[:-1]
            prefix, data = _data_url(_get(doc, outer))
            standard = _standard(data)  # it decoded when walked, so it is base64 text
            decoded = _decoded(standard)
            assert standard is not None and decoded is not None
            encoding = decoded[1]
            doc = _set(doc, outer, prefix + _encode_like(value.encode(encoding, "surrogateescape"), standard[1]))
        elif path and path[-1] is KEY:
            renamed.append((path[:-1], value))
        elif path and path[-1] is DEEP:
            # Placeholders land inside its strings; text that no longer parses, or whose keys
            # were redacted alike, fails the scan closed.
            if _repeats_a_key(value):
                raise ValueError("redacted keys collide in a flattened container")
            doc = _set(doc, path[:-1], loads(value))
        else:
            doc = _set(doc, path, value)
    for outer, inner_replacements in nested.items():
        inner = rewrite(loads(_get(doc, outer)), inner_replacements)
        doc = _set(doc, outer, dumps(inner))
    # Keys last, the deepest first: every other path was written with the keys as they were.
    for path, value in sorted(renamed, key=lambda item: -len(item[0])):
        _rename(_get(doc, path[:-1]), path[-1], value)
    return doc


def _rename(members: dict[str, Any], old: str, new: str) -> None:
    """Rename a key in place, keeping the members' order; a name taken already gets a "#n" suffix
    (two keys redacted alike must not become one)."""
    unique, n = new, 2
    while unique in members and unique != old:
        unique, n = f"{new}#{n}", n + 1
    items = [(unique if k == old else k, v) for k, v in members.items()]
    members.clear()
    members.update(items)
