"""Turn a finished exchange into its audit row."""

from __future__ import annotations

from typing import Any, Callable

from proxilion.analytics.event import AuditEvent
from proxilion.proxy.identity import identify
from proxilion.proxy.safe_target import safe_label, safe_uri

__all__ = ["audit_recorder", "refusal_recorder"]


def audit_recorder(instance_id: str, record: Callable[[AuditEvent], None]) -> Callable[..., None]:
    """A C{ProxyContext.record} callback that writes one L{AuditEvent} per exchange."""

    def on_complete(exchange: Any, status: int, path: str, total: float, bytes_out: int) -> None:
        identity = exchange.identity
        upstream = exchange.upstream_seconds
        tokens_in, tokens_out = exchange.tokens
        record(
            AuditEvent(
                time=exchange.started,
                request_id=exchange.rid.decode("ascii"),
                instance_id=instance_id,
                identity=identity.key if identity is not None else "unknown",
                tenant=identity.tenant if identity is not None else None,
                provider=exchange.provider,
                model=safe_label(exchange.model) if exchange.model else None,
                method=exchange.request.method.decode("latin-1")[:16],
                path=path,
                status=status,
                decision=exchange.decision,
                findings=dict(exchange.findings),
                bytes_in=len(exchange.body),
                bytes_out=bytes_out,
                streamed=exchange.streamed,
                duration_total=total,
                duration_upstream=upstream,
                # Streams last as long as the model talks; overhead is only meaningful for whole answers.
                duration_overhead=(total - upstream) if upstream is not None and not exchange.streamed else None,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                client_ip=identity.client_ip if identity is not None else None,
                error=exchange.error,
            )
        )

    return on_complete


def refusal_recorder(instance_id: str, settings: Any, clock: Any, record: Callable[[AuditEvent], None]) -> Callable[..., None]:
    """A C{ProxyContext.record_refused} callback: the audit row of a request refused before it was complete."""

    def on_refused(request: Any, rid: bytes, provider: str, method: str, uri: bytes | None, status: int, code: str, bytes_out: int,
                   bytes_in: int = 0, decision: str = "rejected") -> None:
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
                error=code,
            )
        )

    return on_refused
