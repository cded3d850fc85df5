"""An upstream that breaks off its answer: the client gets an error in the provider's shape when nothing was sent yet.

In memory (proxilion.testing.InMemoryProxilion with a scripted upstream in place of the fake provider).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.protocol import Factory, Protocol

from proxilion.testing import InMemoryProxilion

ANSWER = json.dumps({"id": "c", "object": "chat.completion", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "x" * 400}, "finish_reason": "stop"}]}).encode()
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


class _BreakingUpstream(Protocol):
    """Answers a request with full-length headers and the first 40 bytes of the body, then closes."""

    content_type = b"application/json"

    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if b"\r\n\r\n" in self.data:
            head = b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n" % (self.content_type, len(ANSWER))
            self.transport.write(head + ANSWER[:40])
            self.transport.loseConnection()


class _BreakingMediaUpstream(_BreakingUpstream):
    content_type = b"audio/mpeg"


def _proxilion(tmp_path: Path, upstream: type[Protocol]) -> Iterator[InMemoryProxilion]:
    # The shipped policy holds answers for inspection; a media answer (audio) is relayed as it comes.
    proxilion = InMemoryProxilion(data_dir=tmp_path, upstream=Factory.forProtocol(upstream))
    proxilion.start()
    yield proxilion
    proxilion.stop()


@pytest.fixture
def held(tmp_path: Path) -> Iterator[InMemoryProxilion]:
    yield from _proxilion(tmp_path, _BreakingUpstream)


@pytest.fixture
def relayed(tmp_path: Path) -> Iterator[InMemoryProxilion]:
    yield from _proxilion(tmp_path, _BreakingMediaUpstream)


def test_a_held_answer_that_breaks_off_is_a_502_in_the_providers_shape(held: InMemoryProxilion) -> None:
    answer = held.request("POST", "/proxy/openai/v1/chat/completions", json=CHAT)
    assert answer.status == 502
    assert answer.json()["error"]["code"] == "upstream_disconnected" and answer.json()["error"]["message"]
    assert answer.headers["x-request-id"]
    (line,) = held.access_lines(path="/v1/chat/completions")
    assert (line["status"], line["error"]) == (502, "upstream_disconnected")
    # The proxy goes on serving.
    assert held.request("GET", "/health").status == 200


def test_a_relayed_answer_that_breaks_off_cuts_the_connection(relayed: InMemoryProxilion) -> None:
    """Its headers and first bytes are already out: only cutting the connection says it is incomplete."""
    connection = relayed.connect()
    connection.send(b"POST /proxy/openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(json.dumps(CHAT)), json.dumps(CHAT).encode()))
    relayed.settle()
    assert connection.received.startswith(b"HTTP/1.1 200")
    assert connection.closed and connection.answers == [], "the client must see an incomplete body"
