"""Undo a body's Content-Encoding (a request's, or an answer's) so inspection reads what the provider would read.

Pure: no Twisted, no I/O. gzip (and x-gzip) and deflate are decoded, in the
reverse of the order they were applied, and so are br and zstd (answers come
that way from providers that ignore Accept-Encoding); anything else is refused,
because a body we cannot read must not pass unread. Output is bounded: a small
compressed body may not expand past the proxy's body size limit. Every decoder
is fed its input once, so time is linear in input plus output.

A streamed answer is decoded as it arrives by L{StreamDecoder}, read a slice
of decoded bytes at a time, so one compressed read that expands a thousandfold
never sits in memory whole. Its limit is the same size limit on the decoded
total; there is no ratio limit, because real event streams compress 20:1
(gzip flushed per event) to 1800:1 (brotli over a whole answer), measured.
"""

from __future__ import annotations

import io
import zlib
from collections import deque
from typing import Any

import brotli
import zstandard

__all__ = ["CodingError", "UnsupportedCoding", "DecodedTooLarge", "StreamDecoder", "decode", "decodable", "is_identity"]

_IDENTITY = frozenset({"", "identity"})
# gzip members one body may hold: real clients send one; thousands of empty ones are an attack.
MAX_MEMBERS = 1000
_FIRST_PIECE = 256
_PIECE = 65536
_DECODABLE = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd"})
# RFC 8878 asks HTTP decoders to support 8 MiB windows and no more; it bounds a decoder's memory.
_ZSTD_MAX_WINDOW = 8 << 20


class CodingError(ValueError):
    """The body is not valid data in the coding its header names."""

    def __init__(self, coding: str) -> None:
        super().__init__(coding)
        self.coding = coding


class UnsupportedCoding(CodingError):
    """A coding we do not decode (compress, ...)."""


class DecodedTooLarge(CodingError):
    """The decoded body would be larger than the limit."""


def _codings(header: bytes) -> list[str]:
    """The codings a Content-Encoding value names, in the order they were applied, identity left out."""
    codings = (c.strip().lower() for c in header.decode("latin-1").split(","))
    return [c for c in codings if c not in _IDENTITY]


def is_identity(header: bytes) -> bool:
    """True when a Content-Encoding value (several lines joined by commas) names no coding."""
    return not _codings(header)


def decodable(header: bytes) -> bool:
    """True when L{decode} knows every coding a Content-Encoding value names."""
    return all(c in _DECODABLE for c in _codings(header))


def decode(body: bytes, header: bytes, limit: int) -> bytes:
    """C{body} with the codings in C{header} (a Content-Encoding value) undone, at most C{limit} bytes."""
    for coding in reversed(_codings(header)):
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, 16 + zlib.MAX_WBITS, limit, coding)
        elif coding == "deflate":
            # "deflate" means zlib-wrapped data, but some clients send it raw.
            try:
                body = _inflate(body, zlib.MAX_WBITS, limit, coding)
            except DecodedTooLarge:
                raise
            except CodingError:
                body = _inflate(body, -zlib.MAX_WBITS, limit, coding)
        elif coding == "br":
            body = _unbrotli(body, limit)
        elif coding == "zstd":
            body = _unzstd(body, limit)
        else:
            raise UnsupportedCoding(coding)
    return body


def _unbrotli(data: bytes, limit: int) -> bytes:
    decoder = brotli.Decompressor()
    view = memoryview(data)
    out = bytearray()
    pos = 0
    while True:
        # Once the output bound holds output back, the decoder takes no input until it is drained.
        chunk = view[pos:pos + _PIECE] if decoder.can_accept_more_data() else view[0:0]
        pos += len(chunk)
        try:
            out += decoder.process(chunk, output_buffer_limit=limit + 1 - len(out))
        except brotli.error:
            raise CodingError("br") from None
        if len(out) > limit:
            raise DecodedTooLarge("br")
        if decoder.is_finished():
            if pos < len(view):
                raise CodingError("br")  # bytes after the end
            return bytes(out)
        if not chunk and decoder.can_accept_more_data():
            raise CodingError("br")  # cut short


def _unzstd(data: bytes, limit: int) -> bytes:
    try:
        reader = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW).stream_reader(
            io.BytesIO(data), read_across_frames=True)
        out = bytearray()
        while len(out) <= limit:
            piece = reader.read(min(_PIECE, limit + 1 - len(out)))
            if not piece:
                return bytes(out)
            out += piece
    except zstandard.ZstdError:
        raise CodingError("zstd") from None
    raise DecodedTooLarge("zstd")


