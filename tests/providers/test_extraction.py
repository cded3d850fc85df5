"""Every text a model reads is found, with its JSON location, in realistic bodies of every provider."""

import json

import pytest

from proxilion.inspect.inspector import Inspector
from proxilion.inspect.policy import load_policy, parse_policy
from proxilion.providers.body import Body
from proxilion.providers.fields import EMBEDDED, format_path

LOG_ALL = Inspector(parse_policy({"rules": [{"id": "log", "action": "log"}]}, environ={}))
REDACT_EMAIL = Inspector(parse_policy({"rules": [{"id": "r", "match": {"types": ["email"]}, "action": "redact"}]}, environ={}))


def m(n):
    """A distinct planted value per field."""
    return f"user{n}@example.org"


BLOB = "iVBORw0KGgo" + "A" * 400

CASES = {
    "openai-chat": ("openai", "/v1/chat/completions", {
        "model": "gpt-4o", "stream": True, "temperature": 0.1,
        "messages": [
            {"role": "system", "content": f"You help {m(1)}"},
            {"role": "user", "content": [{"type": "text", "text": f"hi {m(2)}"},
                                         {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{BLOB}"}}]},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
                "name": "email", "arguments": json.dumps({"to": m(3), "cc": [m(4)]})}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"sent_to": m(5)})},
        ],
        "tools": [{"type": "function", "function": {"name": "email", "description": f"Send mail, e.g. to {m(6)}",
                                                    "parameters": {"type": "object", "properties": {"to": {
                                                        "type": "string", "description": f"like {m(7)}"}}}}}],
    }, {"messages[0].content", "messages[1].content[0].text", "messages[2].tool_calls[0].function.arguments>to",
        "messages[2].tool_calls[0].function.arguments>cc[0]", "messages[3].content>sent_to",
        "tools[0].function.description", "tools[0].function.parameters.properties.to.description"}),
    "openai-completions": ("openai", "/v1/completions", {"model": "gpt-3.5-turbo-instruct",
                                                          "prompt": [f"a {m(1)}", f"b {m(2)}"]},
                           {"prompt[0]", "prompt[1]"}),
    "openai-embeddings": ("openai", "/v1/embeddings", {"model": "text-embedding-3-small", "input": f"x {m(1)}"},
                          {"input"}),
    "openai-responses": ("openai", "/v1/responses", {
        "model": "gpt-4.1", "instructions": f"Be terse with {m(1)}",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": f"hi {m(2)}"}]},
                  {"type": "function_call_output", "call_id": "c", "output": json.dumps({"who": m(3)})}]},
        {"instructions", "input[0].content[0].text", "input[1].output>who"}),
    "anthropic": ("anthropic", "/v1/messages", {
        "model": "claude-3-5-sonnet-20241022", "max_tokens": 100,
        "system": [{"type": "text", "text": f"sys {m(1)}", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": f"hello {m(2)}"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": BLOB}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": f"doc {m(3)}"}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "lookup",
                                               "input": {"query": m(4)}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                          "content": [{"type": "text", "text": f"found {m(5)}"}]}]},
        ],
        "tools": [{"name": "lookup", "description": f"find {m(6)}", "input_schema": {"type": "object"}}],
    }, {"system[0].text", "messages[0].content[0].text", "messages[0].content[2].source.data",
        "messages[1].content[0].input.query", "messages[2].content[0].content[0].text", "tools[0].description"}),
    "gemini": ("gemini", "/v1beta/models/gemini-1.5-pro:generateContent", {
        "systemInstruction": {"parts": [{"text": f"sys {m(1)}"}]},
        "contents": [
            {"role": "user", "parts": [{"text": f"hi {m(2)}"}, {"inlineData": {"mimeType": "image/png", "data": BLOB}}]},
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"email": m(3)}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"result": f"ok {m(4)}"}}}]},
        ],
        "generationConfig": {"temperature": 0.2},
    }, {"systemInstruction.parts[0].text", "contents[0].parts[0].text", "contents[1].parts[0].functionCall.args.email",
        "contents[2].parts[0].functionResponse.response.result"}),
    "cohere-v1": ("cohere", "/v1/chat", {
        "message": f"hi {m(1)}", "preamble": f"pre {m(2)}",
        "chat_history": [{"role": "USER", "message": f"old {m(3)}"}, {"role": "CHATBOT", "message": "ok"}],
        "documents": [{"title": "t", "snippet": f"snip {m(4)}"}],
    }, {"message", "preamble", "chat_history[0].message", "documents[0].snippet"}),
    "cohere-v2": ("cohere", "/v2/chat", {
        "model": "command-r-plus", "messages": [
            {"role": "system", "content": f"sys {m(1)}"},
            {"role": "user", "content": [{"type": "text", "text": f"hi {m(2)}"}]},
            {"role": "assistant", "tool_calls": [{"id": "1", "type": "function", "function": {
                "name": "f", "arguments": json.dumps({"e": m(3)})}}]},
            {"role": "tool", "tool_call_id": "1", "content": [{"type": "document", "document": {"data": f"d {m(4)}"}}]},
        ], "documents": [{"id": "x", "data": {"text": f"doc {m(5)}"}}]},
        {"messages[0].content", "messages[1].content[0].text", "messages[2].tool_calls[0].function.arguments>e",
         "messages[3].content[0].document.data", "documents[0].data.text"}),
    "azure": ("azure", "/openai/deployments/gpt4o/chat/completions", {
        "messages": [{"role": "user", "content": f"hi {m(1)}"}]}, {"messages[0].content"}),
    "bedrock-claude": ("bedrock", "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/invoke", {
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "system": f"sys {m(1)}",
        "messages": [{"role": "user", "content": [{"type": "text", "text": f"hi {m(2)}"}]}]},
        {"system", "messages[0].content[0].text"}),
    "bedrock-titan": ("bedrock", "/model/amazon.titan-text-express-v1/invoke", {
        "inputText": f"hi {m(1)}", "textGenerationConfig": {"maxTokenCount": 10}}, {"inputText"}),
    "bedrock-llama": ("bedrock", "/model/meta.llama3-70b-instruct-v1:0/invoke", {
        "prompt": f"<|begin_of_text|>hi {m(1)}", "max_gen_len": 50}, {"prompt"}),
    "bedrock-mistral": ("bedrock", "/model/mistral.mistral-large-2402-v1:0/invoke", {
        "prompt": f"<s>[INST] hi {m(1)} [/INST]", "max_tokens": 50}, {"prompt"}),
    "bedrock-converse": ("bedrock", "/model/anthropic.claude-3-haiku-20240307-v1:0/converse", {
        "system": [{"text": f"sys {m(1)}"}],
        "messages": [{"role": "user", "content": [{"text": f"hi {m(2)}"},
                                                  {"image": {"format": "png", "source": {"bytes": BLOB}}}]},
                     {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "f", "input": {"q": m(3)}}}]},
                     {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"text": f"r {m(4)}"}]}}]}]},
        {"system[0].text", "messages[0].content[0].text", "messages[1].content[0].toolUse.input.q",
         "messages[2].content[0].toolResult.content[0].text"}),
    "unknown-shape": ("unknown", "/whatever", {"a": {"b": [f"x {m(1)}", {"c": f"y {m(2)}"}]}, "n": 4111111111111111},
                      {"a.b[0]", "a.b[1].c", "n"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_model_read_field_is_scanned(name):
    provider, path, body, expected = CASES[name]
    verdict = LOG_ALL.inspect_request(provider, path, json.dumps(body).encode())
    assert {f.location for f in verdict.findings} == expected


def test_blobs_are_skipped_but_short_strings_are_not():
    body = Body(json.dumps({"image": BLOB, "url": f"data:image/png;base64,{BLOB}", "t": "short"}).encode())
    assert [f.text for f in body.fields] == ["short"]


def test_non_json_body_is_scanned_raw():
    verdict = LOG_ALL.inspect_request("openai", "/v1/chat/completions", b"{not json " + m(1).encode())
    assert [(f.type, f.location) for f in verdict.findings] == [("email", "raw")]


def test_response_shapes():
    answers = {
        "openai": {"choices": [{"index": 0, "message": {"role": "assistant", "content": f"a {m(1)}"}}]},
        "anthropic": {"content": [{"type": "text", "text": f"a {m(1)}"}]},
        "gemini": {"candidates": [{"content": {"parts": [{"text": f"a {m(1)}"}]}}]},
        "cohere": {"message": {"content": [{"type": "text", "text": f"a {m(1)}"}]}},
        "bedrock": {"output": {"message": {"content": [{"text": f"a {m(1)}"}]}}},
    }
    for provider, doc in answers.items():
        verdict = LOG_ALL.inspect_response(provider, "/", json.dumps(doc).encode())
        assert [f.type for f in verdict.findings] == ["email"], provider


def test_format_path():
    assert format_path(("messages", 0, "content")) == "messages[0].content"
    assert format_path(("args", EMBEDDED, "to", 1)) == "args>to[1]"
    assert format_path(("a b",)) == '["a b"]'
    assert format_path(()) == "$"


@pytest.mark.parametrize("raw", [
    # Integers beyond 64 bits: orjson would read them as floats.
    b'{"n": 123456789012345678901234567890, "t": "mail a@example.com"}',
    b'{"n": [-18446744073709551617], "t": "mail a@example.com"}',
    # What orjson refuses and the json module reads: NaN, a lone surrogate, a byte order mark.
    b'{"n": NaN, "t": "mail a@example.com"}',
    b'{"s": "\\ud800", "t": "mail a@example.com"}',
    b'\xef\xbb\xbf{"t": "mail a@example.com"}',
])
def test_bodies_orjson_cannot_read_exactly_are_redacted_exactly(raw):
    """A redaction rewrites the body: every value but the redacted one comes back as it was sent."""
    verdict = REDACT_EMAIL.inspect_request("openai", "/v1/chat/completions", raw)
    assert verdict.action == "redact"
    expected = json.loads(raw.decode("utf-8-sig"))
    expected["t"] = "mail [REDACTED:EMAIL]"
    assert json.dumps(json.loads(verdict.body)) == json.dumps(expected)


def test_integers_beyond_64_bits_are_scanned_as_their_digits():
    raw = b'{"n": 123456789012345678901234567890}'
    assert [f.text for f in Body(raw).fields] == ["123456789012345678901234567890"]


def test_large_float_literals_are_kept():
    raw = b'{"x": 1e300, "t": "mail a@example.com"}'
    verdict = REDACT_EMAIL.inspect_request("openai", "/v1/chat/completions", raw)
    assert json.loads(verdict.body) == {"x": 1e300, "t": "mail [REDACTED:EMAIL]"}


DEFAULT = Inspector(load_policy(None))


@pytest.mark.parametrize("raw", [
    b'{"messages": [{"role": "user", "content": "card 4111111111111111", "content": "hi"}]}',
    # An escaped colon in a string must not make up for the member the parser dropped.
    b'{"messages": [{"role": "user", "content": "card 4111111111111111", "content": "\\u003a"}]}',
    # JSON inside a string (tool-call arguments) that repeats a key.
    b'{"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f",'
    b' "arguments": "{\\"to\\": \\"4111111111111111\\", \\"to\\": \\"x\\"}"}}]}]}',
    # The json module's path (NaN) checks too.
    b'{"t": NaN, "content": "card 4111111111111111", "content": "hi"}',
])
def test_a_repeated_key_is_blocked_whatever_value_was_scanned(raw):
    """Parsers keep one value of a repeated key; the provider may read the other, unscanned."""
    verdict = DEFAULT.inspect_request("openai", "/v1/chat/completions", raw)
    assert (verdict.action, verdict.message) == ("block", "blocked: a JSON object in the body repeats a key")


@pytest.mark.parametrize("raw", [
    b'{"messages": [{"role": "user", "content": "what does \\\\u003a mean in JSON?"}]}',
    b'{"a": "x:y", "b": "\\u003a", "c": {"d": "e"}}',
])
def test_colons_and_escapes_in_text_are_not_mistaken_for_a_repeated_key(raw):
    assert DEFAULT.inspect_request("openai", "/v1/chat/completions", raw).action == "allow"


def test_an_answer_that_repeats_a_key_is_read_as_its_sdk_reads_it():
    """SDKs keep a repeated key's last value, the one scanned: the answer is not refused for it."""
    raw = b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi", "content": "card 4111111111111111"}}]}'
    verdict = DEFAULT.inspect_response("openai", "/v1/chat/completions", raw)
    assert verdict.action == "redact"
    assert json.loads(verdict.body)["choices"][0]["message"]["content"] == "card [REDACTED:CREDIT_CARD]"
