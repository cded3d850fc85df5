"""The reactor `twistd proxilion` installs when none was chosen: epoll, without a log context per I/O event.

Twisted's epoll reactor runs each ready descriptor's read or write inside
C{twisted.python.log.callWithLogger}, which sets up a legacy log context
(the connection's log prefix as C{system}) around the call. Nothing here
logs through that context: our lines come from C{twisted.logger} and carry
their own fields. It was a tenth of the CPU of relaying a stream (each SSE
event is a separate wake-up) and a twentieth of a small request's, measured
with py-spy and an A/B of CPU per stream (bench/README.md).

Everything else is Twisted's epoll reactor. An exception escaping the
descriptor's handling is still logged, as callWithLogger logs it.
"""

from __future__ import annotations

import errno
import sys

from twisted.python import log

__all__ = ["install_unless_chosen"]


def _reactor_class() -> type | None:
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:  # not Linux
        return None
    if not hasattr(EPollReactor, "_doReadOrWrite"):
        # Twisted changed the internals this relies on: keep its own reactor.
        return None

    class ProxilionEPollReactor(EPollReactor):
        def doPoll(self, timeout: float | None) -> None:
            if timeout is None:
                timeout = -1
            try:
                ready = self._poller.poll(timeout, len(self._selectables))
            except OSError as err:
                if err.errno == errno.EINTR:
                    return
                raise
            handle = self._doReadOrWrite
            selectable_of = self._selectables.get
            for fd, event in ready:
                selectable = selectable_of(fd)
                if selectable is None:
                    continue
                try:
                    handle(selectable, fd, event)
                except KeyboardInterrupt:
                    raise
                except BaseException:
                    log.err(None, "Unhandled error handling a ready descriptor")

        doIteration = doPoll

    return ProxilionEPollReactor


def install_unless_chosen() -> bool:
    """Install L{ProxilionEPollReactor} if no reactor is installed yet; True when it was.

    A reactor chosen with C{twistd --reactor}, or installed by the embedding
    program, is kept.
    """
    if "twisted.internet.reactor" in sys.modules:
        return False
    cls = _reactor_class()
    if cls is None:
        return False
    from twisted.internet.main import installReactor

    installReactor(cls())
    return True
