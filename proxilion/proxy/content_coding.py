"""Undo a request body's Content-Encoding so inspection reads what the provider would read.

Pure: no Twisted, no I/O. gzip (and x-gzip) and deflate are decoded, in the
reverse of the order they were applied; anything else is refused, because a
body we cannot read must not pass unread. Output is bounded: a small
compressed body may not expand past the proxy's body size limit.
"""

from __future__ import annotations

import zlib

__all__ = ["CodingError", "UnsupportedCoding", "DecodedTooLarge", "decode", "is_identity"]

_IDENTITY = frozenset({"", "identity"})


class CodingError(ValueError):
    """The body is not valid data in the coding its header names."""

    def __init__(self, coding: str) -> None:
        super().__init__(coding)
        self.coding = coding


class UnsupportedCoding(CodingError):
    """A coding we do not decode (br, zstd, compress, ...)."""


class DecodedTooLarge(CodingError):
    """The decoded body would be larger than the limit."""


def _codings(header: bytes) -> list[str]:
    """The codings a Content-Encoding value names, in the order they were applied, identity left out."""
    codings = (c.strip().lower() for c in header.decode("latin-1").split(","))
    return [c for c in codings if c not in _IDENTITY]


def is_identity(header: bytes) -> bool:
    """True when a Content-Encoding value (several lines joined by commas) names no coding."""
    return not _codings(header)


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
        else:
            raise UnsupportedCoding(coding)
    return body


def _inflate(data: bytes, wbits: int, limit: int, coding: str) -> bytes:
    out = bytearray()
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error:
            raise CodingError(coding) from None
        if len(out) > limit:
            raise DecodedTooLarge(coding)
        if not inflater.eof:
            # Either the output limit stopped it, with input left over, or the data is cut short.
            raise DecodedTooLarge(coding) if inflater.unconsumed_tail else CodingError(coding)
        # gzip allows several members one after another.
        data = inflater.unused_data
        if not data or wbits != 16 + zlib.MAX_WBITS:
            break
    return bytes(out)
