"""The PROXY protocol header (HAProxy's spec, versions 1 and 2): who the load balancer's client is.

Pure: no Twisted, no I/O. L{ProxyConnection} feeds it the first bytes of a
connection from a trusted proxy. Twisted's C{HAProxyWrappingFactory} was not
used: it wraps every connection in a C{ProtocolWrapper} (one more call per read
and write), calls our C{connectionMade} before the header has arrived (so the
peer is the load balancer's address, not the client's), drops a header split
across two reads shorter than 16 bytes, and hides the TCP transport's buffer
state that C{http11.write_now} reads (the wrapper's C{disconnecting} is
always 0); and it cannot tell a trusted peer from another.
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = ["ProxyHeaderError", "parse", "MAX_HEADER"]

V1_PREFIX = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_MAX = 107  # the spec's longest v1 line, CRLF included
# v2 headers carry TLVs after the addresses; a load balancer's are small. Anything
# longer is refused rather than buffered.
MAX_HEADER = 4096


class ProxyHeaderError(ValueError):
    """The connection does not start with a valid PROXY protocol header."""


def parse(data: bytes) -> tuple[str | None, int] | None:
    """Read a PROXY header at the start of C{data}.

    Returns None while more bytes are needed, else C{(source, length)}: the
    client address (None for v2 LOCAL and v1 UNKNOWN: the proxy speaks for
    itself, as in its health checks) and how many bytes the header took.
    Raises L{ProxyHeaderError} as soon as C{data} cannot begin a valid header.
    """
    if data[:1] == b"P":
        if not V1_PREFIX.startswith(data[:6]):
            raise ProxyHeaderError("not a PROXY protocol header")
        return _v1(data)
    if data[:1] == b"\r":
        if not V2_SIGNATURE.startswith(data[:12]):
            raise ProxyHeaderError("not a PROXY protocol header")
        return _v2(data)
    if data:
        raise ProxyHeaderError("not a PROXY protocol header")
    return None


def _v1(data: bytes) -> tuple[str | None, int] | None:
    end = data.find(b"\r\n", 0, _V1_MAX)
    if end < 0:
        if len(data) >= _V1_MAX:
            raise ProxyHeaderError("PROXY v1 line too long")
        return None
    parts = data[:end].split(b" ")
    if parts[1:2] == [b"UNKNOWN"]:
        return None, end + 2
    if len(parts) != 6 or parts[1] not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError("malformed PROXY v1 line")
    try:
        source = ipaddress.ip_address(parts[2].decode("ascii"))
        ipaddress.ip_address(parts[3].decode("ascii"))
        ports = [int(p) for p in parts[4:6]]
    except (ValueError, UnicodeDecodeError):
        raise ProxyHeaderError("malformed PROXY v1 addresses") from None
    if source.version != (4 if parts[1] == b"TCP4" else 6) or not all(0 <= p <= 65535 for p in ports) \
            or any(p != str(int(p)).encode() for p in parts[4:6]):
        raise ProxyHeaderError("malformed PROXY v1 addresses")
    return str(source), end + 2


def _v2(data: bytes) -> tuple[str | None, int] | None:
    if len(data) < 16:
        return None
    version_command, family, length = data[12], data[13], struct.unpack("!H", data[14:16])[0]
    if version_command >> 4 != 2 or version_command & 0x0F > 1:
        raise ProxyHeaderError("unsupported PROXY v2 version or command")
    if 16 + length > MAX_HEADER:
        raise ProxyHeaderError("PROXY v2 header too long")
    if len(data) < 16 + length:
        return None
    if version_command & 0x0F == 0:
        return None, 16 + length
    body = data[16:16 + length]
    if family in (0x11, 0x12) and length >= 12:  # TCP or UDP over IPv4
        source = str(ipaddress.IPv4Address(body[:4]))
    elif family in (0x21, 0x22) and length >= 36:  # over IPv6
        address = ipaddress.IPv6Address(body[:16])
        source = str(address.ipv4_mapped or address)
    elif family in (0x00, 0x31, 0x32):  # UNSPEC or a Unix socket: no client address to report
        source = None
    else:
        raise ProxyHeaderError("unsupported PROXY v2 address family")
    return source, 16 + length
