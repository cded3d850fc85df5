"""Listening sockets, with SO_REUSEPORT when asked for."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.error import CannotListenError

__all__ = ["listen_tcp"]


def listen_tcp(reactor: Any, port: int, factory: Any, interface: str, reuse_port: bool = False, backlog: int = 1024) -> Any:
    """Listen on C{interface}:C{port}; with C{reuse_port}, processes can share the port.

    Twisted's endpoints cannot set SO_REUSEPORT, so the socket is made here
    and adopted by the reactor.
    """
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    if not reuse_port:
        return reactor.listenTCP(port, factory, backlog=backlog, interface=interface)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((interface, port))
            sock.listen(backlog)
        except OSError as e:
            # The same error listenTCP raises, so callers handle one kind.
            raise CannotListenError(interface, port, e) from None
        sock.setblocking(False)
        listening = reactor.adoptStreamPort(sock.fileno(), family, factory)
    finally:
        # The reactor holds its own duplicate of the descriptor.
        sock.close()
    return listening
