"""What our protocols use of a connected TCP or TLS transport, as one type.

Twisted spreads it over C{ITransport}, C{ITCPTransport}, C{IPushProducer} and
C{IConsumer}, and types C{Protocol.transport} as C{ITransport | None} (None
before the connection is made). Our protocols touch the transport only once
connected, and their transports (TCP, TLS, the test harness's) provide all of
this; each protocol class declares C{transport: StreamTransport}.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IAddress, IPushProducer


class StreamTransport(Protocol):
    disconnecting: bool
    # The producer registered with it, if any.
    producer: object

    def write(self, data: bytes) -> None: ...

    def writeSequence(self, data: list[bytes]) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...

    def getPeer(self) -> IAddress: ...

    def getHost(self) -> IAddress: ...

    def setTcpNoDelay(self, enabled: bool) -> None: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def stopProducing(self) -> None: ...

    def registerProducer(self, producer: IPushProducer | StreamTransport, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...
