"""Redacting streamed answers (SSE, NDJSON, AWS event-stream) on the fly.

Each text the stream grows (a choice, a content block, tool-call arguments)
is a channel. A channel's text leaves as soon as it cannot be part of a
finding: only the value that may still be in progress at its end is held,
from the earliest place it could start (see tails; a word of letters only
while it may grow into a value the policy redacts or blocks, see starts), and at most
`stream_holdback_chars` of one value (a key block: four times that). New text
is scanned with the context already sent before it (the last 64 characters),
so a context word that has left ("SSN:") still qualifies the value held now;
the scan starts at the channel's safe point, as text before it is judged.
Events leave in their arrival order, each with its own text redacted, so the
stream stays valid for the SDKs; an event whose text ends inside a held value
leaves in two events (the part before it first) when it is the last event of
a chunk, and an event with no text (OpenAI's opening role event) leaves at
once when nothing is held ahead of it. A large event's text is scanned a
piece per call (L{StreamRedactor.busy}). Events without a text channel (tool
calls, citations, final summaries, the closing events that repeat a whole
answer) are scanned whole as JSON; a large one is scanned a piece per call
too: its short strings in batches, each long string as a text of its own
(ended at once, so scanned as a channel is), while newer events wait. A block ends
the stream with the provider's error event, before any of the offending text
leaves. A policy with its own regexes (whose values' unfinished shapes are
unknown) holds each text until `stream_holdback_chars` more were scanned
after it, rescanned a step (a quarter of the holdback) at a time. Memory is
bounded: held text never exceeds four times the holdback before the oldest
event is forced out (scanned, then redacted).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

import orjson

from proxilion.inspect.decide import block_message, decide, describe
from proxilion.inspect.findings import ACTION_RANK, TOO_MANY_FINDINGS, Action, Finding, TransformOutcome
from proxilion.inspect.redact import replacement
from proxilion.inspect.scan_context import find_keyed_secret
from proxilion.inspect.scanner import Budget, Scanner
from proxilion.inspect.starts import CONTEXT_REACH, words_for
from proxilion.inspect.tails import hold_from
from proxilion.providers import eventstream
from proxilion.providers.body import ANSWER_METADATA
from proxilion.providers.errors import ANSWER_BLOCKED, ANSWER_UNINSPECTABLE, stream_error_event, wire_dialect
from proxilion.providers.fields import Path, TextField, encode, format_path, rewrite, secret_keys, walk
from proxilion.providers.usage import event_usage
from proxilion.providers.sse import FrameTooLarge, SSEFrame, split_lines, split_sse
from proxilion.providers.streams import ALL, stream_format, text_slots

if TYPE_CHECKING:
    from proxilion.inspect.policy import Policy

# Makes a Finding of a detector's hit: (type, location, start, end).
FindingFactory = Callable[[str, str, int, int], Finding]
# An answer whose scan failed: passed on or refused as on_scanner_error says, and audited as such.
SCANNER_ERROR = "scanner_error"

# One event is parsed and rebuilt in one go on the caller's thread (the reactor), and held whole
# while it is scanned a piece per call: a larger one is refused as abusive (STREAM_MAX_EVENT_BYTES in
# the shell's settings). Deltas are a few hundred bytes; the events that repeat a whole answer stay
# below it up to ~16k tokens.
MAX_EVENT_BYTES = 64 * 1024
STREAM_EVENT_TOO_LARGE = "stream_event_too_large"
# Characters already sent that are rescanned with the held text, so a context
# word ("DOB:") sent earlier still qualifies a value held now.
_TAIL = 64
# Characters already sent that are kept: the scan's context, and the context words before a word
# held or not (see starts).
_KEEP = max(_TAIL, CONTEXT_REACH)
# Heads the channel id of a large event's long string (see _scan_later): no provider's channel has it.
_WHOLE = object()
_SSE_FIELDS = (b"event:", b"id:", b"retry:", b":")
# Bounds of a stream's memory of what it scanned clean (see _scan_beside).
_CLEAN_SHAPES = 32
_CLEAN_SHAPE_BYTES = 4096
_CLEAN_TEXTS = 256
_CLEAN_TEXT_CHARS = 64
# The largest event, its text slot blanked, whose text is sent in two parts (ids, types, an index).
_SPLITTABLE_BYTES = 512
_decoder = json.JSONDecoder()
_loads, _raw_decode = _decoder.decode, _decoder.raw_decode


def _parse(text: str) -> Any:
    """json.loads of a str; an event's data (one object, nothing around it) skips the whitespace scans."""
    if text[:1] == "{":
        doc, end = _raw_decode(text)
        if end == len(text):
            return doc
    return _loads(text)


class _Slot:
    __slots__ = ("channel", "path", "start", "end", "text")

    def __init__(self, channel: _Channel, path: tuple[str | int, ...], start: int, end: int, text: str) -> None:
        self.channel, self.path, self.start, self.end, self.text = channel, path, start, end, text


