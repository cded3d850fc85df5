"""One request's trip through the proxy: route, identify, admit, inspect, forward, relay, complete.

Steps 4-7 (extract, scan, decide, rewrite) are the pure inspection core; this
module is the Twisted shell around them. An exchange moves forward through its
L{Phase}s (proxy/phases.py), each handing the next one frozen result, set
once; a refusal or failure is one more, an L{Ending} naming its phase. Every
exit goes through L{Exchange._complete}, which builds the
request's one frozen L{ExchangeRecord} and makes its access line, metrics and
audit row from it. It runs just before the response's last bytes are written
(L{HTTPRequest.before_end}), so the audit row is journaled before the client
sees the end and a connection starts its next pipelined request only after
this one is accounted for; or at the end, for a response that never ends
whole (the client left, the connection was cut)."""

from __future__ import annotations

from typing import Any, TypeVar

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.error import ConnectError, DNSLookupError, TimeoutError as ConnectTimeoutError
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure

from proxilion.analytics.event import Decision, Mode
from proxilion.inspect.decide import block_message, counted
from proxilion.inspect.findings import ACTION_RANK, TOO_MANY_FINDINGS, Finding, TransformOutcome
from proxilion.providers import content_coding
from proxilion.providers.errors import ANSWER_UNINSPECTABLE, error_body, error_headers, refusal_headers, wire_dialect
from proxilion.providers.usage import model_from, model_of
from proxilion.proxy.context import ProxyContext
from proxilion.proxy.headers import client_response_headers, replace_header, request_id, upstream_request_headers
from proxilion.proxy.http11 import HTTPRequest
from proxilion.proxy.identity import Identity, IdentityConflict, identify
from proxilion.proxy.offload import PoolFull
from proxilion.proxy.phases import NEXT, NOT_INSPECTED, Ending, Phase, PhaseError, Quota, RequestVerdict, UpstreamAnswer
from proxilion.proxy.record import ExchangeRecord
from proxilion.proxy.relay import BufferedInspection, Relay
from proxilion.proxy.routing import Route, RouteError
from proxilion.proxy.safe_target import safe_label, safe_target, safe_uri
from proxilion.proxy.upstream import UpstreamDisconnected, UpstreamResponse, UpstreamTimeout, UpstreamTLSError

__all__ = ["Exchange", "Phase", "PhaseError", "ACTION_ORDER", "bounded_method", "log_refused"]

errlog = Logger(namespace="proxilion.proxy")

_JSON = b"application/json"
# Whole answers inspected before they are passed on (streams are inspected as they come).
# Whole answers passed on uninspected: media, which hold no text a detector reads (but SVG,
# which is XML text). Every other answer (JSON by any name, text, HTML, a file's bytes, no type
# at all) is held and read.
_MEDIA_TYPES = (b"image/", b"audio/", b"video/", b"font/")
_STREAM_TYPES = (b"text/event-stream", b"application/vnd.amazon.eventstream", b"application/x-ndjson", b"application/stream+json")
ACTION_ORDER = ACTION_RANK  # the one order of the actions lives beside them
# The quota of a request no limiter counts (rate limiting is off).
_UNLIMITED = Quota()
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT"})


def _aws_signed(request: HTTPRequest, query: str) -> bool:
    """True when AWS SigV4 signs the request (header or presigned query), and so its body."""
    auth = request.header(b"authorization")
    return (auth is not None and auth.lstrip()[:16].upper() == b"AWS4-HMAC-SHA256") or "X-Amz-Signature=" in query


def bounded_method(method: str) -> str:
    return method if method in _METHODS else "OTHER"


def log_refused(log: Logger, rid: bytes, provider: str, method: str, uri: bytes | None, status: int, code: str,
                decision: Decision = "rejected") -> None:
    """The access line of a request that never became an exchange: refused before it was complete
    (408, 413, 431), a denied CONNECT, or a blind tunnel (C{decision} "tunnel")."""
    log.info(
        "{method} {path} {status}",
        request_id=rid.decode("ascii"),
        provider=provider,
        method=method,
        path=safe_uri(uri) if uri else None,
        status=status,
        decision=decision,
        error=code if decision == "rejected" else None,
    )


