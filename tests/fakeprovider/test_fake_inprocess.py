"""The fake provider in-process: record, injected clock, disconnects and backpressure."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.interfaces import IReactorTime
from twisted.web.client import ResponseNeverReceived

from proxilion.fakeprovider import FakeProvider, make_site
from proxilion.fakeprovider.testing import sse_events

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[FakeProvider, str]]]:
    ports = []

    def start(clock: IReactorTime = reactor, **options: object) -> tuple[FakeProvider, str]:
        site = make_site(clock=clock, **options)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        ports.append(port)
        return site.resource, f"http://127.0.0.1:{port.getHost().port}"

    yield start
    for port in ports:
        pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await task.deferLater(reactor, 0.01)
    raise AssertionError("condition not reached in time")


async def settle(seconds: float) -> None:
    await task.deferLater(reactor, seconds)


class RawClient(protocol.Protocol):
    """Sends one request; optionally stops reading after the first bytes."""

    def __init__(self, request: bytes, stop_reading: bool) -> None:
        self.request = request
        self.stop_reading = stop_reading
        self.received = 0
        self.first = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if not self.first.called:
            if self.stop_reading:
                self.transport.pauseProducing()
            self.first.callback(None)


async def raw_stream(url: str, headers: dict[str, str], stop_reading: bool) -> RawClient:
    body = json.dumps({**CHAT, "stream": True}).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: fake\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{head}\r\n"
               ).encode() + body
    client = RawClient(request, stop_reading)
    port = int(url.rsplit(":", 1)[1])
    await protocol.ClientCreator(reactor, lambda: client).connectTCP("127.0.0.1", port)
    await client.first
    return client


@pytest_twisted.ensureDeferred
async def test_record_is_bounded_clearable_and_complete(serve) -> None:
    provider, url = serve(record_limit=3)
    for n in range(5):
        response = await treq.post(f"{url}/v1/chat/completions?n={n}", json=CHAT,
                                   headers={"Authorization": "Bearer sk-secret"})
        await response.content()
    recorded = await (await treq.get(url + "/_fake/requests")).json()
    assert [r["query"] for r in recorded["requests"]] == ["n=2", "n=3", "n=4"]
    last = recorded["requests"][-1]
    assert last["method"] == "POST" and last["path"] == "/v1/chat/completions"
    assert last["headers"]["authorization"] == "Bearer sk-secret"
    assert json.loads(last["body"]) == CHAT
    cleared = await (await treq.delete(url + "/_fake/requests")).json()
    assert cleared == {"cleared": 3}
    assert provider.requests == []


@pytest_twisted.ensureDeferred
async def test_delay_runs_on_the_injected_clock(serve) -> None:
    clock = task.Clock()
    provider, url = serve(clock=clock)
    pending = treq.post(url + "/v1/chat/completions", json=CHAT,
                        headers={"x-fake-delay": "3600"})
    await until(lambda: provider.in_flight == 1)
    clock.advance(3599)
    await settle(0.05)
    assert provider.in_flight == 1
    clock.advance(1)
    response = await pending
    assert (await response.json())["choices"][0]["message"]["content"] == "hello"
    assert provider.in_flight == 0


@pytest_twisted.ensureDeferred
async def test_client_going_away_cancels_a_hanging_answer(serve) -> None:
    provider, url = serve()
    pending = treq.post(url + "/v1/chat/completions", json=CHAT,
                        headers={"x-fake-delay": "3600"})
    await until(lambda: provider.in_flight == 1)
    pending.cancel()
    with pytest.raises(ResponseNeverReceived):
        await pending
    await until(lambda: provider.in_flight == 0)
    assert provider.disconnects == 1


@pytest_twisted.ensureDeferred
async def test_paced_stream_stops_when_the_client_leaves(serve) -> None:
    provider, url = serve()
    client = await raw_stream(url, {"x-fake-reply": "word " * 200, "x-fake-chunk-delay": "0.01"},
                              stop_reading=False)
    client.transport.abortConnection()
    await until(lambda: provider.in_flight == 0)
    sent = provider.bytes_streamed
    await settle(0.1)
    assert provider.bytes_streamed == sent
    assert provider.disconnects == 1


@pytest_twisted.ensureDeferred
async def test_bulk_stream_waits_for_a_slow_reader(serve) -> None:
    provider, url = serve()
    client = await raw_stream(url, {"x-fake-stream-bytes": str(1 << 30)}, stop_reading=True)
    await settle(0.5)
    stalled = provider.bytes_streamed
    await settle(0.3)
    # Only socket buffers' worth was generated, and nothing more while unread.
    assert stalled < 32 << 20
    assert provider.bytes_streamed == stalled
    client.transport.abortConnection()
    await until(lambda: provider.in_flight == 0)
    assert provider.disconnects == 1


@pytest_twisted.ensureDeferred
async def test_bulk_stream_is_well_formed(serve) -> None:
    provider, url = serve()
    # No "stream": true needed: asking for a stream size implies streaming.
    response = await treq.post(url + "/v1/chat/completions", json=CHAT,
                               headers={"x-fake-stream-bytes": str(2 << 20)})
    body = await response.content()
    assert len(body) >= 2 << 20
    frames = body.split(b"\n\n")
    assert frames[-2:] == [b"data: [DONE]", b""]
    chunks = [json.loads(f.removeprefix(b"data: ")) for f in frames[:-2]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    anthropic = await treq.post(url + "/v1/messages", json={**CHAT, "max_tokens": 5},
                                headers={"x-fake-stream-bytes": "100000"})
    events = sse_events(await anthropic.content())
    assert events[-1][0] == "message_stop"
    assert {e for e, _ in events} >= {"message_start", "content_block_delta", "message_delta"}
    assert provider.in_flight == 0


@pytest_twisted.ensureDeferred
async def test_unknown_route_and_bad_script(serve) -> None:
    _, url = serve()
    missing = await treq.post(url + "/v9/nothing", json={})
    assert missing.code == 404
    assert "error" in await missing.json()
    bad = await treq.post(url + "/v1/messages", json=CHAT, headers={"x-fake-delay": "soon"})
    assert bad.code == 400
    assert (await bad.json())["error"]["message"] == "bad x-fake-delay header"
    not_json = await treq.post(url + "/v1/chat/completions", data=b"{oops")
    assert not_json.code == 400
