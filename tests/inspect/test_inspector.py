import json
import subprocess
import sys

import attrs
import pytest

from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import load_policy, parse_policy

DEFAULT = Inspector(load_policy(None))
CHAT = "/v1/chat/completions"


def _chat(content):
    return json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}).encode()


def test_block_verdict_names_types_not_values():
    v = DEFAULT.inspect_request("openai", CHAT, _chat("card 4111 1111 1111 1111, mail a.b@corp.com, c@d.org"))
    assert v.action == "block" and v.rule == "block-cards-and-ssn" and not v.error
    assert v.message == "blocked: 1 credit_card"
    assert "4111" not in repr(v) and "corp.com" not in repr(v)
    assert [(f.type, f.location, f.action) for f in v.findings] == [
        ("credit_card", "messages[0].content", "block"), ("email", "messages[0].content", "redact"),
        ("email", "messages[0].content", "redact")]
    assert v.scan_seconds > 0


def test_finding_repr_never_holds_the_value():
    v = DEFAULT.inspect_request("openai", CHAT, _chat("key sk-proj-abcDEF123ghiJKL456mnoPQR789stu"))
    assert "abcDEF" not in repr(v.findings) and "abcDEF" not in str(v)
    assert set(attrs.fields_dict(type(v.findings[0]))) >= {"type", "category", "severity", "compliance",
                                                          "location", "start", "end"}


def test_redact_keeps_other_fields_and_body_untouched_when_clean():
    body = json.dumps({"model": "gpt-4o", "temperature": 0.2, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "mail jane@corp.com"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]},
                      ensure_ascii=False).encode()
    v = DEFAULT.inspect_request("openai", CHAT, body)
    assert v.action == "redact"
    out = json.loads(v.body)
    assert out["messages"][1]["content"][0]["text"] == "mail [REDACTED:EMAIL]"
    assert out["temperature"] == 0.2 and out["messages"][0] == {"role": "system", "content": "Be brief."}
    clean = _chat("hello there")
    assert DEFAULT.inspect_request("openai", CHAT, clean).body is clean


def test_tool_call_arguments_stay_valid_json():
    body = json.dumps({"model": "m", "messages": [{"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "send", "arguments": '{"to": "bob@corp.com", "n": 1}'}}]}]}).encode()
    v = DEFAULT.inspect_request("openai", CHAT, body)
    args = json.loads(json.loads(v.body)["messages"][0]["tool_calls"][0]["function"]["arguments"])
    assert args == {"to": "[REDACTED:EMAIL]", "n": 1}
    assert v.findings[0].location == "messages[0].tool_calls[0].function.arguments>to"


@pytest.mark.parametrize("style,expected", [
    ({"style": "placeholder", "placeholder": "<{type}>"}, "mail <email> now"),
    ({"style": "mask", "keep_last": 4}, "mail *******.com now"),
])
def test_redaction_styles(style, expected):
    policy = parse_policy({"settings": {"redaction": style}, "rules": [{"id": "r", "action": "redact"}]}, environ={})
    v = Inspector(policy).inspect_request("unknown", "/", b"mail jane@bb.com now")
    assert v.body.decode() == expected


def test_hash_style_is_keyed_and_stable():
    def run(key):
        policy = parse_policy({"settings": {"redaction": {"style": "hash", "hash_key": key}},
                               "rules": [{"id": "r", "action": "redact"}]}, environ={})
        return Inspector(policy).inspect_request("unknown", "/", b"mail jane@bb.com now").body
    assert run("k1") == run("k1") != run("k2")
    assert run("k1").startswith(b"mail [EMAIL:") and b"jane" not in run("k1")


def test_raw_body_keeps_non_utf8_bytes():
    body = b"\xff\xfe mail jane@corp.com \x80"
    v = DEFAULT.inspect_request("unknown", "/", body)
    assert v.body == b"\xff\xfe mail [REDACTED:EMAIL] \x80"
    assert v.findings[0].location == "raw"


def test_scanner_error_fails_closed(monkeypatch):
    ins = Inspector(load_policy(None))

    def boom(*a, **k):
        raise RuntimeError("bug")
    monkeypatch.setattr(ins.scanner, "scan_many", boom)
    v = ins.inspect_request("openai", CHAT, _chat("hi"))
    assert (v.action, v.error, v.message) == ("block", True, "blocked: scanner error")
    open_policy = parse_policy({"settings": {"on_scanner_error": "allow"}, "rules": []}, environ={})
    ins = Inspector(open_policy)
    monkeypatch.setattr(ins.scanner, "scan_many", boom)
    assert ins.inspect_request("openai", CHAT, _chat("hi")).action == "allow"


def test_oversized_body_fails_closed():
    policy = parse_policy({"settings": {"max_scan_bytes": 1024}, "rules": []}, environ={})
    v = Inspector(policy).inspect_request("openai", CHAT, b"x" * 2000)
    assert v.action == "block" and v.error
    assert v.message == "blocked: larger than the 1024 bytes Proxilion scans"


def test_response_side_uses_response_rules():
    answer = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant",
                                                             "content": "use sk-proj-abcDEF123ghiJKL456mnoPQR789stu"}}]}).encode()
    assert DEFAULT.response_inspection_enabled("openai", CHAT)
    v = DEFAULT.inspect_response("openai", CHAT, answer)
    assert v.action == "redact"
    assert json.loads(v.body)["choices"][0]["message"]["content"] == "use [REDACTED:OPENAI_API_KEY]"
    no_response_rules = Inspector(parse_policy({"rules": [{"id": "r", "action": "block"}]}, environ={}))
    assert not no_response_rules.response_inspection_enabled("openai", CHAT)


