"""The audit event: one immutable record per proxied request, and its row form.

Pure: no Twisted, no I/O. The proxy builds an L{AuditEvent}; the writer turns
it into a row (L{event_row}) or a spool line (L{row_json}) in a worker
thread. Values found by the inspection core never reach this type: findings
are counted by detector type only.
"""

from __future__ import annotations

import ipaddress
import json
import types
from typing import Any, Mapping

import attrs
import orjson

from proxilion.proxy.safe_target import safe_path

__all__ = [
    "AuditEvent",
    "COLUMNS",
    "DECISIONS",
    "MODES",
    "PROVIDERS",
    "event_from_row",
    "event_row",
    "row_from_json",
    "row_json",
    "truncate_ip",
]

DECISIONS = ("allow", "log", "alert", "redact", "block", "ratelimited", "rejected", "error", "tunnel")
MODES = ("explicit", "connect", "transparent")
PROVIDERS = ("openai", "anthropic", "gemini", "cohere", "azure", "bedrock", "unknown")

def truncate_ip(ip: str | None) -> str | None:
    """C{ip} reduced to its /24 (IPv4) or /48 (IPv6) network; unparseable values become None."""
    if ip is None:
        return None
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)


def _findings(value: Mapping[str, int]) -> Mapping[str, int]:
    return types.MappingProxyType({str(k): int(v) for k, v in value.items()})


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@attrs.frozen
class AuditEvent:
    """What happened to one request. Holds fingerprints and counts, never secrets or inspected values."""

    time: float = attrs.field(converter=float)
    request_id: str
    instance_id: str
    identity: str
    tenant: str | None
    provider: str
    model: str | None
    method: str
    # The proxy hands in paths made safe already; made safe again here (cheap: cached) for any other writer.
    path: str = attrs.field(converter=safe_path)
    status: int = attrs.field(converter=int)
    decision: str
    findings: Mapping[str, int] = attrs.field(converter=_findings)
    bytes_in: int = attrs.field(converter=int)
    bytes_out: int = attrs.field(converter=int)
    streamed: bool = attrs.field(converter=bool)
    duration_total: float = attrs.field(converter=float)
    duration_upstream: float | None = attrs.field(default=None, converter=_optional_float)
    duration_overhead: float | None = attrs.field(default=None, converter=_optional_float)
    tokens_in: int | None = attrs.field(default=None, converter=_optional_int)
    tokens_out: int | None = attrs.field(default=None, converter=_optional_int)
    client_ip: str | None = None
    error: str | None = None
    # How the client reached the proxy (L{MODES}).
    mode: str = "explicit"
    # The id of the policy rule that decided the request (its strongest action), if one did.
    rule: str | None = None


# Column order of audit_events inserts, spool lines and query results.
COLUMNS = (
    "request_id",
    "event_time",
    "instance_id",
    "identity",
    "tenant",
    "provider",
    "model",
    "method",
    "path",
    "status",
    "decision",
    "findings",
    "finding_count",
    "bytes_in",
    "bytes_out",
    "streamed",
    "duration_total",
    "duration_upstream",
    "duration_overhead",
    "tokens_in",
    "tokens_out",
    "client_ip",
    "error",
    "mode",
    "rule",
)


# One value per column of L{COLUMNS}, in order: what the stores insert.
AuditRow = tuple[Any, ...]


def event_row(event: AuditEvent, truncate: bool = False) -> AuditRow:
    """The C{audit_events} row for C{event}, in L{COLUMNS} order."""
    findings = dict(sorted(event.findings.items())) if event.findings else {}
    return (
        event.request_id,
        event.time,
        event.instance_id,
        event.identity,
        event.tenant,
        event.provider,
        event.model,
        event.method,
        event.path,
        event.status,
        event.decision,
        json.dumps(findings, separators=(",", ":")) if findings else "{}",
        sum(findings.values()),
        event.bytes_in,
        event.bytes_out,
        event.streamed,
        event.duration_total,
        event.duration_upstream,
        event.duration_overhead,
        event.tokens_in,
        event.tokens_out,
        truncate_ip(event.client_ip) if truncate else event.client_ip,
        event.error,
        event.mode,
        event.rule,
    )


def row_json(row: AuditRow) -> str:
    """One spool line (without newline) for C{row}: a JSON object keyed by column."""
    data = dict(zip(COLUMNS, row))
    try:
        # orjson: the journal writes one line per request on the reactor thread; json.dumps cost ~6 µs of it.
        return orjson.dumps(data).decode()
    except orjson.JSONEncodeError:
        # An integer past 64 bits (a value the database will refuse, and the writer reject, on its own).
        return json.dumps(data, separators=(",", ":"))


def row_from_json(line: str) -> AuditRow:
    """The row a spool line holds; raises C{ValueError} on a damaged line."""
    data = json.loads(line)
    if not isinstance(data, dict) or not isinstance(data.get("request_id"), str):
        raise ValueError("not an audit row")
    # Lines spooled before the mode column existed were all explicit requests.
    return tuple(data.get(column, "explicit" if column == "mode" else None) for column in COLUMNS)


def event_from_row(row: Mapping[str, Any]) -> AuditEvent:
    """The event a stored row describes (C{streamed} and C{findings} decoded)."""
    findings = row["findings"]
    return AuditEvent(
        time=row["event_time"],
        request_id=row["request_id"],
        instance_id=row["instance_id"],
        identity=row["identity"],
        tenant=row["tenant"],
        provider=row["provider"],
        model=row["model"],
        method=row["method"],
        path=row["path"],
        status=row["status"],
        decision=row["decision"],
        findings=json.loads(findings) if isinstance(findings, str) else findings,
        bytes_in=row["bytes_in"],
        bytes_out=row["bytes_out"],
        streamed=bool(row["streamed"]),
        duration_total=row["duration_total"],
        duration_upstream=row["duration_upstream"],
        duration_overhead=row["duration_overhead"],
        tokens_in=row["tokens_in"],
        tokens_out=row["tokens_out"],
        client_ip=row["client_ip"],
        error=row["error"],
        mode=row["mode"],
        rule=row["rule"],
    )
