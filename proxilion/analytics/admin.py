"""Admin API resources over the audit store.

Mounted by the admin site behind its bearer-token check:
C{GET /api/v1/events} and C{GET /api/v1/analytics/summary}. Both answer JSON;
bad parameters get 400 with C{{"error": {"type": "invalid_request", "message": ...}}},
a failing store 503.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from proxilion.admin.errors import admin_error_bytes
from proxilion.analytics import query
from proxilion.analytics.store import EventStore

__all__ = ["EventsResource", "SummaryResource"]

_FIELDS = (
    ("time", "event_time"),
    ("request_id", "request_id"),
    ("instance_id", "instance_id"),
    ("identity", "identity"),
    ("tenant", "tenant"),
    ("provider", "provider"),
    ("model", "model"),
    ("method", "method"),
    ("path", "path"),
    ("status", "status"),
    ("decision", "decision"),
    ("findings", "findings"),
    ("bytes_in", "bytes_in"),
    ("bytes_out", "bytes_out"),
    ("streamed", "streamed"),
    ("duration_total", "duration_total"),
    ("duration_upstream", "duration_upstream"),
    ("duration_overhead", "duration_overhead"),
    ("tokens_in", "tokens_in"),
    ("tokens_out", "tokens_out"),
    ("client_ip", "client_ip"),
    ("error", "error"),
    ("mode", "mode"),
    ("rule", "rule"),
)


def event_json(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as the API shows it: the L{AuditEvent} field names."""
    out = {name: row[column] for name, column in _FIELDS}
    out["findings"] = json.loads(row["findings"])
    return out


def _args(request: Any) -> dict[str, list[str]]:
    try:
        return {k.decode(): [v.decode() for v in vs] for k, vs in (request.args or {}).items()}
    except UnicodeDecodeError:
        raise query.QueryError("parameters must be UTF-8") from None


class _QueryResource(Resource):
    isLeaf = True
    log = Logger()

    def __init__(self, store: EventStore, clock: Any) -> None:
        super().__init__()
        self._store = store
        self._clock = clock

    def render_GET(self, request: Any) -> Any:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        try:
            parsed = self._parse(_args(request))
        except query.QueryError as e:
            request.setResponseCode(400)
            return admin_error_bytes(400, "invalid_request", str(e))
        d = defer.ensureDeferred(self._answer(parsed))
        request.notifyFinish().addErrback(lambda _: d.cancel())
        d.addCallbacks(self._respond, self._failed, callbackArgs=(request,), errbackArgs=(request,))
        return NOT_DONE_YET

    def _parse(self, args: dict[str, list[str]]) -> Any:
        raise NotImplementedError

    async def _answer(self, parsed: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _respond(self, body: dict[str, Any], request: Any) -> None:
        request.write(json.dumps(body, separators=(",", ":")).encode())
        request.finish()

    def _failed(self, failure: Failure, request: Any) -> None:
        if failure.check(defer.CancelledError):
            return
        self.log.warn("analytics API: store query failed ({error})", error=type(failure.value).__name__)
        request.setResponseCode(503)
        request.write(admin_error_bytes(503, "unavailable", "analytics store unavailable"))
        request.finish()


class EventsResource(_QueryResource):
    """C{GET ?since=&until=&decision=&provider=&identity=&limit=&cursor=}: events, newest first.

    Answers C{{"events": [...], "next_cursor": str | null}}; pass
    C{next_cursor} back as C{cursor} (with the same filters) for the next page.
    """

    def _parse(self, args: dict[str, list[str]]) -> query.EventQuery:
        return query.parse_events_query(args)

    async def _answer(self, parsed: query.EventQuery) -> dict[str, Any]:
        rows, cursor = await self._store.events(parsed)
        return {"events": [event_json(row) for row in rows], "next_cursor": cursor}


class SummaryResource(_QueryResource):
    """C{GET ?since=&until=&group_by=provider|model|identity|decision|finding_type}.

    Per group: requests, blocked, redacted, token sums and latency
    percentiles (seconds, nearest rank). Default window: the last 24 hours.
    """

    def _parse(self, args: dict[str, list[str]]) -> query.SummaryQuery:
        return query.parse_summary_query(args, self._clock.seconds())

    async def _answer(self, parsed: query.SummaryQuery) -> dict[str, Any]:
        return await self._store.summary(parsed)
