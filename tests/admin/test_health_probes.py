"""/health and /ready are answered from one place (DrainState.probe) on both ports."""

from __future__ import annotations

import treq

from proxilion.drain import DrainState
from proxilion.testing import InMemoryProxilion


def _admin(proxilion: InMemoryProxilion, path: str) -> tuple[int, object]:
    client = proxilion.admin_client()
    d = client.get("http://admin" + path)
    client.flush()
    box: list = []
    d.addCallback(lambda response: treq.json_content(response).addCallback(lambda body: (response.code, body)))
    d.addBoth(box.append)
    client.flush()
    return box[0]


def test_probe_readiness_and_liveness():
    drain = DrainState()
    assert drain.probe(readiness=True) == (503, {"status": "starting", "inflight": 0})
    assert drain.probe(readiness=False) == (200, {"status": "healthy", "inflight": 0})
    drain.mark_ready()
    assert drain.probe(readiness=True) == drain.probe(readiness=False) == (200, {"status": "healthy", "inflight": 0})
    drain.start_draining()
    assert drain.probe(readiness=True) == drain.probe(readiness=False) == (503, {"status": "draining", "inflight": 0})


def test_both_ports_answer_the_same_probe(tmp_path):
    proxilion = InMemoryProxilion(data_dir=tmp_path)
    proxilion.start()
    try:
        for path in ("/health", "/ready"):
            answer = proxilion.request("GET", path)
            assert (answer.status, answer.json()) == (200, {"status": "healthy", "inflight": 0})
            assert answer.headers["content-type"] == "application/json"
            assert _admin(proxilion, path) == (200, {"status": "healthy", "inflight": 0})
    finally:
        proxilion.stop()
