"""Value types the inspection core hands out: findings and verdicts.

A Finding says what was found and where, never the value itself, so it can be
logged, counted and stored without leaking what it describes.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import attrs

SEVERITIES = ("low", "medium", "high", "critical")
# What a policy rule does with a finding, weakest first.
Action = Literal["allow", "log", "alert", "redact", "block"]
ACTIONS: tuple[Action, ...] = get_args(Action)
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
# Strength of an action when several rules apply to one request: the one home of their order.
ACTION_RANK: dict[str, int] = {name: rank for rank, name in enumerate(ACTIONS)}
# The code of a body blocked because it holds more findings than the limit (an abusive body).
TOO_MANY_FINDINGS = "too_many_findings"


@attrs.frozen
class Finding:
    type: str
    category: str
    severity: str
    compliance: tuple[str, ...]
    location: str
    start: int
    end: int
    action: Action = "log"
    rule: str | None = None


@attrs.frozen
class Verdict:
    action: Action
    findings: tuple[Finding, ...]
    body: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    rule: str | None = None
    message: str = ""
    scan_seconds: float = 0.0
    error: bool = False
    # Why the body was refused when no finding decided it ("too_many_findings"), else None.
    code: str | None = None
    # The body as parsed JSON (None if it was not JSON), so callers can read the
    # model or token usage without parsing it again. Read-only.
    document: Any = attrs.field(default=None, repr=False, eq=False)


@attrs.frozen
class TransformOutcome:
    """How one answer's body transform ended (buffered inspection, stream redaction).

    C{action} is the answer's own decision; C{error_code} names why it could not be
    inspected or was refused without a finding deciding it; C{status} is the status the
    transform answered with when it replaced the answer (None: the upstream's), and C{headers}
    those it needs.
    """

    action: Action = "allow"
    findings: tuple[Finding, ...] = ()
    error_code: str | None = None
    scan_seconds: float | None = None
    tokens: tuple[int | None, int | None] = (None, None)
    status: int | None = None
    # Headers of the answer the transform replaced the provider's with (its error shape's).
    headers: tuple[tuple[str, str], ...] = ()
    # The policy rule behind C{action}, if one decided it.
    rule: str | None = None


# The outcome of an answer passed on untouched (no transform).
PASSED_THROUGH = TransformOutcome()
