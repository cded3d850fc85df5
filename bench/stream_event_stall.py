#!/usr/bin/env python3
"""How long one call into the stream redactor holds its thread on one large event (issue 14).

One Anthropic text event of `--size` characters (30 KB and 64 KB by default),
a phone number every 15-21 characters (each validated with phonenumbers), is
fed as the relay feeds it: 1 KiB slices, and again with no new bytes while
the redactor says it is `busy`. Each call runs on the reactor in the daemon,
so the longest call is the longest stall one such event causes. The same text
is then streamed as the OpenAI Responses API streams it (`responses`): 300-character
deltas, then the closing events that repeat it whole (output_text.done,
content_part.done, output_item.done, completed), each scanned with no text
channel. Usage:

    .venv/bin/python bench/stream_event_stall.py [--compare REV]

`--compare REV` also runs proxilion/inspect/stream.py as it was at REV.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxilion.inspect.inspector import Inspector  # noqa: E402
from proxilion.inspect.policy import load_policy  # noqa: E402
from stream_redactor_cpu import redactor_at  # noqa: E402

UNITS = ("call +1 415 555 0100 ", "(415) 555-0100 ")
SLICE = 1024  # proxilion/proxy/relay.py SLICE


def _sse(doc: dict) -> bytes:
    return f"event: {doc['type']}\ndata: ".encode() + json.dumps(doc).encode() + b"\n\n"


def event(text: str) -> bytes:
    return _sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})


def responses(text: str) -> bytes:
    """A Responses API stream of C{text}: deltas, then the four closing events that repeat it whole."""
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "annotations": [], "text": text}
    item = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed", "content": [part]}
    docs = [{"type": "response.output_text.delta", "delta": text[i:i + 300], **where} for i in range(0, len(text), 300)]
    docs += [{"type": "response.output_text.done", "text": text, **where},
             {"type": "response.content_part.done", "part": part, **where},
             {"type": "response.output_item.done", "output_index": 0, "item": item},
             {"type": "response.completed", "response": {"id": "resp_1", "status": "completed", "output": [item]}}]
    return b"".join(_sse(d) for d in docs)


# (provider, path, stream of a text)
KINDS = {"delta": ("anthropic", "/v1/messages", event), "responses": ("openai", "/v1/responses", responses)}


def longest_call(redactor, data: bytes) -> tuple[float, int]:
    """The longest feed() call in seconds, and how many calls it took."""
    worst, calls = 0.0, 0

    def timed(chunk: bytes) -> None:
        nonlocal worst, calls
        started = time.perf_counter()
        redactor.feed(chunk)
        worst = max(worst, time.perf_counter() - started)
        calls += 1
    for i in range(0, len(data), SLICE):
        timed(data[i:i + SLICE])
        while getattr(redactor, "busy", False):
            timed(b"")
    redactor.finish()
    return worst, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, action="append", help="event text characters (repeatable)")
    parser.add_argument("--compare", metavar="REV", help="also run stream.py at this git revision")
    args = parser.parse_args()
    # Above the findings of the whole stream (each closing event repeats them), so every event is scanned.
    inspector = Inspector(load_policy(None), max_findings=100_000)
    versions = {"worktree": None}
    if args.compare:
        versions = {args.compare: redactor_at(args.compare), **versions}
    for kind, (provider, path, stream) in KINDS.items():
        for size in args.size or (30_000, 64_000):
            for unit in UNITS:
                # A closing event holds its text and a few hundred bytes: just under the event bound.
                text = unit * (min(size, 64_000 if kind == "delta" else 63_000) // len(unit))
                data = stream(text)
                for name, cls in versions.items():
                    if cls is None:
                        redactor = inspector.stream_redactor(provider, path)
                    else:
                        redactor = cls(inspector.scanner, inspector.policy, inspector.finding, provider, path,
                                       max_findings=inspector.max_findings)
                    worst, calls = longest_call(redactor, data)
                    print(f"{kind:>9} {len(text):>6} chars {unit!r:<26} {name:>9}: longest call {worst * 1e3:7.1f} ms "
                          f"over {calls} calls ({redactor.error_code or 'passed'})")


if __name__ == "__main__":
    main()
