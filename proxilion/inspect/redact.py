"""Replacing detected values in a text: placeholder, mask keeping the last characters, or keyed hash."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from proxilion.inspect.policy import Redaction


def replacement(value: str, finding_type: str, style: Redaction) -> str:
    if style.style == "mask":
        keep = style.keep_last if len(value) > 2 * style.keep_last else 0
        return style.mask_char * (len(value) - keep) + (value[-keep:] if keep else "")
    if style.style == "hash":
        digest = hmac.new(style.hash_key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return f"[{finding_type.upper()}:{digest[:style.hash_length]}]"
    return style.placeholder.replace("{TYPE}", finding_type.upper()).replace("{type}", finding_type)


def redact_text(text: str, spans: Iterable[tuple[int, int, str]], style: Redaction) -> str:
    """`text` with each (start, end, type) span replaced; spans must not overlap."""
    out = []
    pos = 0
    for start, end, finding_type in sorted(spans):
        out.append(text[pos:start])
        out.append(replacement(text[start:end], finding_type, style))
        pos = end
    out.append(text[pos:])
    return "".join(out)
