"""The exchange's phase machine: it only moves forward, each phase's result is set once, and
every way a request can end gives a record naming the phase that ended it.

Driven in memory (proxilion.testing.InMemoryProxilion): the proxy built as the
daemon builds it, the fake provider answering, no sockets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet.testing import StringTransport

from proxilion.proxy.exchange import Exchange, _once
from proxilion.proxy.offload import PoolFull
from proxilion.proxy.phases import Ending, Phase, PhaseError, Quota, RequestVerdict
from proxilion.proxy.record import ExchangeRecord
from proxilion.proxy.server import ProxyFactory
from proxilion.testing import InMemoryProxilion
from support.policies import BLOCK_SSN_IN_ANSWERS, shipped_policy_with

CARD = "4111 1111 1111 1111"
SSN = "536-22-4187"
EMAIL = "jane.doe@example.com"
CHAT_PATH = "/proxy/openai/v1/chat/completions"
ORDER = [Phase.ROUTE, Phase.IDENTIFY, Phase.ADMIT, Phase.INSPECT_REQUEST, Phase.FORWARD, Phase.RELAY, Phase.COMPLETE]


# The machine itself

def _exchange_in(phase: Phase) -> Exchange:
    """An exchange standing in C{phase}: only its phase machine is exercised."""
    exchange = Exchange.__new__(Exchange)
    exchange.rid = b"phase-test"
    exchange.phase = phase
    return exchange


@pytest.mark.parametrize("current", ORDER[:-1])
def test_a_phase_goes_to_the_next_or_completes(current: Phase) -> None:
    following = ORDER[ORDER.index(current) + 1]
    for to in (following, Phase.COMPLETE):
        exchange = _exchange_in(current)
        exchange._enter(to)
        assert exchange.phase is to


@pytest.mark.parametrize(("current", "to"), [
    *((a, b) for i, a in enumerate(ORDER) for b in ORDER[:i + 1]),  # back, or stay
    *((a, b) for i, a in enumerate(ORDER) for b in ORDER[i + 2:-1]),  # skip ahead
])
def test_any_other_step_is_refused(current: Phase, to: Phase) -> None:
    exchange = _exchange_in(current)
    with pytest.raises(PhaseError, match=f"phase-test cannot go from {current.value} to {to.value}"):
        exchange._enter(to)
    assert exchange.phase is current


def test_a_phase_result_is_set_once() -> None:
    kept = _once(None, Quota())
    with pytest.raises(PhaseError, match="Quota"):
        _once(kept, Quota())


def test_phase_results_are_frozen() -> None:
    for result in (Quota(), RequestVerdict("allow"), Ending(Phase.ROUTE, "bad_request")):
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            result.phase = Phase.RELAY  # type: ignore[union-attr]


# Every ending names its phase

@pytest.fixture
def harness(tmp_path: Path) -> Iterator[InMemoryProxilion]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(shipped_policy_with(BLOCK_SSN_IN_ANSWERS))
    proxilion = InMemoryProxilion(policy=policy, settings={"response_timeout": 1.0, "stream_idle_timeout": 1.0})
    proxilion.start()
    yield proxilion
    proxilion.stop()


def _records(harness: InMemoryProxilion) -> list[ExchangeRecord]:
    """The records of the exchanges from now on (the audit rows are still written)."""
    records: list[ExchangeRecord] = []
    ctx = harness.app.ctx
    audit = ctx.record
    assert audit is not None

    def both(record: ExchangeRecord) -> None:
        records.append(record)
        audit(record)

    ctx.record = both
    return records


def _chat(harness: InMemoryProxilion, text: str = "hi", path: str = CHAT_PATH, **headers: str) -> Any:
    return harness.request("POST", path, json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
                           headers={"authorization": "Bearer sk-test-phases", **headers})


@pytest.mark.parametrize(("send", "status", "ended_in", "decision", "error"), [
    (lambda h: _chat(h, path="/proxy/nowhere/v1/chat"), 403, "route", "rejected", "unknown_upstream"),
    (lambda h: _chat(h, Host="second.example"), 400, "route", "rejected", "duplicate_host"),
    (lambda h: _chat(h, authorization="Bearer one two"), 400, "identify", "rejected", "ambiguous_credentials"),
    (lambda h: _chat(h, f"my card is {CARD}"), 403, "inspect_request", "block", None),
    (lambda h: _chat(h, **{"content-encoding": "snappy"}), 415, "inspect_request", "rejected", "unsupported_content_encoding"),
    (lambda h: _chat(h, f"mail {EMAIL}", authorization="AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/x, Signature=s"),
     403, "inspect_request", "block", "signed_request_needs_redaction"),
    (lambda h: _chat(h, **{"x-fake-delay": "5"}), 504, "forward", "allow", "upstream_timeout"),
    (lambda h: _chat(h, **{"x-fake-reply": f"the SSN is {SSN}"}), 403, "relay", "block", None),
    (lambda h: _chat(h, **{"x-fake-reply": "plain words"}), 200, "relay", "allow", None),
], ids=["unknown-provider", "duplicate-host", "ambiguous-credentials", "policy-block", "unreadable-coding", "signed-redaction",
        "upstream-timeout", "answer-block", "relayed"])
def test_the_record_names_the_phase_that_ended_the_request(harness: InMemoryProxilion, send: Any, status: int, ended_in: str,
                                                           decision: str, error: str | None) -> None:
    records = _records(harness)
    answer = send(harness)
    (record,) = records
    assert (answer.status, record.status, record.ended_in, record.decision, record.error) == (status, status, ended_in, decision, error)
    assert record.mode == "explicit"
    (row,) = harness.audit()
    assert (row.status, row.decision, row.error) == (status, decision, error)


def test_a_refusal_by_policy_names_its_rule(harness: InMemoryProxilion) -> None:
    records = _records(harness)
    _chat(harness, f"my card is {CARD}")
    _chat(harness, **{"x-fake-reply": f"the SSN is {SSN}"})
    assert [(r.ended_in, r.rule) for r in records] == [("inspect_request", "block-cards-and-ssn"), ("relay", "block-ssn-in-answers")]


def test_audit_unavailable_ends_the_request_in_route(harness: InMemoryProxilion) -> None:
    records = _records(harness)
    harness.app.ctx.audit_available = lambda: False
    assert _chat(harness).status == 503
    (record,) = records
    assert (record.ended_in, record.decision, record.error) == ("route", "rejected", "audit_unavailable")


def test_a_client_leaving_before_the_answer_ends_the_request_in_forward(harness: InMemoryProxilion) -> None:
    records = _records(harness)
    connection = harness.connect()
    connection.send(b"POST %s HTTP/1.1\r\nHost: x\r\nx-fake-delay: 0.5\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
                    % CHAT_PATH.encode())
    harness.settle()
    connection.close()
    harness.advance(1)
    (record,) = records
    assert (record.status, record.ended_in, record.error) == (499, "forward", "client_disconnected")


def _stream(connection: Any, chunk_delay: str) -> None:
    body = b'{"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "one two three four"}]}'
    connection.send(b"POST %s HTTP/1.1\r\nHost: x\r\nx-fake-chunks: 4\r\nx-fake-chunk-delay: %s\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (CHAT_PATH.encode(), chunk_delay.encode(), len(body), body))


def test_an_answer_that_stops_coming_ends_the_request_in_relay(harness: InMemoryProxilion) -> None:
    records = _records(harness)
    _stream(harness.connect(), "5")
    harness.advance(10)
    (record,) = records
    assert (record.ended_in, record.error, record.streamed) == ("relay", "upstream_idle_timeout", True)


def test_a_client_leaving_during_the_answer_ends_the_request_in_relay(harness: InMemoryProxilion) -> None:
    records = _records(harness)
    connection = harness.connect()
    _stream(connection, "0.5")
    harness.advance(0.1)
    connection.close()
    harness.advance(3)
    (record,) = records
    assert (record.ended_in, record.error) == ("relay", "client_disconnected")


def test_a_rate_limited_request_ends_in_admit(tmp_path: Path) -> None:
    proxilion = InMemoryProxilion(rate_limit_per_minute=1, rate_limit_burst=1)
    proxilion.start()
    try:
        records = _records(proxilion)
        assert [_chat(proxilion).status for _ in range(2)] == [200, 429]
        assert [(r.ended_in, r.decision, r.error) for r in records] == [("relay", "allow", None), ("admit", "ratelimited", None)]
    finally:
        proxilion.stop()


@pytest.mark.parametrize("mode", ["explicit", "connect", "transparent"])
def test_how_the_client_came_is_recorded_for_a_request_refused_before_it_was_whole(harness: InMemoryProxilion, mode: str) -> None:
    connection = ProxyFactory(harness.app.ctx).buildProtocol(None)
    connection.mode = mode
    connection.makeConnection(StringTransport())
    connection.dataReceived(b"POST /proxy/openai/v1/chat HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    (row,) = harness.audit()
    assert (row.status, row.error, row.mode) == (400, "bad_request", mode)


class _FullPool:
    """A scan pool with every worker busy and its queue full."""

    def inspect(self, *args: Any) -> Any:
        raise PoolFull()


class _BrokenLimiter:
    """A limiter with a defect: the exchange answers 500 and records it."""

    def take(self, *args: Any) -> Any:
        raise RuntimeError("a defect")


def test_a_full_scan_pool_ends_the_request_in_inspect_request(tmp_path: Path) -> None:
    proxilion = InMemoryProxilion(settings={"scan_offload_bytes": 1024})
    proxilion.start()
    try:
        records = _records(proxilion)
        proxilion.app.ctx.scan_pool = _FullPool()
        assert _chat(proxilion, "word " * 400).status == 503
        (record,) = records
        assert (record.ended_in, record.decision, record.error) == ("inspect_request", "rejected", "scan_pool_full")
    finally:
        proxilion.stop()


def test_an_internal_error_is_recorded_in_the_phase_it_happened(harness: InMemoryProxilion) -> None:
    records = _records(harness)
    harness.app.ctx.limiter = _BrokenLimiter()
    assert _chat(harness).status == 500
    (record,) = records
    assert (record.ended_in, record.decision, record.error) == ("admit", "error", "internal_error")