class _Frame:
    __slots__ = ("raw", "doc", "slots", "rebuild", "changed", "splittable", "arrived", "pending")

    def __init__(self, raw: bytes, doc: Any = None, rebuild: Callable[[Any], bytes] | None = None) -> None:
        self.raw, self.doc, self.rebuild = raw, doc, rebuild
        self.slots: list[_Slot] = []
        self.changed = False
        # Small beside its text (a plain delta, no audio or tool payload): its text may leave in two events.
        self.splittable = False
        self.arrived: float | None = None  # when the bytes that completed it arrived (see feed)
        self.pending: _WholeScan | None = None  # a large event's scan, not finished yet

    def encode(self) -> bytes:
        # Only frames with a rebuild have slots, and only slots change a frame.
        return self.rebuild(self.doc) if self.changed else self.raw  # type: ignore[misc]


class _Span:
    __slots__ = ("start", "end", "type", "placed")

    def __init__(self, start: int, end: int, type_: str) -> None:
        self.start, self.end, self.type, self.placed = start, end, type_, False


class _Channel:
    __slots__ = ("id", "sent_tail", "held", "base", "spans", "ended", "path", "scanned", "safe", "overflowing",
                 "location")

    def __init__(self, channel_id: Any, path: tuple[str | int, ...]) -> None:
        self.id = channel_id
        self.sent_tail = ""
        self.held = ""
        self.base = 0  # offset in the channel's whole text of held[0]
        self.spans: list[_Span] = []
        self.ended = False
        self.path = path
        self.scanned = 0  # channel length at the last rescan: text before it has been scanned
        self.safe = 0  # text before it was scanned and no value in progress can reach back into it
        self.overflowing = False  # its candidate in progress is longer than the holdback
        self.location = "stream:" + format_path(path)

    @property
    def end(self) -> int:
        return self.base + len(self.held)


class _WholeScan:
    """A large event without a text channel, scanned a piece per call: its short strings a batch at a
    time (keys first, so a key that holds a finding is hidden in the locations after it), its long
    strings as texts of their own (see L{StreamRedactor._scan_later})."""

    __slots__ = ("frame", "fields", "at", "hidden", "replacements", "texts")

    def __init__(self, frame: _Frame, fields: list[TextField], texts: list[_Channel]) -> None:
        self.frame, self.fields, self.texts = frame, fields, texts
        self.at = 0  # fields before it were scanned
        self.hidden: set[str] = set()
        self.replacements: dict[Path, list[Finding]] = {}


# What may stand between two groups of one value (digits of a card or an IBAN, parts of a key).
_GROUP_SEPARATORS = frozenset(" -\t.")


def _may_go_on(window: str, end: int) -> bool:
    """Whether a hit ending at C{end} may still grow: only a group separator or two follow it."""
    rest = window[end:]
    return len(rest) <= 2 and all(c in _GROUP_SEPARATORS for c in rest)


