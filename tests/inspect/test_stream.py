"""Streaming redaction: values split across events and across chunks at every byte are still removed."""

import json

import pytest

import streams
from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import load_policy, parse_policy

DEFAULT = Inspector(load_policy(None))
CARD = "4111 1111 1111 1111"
PREFIX = "Sure. Your card "
TEXT = PREFIX + CARD + " is on file, thanks!"
EXPECTED = PREFIX + "[REDACTED:CREDIT_CARD]" + " is on file, thanks!"
FORMATS = sorted(streams.BUILDERS)


def _run(inspector, fmt, data, cuts):
    provider, path = streams.PATHS[fmt]
    redactor = inspector.stream_redactor(provider, path)
    out, last = [], 0
    for cut in cuts:
        out.append(redactor.feed(data[last:cut]))
        last = cut
    out.append(redactor.feed(data[last:]))
    out.append(redactor.finish())
    return b"".join(out), redactor


def _pieces(split):
    return [TEXT[:split], TEXT[split:]]


@pytest.mark.parametrize("fmt", FORMATS)
def test_value_split_between_two_events_at_every_character(fmt):
    for split in range(len(PREFIX), len(PREFIX) + len(CARD) + 1):
        data = streams.BUILDERS[fmt](_pieces(split))
        out, redactor = _run(DEFAULT, fmt, data, [])
        assert streams.text_of(fmt, out) == EXPECTED, (fmt, split)
        # Cohere v1 repeats the whole text in its stream-end event, a second finding.
        assert {f.type for f in redactor.findings} == {"credit_card"} and not redactor.blocked


@pytest.mark.parametrize("fmt", FORMATS)
def test_chunks_cut_at_every_byte(fmt):
    for split in (len(PREFIX) + 2, len(PREFIX) + 9, len(PREFIX) + len(CARD) - 1):
        data = streams.BUILDERS[fmt](_pieces(split))
        for cut in range(1, len(data)):
            out, _ = _run(DEFAULT, fmt, data, [cut])
            assert streams.text_of(fmt, out) == EXPECTED, (fmt, split, cut)


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_byte_at_a_time_and_token_sized_events(fmt):
    text = ("Here you go: " + CARD + ". Contact ops@corp.com. " + "Lorem ipsum dolor sit amet. " * 30) * 3
    pieces = [text[i:i + 3] for i in range(0, len(text), 3)]
    data = streams.BUILDERS[fmt](pieces)
    out, redactor = _run(DEFAULT, fmt, data, range(1, len(data)))
    got = streams.text_of(fmt, out)
    assert "4111" not in got and got.count("[REDACTED:CREDIT_CARD]") == 3
    assert "ops@corp.com" in got  # the default answer rules only log e-mail addresses
    assert got == text.replace(CARD, "[REDACTED:CREDIT_CARD]")


def test_clean_stream_passes_byte_identical():
    for fmt in FORMATS:
        data = streams.BUILDERS[fmt](["Hello ", "world, ", "nothing to see."])
        out, _ = _run(DEFAULT, fmt, data, [5, 17, 40])
        assert out == data, fmt


def _contents(out):
    return [d["choices"][0]["delta"]["content"] for d in streams._sse_docs(out)]


def test_only_a_value_that_may_be_in_progress_is_held():
    def delta(text):
        return b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}).encode() + b"\n\n"
    redactor = DEFAULT.stream_redactor("openai", "/v1/chat/completions")
    # A finished word leaves with its event; so does one still being written that cannot grow into
    # a value the policy redacts in answers.
    assert _contents(redactor.feed(delta("Hello there, "))) == ["Hello there, "]
    assert _contents(redactor.feed(delta("my card is 4111"))) == ["my card is "]
    assert _contents(redactor.feed(delta(" 1111 1111"))) == []
    # Once the value is complete, it leaves redacted; a word that may begin a key ("sk-") is held
    # in its turn, one that cannot begin a value the shipped answer rules redact leaves.
    assert _contents(redactor.feed(delta(" 1111 and sk"))) == ["[REDACTED:CREDIT_CARD]", "", " and "]
    assert _contents(redactor.feed(delta("ip more"))) == ["sk", "ip more"]
    assert _contents(redactor.finish()) == []
    assert redactor.overflows == 0


