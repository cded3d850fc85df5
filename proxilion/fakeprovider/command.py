"""`proxilion fake-provider`: run the fake AI provider as a server."""

from __future__ import annotations

import argparse
import sys
from typing import cast


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=9000,
                        help="TCP port to listen on, 0 for any free port (default 9000)")
    parser.add_argument("--bind", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--chunk-delay", type=float, default=0.01,
                        help="seconds between streamed chunks (default 0.01)")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM. Prints the URL (with the real port) once listening."""
    from twisted.internet import reactor
    from twisted.internet.address import IPv4Address, IPv6Address
    from twisted.internet.error import CannotListenError
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from proxilion.fakeprovider import make_site

    if args.chunk_delay < 0:
        print("fake-provider: --chunk-delay must not be negative", file=sys.stderr)
        return 2
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)],
                                     redirectStandardIO=False)
    site = make_site(clock=reactor, chunk_delay=args.chunk_delay)
    try:
        # A deep backlog: benchmarks open hundreds of connections at once.
        # Twisted types listenTCP's factory as a parametrised ServerFactory; Site is not parametrised.
        port = reactor.listenTCP(args.port, site, backlog=1024, interface=args.bind)  # type: ignore[arg-type]
    except CannotListenError as e:
        print(f"fake-provider: cannot listen on {args.bind}:{args.port}: {e.socketError}",
              file=sys.stderr)
        return 1
    host = cast(IPv4Address | IPv6Address, port.getHost())  # a TCP port's address
    print(f"fake provider listening on http://{host.host}:{host.port}", flush=True)
    reactor.run()
    return 0