_T = TypeVar("_T")


def _once(current: _T | None, result: _T) -> _T:
    """A phase's result, to be kept where none is yet: each is set once, a second is a defect."""
    if current is not None:
        raise PhaseError(f"a {type(result).__name__} is already set")
    return result


class Exchange:
    """One proxied request: its L{Phase} and the frozen result each phase handed on
    (L{proxilion.proxy.phases}), from which its one L{ExchangeRecord} is made.

    C{decision}, C{error} and C{rule} are read from those results, never assigned.
    """

    def __init__(self, ctx: ProxyContext, request: HTTPRequest, mode: Mode) -> None:
        self.ctx = ctx
        self.request = request
        # How the client reached the proxy: explicit (plain HTTP), connect or transparent (TLS interception).
        self.mode = mode
        self.started = ctx.clock.seconds()
        self.rid = request_id(request.header(b"x-request-id"))
        self.phase = Phase.ROUTE
        # The phases' results, each set once (L{_once}).
        self.route: Route | None = None
        self.identity: Identity | None = None
        self.quota: Quota | None = None
        self.verdict: RequestVerdict | None = None
        self.upstream: UpstreamAnswer | None = None
        self.answer: TransformOutcome | None = None
        self.ending: Ending | None = None
        self.relay: Relay | None = None
        self._pending: Deferred[Any] | None = None
        self.record: ExchangeRecord | None = None

    @property
    def _done(self) -> bool:
        return self.phase is Phase.COMPLETE

    def _enter(self, phase: Phase) -> None:
        if phase not in NEXT[self.phase]:
            raise PhaseError(f"exchange {self.rid.decode('ascii')} cannot go from {self.phase.value} to {phase.value}")
        self.phase = phase

    @property
    def provider(self) -> str:
        return self.route.provider if self.route is not None else "unknown"

    @property
    def dialect(self) -> str:
        """Whose error shapes the client reads (see wire_dialect)."""
        route = self.route
        return wire_dialect(route.provider, route.path) if route is not None else "unknown"

    @property
    def decision(self) -> Decision:
        """The decision so far: an ending's, else the request side's, raised by the answer's inspection."""
        ending = self.ending
        if ending is not None and ending.decision is not None:
            return ending.decision
        decision: Decision = self.verdict.action if self.verdict is not None else "allow"
        answer = self.answer
        if (answer is not None and (answer.findings or answer.action == "block")
                and ACTION_ORDER.get(answer.action, 0) > ACTION_ORDER.get(decision, 0)):
            return answer.action
        return decision

    @property
    def error(self) -> str | None:
        """Why the request did not go through whole: the ending's reason, else an answer passed on
        unread, else why the answer could not be inspected."""
        ending = self.ending
        if ending is not None and ending.error is not None:
            return ending.error
        if self.upstream is not None and self.upstream.unreadable:
            return "compressed_answer_uninspected"
        return self.answer.error_code if self.answer is not None else None

    @property
    def rule(self) -> str | None:
        """The policy rule behind the decision: the answer's, when its action is at least the request's."""
        verdict = self.verdict
        answer = self.answer
        if answer is not None and answer.rule is not None and ACTION_ORDER.get(answer.action, 0) >= ACTION_ORDER.get(
                verdict.action if verdict is not None else "allow", 0):
            return answer.rule
        return verdict.rule if verdict is not None else None

    # Entry point
    def start(self) -> None:
        ctx = self.ctx
        ctx.drain.request_started()
        ctx.metrics.inflight_requests.inc()
        self.request.on_lost = self._client_lost
        self.request.before_end = self._before_end
        try:
            if self.request.method == b"CONNECT":
                # Tunnels would carry prompts past inspection unseen.
                self.request.close_after()
                raise RouteError(405, "CONNECT tunnelling is not supported; send requests to /proxy/<provider>/...", "method_not_allowed")
            route = ctx.router.route(self.request.uri, self.request.header(b"host"))
        except RouteError as e:
            self._refuse(e.status, e.message, e.code)
            return
        self.route = _once(self.route, route)
        if len(self.request.header_values(b"host")) > 1:
            # Routed by the first; a server behind us might read the other.
            self._refuse(400, "The request has more than one Host header.", "duplicate_host")
            return
        if ctx.audit_available is not None and not ctx.audit_available():
            # AUDIT_FAIL_CLOSED: no request is served whose audit row could not be kept.
            self._refuse(503, "Proxilion cannot record an audit trail right now and is configured to refuse requests "
                         "until it can; try again shortly.", "audit_unavailable")
            return
        # Plain callbacks rather than a coroutine: the inlineCallbacks machinery
        # was a measurable share of a small request's CPU.
        try:
            self._identify_and_admit()
        except Exception:
            self._unexpected(Failure())

    def _identify_and_admit(self) -> None:
        ctx = self.ctx
        route = self.route
        assert route is not None
        request = self.request
        self._enter(Phase.IDENTIFY)
        try:
            identity = identify(request.headers, request.peer_ip, ctx.settings, provider=route.provider, query=route.query)
        except IdentityConflict as e:
            self._refuse(400, e.message, e.code)
            return
        self.identity = _once(self.identity, identity)
        self._enter(Phase.ADMIT)
        if ctx.limiter is None:
            self._admitted(None)
            return
        d = self._pending = ctx.limiter.take(identity, route.provider, max(1, len(request.body) // 4))
        d.addCallback(self._admitted)
        d.addErrback(self._unexpected)

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Answer a request refused before it was identified; it counts against its IP whatever it claims."""
        self.ctx.metrics.rejected_requests.labels(code).inc()
        self.identity = _once(self.identity, identify(self.request.headers, self.request.peer_ip, self.ctx.settings, strict=False))
        self.respond_error(status, message, code, error=code, decision="rejected")

    def _admitted(self, limit: Any) -> None:
        self._pending = None
        if self._done:
            return
        if limit is None:
            self.quota = _once(self.quota, _UNLIMITED)
        else:
            self.quota = _once(self.quota, Quota(
                tuple([(k.lower().encode("ascii"), v.encode("ascii")) for k, v in limit.headers().items()])))
            if limit.unavailable:
                self.respond_error(503, "Rate limiting is unavailable; try again shortly.", "ratelimit_unavailable",
                                   error="ratelimit_unavailable", decision="ratelimited")
                return
            if not limit.allowed:
                self.respond_error(429, "Rate limit exceeded for this identity; retry after the Retry-After delay.", "rate_limit_exceeded",
                                   retry_after=limit.retry_after, decision="ratelimited")
                return
        self._forward()

    def _forward(self) -> None:
        ctx = self.ctx
        route = self.route
        request = self.request
        assert route is not None and self.identity is not None
        self._enter(Phase.INSPECT_REQUEST)
        body = request.body
        inspector = ctx.policy.inspector if ctx.policy is not None else None
        if inspector is None:
            self.verdict = _once(self.verdict, NOT_INSPECTED)
            self._send(body, False, None)
            return
        codings = request.header_values(b"content-encoding")
        # Every Content-Encoding line counts: one saying "identity" must not hide a second.
        coding = b", ".join(codings) if codings and body and not content_coding.is_identity(b", ".join(codings)) else None
        pool = ctx.scan_pool
        offload = ctx.settings.scan_offload_bytes
        if coding is not None and (pool is None or len(body) <= offload):
            # Inspect what the provider would read; a compressed body must not pass unread.
            # Small ones are decoded here, up to the size the reactor scans itself.
            limit = ctx.settings.max_body_size if pool is None else min(offload, ctx.settings.max_body_size)
            try:
                body = content_coding.decode(body, coding, limit)
                coding = None
            except content_coding.DecodedTooLarge as e:
                if limit == ctx.settings.max_body_size:
                    self._coding_refused(e)
                    return
            except content_coding.CodingError as e:
                self._coding_refused(e)
                return
        if pool is not None and (coding is not None or len(body) > offload):
            self._offload(pool, inspector, body, coding)
            return
        self._inspected(inspector.inspect_request(route.provider, route.path, body, self.identity.key), body,
                        bool(codings) and bool(request.body), inspector)

    def _offload(self, pool: Any, inspector: Any, body: bytes, coding: bytes | None) -> None:
        """Decode and inspect C{body} in the scan pool; the exchange goes on when its verdict is back."""
        route = self.route
        assert route is not None and self.identity is not None
        try:
            d = self._pending = pool.inspect(inspector, "request", route.provider, route.path, body, self.identity.key,
                                             coding, self.ctx.settings.max_body_size)
        except PoolFull:
            self.respond_error(503, "Proxilion is busy inspecting other large requests; retry shortly.", "scan_pool_full",
                               error="scan_pool_full", decision="rejected")
            return
        decoded = coding is not None or bool(self.request.header_values(b"content-encoding"))

        def verdict(result: Any) -> None:
            self._pending = None
            if not self._done:
                self._inspected(result, result.body, decoded, inspector)

        def failed(failure: Failure) -> None:
            self._pending = None
            if self._done:
                return
            if failure.check(content_coding.CodingError):
                self._coding_refused(failure.value)
                return
            # A scan that did not finish (a worker died) fails closed, as the scanner's own errors do.
            errlog.failure("scan worker failed for request {request_id}", failure=failure, request_id=self.rid.decode("ascii"))
            self._inspected(inspector._scanner_error(body, 0.0), body, decoded, inspector)

        d.addCallbacks(verdict, failed)
        d.addErrback(self._unexpected)

    def _inspected(self, verdict: Any, body: bytes, decoded: bool, inspector: Any) -> None:
        """Act on the request's verdict; C{body} is what was inspected (decoded if C{decoded})."""
        forwarded = self._apply_verdict(verdict, body)
        if forwarded is not None:
            self._send(forwarded, decoded, inspector)

    def _send(self, body: bytes, decoded: bool, inspector: Any) -> None:
        ctx = self.ctx
        route = self.route
        request = self.request
        assert route is not None and self.identity is not None
        self._enter(Phase.FORWARD)
        inspect_answer = inspector is not None and inspector.response_inspection_enabled(route.provider, route.path, self.identity.key)
        chain = ", ".join(self.identity.forwarded_chain).encode("ascii") or None
        headers = upstream_request_headers(request.headers, request.peer_ip, b"http", self.rid, chain)
        if decoded:
            # Forwarded as inspected (and perhaps redacted): uncompressed.
            headers = [(name, value) for name, value in headers if name != b"content-encoding"]
        if inspect_answer:
            # Answers are inspected as text: ask for them uncompressed.
            headers = replace_header(headers, b"accept-encoding", b"identity")
        target = route.path.encode("ascii") + (b"?" + route.query.encode("ascii") if route.query else b"")
        sent = ctx.clock.seconds()
        d = self._pending = ctx.upstream.request(
            request.method, route.base, target, headers, body if body or request.method in (b"POST", b"PUT", b"PATCH") else None
        )
        d.addCallbacks(self._answered, self._upstream_failed, callbackArgs=(sent, inspector if inspect_answer else None))
        d.addErrback(self._unexpected)

    def _coding_refused(self, e: content_coding.CodingError) -> None:
        """Answer a body whose Content-Encoding cannot be undone."""
        if isinstance(e, content_coding.UnsupportedCoding):
            status, code = 415, "unsupported_content_encoding"
            message = (f"Proxilion inspects request bodies and cannot read Content-Encoding '{e.coding[:32]}'; "
                       "send the body uncompressed, gzip, deflate, br or zstd.")
        elif isinstance(e, content_coding.DecodedTooLarge):
            status, code = 413, "request_too_large"
            message = f"The request body is larger than {self.ctx.settings.max_body_size} bytes once decompressed."
        else:
            status, code = 400, "invalid_content_encoding"
            message = f"The request body is not valid {e.coding[:32]} data."
        self.ctx.metrics.rejected_requests.labels(code).inc()
        self.respond_error(status, message, code, error=code, decision="rejected")

    def _answered(self, response: UpstreamResponse, sent: float, inspector: Any) -> None:
        self._pending = None
        if self._done:
            # The client left as the answer arrived: drop the upstream connection.
            response.deliver_body(_Discard())
            return
        seconds = self.ctx.clock.seconds() - sent
        self.ctx.metrics.upstream_request_duration.labels(self.provider).observe(seconds)
        content_type = (response.header(b"content-type") or b"").lower()
        streamed = content_type.startswith(_STREAM_TYPES)
        # Only an inspected answer needs its coding read.
        coding = b", ".join(value for name, value in response.headers if name == b"content-encoding") if inspector is not None else b""
        if content_coding.is_identity(coding):
            coding = b""
        self.upstream = _once(self.upstream, UpstreamAnswer(
            seconds, streamed, content_type.startswith(b"text/event-stream"), coding,
            # Asked for identity and answered in a coding we do not read.
            bool(coding) and not content_coding.decodable(coding),
        ))
        self._enter(Phase.RELAY)
        self._relay(response, inspector, content_type)

    def _count(self, findings: tuple[Finding, ...], action: str) -> None:
        metrics = self.ctx.metrics
        for finding in findings:
            metrics.findings.labels(finding.type, finding.action or action).inc()

    def _apply_verdict(self, verdict: Any, body: bytes) -> bytes | None:
        """Act on the inspection core's verdict; return the body to forward, or None if answered here."""
        ctx = self.ctx
        route = self.route
        assert route is not None and self.identity is not None
        action = verdict.action
        # AWS SigV4 signs the body: a redacted body would fail AWS's signature check, so refuse it here, clearly.
        signed = action == "redact" and _aws_signed(self.request, route.query)
        if signed:
            action = "block"
        ctx.metrics.scan_duration.labels("request").observe(verdict.scan_seconds)
        ctx.metrics.policy_decisions.labels(action).inc()
        if verdict.rule is not None:
            ctx.metrics.policy_rule_decisions.labels("request", verdict.action, verdict.rule).inc()
        if verdict.error:
            ctx.metrics.scanner_errors.inc()
        self._count(verdict.findings, verdict.action)
        document = verdict.document
        self.verdict = _once(self.verdict, RequestVerdict(
            action, verdict.rule, verdict.findings,
            model_from(document, route.path) if document is not None else None, document is not None,
        ))
        self.request.set_header(b"x-proxilion-decision", action.encode("ascii"))
        if signed:
            self.respond_error(
                403,
                f"Request blocked by Proxilion policy: it needs redacting ({counted('redact', verdict.findings)}), "
                "but it is signed with AWS SigV4 and a changed body would fail AWS's signature check. "
                "Send it without those values.",
                "blocked_by_policy",
                rule=verdict.rule,
                error="signed_request_needs_redaction",
            )
            return None
        if action == "block":
            if verdict.code == TOO_MANY_FINDINGS:
                ctx.metrics.findings_cap_exceeded.labels("request").inc()
                self.respond_error(403, block_message("Request", None, (), verdict.message.removeprefix("blocked: ")),
                                   TOO_MANY_FINDINGS, error=TOO_MANY_FINDINGS)
                return None
            if verdict.error:
                self.respond_error(403, block_message("Request", None, (), verdict.message.removeprefix("blocked: ")),
                                   "blocked_by_policy", error="scanner_error")
                return None
            self.respond_error(403, block_message("Request", verdict.rule, verdict.findings), "blocked_by_policy",
                               rule=verdict.rule)
            return None
        if action == "redact":
            return verdict.body
        return body

    def _relay(self, response: UpstreamResponse, inspector: Any, content_type: bytes) -> None:
        request = self.request
        route = self.route
        answer = self.upstream
        assert route is not None and self.identity is not None and answer is not None
        coding = answer.coding
        if answer.unreadable:
            # An answer we cannot read must not pass unread.
            self.ctx.metrics.scanner_errors.inc()
            if inspector.policy.settings.on_scanner_error != "allow":
                response.deliver_body(_Discard())
                self.respond_error(
                    ANSWER_UNINSPECTABLE,
                    "The provider answered compressed (Content-Encoding: %s) although asked not to; "
                    "Proxilion cannot inspect that answer." % coding.decode("latin-1")[:32],
                    "uninspectable_answer",
                    answered=True,
                    error="compressed_answer",
                    decision="block",
                )
                return
            inspector = None
            coding = b""
        request.set_code(response.code, response.phrase or None)
        request.response_headers = client_response_headers(response.headers) + request.response_headers
        self._own_headers()
        length = response.length
        transform = None
        decoder = None
        if request.method == b"HEAD" or response.code in (204, 304):
            # No body follows these headers: nothing to inspect, and a made-up
            # "Content-Length: 0" would misstate a HEAD answer and is forbidden on 204.
            length = None
        elif inspector is not None and answer.streamed:
            transform = inspector.stream_redactor(route.provider, route.path, self.identity.key,
                                                  self.ctx.settings.stream_max_event_bytes)
            request.announce_trailer(b"x-proxilion-decision")
            if coding:
                # Decoded as it comes, within the size limit of a whole answer, and relayed decoded.
                decoder = content_coding.StreamDecoder(coding, self.ctx.settings.max_body_size)
        elif inspector is not None and (not content_type.startswith(_MEDIA_TYPES) or content_type.startswith(b"image/svg")):
            # Error answers too: a provider's error message may quote the prompt.
            transform = BufferedInspection(inspector, route.provider, route.path, self.identity.key, self.ctx.settings.max_body_size,
                                           self.ctx.scan_pool, self.ctx.settings.scan_offload_bytes, coding or None)
        if coding and transform is not None:
            # Released decoded: a whole answer with its length set when it is, a stream chunked.
            request.response_headers = [(name, value) for name, value in request.response_headers if name != b"content-encoding"]
        if transform is None and length is not None:
            request.set_header(b"content-length", b"%d" % length)
        self.relay = Relay(request, self._relay_done, transform, self.ctx.clock,
                           on_end=self._final_decision if transform is not None else None, decoder=decoder,
                           metrics=self.ctx.metrics)
        response.deliver_body(self.relay)

    def _final_decision(self) -> bytes:
        """The request's final decision, its answer's inspection included, as the answer ends: in the
        x-proxilion-decision header while headers have not left; for a stream (whose headers left with
        the request side's decision) in the x-proxilion-decision trailer after its last chunk, which
        every official SDK's HTTP client reads past; and for a server-sent-event stream also as a last
        SSE comment, which SSE clients skip, but google-genai, which reads every line as JSON (measured:
        UnknownApiResponseError), does not: Gemini's own streams carry it in the trailer only."""
        self._absorb_transform()
        decision = self.decision.encode("ascii")
        if not self.request.started_writing:
            self.request.set_header(b"x-proxilion-decision", decision)
        self.request.set_trailer(b"x-proxilion-decision", decision)
        if self.upstream is not None and self.upstream.sse and self.dialect != "gemini":
            return b": x-proxilion-decision: %s\n\n" % decision
        return b""

    def _relay_done(self, error: str | None) -> None:
        if self._done:
            return
        self._absorb_transform()
        if error is None:
            self._complete(self.request.code)
            return
        if error != "client_disconnected" and not self.request.started_writing and not self.request.finished:
            # The answer broke off while held for inspection: the client still gets an answer.
            self.request.response_headers = []
            if error == "upstream_idle_timeout":
                self.respond_error(504, "The upstream provider stopped sending its answer.", error, error=error)
            else:
                self.respond_error(502, "The upstream provider closed the connection before its answer was complete.", error,
                                   error=error)
            return
        self.ending = _once(self.ending, Ending(Phase.RELAY, error))
        self._complete(self.request.code)

    def _absorb_transform(self) -> None:
        """Keep the answer's inspection outcome as the relay phase's result, and count it, once."""
        relay = self.relay
        if relay is None or self.answer is not None:
            return
        outcome = self.answer = relay.outcome()
        metrics = self.ctx.metrics
        if outcome.scan_seconds is not None:
            metrics.scan_duration.labels("response").observe(outcome.scan_seconds)
        if outcome.findings:
            self._count(outcome.findings, outcome.action)
        if outcome.rule is not None:
            metrics.policy_rule_decisions.labels("response", outcome.action, outcome.rule).inc()
        error_code = outcome.error_code
        if error_code == TOO_MANY_FINDINGS:
            metrics.findings_cap_exceeded.labels("response").inc()
        elif error_code is not None and error_code != "scan_pool_full":
            # An answer that could not be inspected: refused (its action says so), or passed on as the policy allows.
            metrics.scanner_errors.inc()

    def _own_headers(self) -> None:
        request = self.request
        request.set_header(b"x-request-id", self.rid)
        if self.quota is not None:
            for name, value in self.quota.headers:
                request.set_header(name, value)
        if self.ctx.drain.draining:
            request.close_after()

    # Failures
    def _upstream_failed(self, failure: Failure) -> None:
        self._pending = None
        if failure.check(CancelledError) and self._done:
            # The client went away while we waited; _client_lost has recorded it.
            return
        if failure.check(UpstreamTimeout):
            kind, status, msg = "upstream_timeout", 504, "The upstream provider did not answer in time."
        elif failure.check(UpstreamTLSError):
            kind, status = "upstream_tls_error", 502
            msg = ("The upstream provider's TLS certificate could not be verified." if failure.value.certificate
                   else "The TLS handshake with the upstream provider failed.")
        elif failure.check(ConnectTimeoutError):
            kind, status, msg = "upstream_connect_timeout", 504, "Timed out connecting to the upstream provider."
        elif failure.check(ConnectError, DNSLookupError, UpstreamDisconnected):
            kind, status, msg = "upstream_unreachable", 502, "The upstream provider could not be reached."
        else:
            kind, status, msg = "upstream_error", 502, "The upstream provider request failed."
        self.ctx.metrics.upstream_errors.labels(self.provider, kind).inc()
        errlog.warn(
            "upstream {kind} for {provider} request {request_id}: {reason}",
            kind=kind,
            provider=self.provider,
            request_id=self.rid.decode("ascii"),
            reason=failure.getErrorMessage()[:200],
        )
        self.respond_error(status, msg, kind, error=kind)

    def _unexpected(self, failure: Failure) -> None:
        if failure.check(CancelledError) and self._done:
            # The client left while an awaited step (a Redis rate-limit call) was pending.
            return
        errlog.failure("unexpected error handling request {request_id}", failure=failure, request_id=self.rid.decode("ascii"))
        if self._done:
            return
        if self.ending is None:
            if not self.request.started_writing:
                self.respond_error(500, "Proxilion hit an internal error; the request was not forwarded.", "internal_error",
                                   error="internal_error", decision="error")
                return
            self.ending = Ending(self.phase, "internal_error", "error")
        # (An exchange that failed while ending its own way keeps that ending; its answer may be half written.)
        self.request.abort()
        self._complete(self.request.code)

    def _client_lost(self) -> None:
        if self._done:
            return
        if self.relay is not None:
            # The relay stops, and reports the loss (L{_relay_done}).
            self.relay.client_gone()
            return
        self.ending = _once(self.ending, Ending(self.phase, "client_disconnected"))
        self._complete(499)
        if self._pending is not None:
            self._pending.cancel()

    # Answers
    def respond_error(self, status: int, message: str, code: str, *, error: str | None = None, decision: Decision | None = None,
                      retry_after: float | None = None, answered: bool = False, rule: str | None = None) -> None:
        """End the exchange with an error shaped like this provider's own errors (a 429 says when to
        retry; one refusing an answer the provider gave, C{answered}, says not to); C{code} is the
        error body's, C{error} and C{decision} the record's (L{Ending})."""
        if self._done:
            return
        request = self.request
        dialect = self.dialect
        body = error_body(dialect, status, message, code, retry_after=retry_after, rule=rule)
        self.ending = _once(self.ending, Ending(self.phase, error, decision, status, rule, len(body)))
        request.set_code(status)
        request.set_header(b"content-type", _JSON)
        for name, value in (refusal_headers(dialect, status) if answered else error_headers(dialect, status).items()):
            request.set_header(name.lower().encode("ascii"), value.encode("ascii"))
        request.set_header(b"content-length", b"%d" % len(body))
        self._own_headers()
        request.write(body)
        request.finish()
        self._complete(status)

    def _complete(self, status: int) -> None:
        """The one exit: build the exchange's record, then its metrics, access line and audit row from it.

        Called just before the answer's last bytes are written (L{_before_end}), so a request is
        accounted for before its connection starts the next pipelined one, and its audit row is in
        the journal before the client can see the answer end; or when the answer never ends whole.
        """
        if self._done:
            return
        self._absorb_transform()
        ended_in = self.phase
        self._enter(Phase.COMPLETE)
        ctx = self.ctx
        metrics = ctx.metrics
        # First: whatever fails below, the request no longer holds up a drain.
        ctx.drain.request_finished()
        metrics.inflight_requests.dec()
        record = self.record = self._build_record(status, ctx.clock.seconds() - self.started, ended_in)
        method = bounded_method(record.method)
        metrics.http_requests.labels(record.provider, method, str(status)).inc()
        metrics.http_request_duration.labels(record.provider).observe(record.duration_total)
        upstream = record.duration_upstream
        ctx.access_log.info(
            "{method} {path} {status}",
            request_id=record.request_id,
            provider=record.provider,
            method=method,
            path=record.path,
            status=status,
            decision=record.decision,
            identity=record.identity,
            duration_ms=round(record.duration_total * 1000, 3),
            upstream_ms=round(upstream * 1000, 3) if upstream is not None else None,
            bytes_in=record.bytes_in,
            bytes_out=record.bytes_out,
            streamed=record.streamed,
            error=record.error,
            rule=record.rule,
            findings=dict(record.findings) or None,
        )
        if ctx.record is not None:
            try:
                ctx.record(record)
            except Exception:
                errlog.failure("recording the audit row of {request_id} failed", request_id=record.request_id)
        # Break the request <-> exchange <-> relay cycles: freed by reference
        # counting now instead of by the cyclic collector later.
        self.request.on_lost = None
        self.request.before_end = None
        self.relay = None

    def _build_record(self, status: int, total: float, ended_in: Phase) -> ExchangeRecord:
        """The record, made from the phases' results alone."""
        route = self.route
        identity = self.identity
        verdict = self.verdict
        upstream = self.upstream
        answer = self.answer
        ending = self.ending
        if verdict is not None and verdict.model_known:
            model = verdict.model
        else:
            # Parsed here, once, since inspection did not parse the body.
            model = model_of(self.request.body, route.path) if route is not None else None
        findings: dict[str, int] = {}
        for finding in (verdict.findings if verdict is not None else ()) + (answer.findings if answer is not None else ()):
            findings[finding.type] = findings.get(finding.type, 0) + 1
        tokens_in, tokens_out = answer.tokens if answer is not None else (None, None)
        return ExchangeRecord(
            started=self.started,
            request_id=self.rid.decode("ascii"),
            provider=self.provider,
            method=self.request.method.decode("latin-1")[:16],
            path=safe_target(route.path, route.query) if route else safe_uri(self.request.uri),
            status=status,
            decision=self.decision,
            findings=tuple(findings.items()),
            identity=identity.key if identity is not None else None,
            tenant=identity.tenant if identity is not None else None,
            client_ip=identity.client_ip if identity is not None else None,
            # The model name is the client's to choose (a path segment, a body field): kept masked, like the path.
            model=safe_label(model) if model else None,
            bytes_in=len(self.request.body),
            bytes_out=self.relay.bytes_out if self.relay is not None else (ending.bytes_out if ending is not None else 0),
            streamed=upstream.streamed if upstream is not None else False,
            duration_total=total,
            duration_upstream=upstream.seconds if upstream is not None else None,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            error=self.error,
            ended_in=ended_in.value,
            mode=self.mode,
            rule=self.rule,
        )

    def _before_end(self) -> None:
        """The response's last bytes are about to leave: the exchange completes first (see L{_complete})."""
        try:
            self._complete(self.request.code)
        except Exception:
            errlog.failure("completing {request_id} failed", request_id=self.rid.decode("ascii"))


class _Discard(Protocol):
    """Takes an answer nobody is waiting for, and stops it."""

    transport: IPushProducer  # type: ignore[assignment]  # the upstream body's producer, as Relay's

    def connectionMade(self) -> None:
        self.transport.stopProducing()

