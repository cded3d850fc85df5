"""The PROXY protocol header parser (v1 and v2)."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given, strategies as st

from proxilion.proxy.proxy_protocol import MAX_HEADER, ProxyHeaderError, parse

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(command: int, family: int, body: bytes) -> bytes:
    return SIG + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


V4 = socket.inet_aton("198.51.100.9") + socket.inet_aton("10.0.0.1") + struct.pack("!HH", 4711, 8787)
V6 = socket.inet_pton(socket.AF_INET6, "2001:db8::9") + socket.inet_pton(socket.AF_INET6, "2001:db8::1") + struct.pack("!HH", 1, 2)


@pytest.mark.parametrize(
    "header,source",
    [
        (b"PROXY TCP4 198.51.100.9 10.0.0.1 4711 8787\r\n", "198.51.100.9"),
        (b"PROXY TCP6 2001:db8::9 2001:db8::1 4711 8787\r\n", "2001:db8::9"),
        (b"PROXY UNKNOWN\r\n", None),
        (v2(1, 0x11, V4), "198.51.100.9"),
        (v2(1, 0x11, V4 + b"\x03\x00\x04abcd"), "198.51.100.9"),  # with a TLV
        (v2(1, 0x21, V6), "2001:db8::9"),
        (v2(0, 0x00, b""), None),  # LOCAL: the proxy's own health check
    ],
)
def test_valid_headers(header, source):
    assert parse(header + b"GET / HTTP/1.1\r\n") == (source, len(header))
    # Incomplete: wait for more.
    for cut in range(1, len(header)):
        assert parse(header[:cut]) is None


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"PROXZ",
        b"PROXY TCP4 198.51.100.9 10.0.0.1 4711\r\n",
        b"PROXY TCP4 2001:db8::9 10.0.0.1 1 2\r\n",
        b"PROXY TCP4 198.51.100.9 10.0.0.1 1 65536\r\n",
        b"PROXY TCP4 198.51.100.9 10.0.0.1 +1 2\r\n",
        b"PROXY " + b"9" * 200,
        SIG[:11] + b"X",
        v2(2, 0x11, V4),
        v2(1, 0x11, V4[:8]),
        v2(1, 0x41, V4),
        SIG + b"\x21\x11" + struct.pack("!H", MAX_HEADER),
    ],
)
def test_invalid_headers(data):
    with pytest.raises(ProxyHeaderError):
        parse(data)


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_refuse(data):
    try:
        result = parse(data)
    except ProxyHeaderError:
        return
    if result is not None:
        assert 0 < result[1] <= len(data)