def test_memory_stays_bounded():
    policy = parse_policy({"settings": {"stream_holdback_chars": 64}, "rules": []}, environ={})
    redactor = Inspector(policy).stream_redactor("openai", "/v1/chat/completions")
    data = streams.openai(["abcd " * 4] * 2000)
    peak = 0
    for i in range(0, len(data), 97):
        redactor.feed(data[i:i + 97])
        peak = max(peak, sum(len(c.held) for c in redactor._channels.values()), len(redactor._queue))
    assert peak <= 4 * 64 + 40


BLOCK_CARDS = parse_policy({"rules": [{"id": "no-cards-out", "direction": "response",
                                       "match": {"types": ["credit_card"]}, "action": "block"}]}, environ={})


@pytest.mark.parametrize("fmt", ["openai", "anthropic", "gemini", "cohere"])
def test_block_ends_the_stream_with_the_provider_error_event(fmt):
    data = streams.BUILDERS[fmt](_pieces(len(PREFIX) + 7) + ["more text"] * 3)
    out, redactor = _run(Inspector(BLOCK_CARDS), fmt, data, list(range(10, len(data), 10)))
    assert redactor.blocked and b"4111" not in out
    last = out.replace(b"\r\n", b"\n").rstrip(b"\n").split(b"\n\n")[-1]
    doc = json.loads(last.split(b"data: ", 1)[1])
    assert "Answer blocked by Proxilion policy rule 'no-cards-out': 1 credit_card." in json.dumps(doc)
    assert "blocked_by_policy" in json.dumps(doc) and "no-cards-out" in json.dumps(doc)
    if fmt == "anthropic":
        assert last.startswith(b"event: error")
    assert redactor.feed(b"data: {}\n\n") == b"" and redactor.finish() == b""


def test_bedrock_block_is_an_eventstream_exception():
    from proxilion.providers import eventstream
    data = streams.bedrock(_pieces(len(PREFIX) + 3))
    out, redactor = _run(Inspector(BLOCK_CARDS), "bedrock", data, [])
    frames = eventstream.split_frames(bytearray(out))
    assert frames[-1][0][":message-type"] == "exception"


def test_scanner_error_in_stream_fails_closed(monkeypatch):
    ins = Inspector(load_policy(None))
    monkeypatch.setattr(ins.scanner, "scan", lambda *a, **k: 1 / 0)
    redactor = ins.stream_redactor("openai", "/v1/chat/completions")
    out = redactor.feed(streams.openai(["hello"]))
    assert redactor.blocked and redactor.error and b"scanner error" in out


@pytest.mark.parametrize("fmt", FORMATS)
def test_scanner_error_with_allow_passes_every_byte_on(monkeypatch, fmt):
    import proxilion.inspect.stream as stream_module
    policy = parse_policy({"settings": {"on_scanner_error": "allow"},
                           "rules": [{"id": "r", "direction": "response", "action": "redact"}]}, environ={})
    real, calls = stream_module.text_slots, []

    def failing_on_the_second_event(*args):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("scanner broke")
        return real(*args)

    monkeypatch.setattr(stream_module, "text_slots", failing_on_the_second_event)
    data = streams.BUILDERS[fmt](["one ", "two ", "three"])
    # Every event in one chunk: the failure hits frames already taken from the buffer.
    out, redactor = _run(Inspector(policy), fmt, data, [])
    assert redactor.error and not redactor.blocked
    assert out == data


