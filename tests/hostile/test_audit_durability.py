"""kill -9 under load loses no audit row of an answered request (issue #14, item 6).

The real daemon (SQLite) serves concurrent keep-alive clients through the
fake provider: whole answers, streams, and requests refused by policy (403).
It is killed with SIGKILL mid-load and started again on the same data
directory. Every request whose complete answer reached its client must then
have exactly one audit row, found by the x-request-id the client saw.
"""

from __future__ import annotations

import http.client
import json
import signal
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from proxilion.fakeprovider.testing import running_fake_provider
from support.daemon import Daemon, eventually, running
from support.policies import CREDENTIALS_BLOCKED_IN_PROMPTS

CHAT_PATH = "/proxy/openai/v1/chat/completions"
POLICY = CREDENTIALS_BLOCKED_IN_PROMPTS
# A credential the default detectors find: these requests are refused with 403.
SECRET = "AKIAZ7VRSQ5TJW3MXQ4B"


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    with running_fake_provider(chunk_delay=0.0) as url:
        yield url


class _Client(threading.Thread):
    """One keep-alive connection in a loop; keeps the request ids of answers read in full."""

    def __init__(self, port: int, name: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.name_, self.stop = port, name, stop
        self.answered: list[str] = []
        self.conn: http.client.HTTPConnection | None = None

    def _one(self, n: int) -> None:
        rid = f"{self.name_}-{n}-{uuid.uuid4().hex[:8]}"
        kind = n % 5
        text = f"hello {rid}" + (f" key {SECRET}" if kind == 4 else "")
        body: dict = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
        headers = {"content-type": "application/json", "x-request-id": rid, "x-fake-reply": f"reply {rid}"}
        if kind == 3:
            body["stream"] = True
            headers["x-fake-chunks"] = "3"
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        self.conn.request("POST", CHAT_PATH, body=json.dumps(body), headers=headers)
        resp = self.conn.getresponse()
        raw = resp.read()  # raises on a body cut short: such a request is not "answered"
        if resp.getheader("x-request-id") != rid:
            raise AssertionError(f"x-request-id {resp.getheader('x-request-id')!r} is not {rid!r}")
        if resp.status not in (200, 403):
            raise AssertionError(f"unexpected status {resp.status}: {raw[:200]!r}")
        if kind == 3 and not raw.rstrip().endswith(b"data: [DONE]"):
            raise AssertionError("stream ended early")
        self.answered.append(rid)
        if resp.will_close:
            self.conn.close()
            self.conn = None

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                self._one(n)
            except Exception:  # noqa: BLE001 - the kill cuts requests off; they are not answered
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None
                time.sleep(0.01)


def _rows(db: Path, ids: list[str]) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        counts: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for rid, count in conn.execute(
                f"SELECT request_id, COUNT(*) FROM audit_events WHERE request_id IN ({marks}) GROUP BY request_id", chunk
            ):
                counts[rid] = count
        return counts
    finally:
        conn.close()


def test_kill_9_under_load_loses_no_answered_request(tmp_path: Path, fake: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    env = {"RATE_LIMIT_PER_MINUTE": "6000000", "RATE_LIMIT_BURST": "1000000", "ANALYTICS_FLUSH_INTERVAL": "1"}
    args = ["--upstream", f"openai={fake}", "--policy", str(policy)]
    daemon = Daemon(tmp_path, args, env=env)
    stop = threading.Event()
    with running(daemon):
        clients = [_Client(daemon.port, f"c{i}", stop) for i in range(8)]
        for client in clients:
            client.start()
        # Long enough for several flushes, so the kill lands with rows both
        # committed and still in memory.
        eventually(lambda: sum(len(c.answered) for c in clients) >= 1500, timeout=60, what="1500 answered requests")
        time.sleep(0.3)
        daemon.signal(signal.SIGKILL)
        daemon.proc.wait(timeout=10)
        stop.set()
        for client in clients:
            client.join(15)
    answered = [rid for c in clients for rid in c.answered]
    assert len(answered) >= 1500

    db = tmp_path / "data" / "analytics.db"
    with running(Daemon(tmp_path, args, env=env)):
        def all_rows() -> dict[str, int] | None:
            counts = _rows(db, answered)
            return counts if len(counts) == len(answered) else None

        try:
            counts = eventually(all_rows, timeout=30, what="an audit row for every answered request", interval=0.5)
        except AssertionError:
            counts = _rows(db, answered)
            missing = [rid for rid in answered if rid not in counts]
            raise AssertionError(f"{len(missing)} of {len(answered)} answered requests have no audit row, e.g. {missing[:5]}")
    assert set(counts.values()) == {1}
