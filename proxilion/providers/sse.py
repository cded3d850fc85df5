"""Splitting a byte stream into frames (SSE events or NDJSON lines) and rebuilding changed frames.

Chunk boundaries mean nothing here: bytes are buffered until a whole frame
(an event ending in a blank line, or a line) is there.
"""

from __future__ import annotations

import re

_SSE_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE_END = re.compile(rb"\r\n|\n|\r")


class FrameTooLarge(ValueError):
    """A frame grew past the limit without ending; the stream is not what it claims to be."""


class SSEFrame:
    """One server-sent event: its field lines, in order, and its data joined by newlines."""

    __slots__ = ("raw", "lines", "event", "data")

    def __init__(self, raw: bytes):
        self.raw = raw
        self.lines = [line for line in _LINE_END.split(raw) if line]
        self.event: str | None = None
        data = []
        for line in self.lines:
            name, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if name == b"event":
                self.event = value.decode("utf-8", "replace")
            elif name == b"data":
                data.append(value)
        self.data: bytes | None = b"\n".join(data) if data else None

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