def test_tool_call_argument_deltas_are_redacted():
    def frame(args):
        return b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": args}}]}, "finish_reason": None}]}).encode() + b"\n\n"
    key = "sk-proj-abcDEF123ghiJKL456mnoPQR789stu"
    data = frame('{"key": "' + key[:12]) + frame(key[12:] + '"}') + b"data: [DONE]\n\n"
    out, _ = _run(DEFAULT, "openai", data, [])
    args = "".join(d["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                   for d in streams._sse_docs(out))
    assert json.loads(args) == {"key": "[REDACTED:OPENAI_API_KEY]"}


def test_a_stream_that_is_not_sse_is_still_scanned():
    body = json.dumps([{"candidates": [{"content": {"parts": [{"text": "key sk-proj-abcDEF123ghiJKL456mnoPQR789stu"}]}}]}])
    redactor = DEFAULT.stream_redactor("gemini", "/v1beta/models/gemini-1.5-pro:streamGenerateContent")
    out = redactor.feed(body.encode()[:30]) + redactor.feed(body.encode()[30:]) + redactor.finish()
    assert b"abcDEF" not in out and json.loads(out)[0]["candidates"][0]["content"]["parts"][0]["text"] == \
        "key [REDACTED:OPENAI_API_KEY]"


def test_opening_event_without_text_leaves_at_once():
    redactor = DEFAULT.stream_redactor("openai", "/v1/chat/completions")
    opening = (b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
               b'"delta":{"role":"assistant","content":"","refusal":null},"finish_reason":null}]}\n\n')
    assert redactor.feed(opening) == opening
    # A value that may be in progress is held back; an event that is all value waits whole.
    first_text = (b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
                  b'"delta":{"content":"4111"},"finish_reason":null}]}\n\n')
    assert redactor.feed(first_text) == b""


def _openai_event(text, eol=b"\n"):
    doc = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return (b"data: " + json.dumps(doc).encode()).replace(b"\n", eol) + eol + eol


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_events_batched_in_one_chunk_and_any_line_ending(eol):
    # Several events per chunk, empty-text events inside the split value, and every line ending.
    pieces = [PREFIX, CARD[:6], "", CARD[6:12], "", CARD[12:], " is on file, thanks!"]
    data = b"".join(_openai_event(p, eol) for p in pieces) + b"data: [DONE]" + eol + eol
    for chunks in ([data], [data[:len(data) // 2], data[len(data) // 2:]]):
        redactor = DEFAULT.stream_redactor("openai", "/v1/chat/completions")
        out = b"".join(redactor.feed(c) for c in chunks) + redactor.finish()
        docs = [json.loads(line.split(b"data: ", 1)[1])
                for line in out.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
                if line.startswith(b"data: {")]
        assert "".join(d["choices"][0]["delta"]["content"] for d in docs) == EXPECTED
        assert out.endswith(b"data: [DONE]" + eol + eol)


def test_untouched_events_leave_as_their_original_bytes():
    # Odd spacing and key order survive: only an event whose text changed is re-encoded.
    clean = b'data:   {"choices":[{"delta":{"content":"hi there"},"index":0,"finish_reason":null}]}\n\n'
    dirty = _openai_event("card " + CARD)
    redactor = DEFAULT.stream_redactor("openai", "/v1/chat/completions")
    out = redactor.feed(clean + dirty + b"data: [DONE]\n\n") + redactor.finish()
    assert out.startswith(clean) and b"4111" not in out and out.endswith(b"data: [DONE]\n\n")


REDACT_ANSWERS = [{"id": "all", "direction": "response", "action": "redact"}]


def _redactor(holdback, step=None, rules=REDACT_ANSWERS):
    policy = parse_policy({"settings": {"stream_holdback_chars": holdback}, "rules": rules}, environ={})
    redactor = Inspector(policy).stream_redactor("openai", "/v1/chat/completions")
    if step is not None:
        redactor.rescan_step = step
    return redactor


@pytest.mark.parametrize(("holdback", "step"), [(256, None), (32, 32), (64, 1), (64, 500)])
def test_opening_events_leave_at_once_whatever_the_holdback_and_step(holdback, step):
    redactor = _redactor(holdback, step)
    opening = _openai_event("")
    assert redactor.feed(opening) == opening
    assert redactor.feed(_openai_event("Hi")) == b""  # it may be an address in progress
    # An event without text behind held text waits for it: events leave in order.
    assert redactor.feed(_openai_event("")) == b""
    anthropic = DEFAULT.stream_redactor("anthropic", "/v1/messages")
    anthropic.rescan_step = step or anthropic.rescan_step
    head = streams.anthropic(["x"]).split(b"event: content_block_delta")[0]  # message_start, block start, ping
    assert anthropic.feed(head) == head


@pytest.mark.parametrize("holdback", [256, 32, 64])
def test_a_candidate_longer_than_the_holdback_leaves_in_parts_held_by_the_holdback(holdback):
    # One unbroken run of characters: held up to the holdback, its older part then leaves (counted once).
    redactor = _redactor(holdback)
    redactor.feed(_openai_event(""))
    sent = arrived = 0
    for _ in range(200):
        sent += sum(len(c) for c in _contents(redactor.feed(_openai_event("abc"))))
        arrived += 3
        assert arrived - holdback - 3 <= sent <= max(0, arrived - holdback), (arrived, sent)
    assert redactor.overflows == 1


@pytest.mark.parametrize("holdback", [256, 32])
def test_a_value_written_one_character_per_event_is_held_from_its_earliest_start(holdback):
    redactor = _redactor(holdback)
    prose = "Thanks for asking, the number you need is: "
    sent = "".join(_contents(redactor.feed(_openai_event(prose))))
    assert sent == prose
    for i, ch in enumerate(CARD):
        sent += "".join(_contents(redactor.feed(_openai_event(ch))))
        assert sent == prose, i  # nothing of the value, and nothing held before it
    sent += "".join(_contents(redactor.feed(_openai_event(". Bye")))) + "".join(_contents(redactor.finish()))
    assert sent == prose + "[REDACTED:CREDIT_CARD]. Bye"


def test_finish_scans_text_that_arrived_since_the_last_scan():
    # No finish_reason and no [DONE]: only finish() ends the text, which must be scanned first.
    redactor = _redactor(64, 64)
    out = b"".join(redactor.feed(_openai_event(p)) for p in ["a" * 70, " card ", CARD[:7], CARD[7:]])
    out += redactor.finish()
    text = "".join(d["choices"][0]["delta"]["content"] for d in streams._sse_docs(out))
    assert text == "a" * 70 + " card [REDACTED:CREDIT_CARD]"


def test_memory_bound_scans_an_event_before_forcing_it_out():
    # Choice 0 holds a short text (never long enough to be due a scan) at the head of the queue while
    # choice 1 grows past four times the holdback: choice 0's event is forced out, scanned first.
    def event(index, text):
        doc = {"choices": [{"index": index, "delta": {"content": text}, "finish_reason": None}]}
        return b"data: " + json.dumps(doc).encode() + b"\n\n"
    redactor = _redactor(32)
    out = redactor.feed(event(0, "card " + CARD))
    for _ in range(30):
        out += redactor.feed(event(1, "lorem ipsum "))
    assert out.startswith(b"data: ") and b"4111" not in out and b"[REDACTED:CREDIT_CARD]" in out
    blocking = _redactor(32, None, [{"id": "b", "direction": "response", "match": {"types": ["credit_card"]},
                                     "action": "block"}])
    out = blocking.feed(event(0, "card " + CARD))
    for _ in range(30):
        out += blocking.feed(event(1, "lorem ipsum "))
    assert blocking.blocked and b"4111" not in out and b": 1 credit_card." in out


def test_gemini_function_call_beside_text_in_one_event_is_scanned():
    """A part that is not text (a function call) makes the event be scanned whole: its arguments are read too."""
    event = {"candidates": [{"index": 0, "content": {"role": "model", "parts": [
        {"text": "Calling the tool. "},
        {"functionCall": {"name": "charge", "args": {"card": CARD, "note": "ok"}}}]}}]}
    data = (streams._sse({"candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": "Hi. "}]}}]})
            + streams._sse(event)
            + streams._sse({"candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": ""}]},
                                            "finishReason": "STOP"}]}))
    out, _ = _run(DEFAULT, "gemini", data, [])
    docs = [json.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: ")]
    parts = docs[1]["candidates"][0]["content"]["parts"]
    assert parts[1]["functionCall"]["args"] == {"card": "[REDACTED:CREDIT_CARD]", "note": "ok"}
    assert parts[0]["text"] == "Calling the tool. "
    assert "".join(p.get("text", "") for d in docs for p in d["candidates"][0]["content"]["parts"]) == "Hi. Calling the tool. "


def test_openai_legacy_function_call_arguments_split_across_events_are_redacted():
    pieces = ['{"card": "4111 1111 ', '1111 1111", "n": 1}']
    events = [{"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {
        "role": "assistant", "content": None, "function_call": {"name": "pay", "arguments": ""}}, "finish_reason": None}]}]
    events += [{"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {
        "function_call": {"arguments": p}}, "finish_reason": None}]} for p in pieces]
    events.append({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "function_call"}]})
    data = b"".join(streams._sse(e) for e in events) + b"data: [DONE]\n\n"
    out, _ = _run(DEFAULT, "openai", data, [])
    docs = [json.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: {")]
    arguments = "".join(d["choices"][0]["delta"].get("function_call", {}).get("arguments", "") for d in docs)
    assert json.loads(arguments) == {"card": "[REDACTED:CREDIT_CARD]", "n": 1}


@pytest.mark.parametrize("fmt", FORMATS)
def test_lone_surrogate_beside_a_redacted_value_keeps_the_stream_valid(fmt):
    # JSON may carry a lone surrogate as a \ud800 escape; it has no UTF-8 form, so redacted events escape it.
    data = streams.BUILDERS[fmt](["odd \ud800 mark, " + TEXT])
    out, redactor = _run(DEFAULT, fmt, data, [])
    assert not redactor.error
    assert streams.text_of(fmt, out) == "odd \ud800 mark, " + EXPECTED


def _run_field(name, data, cuts):
    build, read, (provider, path) = streams.FIELDS[name]
    redactor = DEFAULT.stream_redactor(provider, path)
    out, last = [], 0
    for cut in cuts:
        out.append(redactor.feed(data[last:cut]))
        last = cut
    out.append(redactor.feed(data[last:]) + redactor.finish())
    return b"".join(out), redactor


@pytest.mark.parametrize("name", sorted(streams.FIELDS))
def test_value_split_between_two_events_of_every_streamed_text_field(name):
    """Reasoning, transcripts, tool plans and tool arguments are channels too: a split card is still caught."""
    build, read, _ = streams.FIELDS[name]
    for split in range(len(PREFIX), len(PREFIX) + len(CARD) + 1):
        data = build(_pieces(split))
        out, redactor = _run_field(name, data, [])
        text, shape = read(out)
        assert text == EXPECTED, (name, split)
        assert shape == read(data)[1], (name, split)  # every event still valid JSON of the same shape
        assert {f.type for f in redactor.findings} == {"credit_card"} and not redactor.blocked, name
    # Cut inside the events too, and a clean stream passes byte-identical.
    data = build(_pieces(len(PREFIX) + 9))
    for cut in range(1, len(data), 7):
        assert read(_run_field(name, data, [cut])[0])[0] == EXPECTED, (name, cut)
    clean = build(["Hello ", "world, ", "nothing to see."])
    assert _run_field(name, clean, [5, 17, 40])[0] == clean, name


def test_openai_audio_data_is_not_a_text_channel():
    build, read, _ = streams.FIELDS["openai_audio_transcript"]
    out, _ = _run_field("openai_audio_transcript", build(_pieces(len(PREFIX) + 4)), [])
    docs = streams._sse_docs(out)
    assert [d["choices"][0]["delta"]["audio"].get("data") for d in docs if "audio" in d["choices"][0]["delta"]] == \
        [None, streams.AUDIO_BYTES[:64], streams.AUDIO_BYTES[:64], streams.AUDIO_BYTES, None]
    assert docs[0]["choices"][0]["delta"]["audio"] == {"id": "audio_1", "transcript": "", "expires_at": 1730000000}


def test_gemini_chunk_array_answer_is_redacted_across_chunks_at_every_split():
    """Gemini's streamGenerateContent without alt=sse: the stream's chunks as one JSON array."""
    path = "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    for split in range(len(PREFIX), len(PREFIX) + len(CARD) + 1):
        chunks = [{"candidates": [{"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}]}
                  for piece in (TEXT[:split], TEXT[split:])]
        verdict = DEFAULT.inspect_response("gemini", path, json.dumps(chunks, indent=2).encode())
        assert verdict.action == "redact", split
        out = json.loads(verdict.body)
        assert len(out) == 2
        assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in out) == EXPECTED
    clean = json.dumps([{"candidates": [{"content": {"parts": [{"text": "hello"}]}}]}]).encode()
    assert DEFAULT.inspect_response("gemini", path, clean).body == clean


BESIDE_EVENTS = {
    # A field the slot extractor does not list, in an event that also carries streamed text.
    "openai": streams._sse({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {
        "content": "Done. ", "refusal": None, "x_note": f"card {CARD}"}, "finish_reason": None}]}),
    "anthropic": streams._sse({"type": "content_block_delta", "index": 0, "delta": {
        "type": "text_delta", "text": "Done. ", "citation": {"cited_text": f"card {CARD}"}}}, "content_block_delta"),
    "gemini": streams._sse({"candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": "Done. "}]},
                                            "groundingMetadata": {"snippet": f"card {CARD}"}}]}),
    "cohere": streams._sse({"type": "content-delta", "index": 0, "delta": {"message": {
        "content": {"text": "Done. "}, "citations": [{"text": f"card {CARD}"}]}}}, "content-delta"),
}


