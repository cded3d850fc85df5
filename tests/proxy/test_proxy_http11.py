"""HTTP/1.1 on both sides of the proxy: HTTP/1.0, chunked bodies, interim answers, cut and
close-delimited bodies, and upstream keep-alive reuse.

In memory (proxilion.testing.InMemoryProxilion): the upstream here is a scripted
protocol, so each test chooses exactly the bytes the proxy must cope with, and its
pauses are simulated time. The real sockets' HTTP/1.1 is exercised by the daemon
tests in test_proxy_daemon.py (the official SDKs, streams, limits).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol

from proxilion.testing import InMemoryProxilion

from .conftest import request_rules_only_policy, split_response

JSON_OK = b'{"id":"x","object":"chat.completion","choices":[]}'
CARD_ANSWER = b'{"choices":[{"index":0,"message":{"role":"assistant","content":"card 4111 1111 1111 1111 ok"}}]}'


def _response(path: str) -> list[bytes | None]:
    """The raw answer to C{path}, as the pieces the upstream sends (with small pauses between)."""
    path = "/" + path.rsplit("/", 1)[-1]
    if path == "/chunked":
        return [b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
                b"5\r\n{\"a\":\r\n", b"3\r\n12}\r\n", b"0\r\n\r\n"]
    if path.startswith("/until-close"):
        return [b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n", b"first part, ", b"second part", None]
    if path.startswith("/interim"):
        return [b"HTTP/1.1 103 Early Hints\r\nlink: </x>; rel=preload\r\n\r\n",
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(JSON_OK), JSON_OK)]
    if path.startswith("/big"):
        big = CARD_ANSWER[:-2] + b',"padding":"' + b"x" * 2000 + b'"}'
        return [b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(big), big)]
    if path.startswith("/typed-"):
        # An answer quoting a card, with the content type the path names ("-" for none).
        content_type = unquote(path[len("/typed-"):])
        head = b"HTTP/1.1 200 OK\r\n" + (b"content-type: %s\r\n" % content_type.encode() if content_type != "-" else b"")
        return [head + b"content-length: %d\r\n\r\n%s" % (len(CARD_ANSWER), CARD_ANSWER)]
    if path.startswith("/cut"):
        return [b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\n", b"only ten b", None]
    if path.startswith("/close-after"):
        return [b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (len(JSON_OK), JSON_OK), None]
    return [b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(JSON_OK), JSON_OK)]


class ScriptedUpstream(Factory):
    """Serves L{_response}'s answers in memory; counts its connections and keeps what it received."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []
        # The harness's clock, which paces the pieces of an answer.
        self.clock: IReactorTime | None = None

    def buildProtocol(self, addr: object) -> Protocol:
        self.connections += 1
        protocol = _Scripted(self)
        return protocol


class _Scripted(Protocol):
    """One upstream connection: answers its requests in turn, each as pieces a little apart."""

    def __init__(self, server: ScriptedUpstream) -> None:
        self.server = server
        self.buffer = b""
        self.answering = False
        self.gone = False

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        self._next()

    def connectionLost(self, reason: object = None) -> None:
        self.gone = True

    def _next(self) -> None:
        if self.answering or b"\r\n\r\n" not in self.buffer:
            return
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(rest) < length:
            return
        body, self.buffer = rest[:length], rest[length:]
        self.server.requests.append((head, body))
        self.answering = True
        self._send(_response(head.split(b" ")[1].decode()))

    def _send(self, pieces: list[bytes | None]) -> None:
        if self.gone:
            return
        if not pieces:
            self.answering = False
            self._next()
            return
        piece, rest = pieces[0], pieces[1:]
        if piece is None:
            self.transport.loseConnection()
            return
        self.transport.write(piece)
        assert self.server.clock is not None
        self.server.clock.callLater(0.02, self._send, rest)


