"""Undo a body's Content-Encoding (a request's, or an answer's) so inspection reads what the provider would read.

Pure: no Twisted, no I/O. gzip (and x-gzip) and deflate are decoded, in the
reverse of the order they were applied, and so are br and zstd (answers come
that way from providers that ignore Accept-Encoding); anything else is refused,
because a body we cannot read must not pass unread. Output is bounded: a small
compressed body may not expand past the proxy's body size limit. Every decoder
is fed its input once, so time is linear in input plus output.
"""

from __future__ import annotations

import io
import zlib

import brotli
import zstandard

__all__ = ["CodingError", "UnsupportedCoding", "DecodedTooLarge", "decode", "decodable", "is_identity"]

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
