"""A scan worker lowers its CPU priority before it imports the inspection core, not after.

A new worker (at daemon start, and after one dies) spends about half a second of CPU
importing the detectors; at normal priority that competes with the reactor for it.
The initializer is unpickled in the fresh worker before any job, so it must not import
the core itself.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest_twisted
from twisted.internet import reactor

from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import load_policy
from proxilion.metrics import Metrics
from proxilion.proxy import offload

_PROBE = """
import os, pickle, sys
initializer, args = pickle.loads(sys.stdin.buffer.read())
before = sorted(m for m in sys.modules if m.startswith("proxilion"))
start = os.nice(0)
initializer(*args)
print(before, os.nice(0) - start)
"""


def test_a_worker_lowers_its_priority_before_importing_the_inspection_core():
    blob = pickle.dumps(offload.WORKER_INITIALIZER)
    out = subprocess.run([sys.executable, "-c", _PROBE], input=blob, capture_output=True, check=True,
                         env={"PYTHONPATH": ":".join(p for p in sys.path if p)}).stdout.decode().split()
    imported, lowered_by = " ".join(out[:-1]), int(out[-1])
    assert imported == "[]"
    assert lowered_by == offload.NICENESS > 0


@pytest_twisted.ensureDeferred
async def test_the_pool_started_so_inspects_a_body_in_a_worker():
    pool = offload.ScanPool(reactor, Metrics(), 1, 0)
    pool.startService()
    try:
        body = json.dumps({"messages": [{"role": "user", "content": "mail jane.doe@example.com " + "words " * 20000}]}).encode()
        verdict = await pool.inspect(Inspector(load_policy(None)), "request", "openai", "/v1/chat/completions", body, None)
    finally:
        await pool.stopService()
    assert "email" in {finding.type for finding in verdict.findings}
