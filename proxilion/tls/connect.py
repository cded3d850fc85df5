"""CONNECT on the proxy port: intercept provider hosts, deny or tunnel the rest.

A provider host on port 443 is answered 200 and the same connection turns into
TLS with the host's leaf; the requests inside go through the whole pipeline.
Any other target is refused (CONNECT_POLICY=deny) or relayed blind
(CONNECT_POLICY=tunnel), and only to a host name on port 443 that resolves to
public addresses unless CONNECT_ALLOW names it: never an open proxy, nor a way
into the private network (SSRF). A provider host is never
tunnelled, since a tunnel would carry its prompts past inspection.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from proxilion.providers.errors import error_body
from proxilion.proxy.headers import request_id
from proxilion.proxy.routing import provider_for_host
from proxilion.transport import StreamTransport

__all__ = ["ConnectPolicy", "parse_authority", "refuse_request", "handle_connect", "check_intercepted", "CONNECT_DECISIONS"]

log = Logger(namespace="proxilion.tls")

CONNECT_DECISIONS = ("intercept", "deny", "tunnel")
# Seconds to reach a tunnel's target before the client gets a 502.
_TUNNEL_CONNECT_TIMEOUT = 10.0


def parse_authority(uri: bytes) -> tuple[str, int] | None:
    """C{host:port} of a CONNECT request line, or None when it is not one."""
    try:
        text = uri.decode("ascii")
    except UnicodeDecodeError:
        return None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if not sep:
            return None
    else:
        host, _, port_text = text.rpartition(":")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536 or any(c in host for c in "/@ ?#"):
        return None
    return host.lower().rstrip("."), int(port_text)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_public(address: str) -> bool:
    """True for an address on the public Internet: never loopback, private, link-local (cloud metadata) or reserved."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def refuse_request(connection: Any, request: Any, status: int, message: str, code: str, provider: str = "unknown") -> None:
    """Answer C{request} with a provider-shaped error and close; its audit row is journaled first."""
    body = error_body(provider, status, message, code)
    rid = request_id(request.header(b"x-request-id"))
    connection.ctx.metrics.rejected_requests.labels(code).inc()
    connection._account(request, provider, rid, request.uri, status, code, len(body), len(request.body))
    request.close_after()
    request.set_code(status)
    request.response_headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)), (b"x-request-id", rid)]
    request.write(body)
    request.finish()


