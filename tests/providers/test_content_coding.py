"""Request bodies' Content-Encoding is undone before inspection, within the size limit."""

from __future__ import annotations

import gzip
import os
import time
import zlib

import brotli
import pytest
import zstandard

from proxilion.providers import content_coding
from proxilion.providers.content_coding import CodingError, DecodedTooLarge, UnsupportedCoding, decode, is_identity

BODY = b'{"messages": [{"role": "user", "content": "card 4111 1111 1111 1111"}]}'


@pytest.mark.parametrize(
    "encoded, header",
    [
        (gzip.compress(BODY), b"gzip"),
        (gzip.compress(BODY), b"x-gzip"),
        (gzip.compress(BODY), b" GZIP "),
        (zlib.compress(BODY), b"deflate"),
        (zlib.compress(BODY)[2:-4], b"deflate"),  # raw deflate, as some clients send it
        (gzip.compress(zlib.compress(BODY)), b"deflate, gzip"),  # applied in order: decoded in reverse
        (BODY, b"identity"),
        (gzip.compress(BODY[:20]) + gzip.compress(BODY[20:]), b"gzip"),  # two gzip members
        (brotli.compress(BODY), b"br"),
        (zstandard.ZstdCompressor().compress(BODY), b"zstd"),
        (zstandard.ZstdCompressor().compress(BODY[:20]) + zstandard.ZstdCompressor().compress(BODY[20:]), b"zstd"),
        (gzip.compress(brotli.compress(BODY)), b"br, gzip"),
    ],
)
def test_decoded(encoded, header):
    assert decode(encoded, header, 1 << 20) == BODY


@pytest.mark.parametrize("header", [b"compress", b"gzip, compress"])
def test_codings_we_cannot_read_are_refused(header):
    with pytest.raises(UnsupportedCoding):
        decode(gzip.compress(BODY), header, 1 << 20)


@pytest.mark.parametrize("data, header", [(b"not gzip at all", b"gzip"), (gzip.compress(BODY)[:-12], b"gzip"),
                                          (b"not brotli at all", b"br"), (brotli.compress(BODY)[:-3], b"br"),
                                          (brotli.compress(BODY) + b"junk", b"br"), (b"not zstd at all", b"zstd")])
def test_corrupt_or_truncated_data_is_an_error(data, header):
    with pytest.raises(CodingError) as caught:
        decode(data, header, 1 << 20)
    assert not isinstance(caught.value, (UnsupportedCoding, DecodedTooLarge))


def test_a_small_body_may_not_expand_past_the_limit():
    bomb = gzip.compress(b"\0" * (20 << 20))
    assert len(bomb) < 100_000
    with pytest.raises(DecodedTooLarge):
        decode(bomb, b"gzip", 10 << 20)
    assert decode(gzip.compress(b"x" * 1000), b"gzip", 1000) == b"x" * 1000
    with pytest.raises(DecodedTooLarge):
        decode(gzip.compress(b"x" * 1001), b"gzip", 1000)


@pytest.mark.parametrize("compress, header", [(brotli.compress, b"br"), (zstandard.ZstdCompressor().compress, b"zstd")])
def test_br_and_zstd_bombs_stop_at_the_limit(compress, header):
    bomb = compress(b"\0" * (64 << 20))
    assert len(bomb) < 100_000
    started = time.perf_counter()
    with pytest.raises(DecodedTooLarge):
        decode(bomb, header, 1 << 20)
    assert time.perf_counter() - started < 1
    assert decode(compress(b"x" * 1000), header, 1000) == b"x" * 1000
    with pytest.raises(DecodedTooLarge):
        decode(compress(b"x" * 1001), header, 1000)


@pytest.mark.parametrize("header, identity", [(b"", True), (b"identity", True), (b"Identity, identity", True), (b" , ", True),
                                              (b"gzip", False), (b"identity, gzip", False), (b"br", False)])
def test_is_identity(header, identity):
    assert is_identity(header) is identity


def test_many_members_inflate_in_linear_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each member used to copy the rest of the body: 200,000 members took minutes.
    monkeypatch.setattr(content_coding, "MAX_MEMBERS", 10**9)
    body = gzip.compress(b"", mtime=0) * 200_000 + gzip.compress(b"end", mtime=0)
    started = time.perf_counter()
    assert content_coding.decode(body, b"gzip", 10 * 1024 * 1024) == b"end"
    assert time.perf_counter() - started < 5


def test_too_many_members_are_refused() -> None:
    body = gzip.compress(b"", mtime=0) * (content_coding.MAX_MEMBERS + 1)
    with pytest.raises(content_coding.CodingError):
        content_coding.decode(body, b"gzip", 10 * 1024 * 1024)
    members = b"".join(gzip.compress(b"%d," % i, mtime=0) for i in range(content_coding.MAX_MEMBERS))
    assert content_coding.decode(members, b"gzip", 10 * 1024 * 1024).count(b",") == content_coding.MAX_MEMBERS


def test_member_spanning_many_pieces_is_decoded_whole() -> None:
    data = os.urandom(300_000)
    assert content_coding.decode(gzip.compress(data) + gzip.compress(b"!"), b"gzip", 1 << 20) == data + b"!"
    with pytest.raises(content_coding.CodingError):
        content_coding.decode(gzip.compress(data)[:-9], b"gzip", 1 << 20)
