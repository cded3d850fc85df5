"""Large events scanned whole (issue 14): none is scanned in one call, and each is redacted as a whole answer is.

Events that repeat a whole answer (the Responses API's output_text.done,
content_part.done, output_item.done, completed) have no text channel: one
just under the event bound, dense with values to validate, used to hold the
reactor 100-400 ms in one call. The characters one call hands the scanner
measure that work without a clock, so the test holds on a busy machine.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import streams
from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import load_policy
from proxilion.inspect.stream import MAX_EVENT_BYTES

SLICE = 1024  # proxilion/proxy/relay.py SLICE
CARD = "5555 5555 5555 4444"  # answers redact cards
PLACEHOLDER = "[REDACTED:CREDIT_CARD]"
# A phone to validate (logged, not redacted) and a Luhn-failing card-like run, with a card now and then.
UNIT = "call +1 415 555 0100 4111 1111 1111 1112 "
# Most a call may scan: the redactor's piece (1 KiB or four holdbacks) and its context, with room.
MAX_SCANNED_PER_CALL = 4096


def _dense_text(size: int) -> str:
    units = [UNIT] * (size // len(UNIT))
    for i in range(0, len(units), 25):
        units[i] = f"card {CARD} "
    return "".join(units)[:size]


class _Counting:
    """The scanner, counting the characters each call into the redactor hands it."""

    def __init__(self, scanner: Any) -> None:
        self._scanner = scanner
        self.custom = scanner.custom
        self.chars = 0

    def scan(self, text: str, key: str | None = None, budget: Any = None) -> Any:
        self.chars += len(text)
        return self._scanner.scan(text, key, budget)

    def scan_many(self, texts: Any, keys: Any, budget: Any = None) -> Any:
        self.chars += sum(len(t) for t in texts)
        return self._scanner.scan_many(texts, keys, budget)


def _relay(redactor: Any, data: bytes) -> tuple[bytes, int]:
    """Feed as the relay does (slices, then b"" while busy): the output and the most one call scanned."""
    counting = redactor.scanner = _Counting(redactor.scanner)
    out, most = [], 0

    def call(chunk: bytes) -> None:
        nonlocal most
        counting.chars = 0
        out.append(redactor.feed(chunk))
        most = max(most, counting.chars)
    for i in range(0, len(data), SLICE):
        call(data[i:i + SLICE])
        while redactor.busy:
            call(b"")
    out.append(redactor.finish())
    return b"".join(out), most


def _events(data: bytes) -> dict[str, Any]:
    docs = {}
    for event in data.split(b"\n\n"):
        if b"data: {" in event:
            doc = json.loads(event.split(b"data: ", 1)[1])
            docs.setdefault(doc.get("type"), []).append(doc)
    return docs


def test_responses_closing_events_are_scanned_a_piece_per_call() -> None:
    text = _dense_text(60_000)
    pieces = [text[i:i + 200] for i in range(0, len(text), 200)]
    data = streams.responses(pieces)
    assert max(len(e) for e in data.split(b"\n\n")) < MAX_EVENT_BYTES
    redactor = Inspector(load_policy(None)).stream_redactor("openai", "/v1/responses")
    out, most = _relay(redactor, data)
    assert not redactor.blocked, redactor.message
    assert most <= MAX_SCANNED_PER_CALL, f"one call scanned {most} characters"
    expected = text.replace(CARD, PLACEHOLDER)
    docs = _events(out)
    assert "".join(d["delta"] for d in docs["response.output_text.delta"]) == expected
    assert docs["response.output_text.done"][0]["text"] == expected
    assert docs["response.content_part.done"][0]["part"]["text"] == expected
    assert docs["response.output_item.done"][0]["item"]["content"][0]["text"] == expected
    assert docs["response.completed"][0]["response"]["output"][0]["content"][0]["text"] == expected
    assert CARD.encode() not in out
    # Each closing event's findings are the deltas' ones: the same values, none dropped.
    where: dict[str, list[tuple[int, int, str]]] = {}
    for f in redactor.findings:
        where.setdefault(f.location, []).append((f.start, f.end, f.type))
    assert len(where) == 5 and len({tuple(found) for found in where.values()}) == 1, sorted(where)


def test_a_large_event_of_many_short_strings_is_scanned_a_piece_per_call() -> None:
    """A tool call's arguments as an array of short strings: no long text, still a large event."""
    items = [f"{UNIT}{i}" for i in range(1200)]
    items[7] = CARD
    done = {"type": "response.output_item.done", "output_index": 0,
            "item": {"type": "function_call", "id": "fc_1", "name": "f", "arguments": json.dumps({"rows": items})}}
    data = b"event: response.output_item.done\ndata: " + json.dumps(done).encode() + b"\n\n"
    assert len(data) < MAX_EVENT_BYTES
    redactor = Inspector(load_policy(None)).stream_redactor("openai", "/v1/responses")
    out, most = _relay(redactor, data)
    assert most <= MAX_SCANNED_PER_CALL, f"one call scanned {most} characters"
    rows = json.loads(_events(out)["response.output_item.done"][0]["item"]["arguments"])["rows"]
    assert rows[7] == PLACEHOLDER and rows[8] == items[8]
    assert CARD.encode() not in out


@pytest.mark.parametrize("fmt", sorted(streams.BUILDERS))
def test_every_dialect_scans_a_dense_answer_a_piece_per_call(fmt: str) -> None:
    """Deltas, and the closing events that repeat the answer (Cohere's stream-end, the Responses API's)."""
    text = _dense_text(30_000)
    provider, path = streams.PATHS[fmt]
    redactor = Inspector(load_policy(None)).stream_redactor(provider, path)
    out, most = _relay(redactor, streams.BUILDERS[fmt]([text[i:i + 300] for i in range(0, len(text), 300)]))
    assert not redactor.blocked, redactor.message
    assert most <= MAX_SCANNED_PER_CALL, f"one call scanned {most} characters"
    assert streams.text_of(fmt, out) == text.replace(CARD, PLACEHOLDER)
    assert CARD.encode() not in out


def test_a_large_event_that_is_not_json_is_scanned_a_piece_per_call() -> None:
    text = _dense_text(30_000)
    redactor = Inspector(load_policy(None)).stream_redactor("openai", "/v1/chat/completions")
    out, most = _relay(redactor, b"data: " + text.encode() + b"\n\n")
    assert most <= MAX_SCANNED_PER_CALL, f"one call scanned {most} characters"
    assert out == b"data: " + text.replace(CARD, PLACEHOLDER).encode() + b"\n\n"


def test_large_strings_beside_a_text_slot_are_scanned_a_piece_per_call() -> None:
    """A Gemini event with its text and a function call whose arguments are a dense answer."""
    rows = _dense_text(30_000)
    doc = {"candidates": [{"index": 0, "content": {"role": "model", "parts": [
        {"text": f"see {CARD} below"}, {"functionCall": {"name": "f", "args": {"rows": rows}}}]}}]}
    data = b"data: " + json.dumps(doc).encode() + b"\r\n\r\n"
    redactor = Inspector(load_policy(None)).stream_redactor(*streams.PATHS["gemini"])
    out, most = _relay(redactor, data)
    assert most <= MAX_SCANNED_PER_CALL, f"one call scanned {most} characters"
    parts = json.loads(out.split(b"data: ", 1)[1])["candidates"][0]["content"]["parts"]
    assert parts[0]["text"] == f"see {PLACEHOLDER} below"
    assert parts[1]["functionCall"]["args"]["rows"] == rows.replace(CARD, PLACEHOLDER)