@pytest.mark.parametrize("fmt", sorted(BESIDE_EVENTS))
def test_strings_beside_the_streamed_text_in_one_event_are_scanned(fmt):
    """Only the text slots are followed across events; every other string of the event is scanned whole."""
    data = streams.BUILDERS[fmt](["Hello. "])
    # Put the event after the builder's first text event.
    head, sep, tail = data.partition(b"Hello. ")
    cut = tail.index(b"\n\n") + 2 if fmt != "gemini" else tail.index(b"\r\n\r\n") + 4
    data = head + sep + tail[:cut] + BESIDE_EVENTS[fmt] + tail[cut:]
    out, redactor = _run(DEFAULT, fmt, data, [])
    assert CARD.encode() not in out and b"[REDACTED:CREDIT_CARD]" in out
    assert [f.type for f in redactor.findings] == ["credit_card"]
    assert streams.text_of(fmt, out) == "Hello. Done. "


def test_small_strings_beside_the_text_are_scanned_once_per_stream(monkeypatch):
    calls = []
    scan_many = DEFAULT.scanner.scan_many
    monkeypatch.setattr(DEFAULT.scanner, "scan_many", lambda texts, keys, budget=None: calls.append(list(texts)) or scan_many(texts, keys, budget))
    _run(DEFAULT, "anthropic", streams.anthropic(["a", "b", "c", "d"]), [])
    assert sum(texts == ["text_delta"] for texts in calls) == 1


