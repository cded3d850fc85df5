"""A full data disk (issue #14, item 4), for real: the daemon's data dir on a tiny tmpfs, then filled.

SQLite lives in the same directory, so the database fails too: rows can be
neither stored, spooled nor journaled. With AUDIT_FAIL_CLOSED the daemon
answers 503 in the provider's shape until the disk has room again; without
it, it keeps serving and counts what it drops.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from proxilion.fakeprovider.testing import running_fake_provider
from support.daemon import Daemon, eventually, http_json, running

CHAT_PATH = "/proxy/openai/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@contextlib.contextmanager
def tiny_disk(path: Path, size: str = "8m") -> Iterator[Path]:
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    filler = path / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    with running_fake_provider(chunk_delay=0.0) as url:
        yield url


def _chat(daemon: Daemon) -> tuple[int, dict[str, str], object]:
    return http_json("POST", daemon.url + CHAT_PATH, BODY, headers={"x-fake-reply": "hi"})


@pytest.mark.parametrize("fail_closed", [True, False])
def test_full_disk(tmp_path: Path, fake: str, fail_closed: bool) -> None:
    env = {"RATE_LIMIT_PER_MINUTE": "6000000", "RATE_LIMIT_BURST": "1000000", "ANALYTICS_FLUSH_INTERVAL": "0.2", "ANALYTICS_QUEUE_SIZE": "100", "AUDIT_FAIL_CLOSED": "1" if fail_closed else "0"}
    daemon = Daemon(tmp_path, ["--upstream", f"openai={fake}"], env=env)
    with tiny_disk(tmp_path / "data") as data, running(daemon):
        assert _chat(daemon)[0] == 200
        filler = fill(data)
        if fail_closed:
            def refused() -> tuple | None:
                answer = _chat(daemon)
                return answer if answer[0] == 503 else None

            status, headers, body = eventually(refused, timeout=20, what="503 once no audit row can be kept", interval=0.1)
            assert body["error"]["code"] == "audit_unavailable" and body["error"]["type"]
            assert headers["x-request-id"]
        else:
            statuses = [_chat(daemon)[0] for _ in range(300)]
            assert set(statuses) == {200}
            eventually(lambda: daemon.metric("proxilion_analytics_rows_dropped_total") > 0, what="drops counted")
            assert daemon.metric("proxilion_analytics_journal_skipped_total") > 0
        os.remove(filler)
        eventually(lambda: _chat(daemon)[0] == 200, timeout=20, what="served again once the disk has room")
        assert daemon.proc.poll() is None
    log = daemon.log()
    # Rate-limited: a few lines, not a warning/info pair every 0.5 s.
    loud = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"analytics' in line]
    assert len(loud) < 40, len(loud)