def _inflate(data: bytes, wbits: int, limit: int, coding: str) -> bytes:
    view = memoryview(data)
    out = bytearray()
    pos = 0
    members = 0
    while True:
        members += 1
        if members > MAX_MEMBERS:
            raise CodingError(coding)
        inflater = zlib.decompressobj(wbits)
        # Fed in growing pieces from an offset: C{unused_data} then copies at most the last
        # piece, not the whole rest of the body once per member (quadratic in the member count).
        piece = _FIRST_PIECE
        while True:
            chunk = view[pos:pos + piece]
            try:
                out += inflater.decompress(chunk, limit + 1 - len(out))
            except zlib.error:
                raise CodingError(coding) from None
            if len(out) > limit:
                raise DecodedTooLarge(coding)
            if inflater.eof:
                pos += len(chunk) - len(inflater.unused_data)
                break
            if inflater.unconsumed_tail:
                # The output limit stopped it with input left over.
                raise DecodedTooLarge(coding)
            pos += len(chunk)
            if pos >= len(view):
                raise CodingError(coding)  # cut short
            piece *= 2
        # gzip allows several members one after another.
        if pos >= len(view) or wbits != 16 + zlib.MAX_WBITS:
            break
    return bytes(out)


class _Input:
    """Bytes fed to a stream stage and not consumed yet, in arrival order."""

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._pos = 0

    def __bool__(self) -> bool:
        return bool(self._chunks)

    def append(self, data: bytes) -> None:
        if data:
            self._chunks.append(data)

    def peek(self, size: int) -> memoryview:
        """At most C{size} bytes from the front (never joined across chunks: no copy)."""
        return memoryview(self._chunks[0])[self._pos:self._pos + size]

    def advance(self, used: int) -> None:
        self._pos += used
        if self._pos >= len(self._chunks[0]):
            self._chunks.popleft()
            self._pos = 0


class _Stage:
    """One coding of a stream undone: fed coded bytes, read decoded ones, a bounded amount per call.

    Input is passed to the decoder a step at a time, so what a decoder copies of
    its unconsumed input per call is at most a step: linear time however slowly
    a large read is drained.
    """

    step = 1024

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self.input = _Input()
        self._more = False  # the decoder may hold output for the input it took
        self._kept = b""

    def read(self, size: int) -> bytes:
        """At most C{size} decoded bytes; b"" when the input fed so far is spent."""
        if self._kept:
            out, self._kept = self._kept[:size], self._kept[size:]
            return out
        out = b""
        while not out and (self.input or self._more):
            piece = self.input.peek(self.step) if self.input else memoryview(b"")
            try:
                out, used, self._more = self._decode(piece, size)
            except (zlib.error, brotli.error, zstandard.ZstdError):
                raise CodingError(self.coding) from None
            if used:
                self.input.advance(used)
            elif not out:
                break  # a step that took nothing and gave nothing: the next one would too
        # Some decoders overshoot the bound they are given (brotli's output buffer grows in blocks) or
        # take none (zstd): the excess, at most what one step of input decodes to, waits for the next read.
        out, self._kept = out[:size], out[size:]
        return out

    def end(self) -> None:
        """Raise L{CodingError} unless the input ended where the coded data does."""
        if self.input or self._more or self._kept or not self._at_end():
            raise CodingError(self.coding)

    def _decode(self, piece: memoryview, size: int) -> tuple[bytes, int, bool]:
        """Decode from C{piece}: (output of at most C{size} bytes, input bytes used, more output held)."""
        raise NotImplementedError

    def _at_end(self) -> bool:
        raise NotImplementedError


class _Inflate(_Stage):
    """gzip (member after member) or deflate (zlib-wrapped or raw, told apart by the zlib header)."""

    def __init__(self, coding: str) -> None:
        super().__init__(coding)
        self._gzip = coding != "deflate"
        self._z: Any = None
        self._head = b""  # a deflate stream's first byte, until the second tells zlib from raw

    def _decode(self, piece: memoryview, size: int) -> tuple[bytes, int, bool]:
        z = self._z
        if z is None or z.eof:
            if not piece:
                return b"", 0, False
            if z is not None and not self._gzip:
                raise CodingError(self.coding)  # bytes after the end
            if self._gzip:
                z = self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                head = self._head + bytes(piece[:2 - len(self._head)])
                if len(head) < 2:
                    self._head = head
                    return b"", len(piece), False
                # What zlib itself checks: method 8, and the first two bytes a multiple of 31.
                wrapped = head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0
                z = self._z = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        held, self._head = self._head, b""
        data = held + bytes(piece) if held else piece
        out = z.decompress(data, size)
        # A byte held back goes in first; zlib takes a stream's first bytes before it gives any output.
        used = len(data) - len(z.unconsumed_tail) - len(z.unused_data) - len(held)
        if used < 0:
            raise CodingError(self.coding)
        return out, used, len(out) == size and not z.eof

    def _at_end(self) -> bool:
        return not self._head and (self._z is None or self._z.eof)


