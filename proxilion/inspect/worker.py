"""Inspection in a worker process: the same core, so the verdict is the one the reactor would reach.

Runs in the processes of the shell's scan pool (proxilion/proxy/offload.py), which
large bodies are sent to so their scan never holds the reactor (the detectors'
validators are Python and hold the GIL: a thread would not free the reactor).
"""

from __future__ import annotations

import pickle

from proxilion.inspect.findings import Verdict
from proxilion.inspect.inspector import Inspector
from proxilion.providers import content_coding

# Inspectors by policy key; a reload adds one, so only the newest few are kept.
_INSPECTORS: dict[tuple[int, int | None], Inspector] = {}
_KEEP = 4


def ready() -> bool:
    """A no-op job: started once per worker so the first large body does not wait for imports."""
    return True


def inspect(policy_key: tuple[int, int | None], policy_blob: bytes, direction: str, provider: str, path: str,
            body: bytes, identity: str | None, coding: bytes | None = None, limit: int = 0) -> Verdict:
    """The verdict on C{body}, first decoded from C{coding} (at most C{limit} bytes); its C{body} is
    what to forward (the decoded body, redacted or not).

    Raises L{content_coding.CodingError} when the body cannot be decoded.
    """
    inspector = _INSPECTORS.get(policy_key)
    if inspector is None:
        if len(_INSPECTORS) >= _KEEP:
            _INSPECTORS.clear()
        policy = pickle.loads(policy_blob)
        inspector = _INSPECTORS[policy_key] = Inspector(policy, policy_key[1])
    if coding is not None:
        body = content_coding.decode(body, coding, limit)
    if direction == "request":
        return inspector.inspect_request(provider, path, body, identity)
    return inspector.inspect_response(provider, path, body, identity)