@pytest.mark.parametrize("end", [b"\n\r\n", b"\r\n\n", b"\n\r", b"\r\n\r", b"\r\n\r\n", b"\n\n", b"\r\r"])
def test_an_event_ends_at_any_blank_line_the_sse_spec_allows(end):
    """Each line ends in CRLF, LF or CR, so a blank line may be spelled several ways: the SDKs split there."""
    pieces = [PREFIX, CARD[:6], CARD[6:12], CARD[12:], " is on file, thanks!"]
    data = b"".join(b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": p}}]}).encode() + end
                    for p in pieces)
    for cut in range(1, len(data)):
        redactor = DEFAULT.stream_redactor("openai", "/v1/chat/completions")
        out = redactor.feed(data[:cut]) + redactor.feed(data[cut:]) + redactor.finish()
        assert CARD.encode() not in out and CARD[6:12].encode() not in out.replace(b"[REDACTED:CREDIT_CARD]", b""), (end, cut)
        texts = [json.loads(line[6:])["choices"][0]["delta"]["content"]
                 for line in out.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n") if line.startswith(b"data: ")]
        assert "".join(texts) == EXPECTED, (end, cut)


def test_gemini_text_split_into_an_event_that_also_calls_a_function_is_followed():
    def event(parts):
        return streams._sse({"candidates": [{"index": 0, "content": {"role": "model", "parts": parts}}]})
    data = (event([{"text": "Your card is 4111 1111"}])
            + event([{"text": " 1111 1111, calling the tool"}, {"functionCall": {"name": "lookup", "args": {"q": "x"}}}])
            + streams._sse({"candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": ""}]},
                                            "finishReason": "STOP"}]}))
    out, _ = _run(DEFAULT, "gemini", data, [])
    assert streams.text_of("gemini", out) == "Your card is [REDACTED:CREDIT_CARD], calling the tool"
    assert b'"functionCall"' in out