class StreamRedactor:
    """Redact a streamed answer; L{feed} does work in proportion to the complete events in its chunk,
    and no event larger than C{max_event_bytes} is scanned, so a caller bounds the work per call by
    the size of the chunks it feeds."""

    def __init__(self, scanner: Scanner, policy: Policy, finding: FindingFactory, provider: str, path: str,
                 identity: str | None = None, *, max_findings: int | None = None,
                 stop_types: frozenset[str] = frozenset(), max_event_bytes: int = MAX_EVENT_BYTES):
        # What it uses, not the Inspector that makes it: the scanner, the policy (its settings and
        # rules decide each finding), how a hit becomes a Finding, and the scan budget's bounds
        # (C{max_findings} for the whole answer, C{stop_types} whose first hit decides a block).
        self.scanner = scanner
        self.policy = policy
        self.settings = policy.settings
        self._finding = finding
        self.max_findings = max_findings
        self.max_event_bytes = max_event_bytes
        self.provider, self.path, self.identity = provider, path, identity
        self.format = stream_format(provider, path)
        self.holdback = self.settings.stream_holdback_chars
        # New text a channel needs past the holdback before it is rescanned (one scan per step,
        # not per event); the last scan decides what may leave, so text waits at most a step longer.
        self.rescan_step = max(32, self.holdback // 4)
        self._limit = 4 * self.holdback
        # What one call scans at most of a channel's new text; longer than any bound on a held
        # candidate, so each piece lets some text leave.
        self._piece = max(1024, self._limit + _TAIL)
        # Text leaves up to where a value may still be in progress (see tails), which the built-in
        # detectors' shapes tell; a policy's own regexes do not, so with them text waits the holdback.
        self._tails = not scanner.custom
        # A word of letters at the end of a text is held only if it may grow into a value this
        # policy redacts or blocks in answers (see starts); a value it only logs may leave.
        self._words = words_for(policy.rules_for("response", provider, path, identity)) if self._tails else None
        # Whether an event's text may leave in two events (off for an answer inspected whole).
        self.split_events = True
        # Candidates in progress that grew longer than the holdback: scanned and released in parts.
        self.overflows = 0
        self.findings: list[Finding] = []
        self.blocked = False
        # Cohere's SDKs read past an error event (finish_reason ERROR) without raising: after it the
        # stream is cut short, a transport error they do raise.
        self.cut_on_block = self.format.startswith("cohere")
        # Why the answer could not be inspected (STREAM_EVENT_TOO_LARGE, SCANNER_ERROR) or was refused
        # without a finding deciding it (TOO_MANY_FINDINGS); None otherwise.
        self.error_code: str | None = None
        self._refusal: str | None = None  # why L{refuse} ended the stream
        # (input, output) tokens, from the events that report usage (see event_usage).
        self.tokens: tuple[int | None, int | None] = (None, None)
        self._stop_types = stop_types
        # Without a min_count rule each finding's action is its own: new findings are judged alone,
        # not with all the answer's earlier ones (quadratic in a finding-dense stream).
        self._judge_alone = all(rule.min_count <= 1 for rule in policy.rules_for("response", provider, path, identity))
        self._buffer = bytearray()
        self._queue: deque[_Frame] = deque()
        self._channels: dict[Any, _Channel] = {}
        self._seen: dict[tuple[Any, int, str], str] = {}
        # What beside the text slots was already scanned clean (see _scan_beside).
        self._clean_shapes: set[bytes] = set()
        self._clean_texts: set[tuple[str, str | None]] = set()
        self._ndjson: bool | None = None if self.format.startswith("cohere") else False
        self._passthrough = False
        self._held = 0  # characters held over all channels
        self._ending: list[_Channel] = []  # channels ended by a parsed event, rescanned when it is accepted
        self._moved = False  # a channel was rescanned or ended: the queue's head may be ready now
        self._behind: dict[_Channel, None] = {}  # channels with text not scanned yet, in order
        # Large events without a text channel whose scan is under way, in arrival order.
        self._jobs: deque[_WholeScan] = deque()
        self._wholes = 0  # long strings of such events scanned as texts of their own (their channel ids)
        # Events taken from the buffer, not parsed yet: they wait while a large event is scanned.
        self._unframed: deque[Any] = deque()
        self._arrived: float | None = None
        # Bounded by the events one call releases: the caller takes them after each call.
        self._released: list[float] = []

    # -- public ---------------------------------------------------------------------------------
    def feed(self, chunk: bytes, arrived: float | None = None) -> bytes:
        """Bytes that may be sent now. C{arrived}, the caller's time of the chunk's arrival, is
        handed back by L{take_released} for each event with text that leaves."""
        if self.blocked:
            return b""
        if self._passthrough:
            return chunk
        self._buffer += chunk
        self._arrived = arrived
        return self._run(final=False)

    def take_released(self) -> list[float]:
        """The arrival times (see L{feed}) of the events with text released since the last call."""
        released, self._released = self._released, []
        return released

    @property
    def held_chars(self) -> int:
        """Characters held back from the client now, over all channels."""
        return self._held

    def finish(self) -> bytes:
        """Everything still held, at the end of the upstream stream."""
        if self.blocked:
            return b""
        if self._passthrough:
            return b""
        return self._run(final=True)

    def finish_later(self) -> None:
        """Streams are inspected as they come: nothing is left to inspect elsewhere at the end."""
        return None

    def refuse(self, error_code: str, reason: str) -> bytes:
        """End the stream now with the provider's error event, as an answer that cannot be inspected:
        the rest of it cannot be read (a compressed stream that does not decode). Held events are dropped."""
        self.error_code, self._refusal = error_code, reason
        return self._block_event()

    def outcome(self) -> TransformOutcome:
        """How the answer ended: blocked, or the strongest action of its findings."""
        findings = tuple(self.findings)
        action: Action = "block" if self.blocked else max((f.action for f in findings), key=ACTION_RANK.__getitem__, default="allow")
        return TransformOutcome(action, findings, self.error_code, None, self.tokens, rule=self.rule)

    @property
    def rule(self) -> str | None:
        """The policy rule behind the answer's strongest action (the first finding that took it)."""
        strongest = max(self.findings, key=lambda f: ACTION_RANK[f.action], default=None)
        if self.blocked and (strongest is None or strongest.action != "block"):
            return None  # refused without a finding deciding it (too many findings, a failed scan)
        return strongest.rule if strongest is not None else None

    @property
    def error(self) -> bool:
        """The answer could not be inspected whole (its scan failed, or an event was too large)."""
        return self.error_code in (SCANNER_ERROR, STREAM_EVENT_TOO_LARGE)

    @property
    def message(self) -> str:
        if self._refusal is not None:
            return f"blocked: {self._refusal}"
        if self.error_code == TOO_MANY_FINDINGS:
            return f"blocked: too many findings (more than {self.max_findings})"
        if self.error_code == STREAM_EVENT_TOO_LARGE:
            return f"blocked: a streamed event larger than {self.max_event_bytes} bytes is too large to inspect"
        if self.error_code == SCANNER_ERROR:
            return "blocked: scanner error"
        return describe("block" if self.blocked else "redact", self.findings)

    # -- framing --------------------------------------------------------------------------------
    def _run(self, final: bool) -> bytes:
        out: list[bytes] = []
        # Frames taken from the buffer but not queued yet: passed on as they came if the scanner fails.
        unqueued = self._unframed
        try:
            if self.busy and not final:
                # A large event's next piece first; newer events wait until it is scanned.
                self._step()
                if self.blocked:
                    return self._block_event()
                out.append(self._release(force_all=False, split=self.split_events))
                if self.busy:
                    return b"".join(out)
            items, to_frame = self._split(final)
            unqueued.extend(items)
            while unqueued:
                if self._size(unqueued[0]) > self.max_event_bytes:
                    raise FrameTooLarge("stream event too large")
                frame = to_frame(unqueued[0])
                unqueued.popleft()
                self._accept(frame)
                # Nothing else makes the queue's head ready, so most events skip the release.
                if not self.blocked and (self._moved or len(self._queue) == 1 or self._held > self._limit):
                    self._moved = False
                    # Only the last event of a chunk is split: a later one would free it as soon.
                    out.append(self._release(force_all=False, split=self.split_events and not unqueued and not final))
                if self.blocked:
                    return b"".join(out) + self._block_event()
                if self.busy and not final:
                    break
            if final:
                # Text that arrived since the last scans is scanned before anything leaves.
                while self._jobs and not self.blocked:
                    self._scan_batch(self._jobs[0])
                for channel in dict.fromkeys([*self._channels.values(), *self._behind]):
                    channel.ended = True
                    if not self._tails:
                        self._rescan(channel)
                        continue
                    while channel.safe < channel.end and not self.blocked:
                        self._advance(channel)
                if self.blocked:
                    return b"".join(out) + self._block_event()
                out.append(self._release(force_all=True))
        except Exception as error:  # noqa: BLE001 - a failing scanner must not let text through unscanned
            too_large = isinstance(error, FrameTooLarge)
            self.error_code = STREAM_EVENT_TOO_LARGE if too_large else SCANNER_ERROR
            if self.settings.on_scanner_error == "block":
                self.blocked = True
                return b"".join(out) + self._block_event()
            self._passthrough = True
            rest = (b"".join(f.raw for f in self._queue) + b"".join(self._raw(item) for item in unqueued)
                    + bytes(self._buffer))
            self._queue.clear()
            self._buffer.clear()
            return b"".join(out) + rest
        return b"".join(out)

    def _split(self, final: bool) -> tuple[list[Any], Callable[[Any], _Frame]]:
        """The complete frames taken from the buffer (all of it when C{final}), and what parses one."""
        if self.format == "bedrock":
            return list(eventstream.split_frames(self._buffer)), self._bedrock_frame
        if self._ndjson is None:
            head = bytes(self._buffer).lstrip()
            if not head:
                return [], self._line_frame
            self._ndjson = head.startswith(b"{")
        if self._ndjson:
            raws = split_lines(self._buffer, self.max_event_bytes)
            if final and self._buffer:
                raws.append(bytes(self._buffer))
                self._buffer.clear()
            return raws, self._line_frame
        raws = split_sse(self._buffer, self.max_event_bytes)
        if final and self._buffer.strip():
            raws.append(bytes(self._buffer))
            self._buffer.clear()
        return raws, self._sse_frame

    def _size(self, item: Any) -> int:
        return len(item[1]) if self.format == "bedrock" else len(item)

    def _raw(self, item: Any) -> bytes:
        """The bytes of a frame taken from the buffer (AWS event-stream frames come split)."""
        return eventstream.encode(*item) if self.format == "bedrock" else item

    def _sse_frame(self, raw: bytes) -> _Frame:
        sse = SSEFrame(raw)
        if sse.data is None:
            if any(not line.startswith(_SSE_FIELDS) for line in sse.lines):
                # Not SSE at all (e.g. a JSON array stream): scanned as text, never passed unseen.
                return self._text_frame(raw, raw.decode("utf-8", "replace"), lambda text: text.encode("utf-8"))
            return _Frame(raw)
        if sse.data[:1] != b"{" and sse.data.strip() == b"[DONE]":
            frame = _Frame(raw)
            self._end([ALL])
            return frame
        try:
            # Decoding first is cheaper than json.loads(bytes), which sniffs the encoding.
            doc = _parse(sse.data.decode("utf-8", "surrogatepass"))
        except ValueError:
            return self._text_frame(raw, sse.data.decode("utf-8", "replace"),
                                    lambda text: sse.with_data(text.encode("utf-8")))
        return self._json_frame(raw, sse.event, doc, lambda d: sse.with_data(encode(d)))

    def _line_frame(self, raw: bytes) -> _Frame:
        if not raw.strip():
            return _Frame(raw)
        try:
            doc = json.loads(raw)
        except ValueError:
            return self._text_frame(raw, raw.decode("utf-8", "replace"), lambda text: text.encode("utf-8"))
        return self._json_frame(raw, None, doc, lambda d: encode(d) + b"\n")

    def _bedrock_frame(self, item: tuple[dict[str, str], bytes]) -> _Frame:
        headers, payload = item
        raw = eventstream.encode(headers, payload)
        if headers.get(":message-type") != "event":
            self._end([ALL])
            return _Frame(raw)
        event = headers.get(":event-type")
        doc = json.loads(payload) if payload else {}
        if event == "chunk" and isinstance(doc, dict) and isinstance(doc.get("bytes"), str):
            try:
                inner = json.loads(base64.b64decode(doc["bytes"]))
            except (ValueError, binascii.Error):
                inner = None
            if inner is not None:
                def rebuild(d: Any) -> bytes:
                    wrapped = dict(doc, bytes=base64.b64encode(encode(d)).decode("ascii"))
                    return eventstream.encode(headers, encode(wrapped))
                return self._json_frame(raw, event, inner, rebuild)
        return self._json_frame(raw, event, doc,
                                lambda d: eventstream.encode(headers, encode(d)))

    def _json_frame(self, raw: bytes, event: str | None, doc: Any, rebuild: Callable[[Any], bytes]) -> _Frame:
        frame = _Frame(raw, doc, rebuild)
        tokens_in, tokens_out = event_usage(doc)
        if tokens_in is not None or tokens_out is not None:
            # Reported in parts (Anthropic: input first, output last): each part's latest count.
            seen_in, seen_out = self.tokens
            self.tokens = (seen_in if tokens_in is None else tokens_in, seen_out if tokens_out is None else tokens_out)
        slots, ends = text_slots(self.format, event, doc)
        channels = self._channels
        append = frame.slots.append
        # Where each slot's text sits, so the strings beside the slots can be scanned without them.
        places = []
        for channel_id, path in slots:
            parent = doc
            for part in path[:-1]:
                parent = parent[part]
            text = parent[path[-1]]
            places.append((parent, path[-1], text))
            channel = channels.get(channel_id)
            if channel is None:
                channel = channels[channel_id] = _Channel(channel_id, path)
            end = channel.end
            append(_Slot(channel, path, end, end + len(text), text))
            if text:
                channel.held += text
                self._held += len(text)
        if not slots:
            self._scan_whole(frame)
        else:
            self._scan_beside(frame, places)
        if ends:
            self._end(ends)
        return frame

    def _text_frame(self, raw: bytes, text: str, rebuild: Callable[[Any], bytes]) -> _Frame:
        """A frame whose data is not JSON: scanned and redacted as plain text."""
        frame = _Frame(raw, text, rebuild)
        self._scan_whole(frame)
        return frame

    def _end(self, ends: list[Any]) -> None:
        for channel_id, channel in self._channels.items():
            if not channel.ended and (ALL in ends or channel_id[0] in ends):
                channel.ended = True
                self._ending.append(channel)
                self._moved = True

    # -- scanning -------------------------------------------------------------------------------
    def _budget(self) -> Budget:
        """What one scan may still find: the answer's findings stay within the limit, and the
        first finding that blocks ends the scan."""
        limit = self.max_findings
        return Budget(None if limit is None else max(0, limit - len(self.findings)), self._stop_types)

    def _over_limit(self, budget: Budget) -> bool:
        if budget.stopped != "too_many":
            return False
        self.blocked = True
        self.error_code = TOO_MANY_FINDINGS
        return True

    def _judge(self, new: list[Finding]) -> list[Finding]:
        earlier = [] if self._judge_alone else self.findings
        decision = decide(self.policy, "response", self.provider, self.path, self.identity,
                          earlier + new)
        judged = list(decision.findings[len(earlier):])
        self.findings.extend(judged)
        if any(f.action == "block" for f in judged):
            self.blocked = True
        return judged

    def _scan_whole(self, frame: _Frame) -> None:
        fields = walk(frame.doc, skip=ANSWER_METADATA)
        if self._tails and sum(len(f.text) for f in fields) > self._piece:
            self._scan_later(frame, fields)
            return
        budget = self._budget()
        hits = self.scanner.scan_many([f.text for f in fields], [f.key for f in fields], budget)
        if self._over_limit(budget):
            return
        new, where = [], []
        hidden = secret_keys(fields, hits)
        for field, field_hits in zip(fields, hits):
            for h in field_hits:
                new.append(self._finding(h.type, "stream:" + format_path(field.path, hidden), h.start, h.end))
                where.append(field)
        if not new:
            return
        replacements: dict[Path, list[Finding]] = {}
        for finding, field in zip(self._judge(new), where):
            if finding.action == "redact":
                replacements.setdefault(field.path, []).append(finding)  # type: ignore[arg-type]  # walked with paths
        if replacements and not self.blocked:
            self._replace(frame, fields, replacements)

    def _replace(self, frame: _Frame, fields: list[TextField], replacements: dict[Path, list[Finding]]) -> None:
        style = self.settings.redaction
        texts = {f.path: f.text for f in fields}
        new_texts: dict[Path, str] = {}
        for path, found in replacements.items():
            text = texts[path]
            for f in sorted(found, key=lambda f: -f.start):
                text = text[:f.start] + replacement(text[f.start:f.end], f.type, style) + text[f.end:]
            new_texts[path] = text
        frame.doc = rewrite(frame.doc, new_texts)
        frame.changed = True

    def _scan_later(self, frame: _Frame, fields: list[TextField]) -> None:
        """Scan a large event a piece per call (L{_step}); the event and newer ones wait meanwhile.

        A string longer than a piece becomes a text of its own, ended at once, scanned and redacted
        as a channel's text is: the same findings as a whole scan, as for streamed text. One under a
        key that names a secret is judged whole as an assignment too (find_keyed_secret): one that
        is one stays in a batch, so it is judged exactly as in a whole scan.
        """
        short: list[TextField] = []
        texts: list[_Channel] = []
        for field in fields:
            keyed: list[Any] = []
            if len(field.text) > self._piece:
                find_keyed_secret(field.text, field.key, keyed)
            if len(field.text) <= self._piece or keyed:
                short.append(field)
                continue
            self._wholes += 1
            channel = _Channel((_WHOLE, self._wholes), field.path)  # type: ignore[arg-type]  # walked with paths
            channel.held, channel.ended = field.text, True
            frame.slots.append(_Slot(channel, channel.path, 0, len(field.text), field.text))
            self._held += len(field.text)
            self._behind[channel] = None
            texts.append(channel)
        short.sort(key=lambda f: not f.is_key)
        frame.pending = _WholeScan(frame, short, texts)
        self._jobs.append(frame.pending)

    def _scan_batch(self, job: _WholeScan) -> None:
        """Scan a large event's next short strings, up to a piece (one at least); at the last, redact them."""
        fields, at = job.fields, job.at
        stop, size = at, 0
        while stop < len(fields) and (stop == at or size + len(fields[stop].text) <= self._piece):
            size += len(fields[stop].text)
            stop += 1
        batch = fields[at:stop]
        job.at = stop
        if batch:
            budget = self._budget()
            hits = self.scanner.scan_many([f.text for f in batch], [f.key for f in batch], budget)
            if self._over_limit(budget):
                return
            job.hidden |= secret_keys(batch, hits)
            new, where = [], []
            for field, field_hits in zip(batch, hits):
                for h in field_hits:
                    new.append(self._finding(h.type, "stream:" + format_path(field.path, job.hidden), h.start, h.end))
                    where.append(field)
            if new:
                for finding, field in zip(self._judge(new), where):
                    if finding.action == "redact":
                        path: Path = field.path  # type: ignore[assignment]  # walked with paths
                        job.replacements.setdefault(path, []).append(finding)
        if stop < len(fields) or self.blocked:
            return
        self._jobs.popleft()
        frame = job.frame
        frame.pending = None
        for channel in job.texts:
            # Its findings' locations, now that the keys holding a finding are known.
            channel.location = "stream:" + format_path(channel.path, job.hidden)
        if job.replacements:
            self._replace(frame, job.fields, job.replacements)

    def _scan_beside(self, frame: _Frame, places: list[tuple[Any, Any, str]]) -> None:
        """Scan an event's strings beside its text slots (a refusal, a tool name, a field nobody
        listed): none passes unscanned. The slots are blanked meanwhile: their channels scan them."""
        for parent, key, _ in places:
            parent[key] = ""
        try:
            try:
                # Most events differ only in their slots' text: one seen clean before is clean again.
                shape = orjson.dumps(frame.doc)
            except (TypeError, orjson.JSONEncodeError):  # lone surrogates, integers beyond 64 bits
                shape = None
            frame.splittable = shape is not None and len(shape) <= _SPLITTABLE_BYTES
            if shape is not None and shape in self._clean_shapes:
                return
            clean = self._clean_texts
            # With its key: "s3cr3tV4lue9" is clean under "name" and a secret under "password".
            fields = [f for f in walk(frame.doc, paths=False, skip=ANSWER_METADATA) if (f.text, f.key) not in clean]
            texts = [f.text for f in fields]
            if self._tails and sum(map(len, texts)) > self._piece:
                self._scan_whole(frame)  # scanned a piece per call: a large event's strings may be slow to scan
                return
            if texts and any(self.scanner.scan_many(texts, [f.key for f in fields])):
                self._scan_whole(frame)
                return
            # Bounded: a stream whose events all differ (a counter, random padding) stops adding.
            if shape is not None and len(self._clean_shapes) < _CLEAN_SHAPES and len(shape) <= _CLEAN_SHAPE_BYTES:
                self._clean_shapes.add(shape)
            if len(clean) < _CLEAN_TEXTS:
                # Small strings recur in events of changing shapes ("text_delta", "assistant").
                clean.update((f.text, f.key) for f in fields if len(f.text) <= _CLEAN_TEXT_CHARS)
        finally:
            for parent, key, text in places:
                parent[key] = text

    def _rescan(self, channel: _Channel, force: bool = False, stop: int | None = None) -> None:
        """Scan the channel's text up to C{stop} (its end): all it holds and the sent tail, or with
        the tails, from the safe point (and the context before it) only: text before it is judged."""
        end = channel.end if stop is None else stop
        if end == channel.scanned:
            # Nothing arrived since the last scan (an event with empty text): nothing new to find.
            return
        channel.scanned = end
        self._moved = True
        channel_id = channel.id
        window = channel.sent_tail + channel.held
        offset = channel.base - len(channel.sent_tail)
        first = max(0, channel.safe - _TAIL - offset) if self._tails else max(0, len(channel.sent_tail) - _TAIL)
        window = window[first:end - offset]
        offset += first
        budget = self._budget()
        hits = self.scanner.scan(window, None, budget)
        final = force or (channel.ended and end == channel.end)
        if budget.stopped == "decided" and not final and not any(
                h.type in self._stop_types and h.end < len(window) for h in hits):
            # The deciding hit may still grow (and change) with the next event: no early stop here.
            budget = Budget(budget.max_hits)
            hits = self.scanner.scan(window, None, budget)
        if self._over_limit(budget):
            return
        new, spans = [], []
        judged = channel.safe if self._tails else channel.base
        for h in hits:
            start, end = offset + h.start, offset + h.end
            if end <= judged:
                continue
            if not final and _may_go_on(window, h.end):
                # It may go on in the next event ("3023 3328 8391 9984" of an IBAN still arriving
                # is a card, with or without the group separator after it): judged once other
                # text follows it. Until then it counts as unscanned, so its events stay held and
                # the next rescan looks again.
                channel.scanned = min(channel.scanned, start)
                continue
            known = self._seen.get((channel_id, start, h.type))
            if known is not None:
                # The same value seen again, longer now that more text arrived.
                if known == "redact":
                    self._add_span(channel, max(start, channel.base), end, h.type)
                continue
            new.append(self._finding(h.type, channel.location, start, end))
            spans.append((channel_id, max(start, channel.base), end))
        if not new:
            return
        for finding, (cid, start, end) in zip(self._judge(new), spans):
            self._seen[(cid, finding.start, finding.type)] = finding.action
            if finding.action == "redact":
                self._add_span(channel, start, end, finding.type)

    @staticmethod
    def _add_span(channel: _Channel, start: int, end: int, type_: str) -> None:
        for span in channel.spans:
            if start < span.end and span.start < end:
                span.end = max(span.end, end)
                if not span.placed:
                    span.start = min(span.start, start)
                return
        channel.spans.append(_Span(start, end, type_))

    def _accept(self, frame: _Frame) -> None:
        frame.arrived = self._arrived
        self._queue.append(frame)
        for slot in frame.slots:
            channel = slot.channel
            if channel in self._behind:
                continue  # a large event's long string: scanned a piece per call (_step)
            grown = channel.end - channel.scanned
            if self._tails:
                if grown or (channel.ended and channel.safe < channel.end):
                    self._advance(channel)
                continue
            # Rescanned once a step of new text has arrived and the held text is longer than the
            # holdback (so the scan lets something leave), or when the channel has ended.
            if grown and (channel.ended or (grown >= self.rescan_step
                                            and len(channel.held) > self.holdback)):
                self._rescan(channel)
        if self._ending:
            for channel in self._ending:
                if self._tails:
                    self._advance(channel)
                else:
                    self._rescan(channel)
            self._ending.clear()

    def _advance(self, channel: _Channel) -> None:
        """Scan a channel's new text when some of it may leave: up to where a value may be in progress.

        One call scans at most a piece past the safe point: a larger event is scanned over several
        calls (L{busy}), so one event dense with values to validate cannot hold the caller's thread.
        """
        base, end = channel.base, channel.end
        stop = min(end, max(channel.safe, base) + self._piece)
        if stop < end:
            self._behind[channel] = None
        else:
            self._behind.pop(channel, None)
        if channel.ended and stop == end:
            self._rescan(channel)
            if not self.blocked:
                channel.safe = end
            return
        held = channel.held[:stop - base]
        # A key block may be held up to the memory bound, any other value up to the holdback.
        at = hold_from(held, self.holdback, self._limit, self._words, channel.sent_tail)
        hold = base + at
        if at and at in (len(held) - self.holdback, len(held) - self._limit):
            # A candidate as long as its bound: its older part leaves, scanned to the end
            # first, and redacted if it is (the start of) a finding.
            if not channel.overflowing:
                channel.overflowing = True
                self.overflows += 1
            if hold > channel.safe:
                self._rescan(channel, force=True, stop=stop)
                channel.safe = hold
            return
        channel.overflowing = False
        before = channel.safe
        if hold > before:
            self._rescan(channel, stop=stop)
            channel.safe = max(before, min(hold, channel.scanned))
        if stop < end and channel.safe == before and not self.blocked:
            # A piece of a large event must free some text, or the event would never finish:
            # one whose values all look unfinished is judged as it is, up to the holdback.
            channel.scanned = before
            self._rescan(channel, force=True, stop=stop)
            channel.safe = max(before, stop - self.holdback)

    @property
    def busy(self) -> bool:
        """Text that arrived is not scanned yet (a large event, a piece per call): call L{feed} again,
        with no new bytes if need be, before L{finish}."""
        # After a block or a failed scan nothing more is scanned.
        return bool(self._behind or self._jobs) and not (self.blocked or self._passthrough)

    def _step(self) -> None:
        """One piece of the work behind: a large event's next batch of strings, else one text's next piece."""
        if self._jobs:
            self._scan_batch(self._jobs[0])
        else:
            self._advance(next(iter(self._behind)))

    # -- release --------------------------------------------------------------------------------
    def _ready(self, frame: _Frame) -> bool:
        """Whether every text of the frame is before its channel's safe point (with a policy's own
        regexes: was scanned with the holdback after it), or its channel ended and was scanned."""
        if frame.pending is not None:
            return False
        for slot in frame.slots:
            if slot.end == slot.start:
                # No text (OpenAI's opening role event): nothing to hold back, and
                # sending it at once keeps the stream's first byte prompt.
                continue
            channel = slot.channel
            scanned = channel.scanned
            if self._tails:
                if slot.end > channel.safe and not (channel.ended and scanned == channel.end):
                    return False
                continue
            if scanned - slot.end < self.holdback and not (
                    channel.ended and scanned == channel.end):
                return False
        return True

    def _release(self, force_all: bool, split: bool = False) -> bytes:
        out: list[bytes] = []
        queue = self._queue
        sent: dict[_Channel, int] = {}  # characters each channel sent in this pass
        while queue:
            frame = queue[0]
            if not (force_all or self._ready(frame)):
                # A large event being scanned a piece per call is bounded by the event size limit.
                if self._held <= self._limit or self.busy:
                    if split and self._tails and frame.splittable and len(frame.slots) == 1:
                        self._split_head(frame, frame.slots[0], out, sent)
                    break
                # The memory bound forces the oldest event out: its text is scanned to the end first.
                self._sent(sent)
                for slot in frame.slots:
                    self._rescan(slot.channel, force=True)
                if self.blocked:
                    break
            queue.popleft()
            if frame.arrived is not None and any(slot.text for slot in frame.slots):
                self._released.append(frame.arrived)
            for slot in frame.slots:
                if slot.text:
                    channel = slot.channel
                    if channel.spans:
                        self._redact_slot(frame, slot, channel)
                    sent[channel] = sent.get(channel, 0) + len(slot.text)
                    self._held -= len(slot.text)
            out.append(frame.raw if not frame.changed else frame.rebuild(frame.doc))  # type: ignore[misc]  # see _Frame.encode
        if sent:
            self._sent(sent)
        if len(out) == 1:
            return out[0]
        return b"".join(out)

    def _split_head(self, frame: _Frame, slot: _Slot, out: list[bytes], sent: dict[_Channel, int]) -> None:
        """Send the part of an event's text before its channel's held candidate, as an event of its own.

        The event's other fields go with both parts: text deltas add up, so the SDKs see one text.
        """
        channel = slot.channel
        cut = channel.safe - slot.start
        rebuild = frame.rebuild
        if cut <= 0 or slot.end <= channel.safe or frame.doc is None or rebuild is None:
            return
        head = _Slot(channel, slot.path, slot.start, channel.safe, slot.text[:cut])
        frame.doc = rewrite(frame.doc, {slot.path: head.text})
        if channel.spans:
            self._redact_slot(frame, head, channel)
        out.append(rebuild(frame.doc))
        if frame.arrived is not None:
            self._released.append(frame.arrived)
        sent[channel] = sent.get(channel, 0) + cut
        self._held -= cut
        slot.start, slot.text = channel.safe, slot.text[cut:]
        frame.doc = rewrite(frame.doc, {slot.path: slot.text})
        frame.changed = True

    @staticmethod
    def _sent(sent: dict[_Channel, int]) -> None:
        """Move the text of released events from each channel's held text to its sent tail.

        Done once per release pass: until then `held` still starts at `base`, as redaction reads it.
        """
        for channel, count in sent.items():
            held = channel.held
            tail = channel.sent_tail + held[:count] if count < _KEEP else held[count - _KEEP:count]
            channel.sent_tail = tail[-_KEEP:] if len(tail) > _KEEP else tail
            channel.held = held[count:]
            channel.base += count
            if channel.spans:
                channel.spans = [s for s in channel.spans if s.end > channel.base]
        sent.clear()

    def _redact_slot(self, frame: _Frame, slot: _Slot, channel: _Channel) -> None:
        style = self.settings.redaction
        pieces, pos = [], slot.start
        for span in sorted(channel.spans, key=lambda s: s.start):
            if span.end <= slot.start or span.start >= slot.end:
                continue
            if span.start > pos:
                pieces.append(slot.text[pos - slot.start:span.start - slot.start])
            if not span.placed:
                value = channel.held[span.start - channel.base:span.end - channel.base]
                pieces.append(replacement(value, span.type, style))
                span.placed = True
            pos = min(span.end, slot.end)
        new_text = "".join(pieces) + slot.text[pos - slot.start:]
        if new_text != slot.text:
            frame.doc = rewrite(frame.doc, {slot.path: new_text})
            frame.changed = True

    def _block_event(self) -> bytes:
        self.blocked = True
        self._queue.clear()
        self._buffer.clear()
        # The same code, status and sentence as a whole answer's refusal (relay.BufferedInspection).
        if self.error_code is None:
            status, code, reason = ANSWER_BLOCKED, "blocked_by_policy", None
        elif self.error_code == TOO_MANY_FINDINGS:
            status, code, reason = ANSWER_BLOCKED, TOO_MANY_FINDINGS, self.message.removeprefix("blocked: ")
        else:
            status, code, reason = ANSWER_UNINSPECTABLE, "uninspectable_answer", self.message.removeprefix("blocked: ")
        rule = self.rule
        return stream_error_event(wire_dialect(self.provider, self.path) if self.provider != "unknown" else "openai",
                                  block_message("Answer", rule, self.findings, reason), status, code=code, rule=rule,
                                  cohere_v1=self.format == "cohere_v1")
