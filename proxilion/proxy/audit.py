"""Turn a finished exchange into its audit row."""

from __future__ import annotations

from typing import Any, Callable

from proxilion.analytics.event import AuditEvent, Decision, Mode
from proxilion.proxy.identity import identify
from proxilion.proxy.record import ExchangeRecord
from proxilion.proxy.safe_target import safe_uri

__all__ = ["audit_recorder", "refusal_recorder"]


def audit_recorder(instance_id: str, record: Callable[[AuditEvent], None]) -> Callable[[ExchangeRecord], None]:
    """A C{ProxyContext.record} callback that writes one L{AuditEvent} per exchange."""

    def on_complete(done: ExchangeRecord) -> None:
        upstream = done.duration_upstream
        record(
            AuditEvent(
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
        )

    return on_complete


def refusal_recorder(instance_id: str, settings: Any, clock: Any, record: Callable[[AuditEvent], None]) -> Callable[..., None]:
    """A C{ProxyContext.record_refused} callback: the audit row of a request refused before it was complete."""

    def on_refused(request: Any, rid: bytes, provider: str, method: str, uri: bytes | None, status: int, code: str, bytes_out: int,
                   bytes_in: int = 0, decision: Decision = "rejected", mode: Mode = "explicit") -> None:
        identity = identify(request.headers, request.peer_ip, settings, strict=False)
        now = clock.seconds()
        record(
            AuditEvent(
                time=now,
                request_id=rid.decode("ascii"),
                instance_id=instance_id,
                identity=identity.key,
                tenant=identity.tenant,
                provider=provider,
                model=None,
                method=method,
                path=safe_uri(uri or b""),
                status=status,
                decision=decision,
                findings={},
                bytes_in=bytes_in,
                bytes_out=bytes_out,
                streamed=False,
                duration_total=0.0,
                duration_upstream=None,
                duration_overhead=None,
                tokens_in=None,
                tokens_out=None,
                client_ip=identity.client_ip,
                # A tunnel is no error; its code only names it.
                error=code if decision == "rejected" else None,
                mode=mode,
            )
        )

    return on_refused
