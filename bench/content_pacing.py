"""Time to first content token and added delay per content event of a paced stream (issue #16).

The fake provider streams a 2,000-character prose answer in 200 events 20 ms
apart (OpenAI chat format). Each run reads two such streams at the same time,
one directly and one through the proxy, so both are paced by the same
upstream reactor at the same moment (run after run, its pacing drifts by
tens of milliseconds over a stream). The client records when each character
arrives; the upstream cuts the text as the fake provider does
(`x-fake-chunks`), so each upstream event's characters are known. The proxy
may send an event's text in two events (the part before a word still being
written first), so the measures are per character, paired by position:

- first content: when the first character arrives (request to first text);
- per event, whole: when the event's last character arrives through the
  proxy, minus directly — what a UI showing whole events waits;
- per event, first: the same for its first character — when the UI starts
  showing the event's text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time

# Ordinary prose, no personal data or keys: the shipped policy finds nothing in it.
_SENTENCES = (
    "The team reviewed the migration plan on Tuesday and agreed to move the reporting jobs first. ",
    "Capacity looks fine for the next quarter, although the batch window is getting tight at night. ",
    "We should keep the old cluster running for two more weeks, then switch the traffic over slowly. ",
    "Most of the open questions are about ownership of the shared dashboards and the alert rules. ",
)
PROSE = ("".join(_SENTENCES) * 8)[:2000]
EVENTS = 200
DELAY = 0.02


def pieces(text: str, count: int) -> list[str]:
    """The fake provider's cut of `text` into `count` nearly equal pieces (fakeprovider._wire.split_text)."""
    bounds = [round(i * len(text) / count) for i in range(count + 1)]
    return [text[bounds[i]:bounds[i + 1]] for i in range(count)]


def _request(port: int, path: str) -> bytes:
    body = json.dumps({"model": "gpt-4o-mini", "stream": True,
                       "messages": [{"role": "user", "content": "Summarise the planning notes."}]}).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer sk-bench\r\nx-fake-reply: {PROSE}\r\nx-fake-chunks: {EVENTS}\r\n"
            f"x-fake-chunk-delay: {DELAY}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


async def _one(port: int, path: str) -> list[float]:
    """The arrival time of each character of the answer, from the request's start."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    arrivals: list[float] = []
    try:
        start = time.perf_counter()
        writer.write(_request(port, path))
        buffer = b""
        while chunk := await reader.read(65536):
            now = time.perf_counter() - start
            buffer += chunk
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                for line in event.split(b"\n"):
                    # Chunked transfer framing sits between events: only data lines are read.
                    at = line.find(b"data: {")
                    if at < 0:
                        continue
                    doc = json.loads(line[at + 6:])
                    for choice in doc.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content") or ""
                        arrivals += [now] * len(text)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return arrivals


async def _pair(direct: tuple[int, str], proxied: tuple[int, str]) -> tuple[list[float], list[float]]:
    return await asyncio.gather(_one(*direct), _one(*proxied))


def run(direct: tuple[int, str], proxied: tuple[int, str], runs: int) -> tuple[list[list[float]], list[list[float]]]:
    """C{runs} pairs of streams read at once, direct and proxied (port, path): each the arrival
    time of every character."""
    out: tuple[list[list[float]], list[list[float]]] = ([], [])
    for _ in range(runs):
        for side, arrivals in zip(out, asyncio.run(_pair(direct, proxied))):
            if len(arrivals) != len(PROSE):
                raise RuntimeError(f"a stream gave {len(arrivals)} characters, not {len(PROSE)}")
            side.append(arrivals)
    return out


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summarise(direct: list[list[float]], proxied: list[list[float]]) -> dict:
    """Figures in milliseconds: first content, and added delay per event (whole and first character)."""
    cuts = pieces(PROSE, EVENTS)
    lasts, firsts, pos = [], [], 0
    for piece in cuts:
        firsts.append(pos)
        pos += len(piece)
        lasts.append(pos - 1)
    pairs = list(zip(direct, proxied))
    whole = [(p[i] - d[i]) * 1e3 for d, p in pairs for i in lasts]
    first = [(p[i] - d[i]) * 1e3 for d, p in pairs for i in firsts]
    ttft_direct = statistics.median(run[0] for run in direct) * 1e3
    ttft_proxied = statistics.median(run[0] for run in proxied) * 1e3
    return {
        "runs": len(proxied), "events": EVENTS, "chars": len(PROSE), "event_delay_ms": DELAY * 1e3,
        "ttft_ms_direct_p50": ttft_direct, "ttft_ms_p50": ttft_proxied, "added_ttft_ms_p50": ttft_proxied - ttft_direct,
        "added_event_whole_ms_p50": _pct(whole, 50), "added_event_whole_ms_p99": _pct(whole, 99),
        "added_event_first_ms_p50": _pct(first, 50), "added_event_first_ms_p99": _pct(first, 99),
        "added_char_ms_p50": _pct([(p[i] - d[i]) * 1e3 for d, p in pairs for i in range(len(PROSE))], 50),
    }


# Bucket bounds of proxilion_stream_hold_seconds, as its /metrics page writes them.
_HOLD_BUCKETS = ("0.0005", "0.001", "0.002", "0.005", "0.01", "0.025", "0.05", "0.1", "+Inf")


def hold_shares(count_le) -> dict:
    """The proxy's content events by added delay: how many, and the share at or under each bucket bound."""
    total = count_le("+Inf")
    shares = {le: (count_le(le) / total if total else None) for le in _HOLD_BUCKETS[:-1]}
    return {"events": total, "share_le": shares}


def report(rows: dict) -> list[str]:
    lines = ["", f"Paced stream: {len(PROSE)} characters of prose in {EVENTS} events {DELAY * 1e3:g} ms apart "
             "(fake provider, OpenAI chat), added delay vs a direct stream read at the same time"]
    for name, row in rows.items():
        if "error" in row:
            lines.append(f"{name:<11}not measured: {row['error']}")
            continue
        lines.append(
            f"{name:<11}first content {row['ttft_ms_p50']:.2f} ms (direct {row['ttft_ms_direct_p50']:.2f}, "
            f"+{row['added_ttft_ms_p50']:.2f}); per event, whole text +{row['added_event_whole_ms_p50']:.2f} ms p50 "
            f"+{row['added_event_whole_ms_p99']:.2f} ms p99; first character +{row['added_event_first_ms_p50']:.2f} ms p50 "
            f"+{row['added_event_first_ms_p99']:.2f} ms p99; per character +{row['added_char_ms_p50']:.2f} ms p50 "
            f"({row['runs']} runs)")
        hold = row.get("hold")
        if hold and hold["events"]:
            lines.append(f"{'':<11}proxy's proxilion_stream_hold_seconds over {hold['events']:.0f} content events sent: "
                         + ", ".join(f"{share:.1%} <= {float(le) * 1e3:g} ms"
                                     for le, share in hold["share_le"].items() if share is not None))
    return lines
