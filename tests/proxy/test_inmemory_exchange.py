"""The shell on a memory reactor: pipelining, 100-continue, timeouts, client loss, drain, the admin API.

Each test builds Proxilion as the daemon does (proxilion.testing.InMemoryProxilion)
with the fake provider in memory, and drives bytes and time itself: a timeout
is a clock advance, not a sleep. The daemon smoke tests (test_proxy_daemon.py,
tests/ha) keep the real sockets and signals honest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import treq
from twisted.internet.protocol import Factory
from twisted.logger import formatEvent, globalLogPublisher

from proxilion.testing import InMemoryProxilion
from proxy.conftest import request_rules_only_policy

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[InMemoryProxilion]:
    proxilion = InMemoryProxilion(
        policy=request_rules_only_policy(tmp_path),
        settings={"response_timeout": 1.0, "client_timeout": 2.0, "stream_idle_timeout": 1.0,
                  "drain_grace": 0.5, "drain_timeout": 10.0},
    )
    proxilion.start()
    yield proxilion
    proxilion.stop()


def _post(path: str, body: bytes = json.dumps(CHAT).encode(), extra: bytes = b"") -> bytes:
    return (b"POST /proxy/openai%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
            % (path.encode(), len(body), extra, body))


def _admin(proxilion: InMemoryProxilion, method: str, path: str, token: bool = True) -> tuple[int, object]:
    client = proxilion.admin_client()
    d = client.request(method, "http://admin" + path, headers=proxilion.admin_headers() if token else {})
    client.flush()
    response = _fired(d)
    body = _fired(treq.json_content(response)) if response.code != 401 else None
    return response.code, body


def _fired(d: object) -> object:
    box: list[object] = []
    d.addBoth(box.append)  # type: ignore[attr-defined]
    assert box, "the admin answer is not complete"
    return box[0]


def test_pipelined_requests_are_answered_in_order(harness: InMemoryProxilion) -> None:
    connection = harness.connect()
    connection.send(_post("/v1/chat/completions", extra=b"x-fake-reply: one\r\nx-fake-delay: 0.2\r\n")
                    + _post("/v1/chat/completions", extra=b"x-fake-reply: two\r\n")
                    + _post("/v1/chat/completions", extra=b"x-fake-reply: three\r\nConnection: close\r\n"))
    harness.advance(1)

    replies = [a.json()["choices"][0]["message"]["content"] for a in connection.answers]
    assert replies == ["one", "two", "three"]
    assert connection.closed


@pytest.mark.parametrize(
    ("bad", "status", "code"),
    [
        (b"POST /proxy/openai/v1/bad HTTP/1.1\r\nHost: x\r\nX-Request-ID: pipelined-refusal\r\nContent-Length: abc\r\n\r\n", 400, "bad_request"),
        (b"POST /proxy/openai/v1/big HTTP/1.1\r\nHost: x\r\nX-Request-ID: pipelined-refusal\r\nContent-Length: 999999999\r\n\r\n",
         413, "request_too_large"),
    ],
    ids=["malformed", "too-large"],
)
def test_pipelined_request_refused_behind_an_answer_gets_its_refusal_after_it(
    harness: InMemoryProxilion, bad: bytes, status: int, code: str
) -> None:
    connection = harness.connect()
    connection.send(_post("/v1/chat/completions", extra=b"x-fake-delay: 0.2\r\n") + bad)
    harness.advance(1)

    first, refused = connection.answers
    assert first.status == 200
    assert (refused.status, refused.headers["x-request-id"], refused.headers["connection"]) == (status, "pipelined-refusal", "close")
    assert b'"error"' in refused.body
    assert [(row.status, row.error) for row in harness.audit() if row.request_id == "pipelined-refusal"] == [(status, code)]


def test_expect_100_continue_gets_continue_then_the_answer(harness: InMemoryProxilion) -> None:
    body = json.dumps(CHAT).encode()
    connection = harness.connect()
    connection.send(b"POST /proxy/openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body))
    harness.settle()
    assert connection.received == b"HTTP/1.1 100 Continue\r\n\r\n"

    connection.send(body)
    harness.settle()
    (answer,) = connection.answers
    assert answer.status == 200
    assert "expect" not in harness.upstream_requests()[-1]["headers"]


def test_slow_client_gets_408(harness: InMemoryProxilion) -> None:
    for partial in (b"POST /proxy/openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\n",
                    b"POST /proxy/openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"model\""):
        connection = harness.connect()
        connection.send(partial)
        harness.advance(1.9)
        assert connection.answers == []
        harness.advance(0.2)
        (answer,) = connection.answers
        assert (answer.status, answer.json()["error"]["code"]) == (408, "request_timeout")
    assert harness.chat("still serving").status == 200


def test_upstream_hang_is_504_and_the_upstream_request_is_cancelled(harness: InMemoryProxilion) -> None:
    answer = harness.send("POST", "/proxy/openai/v1/chat/completions", json=CHAT, headers={"x-fake-delay": "30"})
    harness.advance(0.9)
    assert not answer.called
    harness.advance(0.2)

    result = _fired(answer)
    assert (result.status, result.json()["error"]["code"]) == (504, "upstream_timeout")  # type: ignore[attr-defined]
    assert result.headers["x-request-id"]  # type: ignore[attr-defined]
    assert harness.fake_provider.disconnects == 1
    anthropic = harness.request("POST", "/proxy/anthropic/v1/messages", json={"model": "m", "max_tokens": 5, "messages": []},
                                headers={"x-fake-delay": "30"})
    assert (anthropic.status, anthropic.json()["type"], anthropic.json()["error"]["type"]) == (504, "error", "api_error")


def test_silent_upstream_stream_is_cut_after_the_idle_timeout(harness: InMemoryProxilion) -> None:
    connection = harness.connect()
    connection.send(_post("/v1/chat/completions", json.dumps({**CHAT, "stream": True}).encode(),
                          b"x-fake-reply: a b\r\nx-fake-chunks: 2\r\nx-fake-chunk-delay: 4\r\n"))
    harness.advance(0.9)
    assert connection.received.startswith(b"HTTP/1.1 200") and not connection.closed
    harness.advance(0.2)

    assert connection.closed
    assert not connection.received.endswith(b"0\r\n\r\n"), "the client must see an incomplete chunked body"
    assert harness.audit()[-1].error == "upstream_idle_timeout"


def test_client_disconnect_mid_stream_cancels_the_upstream(harness: InMemoryProxilion) -> None:
    connection = harness.connect()
    connection.send(_post("/v1/chat/completions", json.dumps({**CHAT, "stream": True}).encode(),
                          b"x-fake-chunks: 200\r\nx-fake-chunk-delay: 0.05\r\nx-fake-reply: " + b"word " * 200 + b"\r\n"))
    harness.advance(0.2)
    assert connection.received.startswith(b"HTTP/1.1 200")
    assert harness.fake_provider.in_flight == 1

    connection.close()
    harness.settle()
    assert (harness.fake_provider.disconnects, harness.fake_provider.in_flight) == (1, 0)
    assert harness.app.drain.inflight == 0
    assert harness.chat("still serving").status == 200


def test_client_disconnect_before_the_answer_cancels_the_upstream(harness: InMemoryProxilion) -> None:
    connection = harness.connect()
    connection.send(_post("/v1/chat/completions", extra=b"x-fake-delay: 0.8\r\n"))
    harness.settle()
    assert harness.fake_provider.in_flight == 1

    connection.close()
    harness.settle()
    assert (harness.fake_provider.disconnects, harness.fake_provider.in_flight) == (1, 0)
    assert harness.app.drain.inflight == 0


def test_admin_drain_without_exit(harness: InMemoryProxilion) -> None:
    assert _admin(harness, "POST", "/api/v1/drain", token=False)[0] == 401
    connection = harness.connect()
    connection.send(_post("/v1/chat/completions", json.dumps({**CHAT, "stream": True}).encode(),
                          b"x-fake-reply: a b c d\r\nx-fake-chunks: 4\r\nx-fake-chunk-delay: 0.5\r\n"))
    harness.settle()

    status, body = _admin(harness, "POST", "/api/v1/drain")
    assert status == 202 and body == {"status": "draining", "already_draining": False, "inflight": 1}
    assert _admin(harness, "GET", "/status")[1]["status"] == "draining"  # type: ignore[index]
    assert harness.request("GET", "/health").status == 503
    assert _admin(harness, "POST", "/api/v1/drain")[1]["already_draining"] is True  # type: ignore[index]

    harness.advance(5)
    # The stream in flight was finished, then the port closed; the admin port still answers.
    assert connection.closed and connection.received.endswith(b"0\r\n\r\n")
    assert harness.app.proxy_service.port is None
    assert _admin(harness, "GET", "/status")[1]["inflight"] == 0  # type: ignore[index]


def test_admin_shows_and_resets_buckets(tmp_path: Path) -> None:
    proxilion = InMemoryProxilion(rate_limit_per_minute=2, rate_limit_burst=2)
    proxilion.start()
    try:
        assert [proxilion.chat("hi").status for _ in range(3)] == [200, 200, 429]
        owner = proxilion.audit()[0].identity
        assert _admin(proxilion, "GET", f"/api/v1/ratelimits/{owner}", token=False)[0] == 401
        status, body = _admin(proxilion, "GET", f"/api/v1/ratelimits/{owner}")
        assert status == 200 and body
        assert _admin(proxilion, "DELETE", f"/api/v1/ratelimits/{owner}")[0] == 200
        assert proxilion.chat("hi").status == 200
        events = _admin(proxilion, "GET", "/api/v1/events?decision=ratelimited")[1]
        assert [e["status"] for e in events["events"]] == [429]  # type: ignore[index]
    finally:
        proxilion.stop()


@pytest.fixture
def log_messages() -> Iterator[list[str]]:
    """The text of every log event while the test runs (the stop sequence logs each step)."""
    messages: list[str] = []

    def observe(event: dict) -> None:
        messages.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield messages
    globalLogPublisher.removeObserver(observe)


def _stream(chunks: int, delay: float) -> bytes:
    return _post("/v1/chat/completions", json.dumps({**CHAT, "stream": True}).encode(),
                 b"x-fake-reply: " + b"w " * chunks + b"\r\nx-fake-chunks: %d\r\nx-fake-chunk-delay: %g\r\n" % (chunks, delay))


def test_drain_timeout_aborts_what_is_left(tmp_path: Path, log_messages: list[str]) -> None:
    proxilion = InMemoryProxilion(policy=request_rules_only_policy(tmp_path), data_dir=tmp_path,
                                  settings={"drain_grace": 0, "drain_timeout": 1.0})
    proxilion.start()
    connection = proxilion.connect()
    connection.send(_stream(50, 0.2))  # a 10 s stream
    proxilion.advance(0.5)
    assert connection.received.startswith(b"HTTP/1.1 200")

    stopped = proxilion.begin_stop()
    begun = proxilion.clock.seconds()
    proxilion.advance(0.9)
    assert not connection.closed
    proxilion.wait(stopped)
    proxilion.stop()

    assert 1.0 <= proxilion.clock.seconds() - begun < 3.0
    assert connection.closed and not connection.received.endswith(b"0\r\n\r\n"), "the stream should have been cut at the drain deadline"
    assert any(m.startswith("drain timeout") for m in log_messages)
    assert [m for m in log_messages if re.fullmatch(r"stopped \w+", m)] == [
        "stopped proxy", "stopped policy", "stopped ratelimit", "stopped analytics", "stopped admin"]
    # The aborted request is still recorded.
    assert [row.status for row in proxilion.audit()] == [200]


def test_request_still_uploading_when_the_drain_starts_is_answered(tmp_path: Path) -> None:
    proxilion = InMemoryProxilion(policy=request_rules_only_policy(tmp_path), settings={"drain_grace": 0, "drain_timeout": 5.0})
    proxilion.start()
    try:
        body = json.dumps(CHAT).encode()
        connection = proxilion.connect()
        connection.send(_post("/v1/chat/completions", body)[:-len(body) + 10])
        proxilion.settle()
        proxilion.begin_stop()
        proxilion.advance(0.3)
        assert proxilion.app.proxy_service.port is None, "the proxy port should be closed"

        connection.send(body[10:])
        proxilion.settle()
        (answer,) = connection.answers
        assert (answer.status, answer.headers["connection"]) == (200, "close")
    finally:
        proxilion.stop()


class _Down(Factory):
    """An upstream that refuses every connection."""

    def buildProtocol(self, addr: object) -> None:
        return None


@pytest.mark.parametrize(
    ("path", "body", "shape"),
    [
        ("/proxy/openai/v1/chat/completions", CHAT, lambda e: (e["error"]["type"], e["error"]["code"]) == ("server_error", "upstream_unreachable")),
        ("/proxy/anthropic/v1/messages", {"model": "m", "max_tokens": 5, "messages": []},
         lambda e: (e["type"], e["error"]["type"]) == ("error", "api_error")),
    ],
    ids=["openai", "anthropic"],
)
def test_upstream_down_is_502_in_the_providers_shape(tmp_path: Path, path: str, body: object, shape: object) -> None:
    proxilion = InMemoryProxilion(data_dir=tmp_path, upstream=_Down())
    proxilion.start()
    try:
        answer = proxilion.request("POST", path, json=body)
        assert (answer.status, answer.headers["content-type"]) == (502, "application/json")
        assert shape(answer.json())  # type: ignore[operator]
        assert [(row.status, row.error) for row in proxilion.audit()] == [(502, "upstream_unreachable")]
        assert proxilion.request("GET", "/health").status == 200
    finally:
        proxilion.stop()
