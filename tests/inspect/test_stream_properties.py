"""Property tests of the streaming redactor's lazy rescans: a value split anywhere never leaves unseen.

Held text is rescanned once a step of new text has arrived, not per event, and
an event leaves only once the last scan of its channel covered the holdback
after it (or the channel's end). These tests plant a value in an answer, cut
the answer into events at every character of the value (and token-sized
pieces elsewhere), and check the streamed answer against the whole answer
redacted at once, for several holdback and step sizes.
"""

import random
import re
from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streams
import valuegen as g
from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import parse_policy
from proxilion.inspect.redact import replacement

MAKERS = [g.card, g.ssn, g.iban, g.email, g.phone, g.openai_key, g.github_token, g.aws_key_id, g.jwt,
          g.mbi, g.dea, g.slack_token]
# Filler that can never contain a detectable value (as in test_redaction_properties).
ALPHABET = list("abcdefghij klmnop,.!?\n\"\\é—🙂{}[]")
# (holdback, rescan step): the shipped default, the smallest holdback, steps from one character
# (a scan per event) to longer than the holdback.
COMBOS = [(256, 64), (32, 32), (64, 1), (64, 16), (64, 64), (100, 250)]
SSE_END = re.compile(rb"\r\n\r\n|\n\n")


def _openai_unended(pieces):
    """OpenAI events cut off before the finish_reason event and [DONE]: only finish() ends the text."""
    events = streams.openai(pieces).split(b"\n\n")[:-3]
    return b"".join(e + b"\n\n" for e in events)


BUILDERS = dict(streams.BUILDERS, **{"openai-unended": _openai_unended})
FORMATS = ["openai", "anthropic", "gemini", "cohere", "openai-unended"]


@lru_cache(maxsize=None)
def _inspector(holdback: int, action: str) -> Inspector:
    return Inspector(parse_policy({"settings": {"stream_holdback_chars": holdback},
                                   "rules": [{"id": "all", "direction": "response", "action": action}]},
                                  environ={}))


def _redacted_whole(inspector: Inspector, text: str) -> str:
    """The answer redacted in one piece, as a non-streamed answer would be."""
    style = inspector.policy.settings.redaction
    for hit in sorted(inspector.scanner.scan(text), key=lambda h: -h.start):
        text = text[:hit.start] + replacement(text[hit.start:hit.end], hit.type, style) + text[hit.end:]
    return text


def _cut(text: str, sizes: list[int]) -> list[str]:
    pieces, pos, i = [], 0, 0
    while pos < len(text):
        size = sizes[i % len(sizes)]
        pieces.append(text[pos:pos + size])
        pos += size
        i += 1
    return pieces


def _stream(holdback, step, action, fmt, data, per_event):
    provider, path = streams.PATHS[fmt.split("-")[0]]
    redactor = _inspector(holdback, action).stream_redactor(provider, path)
    redactor.rescan_step = step
    if per_event:
        cuts = [m.end() for m in SSE_END.finditer(data)]
    else:
        cuts = list(range(97, len(data), 97))
    out, last = [], 0
    for cut in cuts + [len(data)]:
        out.append(redactor.feed(data[last:cut]))
        last = cut
    out.append(redactor.finish())
    return b"".join(out), redactor


@st.composite
def planted_answers(draw, holdback, step):
    rng = random.Random(draw(st.integers(0, 2**32)))
    value = rng.choice([m for m in MAKERS if len(m(random.Random(0))) <= holdback])(rng)
    longest = min(holdback + 2 * step, 420)
    before = "".join(rng.choice(ALPHABET) for _ in range(draw(st.integers(0, longest))))
    after = "".join(rng.choice(ALPHABET) for _ in range(draw(st.integers(0, longest))))
    sizes = draw(st.lists(st.integers(1, 9), min_size=1, max_size=8))
    fmt = draw(st.sampled_from(FORMATS))
    per_event = draw(st.booleans())
    return before + " ", value, " " + after, sizes, fmt, per_event


@pytest.mark.parametrize(("holdback", "step"), COMBOS)
def test_a_value_split_at_every_character_never_leaves_unredacted(holdback, step):
    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(planted_answers(holdback, step))
    def check(case):
        before, value, after, sizes, fmt, per_event = case
        text = before + value + after
        expected = _redacted_whole(_inspector(holdback, "redact"), text)
        assert value not in expected
        for split in range(len(before), len(before) + len(value) + 1):
            pieces = _cut(text[:split], sizes) + _cut(text[split:], sizes[::-1])
            data = BUILDERS[fmt](pieces)
            out, redactor = _stream(holdback, step, "redact", fmt, data, per_event)
            assert streams.text_of(fmt.split("-")[0], out) == expected, (fmt, split)
            assert not redactor.blocked and redactor.findings
    check()


@pytest.mark.parametrize(("holdback", "step"), COMBOS)
def test_a_blocked_value_split_at_every_character_never_leaves(holdback, step):
    @settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(planted_answers(holdback, step))
    def check(case):
        before, value, after, sizes, fmt, per_event = case
        text = before + value + after
        assert _inspector(holdback, "block").scanner.scan(text)
        for split in range(len(before), len(before) + len(value) + 1):
            pieces = _cut(text[:split], sizes) + _cut(text[split:], sizes[::-1])
            data = BUILDERS[fmt](pieces)
            out, redactor = _stream(holdback, step, "block", fmt, data, per_event)
            assert redactor.blocked and b"Answer blocked by Proxilion policy" in out, (fmt, split)
            # What reached the client before the provider's error event stops short of the value.
            text_sent = streams.text_of(fmt.split("-")[0], out[:out.rindex(b"data: ")])
            assert text.startswith(text_sent) and len(text_sent) <= len(before), (fmt, split)
    check()


def test_a_value_still_arriving_is_judged_whole_not_by_the_part_that_looks_like_another():
    """"IT86 E744 3023 3328 8391 9984" of an IBAN still arriving ends in a valid card number
    (a case hypothesis found): the stream must label it as the whole text does."""
    before, value, after = '}n.faki}pg\\.{gc"ap,aonb\\jfc[n\n\\}i\u2014\nn ', "IT86 E744 3023 3328 8391 9984 468", " "
    text = before + value + after
    for holdback, step in ((64, 1), (64, 16)):
        expected = _redacted_whole(_inspector(holdback, "redact"), text)
        for split in range(len(before), len(before) + len(value) + 1):
            data = BUILDERS["openai"](_cut(text[:split], [1]) + _cut(text[split:], [1]))
            out, redactor = _stream(holdback, step, "redact", "openai", data, False)
            assert streams.text_of("openai", out) == expected, (holdback, step, split)
            assert [f.type for f in redactor.findings] == ["iban"]
