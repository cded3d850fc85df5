"""Audit queries: parameter parsing, SQL shared by both dialects, and summaries.

Pure: no Twisted, no I/O. The SQL uses C{%s} placeholders (psycopg); the
SQLite store rewrites them to C{?}. Everything whose SQL would differ between
dialects (percentiles, finding types held as JSON) is computed here in Python
from a bounded number of rows, so both stores answer identically.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

import attrs

from proxilion.analytics.event import COLUMNS, DECISIONS, PROVIDERS

__all__ = [
    "DEFAULT_LIMIT",
    "EventQuery",
    "GROUP_BY",
    "MAX_LIMIT",
    "QueryError",
    "SUMMARY_MAX_ROWS",
    "SummaryQuery",
    "decode_cursor",
    "encode_cursor",
    "events_sql",
    "parse_events_query",
    "parse_summary_query",
    "parse_time",
    "percentile",
    "summarize",
    "summary_sql",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
GROUP_BY = ("provider", "model", "identity", "decision", "finding_type")
# Rows read into Python per summary (percentiles, finding types): bounds the
# work one request can cause; beyond it the newest rows are used and the
# answer says "truncated".
SUMMARY_MAX_ROWS = 200_000
DEFAULT_SUMMARY_WINDOW = 24 * 3600.0


class QueryError(ValueError):
    """A query parameter is missing or malformed; the message says which."""


def parse_time(name: str, text: str) -> float:
    """Epoch seconds from C{text}: a number of seconds or an ISO-8601 time (naive means UTC)."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise QueryError(f"{name}: expected ISO-8601 or epoch seconds, got {text[:40]!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.timestamp()
    if not math.isfinite(value):
        raise QueryError(f"{name}: must be a finite number")
    return value


def encode_cursor(event_time: float, request_id: str) -> str:
    raw = json.dumps([event_time, request_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        event_time, request_id = json.loads(raw)
        if not isinstance(request_id, str) or isinstance(event_time, bool):
            raise ValueError
        return float(event_time), request_id
    except (ValueError, TypeError, binascii.Error):
        raise QueryError("cursor: not a cursor returned by this API") from None


@attrs.frozen
class EventQuery:
    since: float | None = None
    until: float | None = None
    decision: str | None = None
    provider: str | None = None
    identity: str | None = None
    limit: int = DEFAULT_LIMIT
    cursor: tuple[float, str] | None = None


@attrs.frozen
class SummaryQuery:
    since: float
    until: float
    group_by: str = "provider"


def _one(args: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = args.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise QueryError(f"{name}: give it once")
    return values[0]


def _check_known(args: Mapping[str, Any], known: Iterable[str]) -> None:
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise QueryError(f"unknown parameter(s): {', '.join(unknown)[:200]}")


def parse_events_query(args: Mapping[str, Sequence[str]]) -> EventQuery:
    """An L{EventQuery} from decoded query arguments; raises L{QueryError}."""
    _check_known(args, ("since", "until", "decision", "provider", "identity", "limit", "cursor"))
    since, until = _one(args, "since"), _one(args, "until")
    decision, provider, identity = _one(args, "decision"), _one(args, "provider"), _one(args, "identity")
    if decision is not None and decision not in DECISIONS:
        raise QueryError(f"decision: must be one of {', '.join(DECISIONS)}")
    if provider is not None and provider not in PROVIDERS:
        raise QueryError(f"provider: must be one of {', '.join(PROVIDERS)}")
    if identity is not None and not 0 < len(identity) <= 512:
        raise QueryError("identity: must be 1 to 512 characters")
    limit_text = _one(args, "limit")
    limit = DEFAULT_LIMIT
    if limit_text is not None:
        try:
            limit = int(limit_text)
        except ValueError:
            raise QueryError(f"limit: must be an integer from 1 to {MAX_LIMIT}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise QueryError(f"limit: must be an integer from 1 to {MAX_LIMIT}")
    cursor_text = _one(args, "cursor")
    return EventQuery(
        since=None if since is None else parse_time("since", since),
        until=None if until is None else parse_time("until", until),
        decision=decision,
        provider=provider,
        identity=identity,
        limit=limit,
        cursor=None if cursor_text is None else decode_cursor(cursor_text),
    )


def parse_summary_query(args: Mapping[str, Sequence[str]], now: float) -> SummaryQuery:
    """A L{SummaryQuery} (default: the last 24 hours by provider); raises L{QueryError}."""
    _check_known(args, ("since", "until", "group_by"))
    since, until = _one(args, "since"), _one(args, "until")
    group_by = _one(args, "group_by") or "provider"
    if group_by not in GROUP_BY:
        raise QueryError(f"group_by: must be one of {', '.join(GROUP_BY)}")
    until_value = now if until is None else parse_time("until", until)
    since_value = until_value - DEFAULT_SUMMARY_WINDOW if since is None else parse_time("since", since)
    if since_value > until_value:
        raise QueryError("since: must not be after until")
    return SummaryQuery(since=since_value, until=until_value, group_by=group_by)


_SELECT = "SELECT " + ", ".join(COLUMNS) + " FROM audit_events"
_NEWEST_FIRST = " ORDER BY event_time DESC, request_id DESC"


def _window(since: float | None, until: float | None) -> tuple[list[str], list[Any]]:
    where, params = [], []
    if since is not None:
        where.append("event_time >= %s")
        params.append(since)
    if until is not None:
        where.append("event_time < %s")
        params.append(until)
    return where, params


def events_sql(query: EventQuery) -> tuple[str, list[Any]]:
    """One page of events, newest first, one row more than the limit (to know if a next page exists)."""
    where, params = _window(query.since, query.until)
    for column in ("decision", "provider", "identity"):
        value = getattr(query, column)
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if query.cursor is not None:
        where.append("(event_time < %s OR (event_time = %s AND request_id < %s))")
        params.extend([query.cursor[0], query.cursor[0], query.cursor[1]])
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + _NEWEST_FIRST + " LIMIT %s"
    params.append(query.limit + 1)
    return sql, params


def summary_sql(query: SummaryQuery) -> list[tuple[str, list[Any]]]:
    """The statements a summary needs: exact aggregates (column groups) and the bounded row sample."""
    where, params = _window(query.since, query.until)
    clause = " WHERE " + " AND ".join(where)
    if query.group_by == "finding_type":
        sample = (
            "SELECT findings, decision, duration_total, tokens_in, tokens_out FROM audit_events"
            + clause
            + " AND finding_count > 0"
            + _NEWEST_FIRST
            + " LIMIT %s"
        )
        return [(sample, params + [SUMMARY_MAX_ROWS + 1])]
    column = query.group_by
    aggregate = (
        f"SELECT {column}, COUNT(*),"
        " SUM(CASE WHEN decision = 'block' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN decision = 'redact' THEN 1 ELSE 0 END),"
        " SUM(tokens_in), SUM(tokens_out)"
        " FROM audit_events" + clause + f" GROUP BY {column}"
    )
    sample = f"SELECT {column}, duration_total FROM audit_events" + clause + _NEWEST_FIRST + " LIMIT %s"
    return [(aggregate, list(params)), (sample, params + [SUMMARY_MAX_ROWS + 1])]


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (the same answer whatever the store)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def _latencies(durations: list[float]) -> dict[str, float | None]:
    durations.sort()
    return {
        "latency_p50": percentile(durations, 0.50),
        "latency_p95": percentile(durations, 0.95),
        "latency_p99": percentile(durations, 0.99),
    }


def _sort_key(group: dict[str, Any]) -> tuple:
    key = group["key"]
    return (-group["requests"], key is None, "" if key is None else str(key))


def summarize(query: SummaryQuery, results: list[list[tuple]]) -> dict[str, Any]:
    """The summary document from the rows of the L{summary_sql} statements."""
    truncated = False
    groups: dict[Any, dict[str, Any]] = {}
    durations: dict[Any, list[float]] = {}
    if query.group_by == "finding_type":
        (sample,) = results
        truncated = len(sample) > SUMMARY_MAX_ROWS
        for findings, decision, duration, tokens_in, tokens_out in sample[:SUMMARY_MAX_ROWS]:
            for kind, count in json.loads(findings).items():
                group = groups.setdefault(
                    kind,
                    {"key": kind, "requests": 0, "findings": 0, "blocked": 0, "redacted": 0, "tokens_in": 0, "tokens_out": 0},
                )
                group["requests"] += 1
                group["findings"] += int(count)
                group["blocked"] += decision == "block"
                group["redacted"] += decision == "redact"
                group["tokens_in"] += tokens_in or 0
                group["tokens_out"] += tokens_out or 0
                durations.setdefault(kind, []).append(duration)
    else:
        aggregate, sample = results
        for key, count, blocked, redacted, tokens_in, tokens_out in aggregate:
            groups[key] = {
                "key": key,
                "requests": int(count),
                "blocked": int(blocked or 0),
                "redacted": int(redacted or 0),
                "tokens_in": int(tokens_in or 0),
                "tokens_out": int(tokens_out or 0),
            }
        truncated = len(sample) > SUMMARY_MAX_ROWS
        for key, duration in sample[:SUMMARY_MAX_ROWS]:
            durations.setdefault(key, []).append(duration)
    for key, group in groups.items():
        group.update(_latencies(durations.get(key, [])))
    ordered = sorted(groups.values(), key=_sort_key)
    return {
        "since": query.since,
        "until": query.until,
        "group_by": query.group_by,
        "truncated": truncated,
        "groups": ordered,
    }
