"""A streamed answer's outcome reaches its record: tokens, and a scan that failed (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import StringTransport

from proxilion.proxy.record import ExchangeRecord
from proxilion.proxy.server import ProxyFactory
from tests.proxy import test_request_garbage as garbage

EVENTS = b"".join(b"data: %s\n\n" % json.dumps(event).encode() for event in (
    {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hello there."}}]},
    {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    # stream_options.include_usage: the last chunk has no choices, only the usage.
    {"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 4}},
)) + b"data: [DONE]\n\n"
STREAM = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n%s" % (len(EVENTS), EVENTS)


def _stream_exchange(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, break_scanner: bool) -> tuple[ExchangeRecord, bytes]:
    ctx = garbage._context(tmp_path, True, [])
    waiting: list[Any] = []
    monkeypatch.setattr(garbage._AnsweringTransport, "write", lambda self, data: waiting.append(self._protocol))
    rows: list[ExchangeRecord] = []
    ctx.record = rows.append
    connection = ProxyFactory(ctx).buildProtocol(None)
    client = StringTransport()
    connection.makeConnection(client)
    connection.dataReceived(garbage.REQUEST)
    if break_scanner:
        # Only the answer's scan fails: the request was inspected already.
        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("detector bug")
        scanner = ctx.policy.inspector.scanner
        monkeypatch.setattr(scanner, "scan", broken)
        monkeypatch.setattr(scanner, "scan_many", broken)
    (upstream,) = waiting
    upstream.dataReceived(STREAM)
    (row,) = rows
    return row, client.value()


def test_a_streamed_answer_records_its_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    row, sent = _stream_exchange(tmp_path, monkeypatch, break_scanner=False)
    assert row.streamed and row.error is None
    assert (row.tokens_in, row.tokens_out) == (11, 4)
    assert b"Hello there." in sent


def test_a_streamed_answer_whose_scan_failed_is_not_audited_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    row, sent = _stream_exchange(tmp_path, monkeypatch, break_scanner=True)
    # The shipped policy fails closed, as a buffered answer's scanner error does.
    assert row.error == "scanner_error" and row.decision == "block"
    assert b"Hello there." not in sent