def test_answer_metadata_is_not_scanned_but_everything_else_is():
    # A phone-shaped "created", an id holding an email: provider metadata, not model text.
    answer = {"id": "chatcmpl-jane@corp.com", "object": "chat.completion", "created": 4155550123, "model": "gpt-4o",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "use sk-proj-abcDEF123ghiJKL456mnoPQR789stu",
                                                   "tool_calls": [{"id": "call_1", "type": "function", "function": {
                                                       "name": "send", "arguments": '{"to": "bob@corp.com"}'}}]}}],
              "usage": {"prompt_tokens": 4155550123}, "extra": {"id": "x@corp.com"}}
    v = DEFAULT.inspect_response("openai", CHAT, json.dumps(answer).encode())
    assert [(f.type, f.location) for f in v.findings] == [
        ("openai_api_key", "choices[0].message.content"),
        ("email", "choices[0].message.tool_calls[0].function.arguments>to"),
        ("email", "extra.id")]
    redacted = json.loads(v.body)
    assert redacted["id"] == answer["id"] and redacted["created"] == answer["created"]
    assert redacted["choices"][0]["message"]["content"] == "use [REDACTED:OPENAI_API_KEY]"
    # A request is read whole: the same keys are scanned there.
    request = DEFAULT.inspect_request("openai", CHAT, json.dumps({"id": "jane@corp.com", "messages": []}).encode())
    assert [(f.type, f.location) for f in request.findings] == [("email", "id")]


def test_importing_the_core_does_not_import_twisted():
    code = ("import sys, proxilion.inspect, proxilion.providers, proxilion.inspect.inspector, "
            "proxilion.inspect.scan_command, proxilion.providers.errors; "
            "from proxilion.inspect.policy import load_policy; "
            "from proxilion.inspect.inspector import Inspector; "
            "Inspector(load_policy(None)).inspect_request('openai', '/', b'{}'); "
            "assert 'twisted' not in sys.modules, 'twisted imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_redaction_writes_numbers_beyond_a_double_as_they_were():
    # As floats they would be infinity, written back as "Infinity", which no provider accepts.
    body = (b'{"messages":[{"role":"user","content":"mail a@example.com"}],"x":1e400,"y":-2E+999,'
            b'"z":[1.5,7],"t":"{\\"a\\":1e400,\\"m\\":\\"b@example.com\\"}"}')
    v = DEFAULT.inspect_request("openai", CHAT, body)
    assert v.action == "redact"
    assert v.body == (b'{"messages":[{"role":"user","content":"mail [REDACTED:EMAIL]"}],"x":1e400,"y":-2E+999,'
                      b'"z":[1.5,7],"t":"{\\"a\\":1e400,\\"m\\":\\"[REDACTED:EMAIL]\\"}"}')


def test_digits_of_a_number_beyond_a_double_are_scanned():
    v = DEFAULT.inspect_request("openai", CHAT, b'{"messages":[],"n":4111111111111111e300}')
    assert v.action == "block" and [(f.type, f.location) for f in v.findings] == [("credit_card", "n")]


def test_object_keys_are_scanned_and_a_location_never_repeats_the_value():
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "tool", "tool_call_id": "t", "content": json.dumps(
        {"jane.doe@corp.com": {"balance": 10}, "4111111111111111": "declined"})}]}).encode()
    v = DEFAULT.inspect_request("openai", CHAT, body)
    assert v.action == "block" and v.message == "blocked: 1 credit_card"
    assert sorted(f.location for f in v.findings) == ["messages[0].content>[…]<key>", "messages[0].content>[…]<key>"]
    assert "4111" not in repr(v.findings) and "jane" not in repr(v.findings)


