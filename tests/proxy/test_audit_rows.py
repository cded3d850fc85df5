"""The audit row of a request, an exchange's or a refusal's, comes from one function over its record."""

from __future__ import annotations

import attrs

from proxilion.analytics.event import AUDIT_COLUMNS, AuditEvent
from proxilion.proxy.audit import audit_event
from proxilion.proxy.record import ExchangeRecord
from proxilion.testing import InMemoryProxilion

RECORD = ExchangeRecord(
    started=100.0, request_id="rid-1", provider="openai", method="POST", path="/v1/chat/completions", status=200,
    decision="redact", findings=(("email", 2),), identity="key:abc", tenant="acme", client_ip="10.0.0.9",
    model="gpt-4o-mini", bytes_in=10, bytes_out=20, streamed=False, duration_total=0.5, duration_upstream=0.4,
    tokens_in=3, tokens_out=4, error=None, ended_in="relay", mode="explicit", rule="pii",
)


def test_every_audit_field_is_made_from_the_record() -> None:
    event = audit_event("instance-a", RECORD)
    assert event == AuditEvent(
        time=100.0, request_id="rid-1", instance_id="instance-a", identity="key:abc", tenant="acme", provider="openai",
        model="gpt-4o-mini", method="POST", path="/v1/chat/completions", status=200, decision="redact",
        findings={"email": 2}, bytes_in=10, bytes_out=20, streamed=False, duration_total=0.5, duration_upstream=0.4,
        duration_overhead=0.5 - 0.4, tokens_in=3, tokens_out=4, client_ip="10.0.0.9", error=None, mode="explicit", rule="pii",
    )
    assert {c.field for c in AUDIT_COLUMNS if c.field} == {f.name for f in attrs.fields(AuditEvent)}


def test_a_stream_has_no_overhead_and_an_unknown_identity_is_named() -> None:
    event = audit_event("i", attrs.evolve(RECORD, streamed=True, identity=None))
    assert (event.duration_overhead, event.identity) == (None, "unknown")


def test_a_refusal_and_an_exchange_write_the_same_columns(tmp_path) -> None:
    proxilion = InMemoryProxilion(data_dir=tmp_path)
    proxilion.start()
    try:
        assert proxilion.chat("hello").status == 200
        connection = proxilion.connect()
        connection.send(b"POST /proxy/openai/v1/chat/completions?key=planted HTTP/1.1\r\nHost: x\r\n"
                        b"Authorization: Bearer sk-test-in-memory\r\nX-Request-ID: refused-1\r\nContent-Length: 99999999999\r\n\r\n")
        proxilion.settle()
        served, refused = proxilion.audit()
    finally:
        proxilion.stop()
    assert refused == attrs.evolve(
        served, time=refused.time, request_id="refused-1", model=None, path="/proxy/openai/v1/chat/completions?key=REDACTED",
        status=413, decision="rejected", findings={}, bytes_in=0, bytes_out=refused.bytes_out, duration_total=0.0,
        duration_upstream=None, duration_overhead=None, tokens_in=None, tokens_out=None, error="request_too_large",
    )
    assert refused.bytes_out > 0
