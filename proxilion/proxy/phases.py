"""The phases of one exchange, and the frozen value each one hands to the next.

route → identify → admit → inspect request → forward → relay → complete. Each
phase leaves one result on the exchange, set once: L{Route} (proxy/routing.py),
L{Identity} (proxy/identity.py), L{Quota}, L{RequestVerdict},
L{UpstreamAnswer}, and the answer's L{TransformOutcome} (inspect/findings.py).
An exchange the proxy ends itself (a refusal, a block, an upstream failure, the
client leaving) also gets one L{Ending}, naming the phase that ended it. The
exchange's record is made from these values alone.
"""

from __future__ import annotations

import enum

import attrs

from proxilion.analytics.event import Decision
from proxilion.inspect.findings import Action, Finding

__all__ = ["Ending", "NEXT", "NOT_INSPECTED", "Phase", "PhaseError", "Quota", "RequestVerdict", "UpstreamAnswer"]


class Phase(enum.Enum):
    """Where an exchange is; it only moves forward, and may complete from any phase (an answer
    given by the proxy itself: a refusal, a block, an upstream failure, the client leaving)."""

    ROUTE = "route"
    IDENTIFY = "identify"
    ADMIT = "admit"
    INSPECT_REQUEST = "inspect_request"
    FORWARD = "forward"
    RELAY = "relay"
    COMPLETE = "complete"

    # Members are singletons, so identity hashing is right; Enum's own __hash__ is a Python call,
    # and every transition looks a phase up twice.
    __hash__ = object.__hash__


# Where each phase may go (L{proxilion.proxy.exchange.Exchange._enter} guards every step).
# An enum with guarded transitions rather than an Automat machine: the phases are one line with
# one exit, and a transition here is a set lookup, where Automat adds several calls per input
# on a path whose CPU per request is measured (bench/request_path_cpu.py).
NEXT: dict[Phase, frozenset[Phase]] = {
    Phase.ROUTE: frozenset({Phase.IDENTIFY, Phase.COMPLETE}),
    Phase.IDENTIFY: frozenset({Phase.ADMIT, Phase.COMPLETE}),
    Phase.ADMIT: frozenset({Phase.INSPECT_REQUEST, Phase.COMPLETE}),
    Phase.INSPECT_REQUEST: frozenset({Phase.FORWARD, Phase.COMPLETE}),
    Phase.FORWARD: frozenset({Phase.RELAY, Phase.COMPLETE}),
    Phase.RELAY: frozenset({Phase.COMPLETE}),
    Phase.COMPLETE: frozenset(),
}


class PhaseError(RuntimeError):
    """A step the phases do not allow (going back, or a phase's result set twice): a defect,
    answered as an internal error."""


@attrs.frozen
class Quota:
    """ADMIT's result: where the identity stands against its limit, as the answer's
    X-RateLimit-* headers (none when limiting is off). A refused request has one too:
    its 429 carries them. (The limiter's own answer is L{proxilion.ratelimit.service.Admission}.)"""

    headers: tuple[tuple[bytes, bytes], ...] = ()


@attrs.frozen
class RequestVerdict:
    """INSPECT_REQUEST's result: what the request side decided.

    C{action} is the one acted on (a redaction a signed body cannot take is a block);
    C{model} is the model named in the inspected document, when inspection parsed it
    (C{model_known}), so it is not parsed again for the record.
    """

    action: Action
    rule: str | None = None
    findings: tuple[Finding, ...] = ()
    model: str | None = None
    model_known: bool = False


# The verdict of a request nothing inspects (inspection is off).
NOT_INSPECTED = RequestVerdict("allow")


@attrs.frozen
class UpstreamAnswer:
    """FORWARD's result: the provider's answer headers are in.

    C{coding} is the answer's content coding to undo for inspection (empty: none);
    C{unreadable} says it came in a coding inspection cannot read (a compressed stream,
    an unknown coding), so it is refused or, as the policy allows, passed on unread.
    """

    seconds: float  # from sending the request to the answer's headers
    streamed: bool
    sse: bool  # a server-sent-event stream
    coding: bytes = b""
    unreadable: bool = False


@attrs.frozen
class Ending:
    """How the proxy ended an exchange itself, and in which phase.

    C{error} is the record's error code (None for a refusal that is no error: a 429, a policy
    block); C{decision} the decision it imposes (None: the one reached so far stands);
    C{status} the proxy's own answer, None when it gave none (the client left, the answer
    was cut off); C{bytes_out} that answer's size.
    """

    phase: Phase
    error: str | None
    decision: Decision | None = None
    status: int | None = None
    rule: str | None = None
    bytes_out: int = 0
