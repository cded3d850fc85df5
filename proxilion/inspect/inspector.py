"""The facade the proxy calls: inspect a request or an answer and get one Verdict."""

from __future__ import annotations

import json
import time
from typing import Any

from proxilion.inspect.catalog import BUILTIN
from proxilion.inspect.decide import PolicyDecision, decide, describe
from proxilion.inspect.findings import ACTION_RANK, TOO_MANY_FINDINGS, Action, Finding, Verdict
from proxilion.inspect.policy import Policy
from proxilion.inspect.redact import redact_text
from proxilion.inspect.scanner import Budget, Scanner
from proxilion.inspect.stream import MAX_EVENT_BYTES, StreamRedactor
from proxilion.providers.body import ANSWER_METADATA, Body
from proxilion.providers.errors import wire_dialect
from proxilion.providers.fields import Path, RepeatedKey, TextField, encode, secret_keys


class TooLargeToScan(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


_MAX_STOP_SCOPES = 4096
# Below this much text a full scan is cheap (well under a millisecond), and the audit row and
# the error name every type found; above it the first finding that decides a block ends the scan.
EARLY_STOP_CHARS = 16384


class TooManyFindings(ValueError):
    pass


class Inspector:
    """C{max_findings}: a body with more detector hits than this is blocked as abusive, unscanned past them."""

    def __init__(self, policy: Policy, max_findings: int | None = None):
        self.policy = policy
        self.max_findings = max_findings
        self._stop_types: dict[Path, frozenset[str]] = {}
        self.scanner = Scanner(policy.custom_detectors, policy.settings.disabled_detectors)
        self._info = {t: (d.category, d.severity, d.compliance) for t, d in BUILTIN.items()}
        self._info.update({d.name: (d.category, d.severity, d.compliance) for d in policy.custom_detectors})

    def inspect_request(self, provider: str, path: str, body: bytes, identity: str | None = None) -> Verdict:
        return self._inspect("request", provider, path, body, identity)

    def inspect_response(self, provider: str, path: str, body: bytes, identity: str | None = None) -> Verdict:
        """For non-streaming JSON answers (any body is accepted; non-JSON is scanned as text)."""
        if provider == "gemini" and body.lstrip()[:1] == b"[" and wire_dialect(provider, path) == "gemini":
            verdict = self._inspect_chunk_array(provider, path, body, identity)
            if verdict is not None:
                return verdict
        return self._inspect("response", provider, path, body, identity)

    def _inspect_chunk_array(self, provider: str, path: str, body: bytes, identity: str | None) -> Verdict | None:
        """Gemini's streamGenerateContent without alt=sse: the stream's chunks as one JSON array.

        Its texts continue from chunk to chunk like a stream's events, so the
        stream redactor reads them (a value split between two chunks is seen
        whole); None when the body is not an array of objects.
        """
        started = time.perf_counter()
        try:
            chunks = json.loads(body)
        except ValueError:
            return None
        if not isinstance(chunks, list) or not all(isinstance(c, dict) for c in chunks):
            return None
        events = b"".join(b"data: " + encode(chunk) + b"\n\n" for chunk in chunks)
        redactor = self.stream_redactor(provider, path, identity)
        redactor.split_events = False
        out = redactor.feed(events) + redactor.finish()
        elapsed = time.perf_counter() - started
        findings = tuple(redactor.findings)
        if redactor.error:
            return self._scanner_error(body, elapsed)
        if redactor.blocked:
            return Verdict("block", findings, body, redactor.rule, redactor.message, elapsed, code=redactor.error_code)
        action: Action = max((f.action for f in findings), key=ACTION_RANK.__getitem__, default="allow")
        if out == events:
            return Verdict(action, findings, body, None, describe(action, findings), elapsed, document=chunks)
        redacted = [json.loads(event[len(b"data: "):]) for event in out.split(b"\n\n") if event.startswith(b"data: ")]
        return Verdict("redact", findings, encode(redacted), None, describe("redact", findings), elapsed, document=redacted)

    def response_inspection_enabled(self, provider: str, path: str, identity: str | None = None) -> bool:
        return any(r.action != "allow" for r in self.policy.rules_for("response", provider, path, identity))

    def stream_redactor(self, provider: str, path: str, identity: str | None = None,
                        max_event_bytes: int = MAX_EVENT_BYTES) -> StreamRedactor:
        """A redactor for one streamed answer (SSE, NDJSON or AWS event-stream)."""
        return StreamRedactor(self.scanner, self.policy, self.finding, provider, path, identity,
                              max_findings=self.max_findings,
                              stop_types=self.stop_types("response", provider, path, identity),
                              max_event_bytes=max_event_bytes)

    def stop_types(self, direction: str, provider: str, path: str, identity: str | None) -> frozenset[str]:
        """Types one finding of which decides a block: the first rule in scope selecting them blocks and
        needs no count (a rule with C{min_count} > 1 first leaves the outcome open)."""
        key = (direction, provider, path, identity)
        types = self._stop_types.get(key)
        if types is None:
            rules = self.policy.rules_for(direction, provider, path, identity)
            decided = set()
            for name, (category, severity, _) in self._info.items():
                rule = next((r for r in rules if r.selects(name, category, severity)), None)
                if rule is not None and rule.action == "block" and rule.min_count <= 1:
                    decided.add(name)
            types = frozenset(decided - self.scanner.disabled)
            if len(self._stop_types) >= _MAX_STOP_SCOPES:
                self._stop_types.clear()
            self._stop_types[key] = types
        return types

    def budget(self, direction: str, provider: str, path: str, identity: str | None, early_stop: bool = True) -> Budget:
        """Where a scan of one body (or one stream) may stop: the verdict is final (if C{early_stop}),
        or the body is abusive."""
        stop = self.stop_types(direction, provider, path, identity) if early_stop else frozenset()
        return Budget(self.max_findings, stop)

    def finding(self, finding_type: str, location: str, start: int, end: int) -> Finding:
        category, severity, compliance = self._info[finding_type]
        return Finding(finding_type, category, severity, compliance, location, start, end)

    def _inspect(self, direction: str, provider: str, path: str, body: bytes, identity: str | None) -> Verdict:
        started = time.perf_counter()
        try:
            decision, new_body, document = self._scan_and_decide(direction, provider, path, body, identity)
        except RepeatedKey:
            # Not a scanner failure: a body built so that the value scanned and the value read may differ.
            return Verdict("block", (), body, None, "blocked: a JSON object in the body repeats a key",
                           time.perf_counter() - started)
        except TooManyFindings:
            return Verdict("block", (), body, None, f"blocked: too many findings (more than {self.max_findings})",
                           time.perf_counter() - started, code=TOO_MANY_FINDINGS)
        except TooLargeToScan as e:
            return self._scanner_error(body, time.perf_counter() - started, f"larger than the {e.limit} bytes Proxilion scans")
        except Exception:  # noqa: BLE001 - any scanner failure must fail closed, never pass unscanned
            return self._scanner_error(body, time.perf_counter() - started)
        return Verdict(decision.action, decision.findings, new_body, decision.rule, decision.message,
                       time.perf_counter() - started, document=document)

    def _scanner_error(self, body: bytes, elapsed: float, reason: str = "scanner error") -> Verdict:
        """The verdict when the scan failed: the policy's C{on_scanner_error} (block by default)."""
        action = self.policy.settings.on_scanner_error
        return Verdict(action, (), body, None, f"{'blocked' if action == 'block' else 'allowed'}: {reason}",
                       elapsed, error=True)

    def _scan_and_decide(self, direction: str, provider: str, path: str, body: bytes,
                         identity: str | None) -> tuple[PolicyDecision, bytes, Any]:
        """The decision, the body to pass on (the original unless redacted) and the parsed document."""
        if len(body) > self.policy.settings.max_scan_bytes:
            raise TooLargeToScan(self.policy.settings.max_scan_bytes)
        if direction == "response":
            # An SDK reading an answer keeps a repeated key's last value, the one scanned.
            parsed = Body(body, ANSWER_METADATA, check_repeated_keys=False)
        else:
            parsed = Body(body)
        texts = [f.text for f in parsed.fields]
        budget = self.budget(direction, provider, path, identity, sum(map(len, texts)) > EARLY_STOP_CHARS)
        hits = self.scanner.scan_many(texts, [f.key for f in parsed.fields], budget)
        if budget.stopped == "too_many":
            raise TooManyFindings()
        if not any(hits):
            return decide(self.policy, direction, provider, path, identity, ()), body, parsed.doc
        fields = parsed.located()
        hidden = secret_keys(fields, hits)
        findings = [self.finding(h.type, parsed.location(field, hidden), h.start, h.end)
                    for field, field_hits in zip(fields, hits) for h in field_hits]
        decision = decide(self.policy, direction, provider, path, identity, findings)
        if decision.action == "redact":
            body = self._redact(parsed, fields, hits, decision.findings)
        return decision, body, parsed.doc

    def _redact(self, parsed: Body, fields: list[TextField], hits: list[list[Any]], findings: tuple[Finding, ...]) -> bytes:
        style = self.policy.settings.redaction
        replacements: dict[Path, str] = {}
        judged = iter(findings)
        for field, field_hits in zip(fields, hits):
            spans = [(f.start, f.end, f.type) for f in (next(judged) for _ in field_hits) if f.action == "redact"]
            if spans and field.path is not None:  # always: located() fields carry their paths
                replacements[field.path] = redact_text(field.text, spans, style)
        return parsed.rebuild(replacements)
