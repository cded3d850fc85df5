"""Reading a request or response body: JSON (every text field) or, failing that, raw text."""

from __future__ import annotations

import json
from typing import Any

import orjson

from proxilion.providers.fields import Path, TextField, check_keys_kept, dumps, encode, format_path, loads, rewrite, walk

RAW = "raw"
# The provider's own metadata at the top of an answer: ids, timestamps, model
# names, token counts and stop reasons. The provider writes them, not the model,
# so they carry no prompt or answer text; scanning them only costs time (an
# OpenAI answer's "created" timestamp alone ran the number detectors).
ANSWER_METADATA = frozenset({
    "id", "object", "created", "created_at", "model", "system_fingerprint", "service_tier", "usage",
    "type", "role", "stop_reason", "finish_reason", "stopReason", "metrics",
    "usageMetadata", "modelVersion", "responseId", "generation_id", "response_id", "meta",
})


class Body:
    """A parsed body: its texts, and how to rebuild it with some texts replaced."""

    __slots__ = ("doc", "is_json", "fields", "_skip", "_encoding")

    def __init__(self, body: bytes, skip: frozenset[str] = frozenset(), check_repeated_keys: bool = True):
        """C{skip}: top-level keys of a JSON object left unread (L{ANSWER_METADATA} for answers).

        C{check_repeated_keys}: raise C{RepeatedKey} for a document that repeats a
        key. Requests need it: the provider's parser may keep the value we did not scan.
        """
        self._skip = skip
        self._encoding = "utf-8"
        self.doc: Any = None
        self.is_json = False
        if body:
            try:
                # orjson parses several times faster; what it refuses or reads inexactly
                # (see walk) is parsed again by the json module.
                self.doc, self.is_json = orjson.loads(body), True
                # Paths are worked out again only when some text has findings (see located).
                self.fields = walk(self.doc, paths=False, skip=skip, orjson_doc=True)
                if check_repeated_keys:
                    check_keys_kept(body, orjson.dumps(self.doc))
            except ValueError:  # orjson.JSONDecodeError and InexactNumber are ValueErrors
                try:
                    self._encoding = _json_encoding(body)
                    text = body.decode(self._encoding, "surrogatepass")
                    self.doc, self.is_json = loads(text), True
                except (ValueError, UnicodeDecodeError):
                    self.doc, self.is_json = None, False
                else:
                    self.fields = walk(self.doc, paths=False, skip=skip)
                    if check_repeated_keys:
                        check_keys_kept(text, dumps(self.doc))
        if not self.is_json:
            # surrogateescape keeps bytes that are not UTF-8 exactly as they were on re-encoding.
            self.fields = [TextField((), body.decode("utf-8", "surrogateescape"), None)] if body else []

    def located(self) -> list[TextField]:
        """L{fields} with their paths, in the same order."""
        return walk(self.doc, skip=self._skip) if self.is_json else self.fields

    def location(self, field: TextField, hidden: set[str] | frozenset[str] = frozenset()) -> str:
        """Where a field of L{located} is, for a finding; keys in C{hidden} are not written out."""
        return format_path(field.path, hidden) if self.is_json else RAW

    def rebuild(self, replacements: dict[Path, str]) -> bytes:
        if not self.is_json:
            return replacements[()].encode("utf-8", "surrogateescape")
        rebuilt = encode(rewrite(self.doc, replacements))
        if self._encoding != "utf-8":
            # Written back in the body's own encoding (UTF-16, a BOM): its Content-Type may say so.
            rebuilt = rebuilt.decode("utf-8", "surrogatepass").encode(self._encoding, "surrogatepass")
        return rebuilt


def _json_encoding(body: bytes) -> str:
    """The encoding json.loads reads bytes in: UTF-8 unless a BOM or zero bytes say UTF-16/32."""
    # A body opening with "{" and no zero byte after it is UTF-8 (see json.detect_encoding), which
    # spares most bodies the detection.
    return "utf-8" if body[:1] == b"{" and body[1:2] != b"\x00" else json.detect_encoding(body)
