"""HTTP/1.1 on both sides of the daemon: pipelining, 100-continue, HTTP/1.0, chunked bodies,
interim answers, cut and close-delimited bodies, and upstream keep-alive reuse.

The upstream here is a scripted raw-socket server, so each test chooses exactly
the bytes the proxy must cope with.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from typing import Iterator
from urllib.parse import quote, unquote

import pytest

from support.daemon import Daemon, eventually, running

from .conftest import NO_LIMITS, access_lines, raw_exchange, request_rules_only_policy, split_response

JSON_OK = b'{"id":"x","object":"chat.completion","choices":[]}'
CARD_ANSWER = b'{"choices":[{"index":0,"message":{"role":"assistant","content":"card 4111 1111 1111 1111 ok"}}]}'


def _response(path: str) -> list[bytes | float | None]:
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


class ScriptedUpstream(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: ScriptedUpstream = self.server  # type: ignore[assignment]
        server.connections += 1
        sock: socket.socket = self.request
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                data = sock.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buffer) < length:
                buffer += sock.recv(65536)
            body, buffer = buffer[:length], buffer[length:]
            server.requests.append((head, body))
            path = head.split(b" ")[1].decode()
            for piece in _response(path):
                if piece is None:
                    sock.close()
                    return
                if isinstance(piece, float):
                    time.sleep(piece)
                    continue
                try:
                    sock.sendall(piece)
                except OSError:
                    return
                time.sleep(0.02)


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    server = ScriptedUpstream()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, upstream: ScriptedUpstream) -> Iterator[Daemon]:
    workdir = tmp_path_factory.mktemp("proxy-http11")
    args = ["--policy", str(request_rules_only_policy(workdir)), "--upstream", f"openai={upstream.url}", "--client-timeout", "2", "--stream-idle-timeout", "1"]
    with running(Daemon(workdir, args, NO_LIMITS)) as d:
        yield d


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


def test_http10_client_gets_a_complete_answer_and_a_close(daemon: Daemon) -> None:
    raw = raw_exchange(daemon.port, _post("/v1/chunked", version=b"1.0"), timeout=5)
    status, headers, body = split_response(raw)
    assert raw.startswith(b"HTTP/1.1 200")
    assert "transfer-encoding" not in headers
    assert headers["connection"] == "close"
    assert body == b'{"a":12}'


def test_chunked_request_body_goes_upstream_with_its_length(daemon: Daemon, upstream: ScriptedUpstream) -> None:
    raw = raw_exchange(daemon.port, b"POST /proxy/openai/v1/chunked-in HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                       b"4\r\n{\"m\"\r\n5\r\n:\"x\"}\r\n0\r\n\r\n", timeout=5)
    assert split_response(raw)[0] == 200
    head, body = upstream.requests[-1]
    assert body == b'{"m":"x"}'
    assert b"content-length: 9" in head.lower()
    assert b"transfer-encoding" not in head.lower()


def test_chunked_upstream_answer_is_relayed_chunked(daemon: Daemon) -> None:
    raw = raw_exchange(daemon.port, _post("/v1/chunked", extra=b"Connection: close\r\n"), timeout=5)
    status, headers, body = split_response(raw)
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    assert _dechunk(body) == b'{"a":12}'


def test_close_delimited_upstream_answer_is_relayed_whole(daemon: Daemon) -> None:
    raw = raw_exchange(daemon.port, _post("/v1/until-close", extra=b"Connection: close\r\n"), timeout=5)
    status, headers, body = split_response(raw)
    assert status == 200
    assert _dechunk(body) == b"first part, second part"


def test_interim_upstream_answer_is_skipped(daemon: Daemon) -> None:
    raw = raw_exchange(daemon.port, _post("/v1/interim", extra=b"Connection: close\r\n"), timeout=5)
    assert raw.startswith(b"HTTP/1.1 200 OK")
    assert b"103" not in raw.split(b"\r\n")[0]
    assert split_response(raw)[2] == JSON_OK


def test_upstream_cutting_the_body_short_cuts_the_client_connection(daemon: Daemon) -> None:
    raw = raw_exchange(daemon.port, _post("/v1/cut"), timeout=5)
    status, headers, body = split_response(raw)
    assert status == 200 and headers["content-length"] == "100"
    # Fewer bytes than promised, then the connection ends: the client knows the body is incomplete.
    assert body == b"only ten b"

    assert eventually(lambda: access_lines(daemon, path="/v1/cut"), what="access line")[-1]["error"] == "upstream_disconnected"


def test_upstream_connections_are_kept_alive_and_reused(daemon: Daemon, upstream: ScriptedUpstream) -> None:
    before = upstream.connections
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        for _ in range(5):
            sock.sendall(_post("/v1/chat/completions"))
            received = b""
            while JSON_OK not in received:
                received += sock.recv(65536)
    # At most one new upstream connection (none if an idle one was already pooled).
    assert upstream.connections - before <= 1


def test_upstream_closing_after_an_answer_is_not_reused(daemon: Daemon, upstream: ScriptedUpstream) -> None:
    for _ in range(3):
        raw = raw_exchange(daemon.port, _post("/v1/close-after", extra=b"Connection: close\r\n"), timeout=5)
        assert split_response(raw)[2] == JSON_OK
    raw = raw_exchange(daemon.port, _post("/v1/chat/completions", extra=b"Connection: close\r\n"), timeout=5)
    assert split_response(raw)[2] == JSON_OK


def test_connect_without_a_ca_is_refused_in_provider_shape(daemon: Daemon) -> None:
    raw = raw_exchange(daemon.port, b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n", timeout=5)
    status, headers, body = split_response(raw)
    # Interception needs CA_CERT_FILE; without it a CONNECT is denied, never tunnelled past inspection.
    assert status == 403
    assert b'"error"' in body and b"CA_CERT_FILE" in body
    assert headers["connection"] == "close"


def test_absolute_form_request_to_a_provider_host_is_proxied(daemon: Daemon, upstream: ScriptedUpstream) -> None:
    body = b'{"model":"m"}'
    raw = raw_exchange(daemon.port, b"POST http://api.openai.com/v1/absolute HTTP/1.1\r\nHost: api.openai.com\r\n"
                       b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body), timeout=5)
    assert split_response(raw)[0] == 200
    assert upstream.requests[-1][0].split(b" ")[1] == b"/v1/absolute"


@pytest.fixture(scope="module")
def inspecting(tmp_path_factory: pytest.TempPathFactory, upstream: ScriptedUpstream) -> Iterator[Daemon]:
    workdir = tmp_path_factory.mktemp("proxy-http11-inspecting")
    with running(Daemon(workdir, ["--upstream", f"openai={upstream.url}"], NO_LIMITS)) as d:
        yield d


@pytest.mark.parametrize("content_type", [
    "application/json", "application/problem+json", "application/vnd.api+json", "text/json", "application/x-json",
    "text/plain; charset=utf-8", "text/html", "text/markdown", "application/octet-stream", "image/svg+xml", "-"])
def test_answers_of_every_non_media_type_are_inspected(inspecting: Daemon, content_type: str) -> None:
    """SDKs read any *json type as JSON, and people read text: only images, audio, video and fonts pass unread."""
    status, headers, body = split_response(raw_exchange(inspecting.port, _post("/typed-" + quote(content_type, safe=""), extra=b"Connection: close\r\n")))
    assert status == 200
    assert b"4111" not in body and b"[REDACTED:CREDIT_CARD]" in body
    assert int(headers["content-length"]) == len(body)


def test_media_answers_pass_unread(inspecting: Daemon) -> None:
    status, _, body = split_response(raw_exchange(inspecting.port, _post("/typed-" + quote("audio/mpeg", safe=""), extra=b"Connection: close\r\n")))
    assert status == 200 and body == CARD_ANSWER


def test_an_answer_too_large_to_scan_is_refused_and_recorded_as_a_block(tmp_path, upstream: ScriptedUpstream) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nsettings: {max_scan_bytes: 1024}\nrules:\n"
                      "  - {id: log-answers, direction: response, action: log}\n")
    with running(Daemon(tmp_path, ["--upstream", f"openai={upstream.url}", "--policy", str(policy)], NO_LIMITS)) as d:
        status, _, body = split_response(raw_exchange(d.port, _post("/big", extra=b"Connection: close\r\n")))
        assert status == 422 and b"larger than the 1024 bytes Proxilion scans" in body and b"4111" not in body
        line = eventually(lambda: next((e for e in d.log_events() if e.get("path", "").endswith("/big")), None),
                          what="the access line")
        assert (line["status"], line["decision"], line["error"]) == (422, "block", "scanner_error")
