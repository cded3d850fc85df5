"""A streamed answer's Content-Encoding is undone as it arrives: any split, bounded reads, bombs stopped."""

from __future__ import annotations

import gzip
import os
import time
import zlib

import brotli
import pytest
import zstandard
from hypothesis import given, settings, strategies as st

from proxilion.providers.content_coding import CodingError, DecodedTooLarge, StreamDecoder, UnsupportedCoding

EVENTS = b"".join(b'data: {"choices":[{"delta":{"content":"word %d "}}]}\n\n' % i for i in range(300))


def _flushed_gzip(data: bytes, every: int = 57) -> bytes:
    """gzip as a streaming server writes it: a sync flush after each piece."""
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    return b"".join(z.compress(data[i:i + every]) + z.flush(zlib.Z_SYNC_FLUSH) for i in range(0, len(data), every)) + z.flush()


CODINGS = {
    b"gzip": gzip.compress,
    b"x-gzip": gzip.compress,
    b"deflate": zlib.compress,
    b"br": brotli.compress,
    b"zstd": lambda d: zstandard.ZstdCompressor().compress(d),
}


def _decode(decoder: StreamDecoder, pieces: list[bytes], size: int = 1024) -> bytes:
    out = bytearray()
    for piece in pieces:
        decoder.feed(piece)
        while chunk := decoder.read(size):
            assert len(chunk) <= size
            out += chunk
    decoder.end()
    return bytes(out)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


@settings(max_examples=60, deadline=None)
@given(coding=st.sampled_from(sorted(CODINGS)), cuts=st.lists(st.integers(min_value=0), max_size=20),
       size=st.integers(min_value=1, max_value=4096))
def test_any_split_and_read_size_decodes_the_same(coding: bytes, cuts: list[int], size: int) -> None:
    encoded = CODINGS[coding](EVENTS)
    assert _decode(StreamDecoder(coding, 1 << 20), _split(encoded, cuts), size) == EVENTS


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_a_flushed_gzip_stream_gives_each_piece_as_soon_as_it_arrives(cuts: list[int]) -> None:
    encoded = _flushed_gzip(EVENTS)
    assert _decode(StreamDecoder(b"gzip", 1 << 20), _split(encoded, cuts)) == EVENTS
    # Each flushed piece decodes without waiting for the next one.
    decoder, seen = StreamDecoder(b"gzip", 1 << 20), bytearray()
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    for i in range(0, 570, 57):
        decoder.feed(z.compress(EVENTS[i:i + 57]) + z.flush(zlib.Z_SYNC_FLUSH))
        while chunk := decoder.read(1024):
            seen += chunk
        assert bytes(seen) == EVENTS[:i + 57]


@pytest.mark.parametrize("encoded, header", [
    (zlib.compress(EVENTS)[2:-4], b"deflate"),  # raw deflate, as some servers send it
    (gzip.compress(EVENTS[:100]) + gzip.compress(EVENTS[100:]), b"gzip"),  # two members
    (zstandard.ZstdCompressor().compress(EVENTS[:100]) + zstandard.ZstdCompressor().compress(EVENTS[100:]), b"zstd"),
    (gzip.compress(brotli.compress(EVENTS)), b"br, gzip"),  # applied in order: undone in reverse
    (EVENTS, b"identity"),
    (b"", b"gzip"),
])
def test_the_variants_whole_bodies_accept(encoded: bytes, header: bytes) -> None:
    expected = EVENTS if encoded else b""
    assert _decode(StreamDecoder(header, 1 << 20), _split(encoded, list(range(0, len(encoded), 7)))) == expected


@pytest.mark.parametrize("coding", sorted(CODINGS))
def test_corrupt_truncated_or_trailing_data_is_an_error(coding: bytes) -> None:
    encoded = CODINGS[coding](EVENTS)
    for broken in (b"\x00not compressed data at all" * 4, encoded[:-5], encoded + b"junk after the end"):
        with pytest.raises(CodingError) as caught:
            _decode(StreamDecoder(coding, 1 << 20), [broken])
        assert not isinstance(caught.value, (UnsupportedCoding, DecodedTooLarge))


def test_a_coding_it_cannot_read_is_refused_at_once() -> None:
    with pytest.raises(UnsupportedCoding):
        StreamDecoder(b"gzip, compress", 1 << 20)


@pytest.mark.parametrize("coding", [b"gzip", b"deflate", b"br", b"zstd"])
def test_a_bomb_stops_at_the_limit_with_bounded_reads_in_linear_time(coding: bytes) -> None:
    bomb = CODINGS[coding](b"\0" * (64 << 20))
    assert len(bomb) < 100_000
    decoder = StreamDecoder(coding, 4 << 20)
    started = time.perf_counter()
    out = 0
    with pytest.raises(DecodedTooLarge):
        for i in range(0, len(bomb), 1024):
            decoder.feed(bomb[i:i + 1024])
            while chunk := decoder.read(1024):
                assert len(chunk) <= 1024
                out += len(chunk)
    assert out <= 4 << 20
    assert time.perf_counter() - started < 2
    # The limit is on the decoded total: exactly the limit passes.
    assert _decode(StreamDecoder(coding, 5000), [CODINGS[coding](b"x" * 5000)]) == b"x" * 5000


@pytest.mark.parametrize("coding", sorted(CODINGS))
def test_a_long_stream_compressed_whole_decodes_to_its_end(coding: bytes) -> None:
    # 5 MB of events compress a thousandfold with br: the decoder holds output back past its input.
    events = EVENTS * 300
    decoder = StreamDecoder(coding, len(events))
    coded = CODINGS[coding](events)
    assert _decode(decoder, [coded[i:i + 65536] for i in range(0, len(coded), 65536)]) == events


@pytest.mark.parametrize("coding", [b"gzip", b"br", b"zstd"])
def test_one_large_piece_read_slowly_holds_little(coding: bytes) -> None:
    # A whole upstream read (64 KiB of incompressible data) read 1 KiB at a time:
    # the decoder copies no more than a step of input per read (linear, not quadratic).
    data = os.urandom(1 << 20)
    decoder = StreamDecoder(coding, 2 << 20)
    decoder.feed(CODINGS[coding](data))
    started = time.perf_counter()
    out = bytearray()
    while chunk := decoder.read(1024):
        out += chunk
    decoder.end()
    assert bytes(out) == data
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("encoded", [zlib.compress(EVENTS[:2000]), zlib.compress(EVENTS[:2000])[2:-4]], ids=["zlib", "raw"])
def test_deflate_fed_a_byte_at_a_time_tells_zlib_from_raw(encoded: bytes) -> None:
    pieces = [encoded[i:i + 1] for i in range(len(encoded))]
    assert _decode(StreamDecoder(b"deflate", 1 << 20), pieces, 7) == EVENTS[:2000]
