"""CPU the streaming answer redactor spends per SSE event, in process, without sockets.

A realistic short answer per provider, fed one event per feed() call as the
proxy does, through Inspector(load_policy(None)).stream_redactor(...):

- openai: chat.completion.chunk SSE: an opening role event (content ""),
  12 one-word content events, a finish_reason "stop" event, `data: [DONE]`.
- anthropic: messages SSE: message_start, content_block_start, 12
  content_block_delta text_delta events, content_block_stop, message_delta,
  message_stop.
- openai-long: the openai stream with a 300-event answer (about 1,200
  characters in token-sized pieces of 1 to 8 characters), so most events
  meet a full holdback window rather than a short answer.

    .venv/bin/python bench/stream_redactor_cpu.py [--rounds 15 --round-size 400] [--profile openai]

Each round times `round-size` whole streams (fewer for a longer stream, so a
round always covers about round-size x 16 events) with time.process_time; the
report gives µs of CPU per stream and per event, median and min over rounds
(on a shared machine the min is the best estimate of the code's own cost).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxilion.inspect.inspector import Inspector  # noqa: E402
from proxilion.inspect.policy import load_policy  # noqa: E402

WORDS = "Sure, here is a short answer to your question about the weather today.".split()[:12]


def _sse(doc, event=None) -> bytes:
    head = b"event: %s\n" % event.encode() if event else b""
    return head + b"data: " + json.dumps(doc).encode() + b"\n\n"


PARAGRAPH = ("The forecast for tomorrow calls for light rain in the morning, clearing by noon, with a high "
             "of 18 degrees and a light breeze from the west. Bring an umbrella if you leave early; the "
             "afternoon should be pleasant for a walk. ")


def long_pieces(n: int) -> list[str]:
    """n token-sized pieces (1 to 8 characters) of a clean answer."""
    text = PARAGRAPH * (n // 20 + 1)
    pieces, pos, sizes = [], 0, (4, 1, 6, 3, 8, 2, 5, 4)
    for i in range(n):
        size = sizes[i % len(sizes)]
        pieces.append(text[pos:pos + size])
        pos += size
    return pieces


def openai_events(pieces: list[str] | None = None) -> list[bytes]:
    base = {"id": "chatcmpl-AbC123", "object": "chat.completion.chunk", "created": 1732870000,
            "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0ba0d124f1"}

    def chunk(delta, finish=None):
        return _sse(dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]))

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    if pieces is None:
        pieces = [(" " if i else "") + w for i, w in enumerate(WORDS)]
    events += [chunk({"content": p}) for p in pieces]
    events.append(chunk({}, "stop"))
    events.append(b"data: [DONE]\n\n")
    return events


def anthropic_events() -> list[bytes]:
    events = [_sse({"type": "message_start", "message": {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "content": [],
        "model": "claude-3-5-sonnet-20241022", "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 25, "output_tokens": 1}}}, "message_start"),
        _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
             "content_block_start")]
    events += [_sse({"type": "content_block_delta", "index": 0,
                     "delta": {"type": "text_delta", "text": (" " if i else "") + w}}, "content_block_delta")
               for i, w in enumerate(WORDS)]
    events.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    events.append(_sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": 15}}, "message_delta"))
    events.append(_sse({"type": "message_stop"}, "message_stop"))
    return events


STREAMS = {
    "openai": ("openai", "/v1/chat/completions", openai_events()),
    "anthropic": ("anthropic", "/v1/messages", anthropic_events()),
    "openai-long": ("openai", "/v1/chat/completions", openai_events(long_pieces(300))),
}


def run_stream(inspector: Inspector, provider: str, path: str, events: list[bytes]) -> bytes:
    redactor = inspector.stream_redactor(provider, path)
    out = [redactor.feed(e) for e in events]
    out.append(redactor.finish())
    return b"".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--round-size", type=int, default=400)
    parser.add_argument("--profile", choices=sorted(STREAMS))
    args = parser.parse_args()
    inspector = Inspector(load_policy(None))

    for name, (provider, path, events) in STREAMS.items():
        out = run_stream(inspector, provider, path, events)
        assert out == b"".join(events), f"{name}: a clean stream must pass byte-identical"

    if args.profile:
        provider, path, events = STREAMS[args.profile]
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.round_size * 5):
            run_stream(inspector, provider, path, events)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return

    for name, (provider, path, events) in STREAMS.items():
        count = max(1, args.round_size * 16 // len(events))
        for _ in range(max(1, count // 8)):
            run_stream(inspector, provider, path, events)
        per_stream = []
        for _ in range(args.rounds):
            t0 = time.process_time()
            for _ in range(count):
                run_stream(inspector, provider, path, events)
            per_stream.append((time.process_time() - t0) / count * 1e6)
        med, low = statistics.median(per_stream), min(per_stream)
        n = len(events)
        print(f"{name:11s} {n:3d} events  per stream: median {med:7.1f} µs  min {low:7.1f} µs   "
              f"per event: median {med / n:5.1f} µs  min {low / n:5.1f} µs")


if __name__ == "__main__":
    main()
