"""Turning findings into one decision with the policy's rules.

Each finding gets the action of the highest-priority rule in scope that
selects it (a rule takes part only when it selects at least `min_count`
findings); the request's action is the strongest of those, block > redact >
alert > log > allow. Findings no rule selects are logged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import attrs

from proxilion.inspect.findings import ACTION_RANK, Action, Finding
from proxilion.inspect.policy import Policy

_VERBS = {"block": "blocked", "redact": "redacted", "alert": "alert", "log": "logged", "allow": "allowed"}
UNMATCHED_ACTION: Action = "log"


@attrs.frozen
class PolicyDecision:
    action: Action
    rule: str | None
    findings: tuple[Finding, ...]
    message: str


# Most bodies hold nothing: one shared decision for them (it is frozen).
_ALLOWED = PolicyDecision("allow", None, (), "allowed: no findings")


def counted(action: str, findings: Sequence[Finding]) -> str:
    """The types and counts (never values) of the findings given C{action}: '1 credit_card, 2 email'."""
    counts = Counter(f.type for f in findings if f.action == action)
    return ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))


def describe(action: str, findings: Sequence[Finding]) -> str:
    """Human text naming finding types and counts (never values): 'blocked: 1 credit_card, 2 email'."""
    if not findings:  # most bodies
        return f"{_VERBS[action]}: no findings"
    return f"{_VERBS[action]}: " + (counted(action, findings) or "no findings")


def block_message(subject: str, rule: str | None, findings: Sequence[Finding], reason: str | None = None) -> str:
    """The one sentence a block answers with: what was blocked, by which rule, and why (finding
    types and counts, never values): "Request blocked by Proxilion policy rule 'block-cards': 1 credit_card."
    C{reason} replaces the counts when no finding decided it (too many findings, a failed scan)."""
    why = reason or counted("block", findings) or "no findings"
    by = f"Proxilion policy rule '{rule}'" if rule else "Proxilion policy"
    return f"{subject} blocked by {by}: {why}."


def decide(policy: Policy, direction: str, provider: str, path: str, identity: str | None,
           findings: Sequence[Finding]) -> PolicyDecision:
    rules = policy.rules_for(direction, provider, path, identity)
    if not findings:
        for rule in rules:
            if rule.min_count == 0:
                return PolicyDecision(rule.action, rule.id, (), describe(rule.action, ()))
        return _ALLOWED
    assigned: list[Finding | None] = [None] * len(findings)
    for rule in rules:
        selected = [i for i, f in enumerate(findings) if rule.selects(f.type, f.category, f.severity)]
        if len(selected) < max(rule.min_count, 1):
            continue
        for i in selected:
            if assigned[i] is None:
                assigned[i] = attrs.evolve(findings[i], action=rule.action, rule=rule.id)
    judged = tuple(a if a is not None else attrs.evolve(f, action=UNMATCHED_ACTION, rule=None)
                   for a, f in zip(assigned, findings))
    strongest = max(judged, key=lambda f: ACTION_RANK[f.action])
    # The deciding rule is the highest-priority one among those giving the strongest action.
    return PolicyDecision(strongest.action, strongest.rule, judged, describe(strongest.action, judged))
