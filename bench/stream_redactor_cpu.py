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

    .venv/bin/python bench/stream_redactor_cpu.py [--rounds 60 --round-size 100] [--profile openai]
    .venv/bin/python bench/stream_redactor_cpu.py --compare HEAD~1

`--compare REV` also times proxilion/inspect/stream.py as it was at git
revision REV (the rest of the code is the working tree's), rounds taking
turns with the working tree's, so a neighbour's load hits both alike.

Each round times `round-size` whole streams (fewer for a longer stream, so a
round always covers about round-size x 16 events) with time.process_time; the
report gives µs of CPU per stream and per event, median and min over rounds
(on a shared machine the min is the best estimate of the code's own cost, and
many short rounds find an undisturbed one more often than a few long ones).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import importlib.util
import statistics
import subprocess
import sys
import tempfile
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


ROOT = Path(__file__).resolve().parent.parent


def redactor_at(rev: str):
    """The StreamRedactor class of proxilion/inspect/stream.py at git revision `rev`."""
    source = subprocess.run(["git", "show", f"{rev}:proxilion/inspect/stream.py"], cwd=ROOT, check=True,
                            capture_output=True).stdout
    with tempfile.NamedTemporaryFile("wb", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("stream_at_rev", f.name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    Path(f.name).unlink()
    return module.StreamRedactor


def run_stream(inspector: Inspector, provider: str, path: str, events: list[bytes], cls=None) -> bytes:
    if cls is None:
        redactor = inspector.stream_redactor(provider, path)
    else:
        redactor = cls(inspector.scanner, inspector.policy, inspector.finding, provider, path,
                       max_findings=inspector.max_findings,
                       stop_types=inspector.stop_types("response", provider, path, None))
    out = [redactor.feed(e) for e in events]
    out.append(redactor.finish())
    return b"".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--round-size", type=int, default=100)
    parser.add_argument("--profile", choices=sorted(STREAMS))
    parser.add_argument("--compare", metavar="REV", help="also time stream.py at this git revision")
    args = parser.parse_args()
    inspector = Inspector(load_policy(None))
    versions = {"": None}
    if args.compare:
        versions = {args.compare: redactor_at(args.compare), "worktree": None}

    for name, (provider, path, events) in STREAMS.items():
        for cls in versions.values():
            out = run_stream(inspector, provider, path, events, cls)
            # Fed an event at a time, an event ending inside a word may leave as two (issue #16).
            assert b"[REDACTED" not in out and len(out) >= len(b"".join(events)), f"{name}: a clean stream must pass"

    if args.profile:
        provider, path, events = STREAMS[args.profile]
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(max(1, args.round_size * 80 // len(events))):
            run_stream(inspector, provider, path, events)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return

    for name, (provider, path, events) in STREAMS.items():
        count = max(1, args.round_size * 16 // len(events))
        per_stream: dict[str, list[float]] = {label: [] for label in versions}
        for cls in versions.values():
            for _ in range(max(1, count // 8)):
                run_stream(inspector, provider, path, events, cls)
        for _ in range(args.rounds):
            for label, cls in versions.items():
                t0 = time.process_time()
                for _ in range(count):
                    run_stream(inspector, provider, path, events, cls)
                per_stream[label].append((time.process_time() - t0) / count * 1e6)
        n = len(events)
        for label, times in per_stream.items():
            med, low = statistics.median(times), min(times)
            tag = f" {label:>10s}" if label else ""
            print(f"{name:11s} {n:3d} events{tag}  per stream: median {med:7.1f} µs  min {low:7.1f} µs   "
                  f"per event: median {med / n:5.1f} µs  min {low / n:5.1f} µs")


if __name__ == "__main__":
    main()
