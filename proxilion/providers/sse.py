"""Splitting a byte stream into frames (SSE events or NDJSON lines) and rebuilding changed frames.

Chunk boundaries mean nothing here: bytes are buffered until a whole frame
(an event ending in a blank line, or a line) is there.
"""

from __future__ import annotations

import re

# An event ends at a blank line: two line ends in a row, each CRLF, LF or CR (so "\n\r\n" too);
# a CR before LF is half of one CRLF, not a line end of its own, and a CR last in the buffer
# waits for the next byte, so a CRLF is never cut in two (the stream's end takes what is left).
_SSE_END = re.compile(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r(?=[^\n]))")
_LINE_END = re.compile(rb"\r\n|\n|\r")


class FrameTooLarge(ValueError):
    """A frame grew past the limit without ending; the stream is not what it claims to be."""


class SSEFrame:
    """One server-sent event: its field lines, in order, and its data joined by newlines."""

    __slots__ = ("raw", "lines", "event", "data")

    def __init__(self, raw: bytes):
        self.raw = raw
        # Providers end lines with "\n" only; a plain split is much cheaper than the regex.
        lines = raw.split(b"\n") if b"\r" not in raw else _LINE_END.split(raw)
        self.lines = lines = [line for line in lines if line]
        self.event: str | None = None
        if len(lines) == 1 and lines[0].startswith(b"data: "):
            # The common event: one data line and nothing else.
            self.data: bytes | None = lines[0][6:]
            return
        data = []
        for line in lines:
            name, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if name == b"event":
                self.event = value.decode("utf-8", "replace")
            elif name == b"data":
                data.append(value)
        self.data = b"\n".join(data) if data else None

    def with_data(self, data: bytes) -> bytes:
        """The same event with its data replaced; other lines (event:, id:, comments) kept in place."""
        out, placed = [], False
        for line in self.lines:
            if line.startswith(b"data:"):
                if not placed:
                    out.append(b"data: " + data)
                    placed = True
                continue
            out.append(line)
        return b"\n".join(out) + b"\n\n"


def split_sse(buffer: bytearray, limit: int) -> list[bytes]:
    """Remove and return every complete event (with its blank line) from the start of `buffer`."""
    if b"\r" not in buffer:
        # Providers end lines with "\n" only: plain finds instead of the regex, and a buffer
        # holding exactly one event (one event per chunk, the usual case) is taken whole.
        end = buffer.find(b"\n\n")
        if end < 0:
            frames = []
        elif end + 2 == len(buffer):
            frames = [bytes(buffer)]
            buffer.clear()
            return frames
        else:
            frames = []
            pos = 0
            while end >= 0:
                frames.append(bytes(buffer[pos:end + 2]))
                pos = end + 2
                end = buffer.find(b"\n\n", pos)
            del buffer[:pos]
        if len(buffer) > limit:
            raise FrameTooLarge("stream frame too large")
        return frames
    frames = []
    pos = 0
    while True:
        m = _SSE_END.search(buffer, pos)
        if not m:
            break
        frames.append(bytes(buffer[pos:m.end()]))
        pos = m.end()
    del buffer[:pos]
    if len(buffer) > limit:
        raise FrameTooLarge("stream frame too large")
    return frames


def split_lines(buffer: bytearray, limit: int) -> list[bytes]:
    """Remove and return every complete line (with its newline) from the start of `buffer`."""
    end = buffer.rfind(b"\n") + 1
    lines = bytes(buffer[:end]).splitlines(keepends=True) if end else []
    del buffer[:end]
    if len(buffer) > limit:
        raise FrameTooLarge("stream line too large")
    return lines