def test_a_string_scanned_clean_under_one_key_is_scanned_again_under_a_secret_name():
    value = "Zq8vR2mXk4Lp9Tw"
    def event(extra):
        return streams._sse({"choices": [{"index": 0, "delta": {"content": "ok ", **extra}}]})
    data = event({"label": value}) + event({"password": value}) + b"data: [DONE]\n\n"
    out, redactor = _run(DEFAULT, "openai", data, [])
    assert [f.type for f in redactor.findings] == ["generic_secret"]
    assert out.count(value.encode()) == 1



def test_a_large_event_is_scanned_a_piece_per_call():
    """One event of 20,000 characters is not scanned in one go: each call scans about a kilobyte,
    the caller feeds again while the redactor is busy, and the answer is redacted as a whole one is."""
    filler = "call +1 415 555 0100 and more words here. "
    text = filler * 200 + "card " + CARD + " end. " + filler * 200
    redactor = DEFAULT.stream_redactor("openai", "/v1/chat/completions")
    scanned = []
    scan = redactor.scanner.scan

    def counting(window, key=None, budget=None):
        scanned.append(len(window))
        return scan(window, key, budget)
    redactor.scanner = type("Counting", (), {"scan": staticmethod(counting), "custom": (),
                                              "scan_many": redactor.scanner.scan_many})()
    data = streams.openai([text])
    out = redactor.feed(data[:-40])
    calls = 1
    while redactor.busy:
        out += redactor.feed(b"")
        calls += 1
    out += redactor.feed(data[-40:]) + redactor.finish()
    assert calls >= len(text) // 1500
    assert max(scanned) <= 1200
    assert streams.text_of("openai", out) == text.replace(CARD, "[REDACTED:CREDIT_CARD]")


