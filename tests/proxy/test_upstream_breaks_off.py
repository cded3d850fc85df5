"""An upstream that breaks off its answer: the client gets an error in the provider's shape when nothing was sent yet."""

from __future__ import annotations

import json
import socket
import threading
from typing import Iterator

import pytest

from support.daemon import Daemon, eventually, http_json, running

ANSWER = json.dumps({"id": "c", "object": "chat.completion", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "x" * 400}, "finish_reason": "stop"}]}).encode()


class _BreakingUpstream:
    """Answers every request with full-length headers and the first 40 bytes of the body, then closes."""

    def __init__(self, content_type: bytes) -> None:
        self.content_type = content_type
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head = b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n" % (self.content_type, len(ANSWER))
                conn.sendall(head + ANSWER[:40])


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    held = _BreakingUpstream(b"application/json")
    relayed = _BreakingUpstream(b"audio/mpeg")
    workdir = tmp_path_factory.mktemp("breaks-off")
    # The shipped policy holds answers for inspection; a media answer (audio) is relayed as it comes.
    with running(Daemon(workdir / "a", ["--upstream", f"openai=http://127.0.0.1:{held.port}", "--rate-limit-per-minute", "0"])) as a, \
            running(Daemon(workdir / "b", ["--upstream", f"openai=http://127.0.0.1:{relayed.port}", "--rate-limit-per-minute", "0"])) as b:
        yield a, b


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


def test_a_held_answer_that_breaks_off_is_a_502_in_the_providers_shape(daemon):
    held, _ = daemon
    status, headers, body = http_json("POST", held.url + "/proxy/openai/v1/chat/completions", body=CHAT)
    assert status == 502
    assert body["error"]["code"] == "upstream_disconnected" and body["error"]["message"]
    assert headers.get("x-request-id")

    def access_line():
        lines = [e for e in held.log_events() if e.get("path") == "/v1/chat/completions"]
        return lines[-1] if lines else None

    line = eventually(access_line, what="the access line")
    assert (line["status"], line["error"]) == (502, "upstream_disconnected")
    # The daemon goes on serving.
    assert http_json("GET", held.url + "/health")[0] == 200


def test_a_relayed_answer_that_breaks_off_cuts_the_connection(daemon):
    """Its headers and first bytes are already out: only cutting the connection says it is incomplete."""
    _, relayed = daemon
    with pytest.raises(Exception):
        http_json("POST", relayed.url + "/proxy/openai/v1/chat/completions", body=CHAT)