def test_redacted_keys_keep_the_object_and_its_order():
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "metadata": {
        "a@example.com": {"b@example.com": 1, "note": "ok"}, "keep": 2, "c@example.com": 3}}).encode()
    v = DEFAULT.inspect_request("openai", CHAT, body)
    assert v.action == "redact"
    metadata = json.loads(v.body)["metadata"]
    # Two keys redacted alike in one object stay two members.
    assert list(metadata) == ["[REDACTED:EMAIL]", "keep", "[REDACTED:EMAIL]#2"]
    assert metadata["[REDACTED:EMAIL]"] == {"[REDACTED:EMAIL]": 1, "note": "ok"}
    assert metadata["[REDACTED:EMAIL]#2"] == 3
    assert json.loads(v.body)["messages"] == [{"role": "user", "content": "hi"}]


def test_schema_word_keys_are_not_scanned_but_other_keys_are():
    from proxilion.providers.fields import walk
    fields = walk({"role": "x", "max_completion_tokens": 1, "inlineData": 1, "AKIAZ3MVJQ5T4XW7PLQA": 1, "a b": 1, "número": 1})
    assert [f.text for f in fields if f.is_key] == ["AKIAZ3MVJQ5T4XW7PLQA", "a b", "número"]


def test_a_secret_in_an_answer_key_is_redacted():
    answer = json.dumps({"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": None,
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f",
                                                                   "arguments": json.dumps({"4111111111111111": "x"})}}]}}]}).encode()
    v = DEFAULT.inspect_response("openai", CHAT, answer)
    assert v.action == "redact" and b"4111" not in v.body
    arguments = json.loads(json.loads(v.body)["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    assert arguments == {"[REDACTED:CREDIT_CARD]": "x"}


def _nested(inner, levels=70):
    for _ in range(levels):
        inner = {"a": inner}
    return inner


def test_redaction_deeper_than_the_walk_keeps_the_structure():
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                       "metadata": _nested({"email": "jane@corp.com", "k": 1})}).encode()
    v = DEFAULT.inspect_request("openai", CHAT, body)
    assert v.action == "redact"
    assert json.loads(v.body)["metadata"] == _nested({"email": "[REDACTED:EMAIL]", "k": 1})


def test_redaction_deeper_than_the_walk_that_would_merge_keys_fails_closed():
    body = json.dumps({"model": "m", "messages": [], "metadata": _nested({"a@corp.com": 1, "b@corp.com": 2})}).encode()
    v = DEFAULT.inspect_request("openai", CHAT, body)
    assert v.action == "block" and v.error


def test_a_whole_float_is_scanned_as_its_digits():
    v = DEFAULT.inspect_request("openai", CHAT, b'{"model":"m","messages":[],"seed":4111111111111111.0,"t":0.7,"n":1e9}')
    assert v.action == "block" and [(f.type, f.location) for f in v.findings] == [("credit_card", "seed")]


def test_keys_shaped_like_values_are_never_written_in_locations():
    body = json.dumps({"model": "m", "messages": [], "metadata": {"4111111111111111.0": {"note": "mail a@corp.com"}}}).encode()
    v = DEFAULT.inspect_request("openai", CHAT, body)
    assert [(f.type, f.location) for f in v.findings] == [("email", "metadata[…].note")]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-8-sig"])
def test_a_redacted_body_keeps_its_encoding(encoding):
    answer = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "card 4111 1111 1111 1111 ok"}}]})
    v = DEFAULT.inspect_response("openai", CHAT, answer.encode(encoding))
    assert v.action == "redact"
    assert json.loads(v.body.decode(encoding))["choices"][0]["message"]["content"] == "card [REDACTED:CREDIT_CARD] ok"
