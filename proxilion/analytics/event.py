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
from typing import Any, Callable, Literal, Mapping, get_args

import attrs
import orjson

from proxilion.inspect.findings import ACTIONS, Action
from proxilion.providers.names import PROVIDER_LABELS
from proxilion.proxy.safe_target import safe_path

__all__ = [
    "AUDIT_COLUMNS",
    "AuditEvent",
    "COLUMNS",
    "Column",
    "DECISIONS",
    "Decision",
    "MODES",
    "Mode",
    "PROVIDERS",
    "event_from_row",
    "event_row",
    "row_from_json",
    "row_json",
    "truncate_ip",
]

# A request's outcome: the policy's action, or why it never reached (or came back from) a provider.
_Unjudged = Literal["ratelimited", "rejected", "error", "tunnel"]
Decision = Action | _Unjudged
DECISIONS: tuple[Decision, ...] = ACTIONS + get_args(_Unjudged)
# How the client reached the proxy: /proxy/... (or a provider Host), CONNECT, or the TLS listener.
Mode = Literal["explicit", "connect", "transparent"]
MODES: tuple[Mode, ...] = get_args(Mode)
PROVIDERS = PROVIDER_LABELS

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
    decision: Decision
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
    mode: Mode = "explicit"
    # The id of the policy rule that decided the request (its strongest action), if one did.
    rule: str | None = None


def _findings_json(event: AuditEvent) -> str:
    findings = event.findings
    return json.dumps(dict(sorted(findings.items())), separators=(",", ":")) if findings else "{}"


def _finding_count(event: AuditEvent) -> int:
    return sum(event.findings.values()) if event.findings else 0


def _findings_from(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@attrs.frozen
class Column:
    """One column of C{audit_events}: its type in each database, the L{AuditEvent} field it holds
    (None: derived), how its value is made from the event and read back, and the schema migration
    that added it (migrations.py writes the DDL from these)."""

    name: str
    sqlite: str
    postgresql: str
    field: str | None
    since: int = 1
    encode: Callable[[AuditEvent], Any] | None = None
    decode: Callable[[Any], Any] | None = None


# The one list of the audit columns, in the order of inserts, spool lines and query results.
# request_id sorts bytewise on both stores (COLLATE "C" on PostgreSQL), so cursor paging
# returns the same pages from SQLite and PostgreSQL.
AUDIT_COLUMNS: tuple[Column, ...] = (
    Column("request_id", "TEXT PRIMARY KEY", 'TEXT COLLATE "C" PRIMARY KEY', "request_id"),
    Column("event_time", "REAL NOT NULL", "DOUBLE PRECISION NOT NULL", "time"),
    Column("instance_id", "TEXT NOT NULL", "TEXT NOT NULL", "instance_id"),
    Column("identity", "TEXT NOT NULL", "TEXT NOT NULL", "identity"),
    Column("tenant", "TEXT", "TEXT", "tenant"),
    Column("provider", "TEXT NOT NULL", "TEXT NOT NULL", "provider"),
    Column("model", "TEXT", "TEXT", "model"),
    Column("method", "TEXT NOT NULL", "TEXT NOT NULL", "method"),
    Column("path", "TEXT NOT NULL", "TEXT NOT NULL", "path"),
    Column("status", "INTEGER NOT NULL", "INTEGER NOT NULL", "status"),
    Column("decision", "TEXT NOT NULL", "TEXT NOT NULL", "decision"),
    Column("findings", "TEXT NOT NULL", "TEXT NOT NULL", "findings", encode=_findings_json, decode=_findings_from),
    Column("finding_count", "INTEGER NOT NULL", "INTEGER NOT NULL", None, encode=_finding_count),
    Column("bytes_in", "INTEGER NOT NULL", "BIGINT NOT NULL", "bytes_in"),
    Column("bytes_out", "INTEGER NOT NULL", "BIGINT NOT NULL", "bytes_out"),
    Column("streamed", "INTEGER NOT NULL", "BOOLEAN NOT NULL", "streamed", decode=bool),
    Column("duration_total", "REAL NOT NULL", "DOUBLE PRECISION NOT NULL", "duration_total"),
    Column("duration_upstream", "REAL", "DOUBLE PRECISION", "duration_upstream"),
    Column("duration_overhead", "REAL", "DOUBLE PRECISION", "duration_overhead"),
    Column("tokens_in", "INTEGER", "BIGINT", "tokens_in"),
    Column("tokens_out", "INTEGER", "BIGINT", "tokens_out"),
    Column("client_ip", "TEXT", "TEXT", "client_ip"),
    Column("error", "TEXT", "TEXT", "error"),
    Column("mode", "TEXT NOT NULL DEFAULT 'explicit'", "TEXT NOT NULL DEFAULT 'explicit'", "mode", since=2),
    Column("rule", "TEXT", "TEXT", "rule", since=3),
)
COLUMNS = tuple(column.name for column in AUDIT_COLUMNS)

# One value per column of L{COLUMNS}, in order: what the stores insert.
AuditRow = tuple[Any, ...]

def _row_maker() -> Callable[[AuditEvent, bool], AuditRow]:
    """A function writing out L{AUDIT_COLUMNS} as one tuple display, made once at import.

    It runs on the reactor thread for every request's journal line: a tuple display reads
    each attribute in bytecode, where a loop over the columns cost four times as much
    (1.9 against 0.4 µs a row).
    """
    names: dict[str, Any] = {"truncate_ip": truncate_ip}
    values = []
    for index, column in enumerate(AUDIT_COLUMNS):
        if column.encode is not None:
            names[f"encode_{index}"] = column.encode
            values.append(f"encode_{index}(event)")
        elif column.name == "client_ip":
            values.append("truncate_ip(event.client_ip) if truncate else event.client_ip")
        else:
            values.append(f"event.{column.field}")
    source = f"def event_row(event, truncate):\n    return ({', '.join(values)},)\n"
    exec(compile(source, "<audit columns>", "exec"), names)
    made: Callable[[AuditEvent, bool], AuditRow] = names["event_row"]
    return made


_event_row = _row_maker()


def event_row(event: AuditEvent, truncate: bool = False) -> AuditRow:
    """The C{audit_events} row for C{event}, in L{COLUMNS} order; C{truncate} shortens the client address."""
    return _event_row(event, truncate)


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
    return AuditEvent(**{
        column.field: row[column.name] if column.decode is None else column.decode(row[column.name])
        for column in AUDIT_COLUMNS
        if column.field is not None
    })
