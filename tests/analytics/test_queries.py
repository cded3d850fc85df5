"""Audit queries: the same answers from SQLite and PostgreSQL, and the HTTP resources."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.web.resource import Resource
from twisted.web.server import Site

from proxilion.analytics import query
from proxilion.analytics.admin import EventsResource, SummaryResource, event_json
from proxilion.analytics.event import COLUMNS, event_row, row_from_json, row_json

from .conftest import make_event, make_settings, wait_for

EVENTS = [make_event(i) for i in range(600)] + [
    # Same timestamp as an existing event: cursor paging must break ties by request_id.
    make_event(1000 + i, time=1_700_000_000.0 + 50 * 0.25) for i in range(5)
]


async def _filled_writer(new_writer, settings, metrics):
    writer = new_writer(settings, metrics, reactor)
    writer.startService()
    for event in EVENTS:
        writer.record(event)
    await wait_for(lambda: writer.status()["rows_written"] == len(EVENTS))
    return writer


async def _all_pages(store, **filters):
    pages, cursor = [], None
    for _ in range(len(EVENTS)):
        position = None if cursor is None else query.decode_cursor(cursor)
        rows, cursor = await store.events(query.EventQuery(limit=37, cursor=position, **filters))
        pages.append([event_json(r) for r in rows])
        if cursor is None:
            return pages
    raise AssertionError("paging does not advance")


QUERIES = [
    {},
    {"decision": "block"},
    {"provider": "openai"},
    {"identity": "key:0003ab12"},
    {"since": 1_700_000_010.0, "until": 1_700_000_100.0},
    {"since": 1_700_000_010.0, "decision": "redact", "provider": "gemini"},
]


async def _answers(store):
    answers = {}
    for filters in QUERIES:
        answers[json.dumps(filters)] = await _all_pages(store, **filters)
    for group_by in query.GROUP_BY:
        q = query.SummaryQuery(since=1_699_999_000.0, until=1_700_001_000.0, group_by=group_by)
        answers[group_by] = await store.summary(q)
    return answers


@pytest_twisted.ensureDeferred
async def test_sqlite_and_postgresql_answer_identically(new_writer, pg_dsn, tmp_path, metrics):
    lite = await _filled_writer(new_writer, make_settings(tmp_path / "lite"), metrics)
    pg = await _filled_writer(new_writer, make_settings(tmp_path / "pg", pg_dsn), metrics)
    from_sqlite = await _answers(lite.store())
    from_postgres = await _answers(pg.store())
    assert from_sqlite == from_postgres

    # And the answers are right, not merely equal.
    everything = [e for page in from_sqlite["{}"] for e in page]
    expected = sorted(EVENTS, key=lambda e: (e.time, e.request_id), reverse=True)
    assert [e["request_id"] for e in everything] == [e.request_id for e in expected]
    blocked = [e for page in from_sqlite['{"decision": "block"}'] for e in page]
    assert {e["request_id"] for e in blocked} == {e.request_id for e in EVENTS if e.decision == "block"}
    by_provider = {g["key"]: g for g in from_sqlite["provider"]["groups"]}
    assert {k: g["requests"] for k, g in by_provider.items()} == dict(Counter(e.provider for e in EVENTS))
    openai = [e for e in EVENTS if e.provider == "openai"]
    assert by_provider["openai"]["blocked"] == sum(e.decision == "block" for e in openai)
    assert by_provider["openai"]["tokens_in"] == sum(e.tokens_in or 0 for e in openai)
    durations = sorted(e.duration_total for e in openai)
    assert by_provider["openai"]["latency_p50"] == query.percentile(durations, 0.5)
    by_type = {g["key"]: g for g in from_sqlite["finding_type"]["groups"]}
    assert by_type["aws_key"]["requests"] == sum(1 for e in EVENTS if e.findings.get("aws_key"))
    assert by_type["email"]["findings"] == sum(e.findings.get("email", 0) for e in EVENTS)


def test_percentile_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert [query.percentile(values, q) for q in (0.5, 0.95, 0.99)] == [50.0, 95.0, 99.0]
    assert query.percentile([], 0.5) is None
    assert query.percentile([3.0], 0.99) == 3.0


@pytest.mark.parametrize("text,expected", [
    ("1700000000", 1_700_000_000.0),
    ("1700000000.5", 1_700_000_000.5),
    ("2023-11-14T22:13:20Z", 1_700_000_000.0),
    ("2023-11-14T22:13:20+00:00", 1_700_000_000.0),
    ("2023-11-14T23:13:20+01:00", 1_700_000_000.0),
    ("2023-11-14T22:13:20", 1_700_000_000.0),
])
def test_parse_time(text, expected):
    assert query.parse_time("since", text) == expected


@pytest.mark.parametrize("args", [
    {"since": ["yesterday"]},
    {"until": ["nan"]},
    {"limit": ["0"]},
    {"limit": ["1001"]},
    {"limit": ["ten"]},
    {"decision": ["maybe"]},
    {"provider": ["openai2"]},
    {"cursor": ["!!!"]},
    {"cursor": ["eyJhIjoxfQ"]},
    {"limit": ["1", "2"]},
    {"bogus": ["1"]},
])
def test_bad_event_parameters(args):
    with pytest.raises(query.QueryError):
        query.parse_events_query(args)


def test_cursor_round_trip():
    cursor = query.encode_cursor(1_700_000_000.125, "req-000001")
    assert query.decode_cursor(cursor) == (1_700_000_000.125, "req-000001")


def test_summary_defaults_to_last_day():
    q = query.parse_summary_query({}, now=1_700_000_000.0)
    assert (q.since, q.until, q.group_by) == (1_700_000_000.0 - 86400, 1_700_000_000.0, "provider")
    with pytest.raises(query.QueryError):
        query.parse_summary_query({"group_by": ["path"]}, now=0)
    with pytest.raises(query.QueryError):
        query.parse_summary_query({"since": ["200"], "until": ["100"]}, now=0)


def test_a_spool_line_from_before_the_rule_column_reads_no_rule():
    line = json.loads(row_json(event_row(make_event(2))))
    assert line.pop("rule") == "block-credentials"
    assert dict(zip(COLUMNS, row_from_json(json.dumps(line))))["rule"] is None


def test_event_row_findings_are_counts_only():
    row = event_row(make_event(2))
    assert row[11] == '{"aws_key":1,"email":2}' and row[12] == 3


@pytest_twisted.ensureDeferred
async def test_http_resources(new_writer, tmp_path, metrics):
    writer = await _filled_writer(new_writer, make_settings(tmp_path), metrics)
    root = Resource()
    api = Resource()
    root.putChild(b"api", api)
    api.putChild(b"events", EventsResource(writer.store(), reactor))
    api.putChild(b"summary", SummaryResource(writer.store(), reactor))
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(root))
    base = f"http://127.0.0.1:{port.getHost().port}/api"
    try:
        response = await treq.get(f"{base}/events?limit=2&decision=block&since=2023-11-14T22:13:20Z")
        assert response.code == 200
        body = json.loads(await response.content())
        assert [e["request_id"] for e in body["events"]] == ["req-000594", "req-000586"]
        assert body["events"][0]["findings"] == {"aws_key": 1, "email": 0}
        assert body["events"][0]["rule"] == "block-credentials"
        response = await treq.get(f"{base}/events", params={"limit": "2", "decision": "block", "cursor": body["next_cursor"]})
        assert [e["request_id"] for e in json.loads(await response.content())["events"]] == ["req-000578", "req-000570"]

        response = await treq.get(f"{base}/summary?group_by=decision&since=0")
        summary = json.loads(await response.content())
        assert response.code == 200
        assert sum(g["requests"] for g in summary["groups"]) == len(EVENTS)

        for url in (f"{base}/events?limit=abc", f"{base}/summary?group_by=nope", f"{base}/events?since=soon"):
            response = await treq.get(url)
            assert response.code == 400
            assert json.loads(await response.content())["error"]["code"] == "invalid_request"
    finally:
        await defer.maybeDeferred(port.stopListening)
