"""One record per exchange, made once; pipelined requests are accounted for in request order.

Driven in memory: the real proxy and upstream protocols over StringTransports,
the upstream answering when the test says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import StringTransport
from twisted.logger import Logger

from proxilion.proxy.exchange import Exchange, Phase, PhaseError
from proxilion.proxy.record import ExchangeRecord
from proxilion.proxy.server import ProxyFactory
from tests.proxy import test_request_garbage as garbage


def _request(path: bytes = b"/proxy/openai/v1/chat/completions") -> bytes:
    return garbage.REQUEST.replace(b"/proxy/openai/v1/chat/completions", path)


def test_pipelined_requests_are_accounted_for_in_request_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second request is refused at once, inside the first one's end: its line must still come second."""
    ctx = garbage._context(tmp_path, True, [])
    waiting: list[Any] = []
    # The upstream answers later, when the test delivers its answer.
    monkeypatch.setattr(garbage._AnsweringTransport, "write", lambda self, data: waiting.append(self._protocol))
    rows: list[ExchangeRecord] = []
    access: list[str] = []
    ctx.record = rows.append
    ctx.access_log = Logger(namespace="proxilion.access", observer=lambda event: access.append(event["request_id"]))
    connection = ProxyFactory(ctx).buildProtocol(None)
    client = StringTransport()
    connection.makeConnection(client)

    connection.dataReceived(_request() + _request(b"/nowhere") + _request())
    while waiting:
        waiting.pop(0).dataReceived(garbage.ANSWER)

    assert [row.status for row in rows] == [200, 403, 200]
    ids = [row.request_id for row in rows]
    assert ids == sorted(ids)  # generated ids count up in arrival order
    assert access == ids
    assert client.value().count(b"HTTP/1.1 ") == 3


def test_the_record_is_frozen_and_made_once(tmp_path: Path) -> None:
    rows: list[ExchangeRecord] = []
    ctx = garbage._context(tmp_path, True, [])
    ctx.record = rows.append
    connection = ProxyFactory(ctx).buildProtocol(None)
    connection.makeConnection(StringTransport())
    connection.dataReceived(_request())
    (row,) = rows
    assert row.provider == "openai" and row.decision == "redact" and dict(row.findings) == {"email": 1}
    assert row.model == "gpt-4o-mini" and (row.tokens_in, row.tokens_out) == (9, 3)
    with pytest.raises(AttributeError):
        row.status = 500  # type: ignore[misc]


def test_phases_only_move_forward(tmp_path: Path) -> None:
    ctx = garbage._context(tmp_path, False, [])
    exchange = Exchange(ctx, connection_request(ctx), "explicit")
    assert exchange.phase is Phase.ROUTE
    with pytest.raises(PhaseError):
        exchange._enter(Phase.FORWARD)
    exchange._enter(Phase.IDENTIFY)
    exchange._enter(Phase.COMPLETE)
    with pytest.raises(PhaseError):
        exchange._enter(Phase.RELAY)


def connection_request(ctx: Any) -> Any:
    """A parsed request, as the connection hands it to an exchange."""
    seen: list[Any] = []
    connection = ProxyFactory(ctx).buildProtocol(None)
    connection.dispatch = seen.append  # type: ignore[method-assign]
    connection.makeConnection(StringTransport())
    connection.dataReceived(_request())
    return seen[0]
