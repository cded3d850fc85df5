"""Reading a request or response body: JSON (every text field) or, failing that, raw text."""

from __future__ import annotations

import json
from typing import Any

from proxilion.providers.fields import TextField, dumps, rewrite, walk

RAW = "raw"


class Body:
    """A parsed body: its texts, and how to rebuild it with some texts replaced."""

    __slots__ = ("doc", "is_json", "fields")

    def __init__(self, body: bytes):
        try:
            self.doc: Any = json.loads(body) if body else None
            self.is_json = body != b""
        except (ValueError, UnicodeDecodeError):
            self.doc, self.is_json = None, False
        if self.is_json:
            self.fields = walk(self.doc)
        elif body:
            # surrogateescape keeps bytes that are not UTF-8 exactly as they were on re-encoding.
            self.fields = [TextField((), body.decode("utf-8", "surrogateescape"), None)]
        else:
            self.fields = []

    def location(self, field: TextField) -> str:
        return field.location if self.is_json else RAW

    def rebuild(self, replacements: dict[tuple, str]) -> bytes:
        if not self.is_json:
            return replacements[()].encode("utf-8", "surrogateescape")
        return dumps(rewrite(self.doc, replacements)).encode("utf-8")
