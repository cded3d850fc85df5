"""Turn a finished exchange into its audit row."""

from __future__ import annotations

from typing import Any, Callable

from proxilion.analytics.event import AuditEvent

__all__ = ["audit_recorder"]


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
                model=exchange.model,
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
