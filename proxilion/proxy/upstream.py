"""The upstream HTTP client: one persistent pool, cached endpoints, bounded waits."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IConsumer
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool, Response, _HTTP11ClientFactory
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

__all__ = ["UpstreamClient", "BytesProducer", "UpstreamTimeout"]

_MAX_CACHED_ENDPOINTS = 1024


class _QuietClientFactory(_HTTP11ClientFactory):
    # One "Starting factory" line per upstream connection is noise, not news.
    noisy = False


class UpstreamTimeout(Exception):
    """The upstream sent no response headers in time."""


@implementer(IBodyProducer)
class BytesProducer:
    """A request body already held in memory."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(IAgentEndpointFactory)
class _CachedEndpoints:
    """Endpoints per (scheme, host, port), built once: Agent's default re-encodes the host (IDNA) per request."""

    def __init__(self, reactor: Any, connect_timeout: float) -> None:
        self._reactor = reactor
        self._timeout = connect_timeout
        self._policy = BrowserLikePolicyForHTTPS()
        self._cache: dict[tuple[bytes, bytes, int], Any] = {}

    def endpointForURI(self, uri: Any) -> Any:
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._cache.get(key)
        if endpoint is None:
            if len(self._cache) >= _MAX_CACHED_ENDPOINTS:
                self._cache.clear()
            host = uri.host.decode("ascii")
            endpoint = HostnameEndpoint(self._reactor, host, uri.port, timeout=self._timeout)
            if uri.scheme == b"https":
                endpoint = wrapClientTLS(self._policy.creatorForNetloc(uri.host, uri.port), endpoint)
            self._cache[key] = endpoint
        return endpoint


class UpstreamClient:
    """Sends requests upstream through a persistent keep-alive pool."""

    def __init__(self, reactor: Any, pool_size: int, connect_timeout: float, response_timeout: float) -> None:
        self._reactor = reactor
        self._response_timeout = response_timeout
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool._factory = _QuietClientFactory
        self.pool.maxPersistentPerHost = pool_size
        self.pool.cachedConnectionTimeout = 120
        # Non-idempotent POSTs must never be replayed on a new connection behind our back.
        self.pool.retryAutomatically = False
        self._agent = Agent.usingEndpointFactory(reactor, _CachedEndpoints(reactor, connect_timeout), pool=self.pool)

    def request(self, method: bytes, url: bytes, headers: Headers, body: bytes | None) -> Deferred[Response]:
        """Send a request; the Deferred fails with L{UpstreamTimeout} if headers take too long.

        Cancelling the returned Deferred (client went away) aborts the upstream request.
        """
        producer = BytesProducer(body) if body is not None else None
        d = self._agent.request(method, url, headers, producer)
        timed_out = []

        def on_timeout() -> None:
            timed_out.append(True)
            d.cancel()

        timer = self._reactor.callLater(self._response_timeout, on_timeout)

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            if timed_out:
                raise UpstreamTimeout()
            return result

        d.addBoth(done)
        return d

    def close(self) -> Deferred[None]:
        """Close every pooled connection."""
        return self.pool.closeCachedConnections()
