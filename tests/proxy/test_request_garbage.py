"""A finished request leaves no reference cycles behind.

Objects in a cycle wait for Python's cyclic collector, whose passes cost CPU in
proportion to everything still alive; a proxy making ~20 cyclic objects per
request spent several percent of its CPU there. Each request is driven here
through the real proxy and upstream protocols over in-memory transports, on
a memory reactor, with the collector switched off: whatever it would have had to
free shows up in C{gc.garbage}.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger

from proxilion.config import load_settings
from proxilion.drain import DrainState
from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import load_policy
from proxilion.metrics import Metrics
from proxilion.proxy.context import ProxyContext
from proxilion.proxy.routing import Router
from proxilion.proxy.server import ProxyFactory
from proxilion.proxy.upstream import UpstreamClient

UPSTREAM = "http://127.0.0.1:9"
REPLY = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there."}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}).encode()
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(REPLY), REPLY)
BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Write to jane.doe@example.com please."}]}).encode()
REQUEST = (b"POST /proxy/openai/v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
           b"Authorization: Bearer sk-test-not-a-real-key\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))


class _AnsweringTransport(StringTransport):
    """The upstream: answers each request as soon as it is written."""

    def __init__(self, protocol: Any) -> None:
        super().__init__()
        self._protocol = protocol

    def write(self, data: bytes) -> None:
        self._protocol.dataReceived(ANSWER)


class _Endpoint:
    def connect(self, factory: Any) -> Any:
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(_AnsweringTransport(protocol))
        return succeed(protocol)


class _Policy:
    def __init__(self, inspector: Inspector) -> None:
        self.inspector = inspector


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        gc.collect()


def _context(tmp_path: Path, inspection: bool, records: list[Any]) -> ProxyContext:
    settings = load_settings({}, {"PROXILION_DATA_DIR": str(tmp_path), "PROXILION_UPSTREAM_OPENAI": UPSTREAM}, None)
    clock = MemoryReactorClock()
    upstream = UpstreamClient(clock, 4, 5.0, 30.0, endpoint_factory=lambda scheme, host, port: _Endpoint())
    return ProxyContext(
        settings=settings, clock=clock, router=Router(settings.upstreams), upstream=upstream,
        metrics=Metrics(), drain=DrainState(),
        policy=_Policy(Inspector(load_policy(None))) if inspection else None,
        record=lambda done: records.append(done.status),
        # Not the global publisher: before logging starts it keeps the last events in a ring
        # buffer, and the events it drops release earlier tests' objects, cycles and all.
        access_log=Logger(namespace="proxilion.access", observer=lambda event: None),
    )


@pytest.mark.parametrize("inspection", [False, True], ids=["inspection-off", "shipped-policy"])
def test_keep_alive_requests_leave_no_cycles(tmp_path: Path, collector_off: None, inspection: bool) -> None:
    records: list[Any] = []
    ctx = _context(tmp_path, inspection, records)
    connection = ProxyFactory(ctx).buildProtocol(None)
    client = StringTransport()
    connection.makeConnection(client)

    def one_request() -> bytes:
        client.clear()
        connection.dataReceived(REQUEST)
        return client.value()

    # The first requests fill caches (routes, label children, the upstream pool).
    for _ in range(5):
        assert one_request().startswith(b"HTTP/1.1 200 ")
    # Free whatever earlier tests and the warm-up left, then keep what the collector finds.
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)

    for _ in range(50):
        assert one_request().startswith(b"HTTP/1.1 200 ")
    gc.collect()

    assert records == [200] * 55
    cyclic = sorted({type(o).__qualname__ for o in gc.garbage})
    assert gc.garbage == [], f"{len(gc.garbage)} objects in cycles after 50 requests: {cyclic}"
