"""Turn a finished request into its audit row: an exchange's record, or a refusal's, through L{audit_event}."""

from __future__ import annotations

from typing import Any, Callable

from proxilion.analytics.event import AuditEvent, Decision, Mode
from proxilion.proxy.identity import identify
from proxilion.proxy.phases import Phase
from proxilion.proxy.record import ExchangeRecord
from proxilion.proxy.safe_target import safe_uri

__all__ = ["audit_event", "audit_recorder", "refusal_recorder"]


def audit_event(instance_id: str, done: ExchangeRecord) -> AuditEvent:
    """The one place an L{AuditEvent} is made: every request's row comes from its record."""
    upstream = done.duration_upstream
    return AuditEvent(
        time=done.started,
        request_id=done.request_id,
        instance_id=instance_id,
        identity=done.identity if done.identity is not None else "unknown",
        tenant=done.tenant,
        provider=done.provider,
        model=done.model,
        method=done.method,
        path=done.path,
        status=done.status,
        decision=done.decision,
        findings=dict(done.findings),
        bytes_in=done.bytes_in,
        bytes_out=done.bytes_out,
        streamed=done.streamed,
        duration_total=done.duration_total,
        duration_upstream=upstream,
        # Streams last as long as the model talks; overhead is only meaningful for whole answers.
        duration_overhead=(done.duration_total - upstream) if upstream is not None and not done.streamed else None,
        tokens_in=done.tokens_in,
        tokens_out=done.tokens_out,
        client_ip=done.client_ip,
        error=done.error,
        mode=done.mode,
        rule=done.rule,
    )


def audit_recorder(instance_id: str, record: Callable[[AuditEvent], None]) -> Callable[[ExchangeRecord], None]:
    """A C{ProxyContext.record} callback that writes one L{AuditEvent} per exchange."""

    def on_complete(done: ExchangeRecord) -> None:
        record(audit_event(instance_id, done))

    return on_complete


def refusal_recorder(instance_id: str, settings: Any, clock: Any, record: Callable[[AuditEvent], None]) -> Callable[..., None]:
    """A C{ProxyContext.record_refused} callback: the audit row of a request refused before it was complete."""

    def on_refused(request: Any, rid: bytes, provider: str, method: str, uri: bytes | None, status: int, code: str, bytes_out: int,
                   bytes_in: int = 0, decision: Decision = "rejected", mode: Mode = "explicit") -> None:
        identity = identify(request.headers, request.peer_ip, settings, strict=False)
        record(audit_event(instance_id, ExchangeRecord(
            started=clock.seconds(),
            request_id=rid.decode("ascii"),
            provider=provider,
            method=method,
            path=safe_uri(uri or b""),
            status=status,
            decision=decision,
            findings=(),
            identity=identity.key,
            tenant=identity.tenant,
            client_ip=identity.client_ip,
            model=None,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            streamed=False,
            duration_total=0.0,
            duration_upstream=None,
            tokens_in=None,
            tokens_out=None,
            # A tunnel is no error; its code only names it.
            error=code if decision == "rejected" else None,
            # It never became an exchange: it ended where every request begins.
            ended_in=Phase.ROUTE.value,
            mode=mode,
        )))

    return on_refused