class ConnectPolicy:
    """What CONNECT may reach: intercepted provider hosts, and what CONNECT_POLICY and CONNECT_ALLOW let through."""

    def __init__(self, policy: str, allow: tuple[str, ...], metrics: Any, reactor: Any, can_intercept: Callable[[], bool]) -> None:
        self.policy = policy
        self.allow = allow
        self._metrics = metrics
        self._reactor = reactor
        self._can_intercept = can_intercept
        for decision in CONNECT_DECISIONS:
            # Every series exists from the start, so a rate() sees the first one.
            metrics.connect_requests.labels(decision)

    def allowlisted(self, host: str, port: int) -> bool:
        for pattern in self.allow:
            pattern_host, sep, pattern_port = pattern.rpartition(":") if not pattern.endswith("]") and pattern.count(":") == 1 else (pattern, "", "")
            if not sep:
                pattern_host, pattern_port = pattern, "443"
            if pattern_port not in ("*", str(port)):
                continue
            if fnmatch.fnmatchcase(host, pattern_host.lower().strip("[]")):
                return True
        return False

    def decide(self, host: str, port: int) -> tuple[str, str]:
        """(decision, reason): intercept, tunnel or deny."""
        provider = provider_for_host(host)
        plain = port == 443 and not _is_ip(host)
        if provider is not None:
            if not self._can_intercept():
                return "deny", "interception is not configured (CA_CERT_FILE)"
            if port != 443 and not self.allowlisted(host, port):
                return "deny", "provider hosts are intercepted on port 443 only"
            return "intercept", ""
        if self.policy != "tunnel":
            return "deny", "not a known AI provider (CONNECT_POLICY=deny)"
        if self.allowlisted(host, port):
            return "tunnel", ""
        if self.allow:
            return "deny", "not in CONNECT_ALLOW"
        if not plain:
            return "deny", "IP literals and ports other than 443 need CONNECT_ALLOW"
        return "tunnel", ""

    def count(self, decision: str) -> None:
        self._metrics.connect_requests.labels(decision).inc()

    def open_tunnel(self, connection: Any, request: Any, host: str, port: int) -> None:
        """Resolve C{host}, refuse a private or loopback address unless allowlisted, then connect to the
        address checked (no second lookup a rebinding DNS could answer differently); on success answer 200
        and relay bytes both ways until either side closes."""
        connection.transport.pauseProducing()
        allowlisted = self.allowlisted(host, port)
        resolved: Deferred[Any]
        if _is_ip(host):
            resolved = Deferred()
            resolved.callback([host])
        else:
            # getaddrinfo blocks: the reactor's thread pool runs it.
            resolved = deferToThreadPool(self._reactor, self._reactor.getThreadPool(), _addresses, host, port)
        resolved.addCallbacks(lambda addresses: self._connect(connection, request, host, port, addresses, allowlisted),
                              lambda _: self._refuse(connection, request, 502, f"Could not resolve {host}.", "tunnel_connect_failed"))

    def _refuse(self, connection: Any, request: Any, status: int, message: str, code: str) -> None:
        if connection.lost:
            return
        connection.transport.resumeProducing()
        refuse_request(connection, request, status, message, code)

    def _connect(self, connection: Any, request: Any, host: str, port: int, addresses: list[str], allowlisted: bool) -> None:
        if connection.lost:
            return
        if not addresses:
            self._refuse(connection, request, 502, f"Could not resolve {host}.", "tunnel_connect_failed")
            return
        if not allowlisted and not all(_is_public(a) for a in addresses):
            self.count("deny")
            log.info("CONNECT {host}:{port} denied: resolves to a private address", host=host, port=port)
            self._refuse(connection, request, 403, f"CONNECT to {host}:{port} is not allowed: it resolves to a private or loopback"
                         " address (CONNECT_ALLOW). Proxilion is not an open proxy.", "connect_denied")
            return
        self.count("tunnel")
        log.info("CONNECT {host}:{port} tunnelled", host=host, port=port)
        address = addresses[0]
        endpoint_type = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
        endpoint = endpoint_type(self._reactor, address, port, timeout=_TUNNEL_CONNECT_TIMEOUT)
        tunnel = _Tunnel(connection, request, host, port, self._reactor.seconds())
        endpoint.connect(_TunnelFactory(tunnel)).addErrback(tunnel.failed)


