"""What the client controls and Proxilion writes down (request target, request id, identity names), made safe to keep.

Access lines, audit rows and refused-request lines all take the request target
from L{safe_target}: every value the built-in detectors find is replaced by
C{[REDACTED:<TYPE>]}, as redaction writes it into prompts; the query's values are
masked unless their parameter is a known harmless one; the fragment is dropped.
Pure: no Twisted, no I/O.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import unquote_plus

from proxilion.inspect.policy import Redaction
from proxilion.inspect.redact import redact_text
from proxilion.inspect.scanner import Scanner

__all__ = ["has_finding", "mask", "safe_label", "safe_path", "safe_target", "safe_uri", "MAX_TARGET"]

MAX_TARGET = 2048

# The built-in detectors; a policy's own detectors and switches apply to prompts, not to what is kept here.
_SCANNER = Scanner()
_STYLE = Redaction()
# URL delimiters read as spaces: detectors tuned for prose do not see a value glued to "v1/" or "&" (a card
# in "/v1/4111.../x" reads as part of one longer number). Same length, so offsets hold.
_SPACED = str.maketrans("/?&;#,+", "       ")
_ESCAPED_SEGMENT = re.compile(r"[^/?&;=#,]*%[^/?&;=#,]*")

# Query parameters of the providers' APIs whose values are kept (scanned); any other value may be a
# credential under a name nobody listed (?k=sk-...), so it is kept as REDACTED.
_PLAIN_QUERY_KEYS = frozenset(
    {"alt", "api-version", "beta", "limit", "order", "after", "before", "after_id", "before_id", "include",
     "include[]", "pagesize", "pagetoken", "page_size", "page_token", "stream", "version", "format", "purpose"}
)


def _spans(text: str) -> list[tuple[int, int, str]]:
    """Finding spans in C{text}, read as a URL piece: delimiters as spaces, percent-escaped segments decoded."""
    spans = [(h.start, h.end, h.type) for h in _SCANNER.scan(text.translate(_SPACED))]
    if "%" in text:
        # A segment spelled in escapes ("%73%6B-...", "%2F" inside) is decoded and scanned; a finding masks it whole.
        for m in _ESCAPED_SEGMENT.finditer(text):
            hits = _SCANNER.scan(unquote_plus(m.group(), errors="replace").translate(_SPACED))
            if hits:
                start, end = m.span()
                spans = [s for s in spans if s[1] <= start or s[0] >= end] + [(start, end, hits[0].type)]
    return spans


def has_finding(text: str) -> bool:
    """True when a built-in detector finds a value in C{text}."""
    return bool(_spans(text))


def mask(text: str) -> str:
    """C{text} with every finding replaced by C{[REDACTED:<TYPE>]}."""
    spans = _spans(text)
    return redact_text(text, spans, _STYLE) if spans else text


@functools.lru_cache(maxsize=1024)
def safe_label(text: str) -> str:
    """L{mask} for short values clients choose and rows keep (a model's name); cached, as the same few come back."""
    return mask(text)


def _named_values(query: str) -> str:
    parts = []
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        if value and unquote_plus(name).lower() not in _PLAIN_QUERY_KEYS:
            value = "REDACTED"
        parts.append(name + eq + value)
    return "&".join(parts)


# Targets that held no finding, by (path, query): the same few endpoints come back on every request, and a
# lookup costs a tenth of a scan. Bounded; emptied when full.
_CLEAN: dict[tuple[str, str], str] = {}
_CLEAN_MAX = 1024


def safe_target(path: str, query: str) -> str:
    """The path and query fit for logs and audit rows: findings masked, unknown query values REDACTED, at most 2 KiB."""
    known = _CLEAN.get((path, query))
    if known is not None:
        return known
    if "#" in path:
        # A fragment runs to the end: what follows it (a "?" too) is the fragment's.
        kept_path, kept_query = path.partition("#")[0], ""
    else:
        kept_path, kept_query = path, query.partition("#")[0]
    kept_query = _named_values(kept_query) if kept_query else ""
    path_spans = _spans(kept_path)
    query_spans = _spans(kept_query) if kept_query else []
    target = (redact_text(kept_path, path_spans, _STYLE) if path_spans else kept_path)
    if kept_query:
        target += "?" + (redact_text(kept_query, query_spans, _STYLE) if query_spans else kept_query)
    target = target[:MAX_TARGET]
    if not path_spans and not query_spans:
        if len(_CLEAN) >= _CLEAN_MAX:
            _CLEAN.clear()
        _CLEAN[(path, query)] = target
    return target


def safe_path(text: str) -> str:
    """L{safe_target} of a path with its query (and fragment, dropped) in one string."""
    path, _, query = text.partition("?")
    return safe_target(path, query)


def safe_uri(uri: bytes) -> str:
    """L{safe_target} of a raw request target, as received (routed or not)."""
    return safe_path(uri.decode("latin-1"))
