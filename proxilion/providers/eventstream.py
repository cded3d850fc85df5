"""AWS event-stream framing (application/vnd.amazon.eventstream), used by Bedrock streams.

Frame: total length (u32), headers length (u32), prelude CRC32, headers,
payload, message CRC32. Only string headers (type 7) are produced; other
header types are skipped over when reading.
"""

from __future__ import annotations

import struct
import zlib

_PRELUDE = struct.Struct(">II")
_STRING = 7
# Sizes of the fixed-width header value types, indexed by type byte (0-5, 8, 9).
_FIXED_SIZES = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
MAX_FRAME = 16 * 1024 * 1024


class EventStreamError(ValueError):
    """A frame whose lengths or checksums are wrong."""


def encode(headers: dict[str, str], payload: bytes) -> bytes:
    raw_headers = b"".join(
        struct.pack(">B", len(name.encode())) + name.encode()
        + struct.pack(">BH", _STRING, len(value.encode())) + value.encode()
        for name, value in headers.items()
    )
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = _PRELUDE.pack(total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def _decode_headers(raw: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    pos = 0
    while pos < len(raw):
        name_len = raw[pos]
        name = raw[pos + 1:pos + 1 + name_len].decode("utf-8", "replace")
        pos += 1 + name_len
        kind = raw[pos]
        pos += 1
        if kind in (6, _STRING):
            (size,) = struct.unpack_from(">H", raw, pos)
            value = raw[pos + 2:pos + 2 + size]
            pos += 2 + size
            if kind == _STRING:
                headers[name] = value.decode("utf-8", "replace")
        elif kind in _FIXED_SIZES:
            pos += _FIXED_SIZES[kind]
        else:
            raise EventStreamError("unknown header type")
    return headers


def split_frames(buffer: bytearray) -> list[tuple[dict[str, str], bytes]]:
    """Remove and decode every complete frame at the start of `buffer`."""
    frames = []
    while len(buffer) >= 12:
        total, headers_len = _PRELUDE.unpack_from(buffer, 0)
        if total < 16 or total > MAX_FRAME or headers_len > total - 16:
            raise EventStreamError("bad frame length")
        if len(buffer) < total:
            break
        frame = bytes(buffer[:total])
        del buffer[:total]
        if zlib.crc32(frame[:-4]) != struct.unpack(">I", frame[-4:])[0]:
            raise EventStreamError("bad frame checksum")
        headers = _decode_headers(frame[12:12 + headers_len])
        frames.append((headers, frame[12 + headers_len:-4]))
    return frames