def _addresses(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


class _Tunnel:
    """Both ends of one blind tunnel and its byte counts."""

    def __init__(self, client: Any, request: Any, host: str, port: int, started: float) -> None:
        self.client = client
        self.request = request
        self.host = host
        self.port = port
        self.started = started
        self.upstream: _TunnelUpstream | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.pending = b""
        self._recorded = False

    def failed(self, reason: Any) -> None:
        if self.client.lost:
            return
        self.client.transport.resumeProducing()
        refuse_request(self.client, self.request, 502, f"Could not connect to {self.host}:{self.port}.", "tunnel_connect_failed")

    def connected(self, upstream: "_TunnelUpstream") -> None:
        client = self.client
        if client.lost:
            upstream.transport.loseConnection()
            return
        self.upstream = upstream
        client.current = None
        client.mode = "connect"
        client.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        client.relay = self.from_client
        client.on_relay_lost = self.client_lost
        # Each side stops reading while the other cannot take more.
        client.transport.registerProducer(upstream.transport, True)
        upstream.transport.registerProducer(client.transport, True)
        if self.pending:
            self.from_client(self.pending)
            self.pending = b""
        client.transport.resumeProducing()
        log.info("tunnel open to {host}:{port}", host=self.host, port=self.port)

    def from_client(self, data: bytes) -> None:
        if self.upstream is None:
            self.pending += data
            return
        self.bytes_in += len(data)
        self.upstream.transport.write(data)

    def from_upstream(self, data: bytes) -> None:
        self.bytes_out += len(data)
        self.client.transport.write(data)

    def client_lost(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.loseConnection()
        self.record()

    def upstream_lost(self) -> None:
        if not self.client.lost:
            self.client.transport.loseConnection()
        self.record()

    def record(self) -> None:
        if self._recorded:
            return
        self._recorded = True
        client = self.client
        rid = request_id(self.request.header(b"x-request-id"))
        client._account(self.request, "unknown", rid, self.request.uri, 200, "tunnel", self.bytes_out, self.bytes_in, decision="tunnel")


class _TunnelUpstream(Protocol):
    transport: StreamTransport  # type: ignore[assignment]  # see proxilion.transport

    def __init__(self, tunnel: _Tunnel) -> None:
        self.tunnel = tunnel

    def connectionMade(self) -> None:
        self.tunnel.connected(self)

    def dataReceived(self, data: bytes) -> None:
        self.tunnel.from_upstream(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.tunnel.upstream_lost()


class _TunnelFactory(Factory):
    noisy = False

    def __init__(self, tunnel: _Tunnel) -> None:
        self.tunnel = tunnel

    def buildProtocol(self, addr: Any) -> _TunnelUpstream:
        return _TunnelUpstream(self.tunnel)


def handle_connect(connection: Any, request: Any, interception: Any) -> None:
    """Answer a CONNECT on the proxy port: intercept, tunnel or deny (see the module docstring)."""
    policy: ConnectPolicy | None = interception.connect if interception is not None else None
    target = parse_authority(request.uri)
    if target is None:
        refuse_request(connection, request, 400, "CONNECT needs host:port.", "bad_connect_target")
        return
    host, port = target
    if connection.tls is not None or connection.current is not request:
        # A CONNECT inside an intercepted connection, or pipelined behind another request.
        decision, reason = "deny", "CONNECT must be the first request of a plain connection"
    elif policy is None:
        decision, reason = "deny", "not a known AI provider (CONNECT_POLICY=deny)"
    else:
        decision, reason = policy.decide(host, port)
    if policy is not None and decision != "tunnel":
        # A tunnel is counted once its target resolved to an address it may reach.
        policy.count(decision)
    provider = provider_for_host(host) or "unknown"
    if decision == "deny":
        log.info("CONNECT {host}:{port} denied: {reason}", host=host, port=port, reason=reason)
        refuse_request(connection, request, 403, f"CONNECT to {host}:{port} is not allowed: {reason}. Proxilion is not an open proxy.",
                       "connect_denied", provider)
        return
    assert policy is not None
    if decision == "tunnel":
        policy.open_tunnel(connection, request, host, port)
        return

    def switch(rest: bytes) -> bool:
        connection.current = None
        connection.mode = "connect"
        connection.reset_parser()
        connection.transport.startTLS(interception.tls_for("connect", host))
        if rest:
            # Bytes of the ClientHello that came with the CONNECT head.
            connection.transport.protocol.dataReceived(rest)
        return True

    connection.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    connection.switch = switch


def check_intercepted(connection: Any, request: Any) -> bool:
    """A request inside an intercepted connection must name the host the TLS was for; False when refused."""
    state = connection.tls
    host = state.host if state is not None else None
    if host is None:
        refuse_request(connection, request, 421, "The TLS handshake named no provider host.", "misdirected_request")
        return False
    provider = provider_for_host(host) or "unknown"
    values = request.header_values(b"host")
    named = values[0].decode("latin-1").lower().rstrip(".") if len(values) == 1 else ""
    name, sep, port = named.rpartition(":")
    if sep and port.isdigit():
        # The upstream is chosen by the host alone; a port (443, or TLS_PORT behind a port map) changes nothing.
        named = name.rstrip(".")
    if named != host:
        refuse_request(connection, request, 421, f"The Host header must be {host}, the host this TLS connection is for.",
                       "misdirected_request", provider)
        return False
    if not request.uri.startswith(b"/") or request.uri.startswith(b"/proxy/"):
        # Inside the tunnel the upstream is the host's; a path must not pick another.
        refuse_request(connection, request, 421, f"Send origin-form paths to {host}.", "misdirected_request", provider)
        return False
    return True