class _Unbrotli(_Stage):
    def __init__(self, coding: str) -> None:
        super().__init__(coding)
        self._d = brotli.Decompressor()
        self._started = False

    def _decode(self, piece: memoryview, size: int) -> tuple[bytes, int, bool]:
        d = self._d
        if d.is_finished():
            if piece:
                raise CodingError(self.coding)  # bytes after the end
            return b"", 0, False
        self._started = self._started or bool(piece)
        # Once the output bound holds output back, the decoder takes no input until it is drained.
        taken = piece if d.can_accept_more_data() else piece[:0]
        out = d.process(taken, output_buffer_limit=size)
        # Input it accepted may still hold output: drained until a call gives none.
        return out, len(taken), bool(out) or not d.can_accept_more_data()

    def _at_end(self) -> bool:
        return not self._started or self._d.is_finished()


class _Unzstd(_Stage):
    """zstd's decompressobj cannot bound its output: it is given a few bytes at a time (one
    run-length block, 4 bytes, may decode to 128 KiB)."""

    step = 16

    def __init__(self, coding: str) -> None:
        super().__init__(coding)
        self._decompressor = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
        self._z: Any = None

    def _decode(self, piece: memoryview, size: int) -> tuple[bytes, int, bool]:
        if not piece:
            return b"", 0, False
        z = self._z
        if z is None or z.eof:
            z = self._z = self._decompressor.decompressobj()
        out = z.decompress(piece)
        used = len(piece) - len(z.unused_data) if z.eof else len(piece)
        return out, used, False

    def _at_end(self) -> bool:
        return self._z is None or self._z.eof


_STAGES: dict[str, type[_Stage]] = {"gzip": _Inflate, "x-gzip": _Inflate, "deflate": _Inflate, "br": _Unbrotli, "zstd": _Unzstd}


class StreamDecoder:
    """A streamed body's Content-Encoding undone as it arrives: L{feed} coded bytes, L{read} decoded
    ones (at most a given size per call), L{end} when the body has ended.

    Raises L{UnsupportedCoding} at once for a coding it does not read; L{read} raises
    L{CodingError} for data that is not valid in its coding, L{DecodedTooLarge} once the
    decoded total would pass C{limit}; L{end}, L{CodingError} for a stream cut short.
    """

    def __init__(self, header: bytes, limit: int) -> None:
        codings = _codings(header)
        for coding in codings:
            if coding not in _STAGES:
                raise UnsupportedCoding(coding)
        # Undone in the reverse of the order they were applied; each stage reads from the one before.
        self._stages = [_STAGES[coding](coding) for coding in reversed(codings)]
        self._limit = limit
        self._plain = _Input() if not self._stages else None
        self.decoded = 0

    def feed(self, data: bytes) -> None:
        (self._stages[0].input if self._stages else self._plain).append(data)  # type: ignore[union-attr]

    def read(self, size: int) -> bytes:
        """At most C{size} decoded bytes; b"" when everything fed so far has been read."""
        out = self._pull(len(self._stages), size)
        self.decoded += len(out)
        if self.decoded > self._limit:
            raise DecodedTooLarge(self._stages[-1].coding if self._stages else "identity")
        return out

    def end(self) -> None:
        """The coded body has ended, all of it read: raise L{CodingError} if it was cut short."""
        for stage in self._stages:
            stage.end()

    def _pull(self, depth: int, size: int) -> bytes:
        """Up to C{size} bytes out of the first C{depth} stages."""
        if depth == 0:
            plain = self._plain
            if plain is None or not plain:
                return b""
            out = bytes(plain.peek(size))
            plain.advance(len(out))
            return out
        stage = self._stages[depth - 1]
        while True:
            out = stage.read(size)
            if out or depth == 1:
                return out
            fed = self._pull(depth - 1, stage.step)
            if not fed:
                return b""
            stage.input.append(fed)