def test_a_policy_with_its_own_regexes_holds_text_by_the_holdback():
    """A custom regex's values may span spaces in ways the tails do not know ("EMP 123 456"): with
    one, a stream's text waits until the holdback has been scanned after it, as before issue #16."""
    policy = parse_policy({"detectors": {"custom": [{"name": "employee_id", "pattern": r"EMP \d{3} \d{3}",
                                                     "category": "hr", "severity": "high"}]},
                           "rules": REDACT_ANSWERS}, environ={})
    text = "Your id is EMP 123 456, keep it."
    for split in range(len("Your id is "), len("Your id is EMP 123 456") + 1):
        redactor = Inspector(policy).stream_redactor("openai", "/v1/chat/completions")
        events = streams.openai([text[:split], text[split:]]).split(b"\n\n")[:-1]
        out = b"".join(redactor.feed(event + b"\n\n") for event in events) + redactor.finish()
        assert streams.text_of("openai", out) == "Your id is [REDACTED:EMPLOYEE_ID], keep it.", split
    redactor = Inspector(policy).stream_redactor("openai", "/v1/chat/completions")
    assert redactor.feed(_openai_event("Hello there, ")) == b""


def test_a_large_event_finishes_even_if_no_piece_looks_finished(monkeypatch):
    # Were every piece's end to look like a value in progress, the event would still be scanned
    # and sent in a bounded number of calls, never leaving the caller feeding forever.
    monkeypatch.setattr("proxilion.inspect.stream.hold_from",
                        lambda text, reach, armour_reach, words=None, before="": 0)
    text = "lorem ipsum dolor " * 400
    redactor = DEFAULT.stream_redactor("openai", "/v1/chat/completions")
    data = streams.openai([text])
    out = redactor.feed(data[:-60])
    for _ in range(100):
        if not redactor.busy:
            break
        out += redactor.feed(b"")
    assert not redactor.busy
    out += redactor.feed(data[-60:]) + redactor.finish()
    assert streams.text_of("openai", out) == text
