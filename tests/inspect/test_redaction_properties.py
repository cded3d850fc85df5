"""Property tests: redaction keeps the body valid JSON, removes every planted value, changes nothing else."""

import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import valuegen as g
from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import parse_policy

REDACT_ALL = Inspector(parse_policy({"rules": [{"id": "redact-all", "action": "redact"}]}, environ={}))
MAKERS = [g.card, g.ssn, g.iban, g.email, g.phone, g.openai_key, g.github_token, g.aws_key_id, g.jwt,
          g.mbi, g.dea, g.slack_token]
# Filler that can never contain a detectable value.
filler = st.text(alphabet=st.sampled_from(list("abcdefghij klmnop,.!?\n\"\\é—🙂{}[]")), max_size=40)
keys = st.sampled_from(["content", "text", "note", "description", "input", "x y", "meta"])


@st.composite
def planted_docs(draw):
    rng = random.Random(draw(st.integers(0, 2**32)))
    planted = []

    def leaf():
        if draw(st.booleans()):
            value = rng.choice(MAKERS)(rng)
            planted.append(value)
            return f"{draw(filler)} {value} {draw(filler)}"
        return draw(st.one_of(filler, st.integers(-1000, 1000), st.booleans(), st.none()))

    def node(depth):
        kind = draw(st.integers(0, 3 if depth < 3 else 0))
        if kind == 0:
            return leaf()
        if kind == 1:
            return [node(depth + 1) for _ in range(draw(st.integers(0, 3)))]
        if kind == 2:
            return {draw(keys) + str(i): node(depth + 1) for i in range(draw(st.integers(0, 3)))}
        # A tool call whose arguments are themselves JSON.
        return {"function": {"name": "lookup", "arguments": json.dumps({"q": leaf(), "n": 3})}}

    doc = {"model": "gpt-4o", "messages": [{"role": "user", "content": node(0)} for _ in range(draw(st.integers(1, 3)))]}
    return doc, planted


def _same_shape_except_strings(a, b):
    """Same structure; strings may differ only where something was redacted."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            _same_shape_except_strings(a[k], b[k])
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b):
            _same_shape_except_strings(x, y)
    elif isinstance(a, str):
        assert isinstance(b, str)
        if a != b:
            assert "[REDACTED:" in b
            inner_a, inner_b = _maybe_json(a), _maybe_json(b)
            if inner_a is not None:
                assert inner_b is not None, "embedded JSON must stay JSON"
                _same_shape_except_strings(inner_a, inner_b)
    else:
        assert a == b


def _maybe_json(s):
    try:
        value = json.loads(s)
    except ValueError:
        return None
    return value if isinstance(value, (dict, list)) else None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted_docs())
def test_redaction_removes_planted_values_and_keeps_everything_else(case):
    doc, planted = case
    body = json.dumps(doc, ensure_ascii=False).encode()
    verdict = REDACT_ALL.inspect_request("openai", "/v1/chat/completions", body)
    if not planted:
        assert verdict.body is body
        return
    assert verdict.action == "redact"
    out = json.loads(verdict.body)
    text = verdict.body.decode()
    for value in planted:
        assert value not in text and json.dumps(value)[1:-1] not in text
    _same_shape_except_strings(doc, out)


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-100, 100) | filler,
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(filler, c, max_size=3), max_leaves=12))
def test_clean_bodies_pass_byte_identical(doc):
    body = json.dumps({"messages": doc}).encode()
    verdict = REDACT_ALL.inspect_request("openai", "/v1/chat/completions", body)
    assert verdict.action == "allow" and verdict.body is body
