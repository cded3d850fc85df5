"""A streamed answer's closing events must not freeze the proxy either (issue 14, item 3).

The Responses API repeats the whole answer in its closing events
(response.output_text.done, response.completed). A client that asks for
60 KB of phone numbers gets such events just under STREAM_MAX_EVENT_BYTES;
scanned in one go, each held the reactor for 200-400 ms. Measured as
test_reactor_stall measures: the longest wait between two /health answers;
the best of three tries, as a stall from the answer shows in every one and
another process's turn on a shared machine rarely does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hostile.test_reactor_stall import MAX_EVENT_GAP, HealthPoller, post
from support.daemon import Daemon, running

CARD = "5555 5555 5555 4444"  # answers redact cards; phones are logged
# A phone to validate and a card-like run that fails Luhn: slow to scan, one finding per unit.
UNIT = "call +1 415 555 0100 4111 1111 1111 1112 "


def _answer(size: int) -> str:
    units = [UNIT] * (size // len(UNIT))
    for i in range(0, len(units), 20):
        units[i] = f"card {CARD} "
    return "".join(units)


TEXT = _answer(60_000)


def _sse(doc: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (doc["type"].encode(), json.dumps(doc).encode())


def _responses_stream(text: str) -> bytes:
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    message = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "annotations": [], "text": text}]}
    events = [{"type": "response.created", "response": {"id": "resp_1", "status": "in_progress", "output": []}}]
    events += [{"type": "response.output_text.delta", "delta": text[i:i + 300], **where}
               for i in range(0, len(text), 300)]
    events += [{"type": "response.output_text.done", "text": text, **where},
               {"type": "response.completed", "response": {"id": "resp_1", "status": "completed", "output": [message]}}]
    return b"".join(_sse(e) for e in events)


STREAM = _responses_stream(TEXT)


class _Responses(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(STREAM)))
        self.end_headers()
        self.wfile.write(STREAM)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Responses)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        workdir: Path = tmp_path_factory.mktemp("closing")
        # ~4,400 findings in all; room above them, as a scan in one go counts each phone's raw hits
        # (several) against the cap, and would refuse the answer before its stall showed.
        env = {"RATE_LIMIT_PER_MINUTE": "0", "MAX_FINDINGS_PER_BODY": "50000"}
        with running(Daemon(workdir, ["--upstream", f"openai=http://127.0.0.1:{upstream.server_port}"], env=env)) as d:
            yield d
    finally:
        upstream.shutdown()


def test_closing_events_that_repeat_a_dense_answer_are_scanned_in_slices(daemon: Daemon) -> None:
    assert max(len(e) for e in STREAM.split(b"\n\n")) < 64 * 1024  # STREAM_MAX_EVENT_BYTES
    body = json.dumps({"model": "gpt-4o-mini", "stream": True, "input": "repeat the numbers"}).encode()
    gaps = []
    for _ in range(3):
        with HealthPoller(daemon.port) as poller:
            status, stream = post(daemon.port, "/proxy/openai/v1/responses", body, {"authorization": "Bearer sk-test"})
        _check_redacted(status, stream)
        gaps.append(poller.max_gap)
        if poller.max_gap < MAX_EVENT_GAP:
            return
    raise AssertionError(f"/health waited {min(gaps) * 1e3:.0f} ms at best while the events were scanned")


def _check_redacted(status: int, stream: bytes) -> None:
    assert status == 200
    assert CARD.encode() not in stream
    docs: dict[str, list[dict[str, Any]]] = {}
    for event in stream.split(b"\n\n"):
        if b"data: {" in event:
            doc = json.loads(event.split(b"data: ", 1)[1])
            docs.setdefault(doc["type"], []).append(doc)
    expected = TEXT.replace(CARD, "[REDACTED:CREDIT_CARD]")
    # Redacted as the deltas that already left were, and as a whole answer is.
    assert "".join(d["delta"] for d in docs["response.output_text.delta"]) == expected
    assert docs["response.output_text.done"][0]["text"] == expected
    assert docs["response.completed"][0]["response"]["output"][0]["content"][0]["text"] == expected