def _proxilion(upstream: ScriptedUpstream, policy: Path | None, data_dir: Path) -> Iterator[InMemoryProxilion]:
    proxilion = InMemoryProxilion(policy=policy, data_dir=data_dir, upstream=upstream,
                                  settings={"client_timeout": 2.0, "stream_idle_timeout": 1.0})
    upstream.clock = proxilion.clock
    proxilion.start()
    yield proxilion
    proxilion.stop()


@pytest.fixture
def upstream() -> ScriptedUpstream:
    return ScriptedUpstream()


@pytest.fixture
def harness(tmp_path: Path, upstream: ScriptedUpstream) -> Iterator[InMemoryProxilion]:
    yield from _proxilion(upstream, request_rules_only_policy(tmp_path), tmp_path)


def raw_exchange(proxilion: InMemoryProxilion, data: bytes) -> bytes:
    """Send raw bytes on a new connection; what came back once the proxy closed it (or 5 s passed)."""
    connection = proxilion.connect()
    connection.send(data)
    for _ in range(50):
        proxilion.advance(0.1)
        if connection.closed:
            break
    return connection.received


def _post(path: str, body: bytes = b'{"model":"m"}', extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return (b"POST /proxy/openai%s HTTP/%s\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
            % (path.encode(), version, len(body), extra, body))


def _dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out += rest[:size]
        body = rest[size + 2:]


def test_http10_client_gets_a_complete_answer_and_a_close(harness: InMemoryProxilion) -> None:
    raw = raw_exchange(harness, _post("/v1/chunked", version=b"1.0"))
    status, headers, body = split_response(raw)
    assert raw.startswith(b"HTTP/1.1 200")
    assert "transfer-encoding" not in headers
    assert headers["connection"] == "close"
    assert body == b'{"a":12}'


def test_chunked_request_body_goes_upstream_with_its_length(harness: InMemoryProxilion, upstream: ScriptedUpstream) -> None:
    raw = raw_exchange(harness, b"POST /proxy/openai/v1/chunked-in HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                       b"4\r\n{\"m\"\r\n5\r\n:\"x\"}\r\n0\r\n\r\n")
    assert split_response(raw)[0] == 200
    head, body = upstream.requests[-1]
    assert body == b'{"m":"x"}'
    assert b"content-length: 9" in head.lower()
    assert b"transfer-encoding" not in head.lower()


def test_chunked_upstream_answer_is_relayed_chunked(harness: InMemoryProxilion) -> None:
    raw = raw_exchange(harness, _post("/v1/chunked", extra=b"Connection: close\r\n"))
    status, headers, body = split_response(raw)
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    assert _dechunk(body) == b'{"a":12}'


def test_close_delimited_upstream_answer_is_relayed_whole(harness: InMemoryProxilion) -> None:
    raw = raw_exchange(harness, _post("/v1/until-close", extra=b"Connection: close\r\n"))
    status, headers, body = split_response(raw)
    assert status == 200
    assert _dechunk(body) == b"first part, second part"


def test_interim_upstream_answer_is_skipped(harness: InMemoryProxilion) -> None:
    raw = raw_exchange(harness, _post("/v1/interim", extra=b"Connection: close\r\n"))
    assert raw.startswith(b"HTTP/1.1 200 OK")
    assert b"103" not in raw.split(b"\r\n")[0]
    assert split_response(raw)[2] == JSON_OK


def test_upstream_cutting_the_body_short_cuts_the_client_connection(harness: InMemoryProxilion) -> None:
    raw = raw_exchange(harness, _post("/v1/cut"))
    status, headers, body = split_response(raw)
    assert status == 200 and headers["content-length"] == "100"
    # Fewer bytes than promised, then the connection ends: the client knows the body is incomplete.
    assert body == b"only ten b"

    assert harness.access_lines(path="/v1/cut")[-1]["error"] == "upstream_disconnected"


def test_upstream_connections_are_kept_alive_and_reused(harness: InMemoryProxilion, upstream: ScriptedUpstream) -> None:
    connection = harness.connect()
    for _ in range(5):
        connection.send(_post("/v1/chat/completions"))
        harness.advance(0.1)
    assert [answer.body for answer in connection.answers] == [JSON_OK] * 5
    assert upstream.connections == 1


def test_upstream_closing_after_an_answer_is_not_reused(harness: InMemoryProxilion, upstream: ScriptedUpstream) -> None:
    for _ in range(3):
        raw = raw_exchange(harness, _post("/v1/close-after", extra=b"Connection: close\r\n"))
        assert split_response(raw)[2] == JSON_OK
    # A request that follows at once, before the upstream's close arrives: only the answer's
    # "connection: close" says not to send it on that connection.
    connection = harness.connect()
    connection.send(_post("/v1/close-after") + _post("/v1/chat/completions"))
    harness.advance(1)
    assert [answer.body for answer in connection.answers] == [JSON_OK, JSON_OK]
    assert upstream.connections == 5


def test_connect_without_a_ca_is_refused_in_provider_shape(harness: InMemoryProxilion) -> None:
    raw = raw_exchange(harness, b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n")
    status, headers, body = split_response(raw)
    # Interception needs CA_CERT_FILE; without it a CONNECT is denied, never tunnelled past inspection.
    assert status == 403
    assert b'"error"' in body and b"CA_CERT_FILE" in body
    assert headers["connection"] == "close"


def test_absolute_form_request_to_a_provider_host_is_proxied(harness: InMemoryProxilion, upstream: ScriptedUpstream) -> None:
    body = b'{"model":"m"}'
    raw = raw_exchange(harness, b"POST http://api.openai.com/v1/absolute HTTP/1.1\r\nHost: api.openai.com\r\n"
                       b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    assert split_response(raw)[0] == 200
    assert upstream.requests[-1][0].split(b" ")[1] == b"/v1/absolute"


@pytest.fixture
def inspecting(tmp_path: Path, upstream: ScriptedUpstream) -> Iterator[InMemoryProxilion]:
    """With the shipped policy, which inspects answers."""
    yield from _proxilion(upstream, None, tmp_path)


@pytest.mark.parametrize("content_type", [
    "application/json", "application/problem+json", "application/vnd.api+json", "text/json", "application/x-json",
    "text/plain; charset=utf-8", "text/html", "text/markdown", "application/octet-stream", "image/svg+xml", "-"])
def test_answers_of_every_non_media_type_are_inspected(inspecting: InMemoryProxilion, content_type: str) -> None:
    """SDKs read any *json type as JSON, and people read text: only images, audio, video and fonts pass unread."""
    status, headers, body = split_response(raw_exchange(inspecting, _post("/typed-" + quote(content_type, safe=""), extra=b"Connection: close\r\n")))
    assert status == 200
    assert b"4111" not in body and b"[REDACTED:CREDIT_CARD]" in body
    assert int(headers["content-length"]) == len(body)


def test_media_answers_pass_unread(inspecting: InMemoryProxilion) -> None:
    status, _, body = split_response(raw_exchange(inspecting, _post("/typed-" + quote("audio/mpeg", safe=""), extra=b"Connection: close\r\n")))
    assert status == 200 and body == CARD_ANSWER


def test_an_answer_too_large_to_scan_is_refused_and_recorded_as_a_block(tmp_path: Path, upstream: ScriptedUpstream) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nsettings: {max_scan_bytes: 1024}\nrules:\n"
                      "  - {id: log-answers, direction: response, action: log}\n")
    for proxilion in _proxilion(upstream, policy, tmp_path):
        status, _, body = split_response(raw_exchange(proxilion, _post("/big", extra=b"Connection: close\r\n")))
        assert status == 422 and b"larger than the 1024 bytes Proxilion scans" in body and b"4111" not in body
        (line,) = proxilion.access_lines(path="/big")
        assert (line["status"], line["decision"], line["error"]) == (422, "block", "scanner_error")
