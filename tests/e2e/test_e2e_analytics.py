"""Issue 5 end to end: one audit row per request through the real daemon, SQLite and PostgreSQL.

The mixed run sends every kind of request the proxy answers (allowed,
redacted, blocked, rate-limited, streamed, upstream errors, unknown host),
each with its own X-Request-ID, and compares the stored rows with what was
sent. Secrets are planted in prompts, Authorization headers and ?key= query
strings; no stored column and no log line may contain them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import anthropic
import openai
import pytest

from analytics.conftest import PostgresServer, _pg_bindir
from support.daemon import Daemon, closed_port, eventually, http_json, running

from .conftest import KeepAlive, admin, chat, upstream_args

CARD = "4111 1111 1111 1111"
EMAIL = "jane.roe@example.org"
AWS_KEY = "AKIAZ3MVJQ5T4XW7PLQA"
CANARY = "canary-q7Zp3xK9"  # in every prompt: prompts themselves are never stored
BEARER = "sk-e2e-SECRETBEARER0123456789abcdef"
QUERY_KEY = "AIzaSyE2eSecretQueryKey0123456789abcde"
SECRETS = (CARD, CARD.replace(" ", ""), EMAIL, AWS_KEY, CANARY, BEARER, QUERY_KEY)
BURST = 8


def _rid(kind: str) -> str:
    return f"e2e-{kind}-{uuid.uuid4().hex[:12]}"


def daemon_for(workdir: Path, fake: str, dsn: str | None = None, **env: str) -> Daemon:
    settings = {"RATE_LIMIT_PER_MINUTE": "60", "RATE_LIMIT_BURST": str(BURST), "UPSTREAM_TIMEOUT": "1",
                "ANALYTICS_FLUSH_INTERVAL": "0.2", **env}
    if dsn:
        settings["ANALYTICS_DSN"] = dsn
    # Cohere points at a closed port: requests to it fail with 502.
    args = [*upstream_args(fake, "openai", "anthropic", "gemini"), "--upstream", f"cohere=http://127.0.0.1:{closed_port()}",
            "--admin-token", "e2e-admin-token"]
    return Daemon(workdir, args, settings)


# --- the mixed run --------------------------------------------------------------


def mixed_run(d: Daemon) -> dict[str, dict[str, Any]]:
    """Send one request of each kind; return what each row must say, by request id."""
    expected: dict[str, dict[str, Any]] = {}

    def expect(rid: str, status: int, decision: str, findings: dict | None = None, streamed: bool = False,
               tokens: bool = False, error: str | None = None) -> None:
        expected[rid] = {"status": status, "decision": decision, "findings": findings or {}, "streamed": streamed,
                         "tokens": tokens, "error": error}

    oai = openai.OpenAI(base_url=d.url + "/proxy/openai/v1", api_key=BEARER, max_retries=0)
    claude = anthropic.Anthropic(base_url=d.url + "/proxy/anthropic", api_key="sk-ant-e2e-analytics", max_retries=0)

    def ask(kind: str, text: str, **headers: str) -> str:
        rid = _rid(kind)
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"{text} {CANARY}"}],
                                    extra_headers={"x-request-id": rid, **headers})
        return rid

    expect(ask("allow", "hello"), 200, "allow", tokens=True)
    expect(ask("redact", f"mail {EMAIL}"), 200, "redact", {"email": 1}, tokens=True)
    rid = _rid("block")
    with pytest.raises(openai.PermissionDeniedError):
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"card {CARD} key {AWS_KEY} {CANARY}"}],
                                    extra_headers={"x-request-id": rid})
    expect(rid, 403, "block", {"credit_card": 1, "aws_access_key_id": 1})

    rid = _rid("stream")
    stream = oai.chat.completions.create(model="gpt-4o", stream=True, messages=[{"role": "user", "content": f"hi {CANARY}"}],
                                         extra_headers={"x-request-id": rid, "x-fake-reply": f"card {CARD} ok", "x-fake-chunks": "8"})
    assert "REDACTED:CREDIT_CARD" in "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    expect(rid, 200, "redact", {"credit_card": 1}, streamed=True)

    rid = _rid("anthropic")
    claude.messages.create(model="claude-3-5-sonnet-latest", max_tokens=32, messages=[{"role": "user", "content": f"hi {CANARY}"}],
                           extra_headers={"x-request-id": rid})
    expect(rid, 200, "allow", tokens=True)

    # Rate limited: one identity sends its whole burst and one more.
    limited = openai.OpenAI(base_url=d.url + "/proxy/openai/v1", api_key="sk-e2e-analytics-limited", max_retries=0)
    for i in range(BURST + 1):
        rid = _rid("rl")
        if i < BURST:
            limited.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], extra_headers={"x-request-id": rid})
            expect(rid, 200, "allow", tokens=True)
        else:
            with pytest.raises(openai.RateLimitError):
                limited.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], extra_headers={"x-request-id": rid})
            expect(rid, 429, "ratelimited")

    # The provider's own error passes through.
    rid = _rid("upstream500")
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                    extra_headers={"x-request-id": rid, "x-fake-status": "500"})
    expect(rid, 500, "allow")

    raw = {"authorization": f"Bearer sk-e2e-raw-{uuid.uuid4().hex[:6]}"}
    rid = _rid("502")
    status, _, _ = http_json("POST", d.url + "/proxy/cohere/v2/chat", {"model": "command-r", "messages": [{"role": "user", "content": CANARY}]},
                             {**raw, "x-request-id": rid})
    assert status == 502
    expect(rid, 502, "allow", error="upstream_unreachable")

    rid = _rid("504")
    status, _, _ = http_json("POST", d.url + "/proxy/openai/v1/chat/completions", chat(CANARY), {**raw, "x-request-id": rid, "x-fake-delay": "3"})
    assert status == 504
    expect(rid, 504, "allow", error="upstream_timeout")

    rid = _rid("403host")
    status, _, _ = http_json("POST", d.url + "/proxy/evil.example.com/v1/chat/completions", chat(CANARY), {**raw, "x-request-id": rid})
    assert status == 403
    expect(rid, 403, "rejected", error="unknown_upstream")

    rid = _rid("querykey")
    status, _, _ = http_json("POST", d.url + f"/proxy/gemini/v1beta/models/gemini-1.5-pro:generateContent?key={QUERY_KEY}&alt=json",
                             {"contents": [{"role": "user", "parts": [{"text": f"hi {CANARY}"}]}]}, {"x-request-id": rid})
    assert status == 200
    expect(rid, 200, "allow", tokens=True)
    return expected


def check_rows(rows: list[dict[str, Any]], expected: dict[str, dict[str, Any]]) -> None:
    ours = [r for r in rows if r["request_id"] in expected]
    assert sorted(r["request_id"] for r in ours) == sorted(expected), "exactly one row per request"
    for row in ours:
        want = expected[row["request_id"]]
        got = {"status": row["status"], "decision": row["decision"], "findings": json.loads(row["findings"]),
               "streamed": bool(row["streamed"])}
        assert got == {k: want[k] for k in got}, (row["request_id"], got, want)
        assert row["finding_count"] == sum(want["findings"].values())
        if want["error"]:
            assert row["error"] == want["error"], row
        if want["tokens"]:
            assert row["tokens_in"] and row["tokens_out"], row
        assert row["duration_total"] > 0
    gemini = next(r for r in ours if r["request_id"].startswith("e2e-querykey"))
    # Values of parameters not known to be harmless (the key among them) are masked; the others stay.
    assert gemini["path"] == "/v1beta/models/gemini-1.5-pro:generateContent?key=REDACTED&alt=json"
    assert gemini["identity"].startswith("key:")


def assert_no_secrets(rows: list[dict[str, Any]], log: str) -> None:
    dump = json.dumps(rows, default=str)
    for secret in SECRETS:
        assert secret not in dump, f"a planted secret reached the audit table: {secret[:6]}..."
        assert secret not in log, f"a planted secret reached the daemon log: {secret[:6]}..."


# --- stores -------------------------------------------------------------------


def sqlite_rows(d: Daemon) -> list[dict[str, Any]]:
    path = d.workdir / "data" / "analytics.db"
    if not path.exists():
        return []
    conn = sqlite3.connect(path, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM audit_events")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def pg_rows(dsn: str) -> list[dict[str, Any]]:
    import psycopg
    from psycopg.rows import dict_row

    try:
        with psycopg.connect(dsn, row_factory=dict_row, connect_timeout=2) as conn:
            return list(conn.execute("SELECT * FROM audit_events"))
    except psycopg.Error:
        return []


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not found (apt install postgresql)")
    server = PostgresServer(bindir)
    server.start()
    yield server
    server.destroy()


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_mixed_run_rows_equal_requests(store: str, tmp_path: Path, fake: str, request: pytest.FixtureRequest) -> None:
    dsn = request.getfixturevalue("pg").create_database() if store == "postgresql" else None
    rows_of = (lambda d: pg_rows(dsn)) if dsn else sqlite_rows
    with running(daemon_for(tmp_path, fake, dsn)) as d:
        expected = mixed_run(d)
        rows = eventually(lambda: (r := rows_of(d)) and len([x for x in r if x["request_id"] in expected]) >= len(expected) and r,
                          timeout=15, what="all rows written")
        check_rows(rows, expected)

        # The admin API answers from the same store.
        events = []
        cursor = None
        while True:
            status, _, page = admin(d, "GET", "/api/v1/events?limit=7" + (f"&cursor={cursor}" if cursor else ""))
            assert status == 200
            events += page["events"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert sorted(e["request_id"] for e in events) == sorted(r["request_id"] for r in rows)
        assert [e["time"] for e in events] == sorted((e["time"] for e in events), reverse=True)
        status, _, summary = admin(d, "GET", "/api/v1/analytics/summary?group_by=decision")
        assert status == 200
        by_decision = {g["key"]: g["requests"] for g in summary["groups"]}
        want: dict[str, int] = {}
        for e in expected.values():
            want[e["decision"]] = want.get(e["decision"], 0) + 1
        assert by_decision == want
        assert admin(d, "GET", "/api/v1/events", token=False)[0] == 401
        assert admin(d, "GET", "/api/v1/analytics/summary", token=False)[0] == 401
    assert_no_secrets(rows_of(d), d.log())


# --- PostgreSQL outages -------------------------------------------------------


def steady_load(d: Daemon, seconds: float, during: Any = None) -> list[str]:
    """Two clients sending requests with known ids for C{seconds}; returns every id that got an answer."""
    sent: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(n: int) -> None:
        conn = KeepAlive(d.url)
        while time.monotonic() < stop_at:
            rid = _rid(f"load{n}")
            status, _, _ = conn.post("/proxy/openai/v1/chat/completions", chat("steady"), {"x-request-id": rid, "x-user-id": f"load{n}"})
            assert status == 200, status
            with lock:
                sent.append(rid)
            time.sleep(0.01)
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    if during is not None:
        during()
    for t in threads:
        t.join(timeout=seconds + 30)
    return sent


def test_postgres_stopped_mid_load_loses_and_duplicates_nothing(tmp_path: Path, fake: str, pg: PostgresServer) -> None:
    dsn = pg.create_database()
    states: list[str] = []

    def outage() -> None:
        time.sleep(0.8)
        pg.stop()
        try:
            eventually(lambda: states.append(admin(d, "GET", "/status")[2]["components"]["analytics"]["state"]) or states[-1] == "spooling",
                       timeout=8, what="analytics spooling")
            assert http_json("GET", d.admin_url + "/ready")[0] == 200
            time.sleep(0.5)
        finally:
            pg.start()

    with running(daemon_for(tmp_path, fake, dsn, RATE_LIMIT_PER_MINUTE="0")) as d:
        sent = steady_load(d, 4.0, outage)
        assert "spooling" in states
        eventually(lambda: len(pg_rows(dsn)) >= len(sent), timeout=20, what="spool replayed")
        rows = pg_rows(dsn)
        assert sorted(r["request_id"] for r in rows) == sorted(sent)
        assert d.metric("proxilion_analytics_rows_spooled_total") > 0
        assert d.metric("proxilion_analytics_rows_dropped_total") == 0


def test_sigterm_while_postgres_down_spools_then_replays_at_next_start(tmp_path: Path, fake: str, pg: PostgresServer) -> None:
    dsn = pg.create_database()
    first = daemon_for(tmp_path, fake, dsn, RATE_LIMIT_PER_MINUTE="0")
    with running(first) as d:
        written = steady_load(d, 0.5)
        eventually(lambda: len(pg_rows(dsn)) == len(written), what="first rows written")
        pg.stop()
        try:
            spooled = steady_load(d, 1.0)
            assert d.stop() == 0
        finally:
            pg.start()
    spool = tmp_path / "data" / "spool"
    assert spool.is_dir() and sum(f.stat().st_size for f in spool.iterdir() if f.is_file()) > 0
    assert len(pg_rows(dsn)) == len(written), "nothing written while the database was down"
    with running(daemon_for(tmp_path, fake, dsn, RATE_LIMIT_PER_MINUTE="0")):
        eventually(lambda: len(pg_rows(dsn)) >= len(written) + len(spooled), timeout=20, what="spool replayed at start")
        rows = pg_rows(dsn)
    assert sorted(r["request_id"] for r in rows) == sorted(written + spooled)
