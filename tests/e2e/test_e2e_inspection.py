"""Issue 3 end to end: inspection through the real daemon, driven by the official SDKs.

One daemon serves the module; its policy is the shipped default plus one
response rule that blocks SSNs in answers (the default only redacts them), so
the response-side block can be exercised too.
"""

from __future__ import annotations

import gzip
import http.client
import json
import signal
import subprocess
import zlib
from pathlib import Path

import anthropic
import boto3
import botocore.config
import botocore.exceptions
import openai
import pytest

from support.daemon import Daemon, clear_fake, eventually, fake_requests, http_json, running
from support.policies import BLOCK_SSN_IN_ANSWERS, shipped_policy_with

from .conftest import admin, upstream_args

CARD = "4111 1111 1111 1111"
CARD_DIGITS = CARD.replace(" ", "")
SSN = "536-22-4187"
EMAIL = "jane.roe@example.org"
AWS_KEY = "AKIAZ3MVJQ5T4XW7PLQA"



def _policy_text() -> str:
    return shipped_policy_with(BLOCK_SSN_IN_ANSWERS)


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(_policy_text())
    return path


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, fake: str, policy_file: Path):
    workdir = tmp_path_factory.mktemp("inspection")
    # Limits high enough that nothing in this module is rate limited.
    env = {"RATE_LIMIT_PER_MINUTE": "100000", "RATE_LIMIT_BURST": "10000"}
    with running(Daemon(workdir, [*upstream_args(fake), *upstream_args(fake, "bedrock"), "--policy", str(policy_file), "--admin-token", "e2e-admin-token"], env)) as d:
        yield d


@pytest.fixture(scope="module")
def oai(daemon: Daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=daemon.url + "/proxy/openai/v1", api_key="sk-e2e-inspection", max_retries=0)


@pytest.fixture(scope="module")
def claude(daemon: Daemon) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=daemon.url + "/proxy/anthropic", api_key="sk-ant-e2e-inspection", max_retries=0)


def _no_secret(text: str) -> None:
    for value in (CARD, CARD_DIGITS, SSN, EMAIL, AWS_KEY):
        assert value not in text


# --- blocking -----------------------------------------------------------------


def test_openai_block_raises_permission_denied_naming_types_not_values(oai: openai.OpenAI, fake: str) -> None:
    clear_fake(fake)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        oai.chat.completions.create(model="gpt-4o", messages=[
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": f"Charge card {CARD} and use key {AWS_KEY}"},
        ])
    err = caught.value
    assert err.status_code == 403
    assert err.response.headers["x-proxilion-decision"] == "block"
    message = err.response.json()["error"]["message"]
    assert "credit_card" in message and "aws_access_key_id" in message
    _no_secret(err.response.text)
    assert fake_requests(fake) == [], "a blocked request must not reach the provider"


def test_anthropic_block_raises_permission_denied(claude: anthropic.Anthropic, fake: str) -> None:
    clear_fake(fake)
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        claude.messages.create(model="claude-3-5-sonnet-latest", max_tokens=64, system="Be brief.",
                               messages=[{"role": "user", "content": [{"type": "text", "text": f"My SSN is {SSN}"}]}])
    err = caught.value
    assert err.response.headers["x-proxilion-decision"] == "block"
    body = err.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "permission_error"
    assert "ssn" in body["error"]["message"]
    _no_secret(err.response.text)
    assert fake_requests(fake) == []


# --- redaction ----------------------------------------------------------------


def test_openai_redacted_request_reaches_provider_without_the_value(oai: openai.OpenAI, fake: str) -> None:
    clear_fake(fake)
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-4o",
        temperature=0.25,
        messages=[{"role": "system", "content": "Reply kindly."},
                  {"role": "user", "content": f"Write to {EMAIL} about the invoice."}],
        tools=[{"type": "function", "function": {"name": "send", "parameters": {"type": "object", "properties": {}}}}],
    )
    assert raw.headers["x-proxilion-decision"] == "redact"
    [seen] = fake_requests(fake)
    assert EMAIL not in seen["body"]
    sent = json.loads(seen["body"])
    assert sent["messages"] == [{"role": "system", "content": "Reply kindly."},
                                {"role": "user", "content": "Write to [REDACTED:EMAIL] about the invoice."}]
    assert sent["temperature"] == 0.25 and sent["model"] == "gpt-4o"
    assert sent["tools"][0]["function"]["name"] == "send"
    assert int(seen["headers"]["content-length"]) == seen["body_length"] == len(seen["body"].encode())
    # The fake echoes what it received: the answer is built from the redacted text.
    assert raw.parse().choices[0].message.content == "Write to [REDACTED:EMAIL] about the invoice."


def test_anthropic_redacted_request_keeps_blocks(claude: anthropic.Anthropic, fake: str) -> None:
    clear_fake(fake)
    claude.messages.create(model="claude-3-5-sonnet-latest", max_tokens=64, messages=[
        {"role": "user", "content": [{"type": "text", "text": "First block."},
                                     {"type": "text", "text": f"Reach me at {EMAIL}"}]}])
    [seen] = fake_requests(fake)
    sent = json.loads(seen["body"])
    assert sent["messages"][0]["content"] == [{"type": "text", "text": "First block."},
                                              {"type": "text", "text": "Reach me at [REDACTED:EMAIL]"}]
    assert sent["max_tokens"] == 64


# --- answers ------------------------------------------------------------------


def test_openai_stream_with_card_split_across_chunks_arrives_redacted(oai: openai.OpenAI) -> None:
    reply = f"Your card {CARD} is on file."
    with oai.chat.completions.with_streaming_response.create(
        model="gpt-4o", stream=True, messages=[{"role": "user", "content": "which card?"}],
        extra_headers={"x-fake-reply": reply, "x-fake-chunks": "20"},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        deltas = [c.choices[0].delta.content or "" for c in response.parse() if c.choices]
    text = "".join(deltas)
    # The card spans several deltas upstream; it arrives as one placeholder.
    assert text == "Your card [REDACTED:CREDIT_CARD] is on file."
    assert len(deltas) > 2


def test_openai_responses_api_answers_arrive_redacted_streamed_or_not(oai: openai.OpenAI) -> None:
    headers = {"x-fake-reply": f"Your card {CARD} is on file.", "x-fake-chunks": "20"}
    deltas, final = [], None
    for event in oai.responses.create(model="gpt-4o", input="which card?", stream=True, extra_headers=headers):
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        elif event.type == "response.completed":
            final = event.response
    # The card spans several deltas; the closing events repeat the whole text, redacted the same way.
    assert "".join(deltas) == "Your card [REDACTED:CREDIT_CARD] is on file."
    assert len(deltas) > 2
    assert final is not None and final.output_text == "".join(deltas)
    whole = oai.responses.create(model="gpt-4o", input="which card?", extra_headers=headers)
    assert whole.output_text == "Your card [REDACTED:CREDIT_CARD] is on file."


def test_anthropic_stream_with_card_split_across_chunks_arrives_redacted(claude: anthropic.Anthropic) -> None:
    reply = f"Card {CARD_DIGITS} noted, thanks."
    with claude.messages.stream(model="claude-3-5-sonnet-latest", max_tokens=64,
                                messages=[{"role": "user", "content": "which card?"}],
                                extra_headers={"x-fake-reply": reply, "x-fake-chunks": "16"}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Card [REDACTED:CREDIT_CARD] noted, thanks."
    assert final.content[0].text == text and final.stop_reason == "end_turn"


def test_response_side_block_on_json_answer(oai: openai.OpenAI, daemon: Daemon) -> None:
    scans_before = daemon.metric("proxilion_scan_duration_seconds_count", direction="response")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                    extra_headers={"x-fake-reply": f"The SSN is {SSN}."})
    assert "ssn" in caught.value.response.json()["error"]["message"]
    _no_secret(caught.value.response.text)
    assert daemon.metric("proxilion_scan_duration_seconds_count", direction="response") > scans_before


def test_response_side_block_ends_stream_with_provider_error(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    headers = {"x-fake-reply": f"Sure: the SSN is {SSN} and more text follows here.", "x-fake-chunks": "12"}
    seen = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in oai.chat.completions.create(model="gpt-4o", stream=True, extra_headers=headers,
                                                 messages=[{"role": "user", "content": "hi"}]):
            seen.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "ssn" in str(caught.value)
    _no_secret("".join(seen) + str(caught.value))
    with pytest.raises(anthropic.APIStatusError) as caught_a:
        with claude.messages.stream(model="claude-3-5-sonnet-latest", max_tokens=64, extra_headers=headers,
                                    messages=[{"role": "user", "content": "hi"}]) as stream:
            "".join(stream.text_stream)
    assert "ssn" in str(caught_a.value)


# --- Bedrock, through boto3 (SigV4-signed, AWS event-stream answers) ---------


@pytest.fixture(scope="module")
def bedrock(daemon: Daemon):
    client = boto3.client(
        "bedrock-runtime", endpoint_url=daemon.url + "/proxy/bedrock", region_name="us-east-1",
        aws_access_key_id="AKIAE2EBEDROCKNOTREAL", aws_secret_access_key="e2e-not-a-real-secret",
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )
    scripted: dict[str, str] = {}

    def add_script_headers(request, **_kwargs) -> None:
        for name, value in scripted.items():
            request.headers[name] = value

    client.meta.events.register("before-sign.bedrock-runtime.*", add_script_headers)
    client.scripted = scripted
    return client


CLAUDE_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"


def test_bedrock_converse_stream_with_card_split_across_events_arrives_redacted(bedrock) -> None:
    bedrock.scripted.update({"x-fake-reply": f"Card {CARD} is on file, thanks.", "x-fake-chunks": "14"})
    try:
        reply = bedrock.converse_stream(modelId=CLAUDE_ID, messages=[{"role": "user", "content": [{"text": "card?"}]}])
        events = list(reply["stream"])
    finally:
        bedrock.scripted.clear()
    deltas = [e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e]
    assert "".join(deltas) == "Card [REDACTED:CREDIT_CARD] is on file, thanks."
    assert len(deltas) > 2
    assert events[-1]["metadata"]["usage"]["outputTokens"] > 0
    assert reply["ResponseMetadata"]["HTTPHeaders"]["x-proxilion-decision"] == "allow"


def test_bedrock_invoke_stream_redacts_inside_base64_chunks(bedrock) -> None:
    bedrock.scripted.update({"x-fake-reply": f"Card {CARD_DIGITS} noted; call back.", "x-fake-chunks": "10"})
    try:
        reply = bedrock.invoke_model_with_response_stream(modelId=CLAUDE_ID, body=json.dumps({
            "anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
            "messages": [{"role": "user", "content": "who do I write to?"}]}))
        events = [json.loads(e["chunk"]["bytes"]) for e in reply["body"]]
    finally:
        bedrock.scripted.clear()
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == "Card [REDACTED:CREDIT_CARD] noted; call back."
    assert events[-1]["type"] == "message_stop"


def test_bedrock_converse_block_raises_the_sdk_error(bedrock, fake: str) -> None:
    clear_fake(fake)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        bedrock.converse(modelId=CLAUDE_ID, messages=[{"role": "user", "content": [{"text": f"my card {CARD}"}]}])
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "credit_card" in error["Error"]["Message"]
    _no_secret(json.dumps(error, default=str))
    assert fake_requests(fake) == []


def test_bedrock_sigv4_request_that_needs_redacting_is_blocked_not_broken(bedrock, daemon: Daemon, fake: str) -> None:
    """SigV4 signs the body: a redacted body would fail at AWS, so the SDK gets a clear 403 instead."""
    clear_fake(fake)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        bedrock.converse(modelId=CLAUDE_ID, messages=[{"role": "user", "content": [{"text": f"mail {EMAIL} today"}]}])
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error["ResponseMetadata"]["HTTPHeaders"]["x-proxilion-decision"] == "block"
    assert "1 email" in error["Error"]["Message"] and "SigV4" in error["Error"]["Message"]
    _no_secret(json.dumps(error, default=str))
    assert fake_requests(fake) == []
    # Without SigV4 (a Bedrock API key is a bearer token) the same request is redacted and forwarded.
    status, headers, _ = http_json(
        "POST", daemon.url + "/proxy/bedrock/model/" + CLAUDE_ID + "/converse",
        {"messages": [{"role": "user", "content": [{"text": f"mail {EMAIL} today"}]}]},
        {"authorization": "Bearer bedrock-api-key-e2e"})
    assert status == 200 and headers["x-proxilion-decision"] == "redact"
    sent = json.loads(fake_requests(fake)[0]["body"])
    assert sent["messages"][0]["content"][0]["text"] == "mail [REDACTED:EMAIL] today"


def test_bedrock_converse_stream_block_ends_the_stream_with_an_sdk_error(bedrock) -> None:
    bedrock.scripted.update({"x-fake-reply": f"Sure: the SSN is {SSN} and more text follows here.", "x-fake-chunks": "12"})
    seen = []
    try:
        reply = bedrock.converse_stream(modelId=CLAUDE_ID, messages=[{"role": "user", "content": [{"text": "hi"}]}])
        with pytest.raises(botocore.exceptions.EventStreamError) as caught:
            for event in reply["stream"]:
                seen.append(json.dumps(event))
    finally:
        bedrock.scripted.clear()
    assert caught.value.response["Error"]["Code"] == "modelStreamErrorException"
    assert "ssn" in caught.value.response["Error"]["Message"]
    _no_secret("".join(seen) + str(caught.value))


# --- compressed request bodies -----------------------------------------------


def _chat(text: str) -> bytes:
    return json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}).encode()


def test_compressed_request_bodies_are_inspected_not_waved_through(daemon: Daemon, fake: str) -> None:
    url = daemon.url + "/proxy/openai/v1/chat/completions"
    auth = {"authorization": "Bearer sk-e2e-gzip"}
    clear_fake(fake)
    status, headers, body = http_json("POST", url, gzip.compress(_chat(f"card {CARD}")), {**auth, "content-encoding": "gzip"})
    assert status == 403 and headers["x-proxilion-decision"] == "block"
    assert "credit_card" in body["error"]["message"]
    assert fake_requests(fake) == []

    # Redacted, it goes upstream uncompressed and without the Content-Encoding it no longer has.
    status, headers, _ = http_json("POST", url, zlib.compress(_chat(f"mail {EMAIL}")), {**auth, "content-encoding": "deflate"})
    assert status == 200 and headers["x-proxilion-decision"] == "redact"
    [sent] = fake_requests(fake)
    assert json.loads(sent["body"])["messages"][0]["content"] == "mail [REDACTED:EMAIL]"
    assert "content-encoding" not in {name.lower() for name in sent["headers"]}


def test_a_second_content_encoding_line_cannot_hide_compression(daemon: Daemon, fake: str) -> None:
    clear_fake(fake)
    conn = http.client.HTTPConnection("127.0.0.1", int(daemon.url.rsplit(":", 1)[1]), timeout=10)
    body = gzip.compress(_chat(f"card {CARD}"))
    conn.putrequest("POST", "/proxy/openai/v1/chat/completions")
    for name, value in (("content-type", "application/json"), ("authorization", "Bearer sk-e2e-gzip"),
                        ("content-encoding", "identity"), ("content-encoding", "gzip"), ("content-length", str(len(body)))):
        conn.putheader(name, value)
    conn.endheaders(body)
    response = conn.getresponse()
    assert response.status == 403 and "credit_card" in json.loads(response.read())["error"]["message"]
    conn.close()
    assert fake_requests(fake) == []


@pytest.mark.parametrize(
    "data, coding, status, code",
    [
        (b"\x1f\x9d\x90compressed", "compress", 415, "unsupported_content_encoding"),
        (b"\x1b\x00not brotli", "br", 400, "invalid_content_encoding"),
        (b"this is not gzip", "gzip", 400, "invalid_content_encoding"),
        (gzip.compress(b" " * (11 << 20)), "gzip", 413, "request_too_large"),  # 10 MiB limit once decompressed
    ],
)
def test_request_bodies_that_cannot_be_read_are_refused(daemon: Daemon, fake: str, data: bytes, coding: str, status: int, code: str) -> None:
    clear_fake(fake)
    got, _, body = http_json("POST", daemon.url + "/proxy/openai/v1/chat/completions", data,
                             {"authorization": "Bearer sk-e2e-gzip", "content-encoding": coding})
    assert got == status and body["error"]["code"] == code
    assert fake_requests(fake) == []


def test_an_answer_compressed_against_our_request_is_read_not_passed_unread(oai: openai.OpenAI, fake: str) -> None:
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                                        extra_headers={"x-fake-reply": f"card {CARD}", "x-fake-gzip": "1"})
    assert raw.headers.get("content-encoding") is None
    assert raw.parse().choices[0].message.content == "card [REDACTED:CREDIT_CARD]"
    # Proxilion asked for the answer uncompressed.
    assert fake_requests(fake)[-1]["headers"]["accept-encoding"] == "identity"


def test_an_answer_too_large_to_inspect_is_refused_and_recorded(tmp_path: Path, fake: str) -> None:
    with running(Daemon(tmp_path, [*upstream_args(fake, "openai"), "--max-body-size", "4096", "--admin-token", "e2e-admin-token"],
                        {"RATE_LIMIT_PER_MINUTE": "0"})) as small:
        client = openai.OpenAI(base_url=small.url + "/proxy/openai/v1", api_key="sk-e2e-large", max_retries=0)
        with pytest.raises(openai.UnprocessableEntityError) as caught:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                           extra_headers={"x-fake-reply": f"card {CARD} " + " ".join(["word"] * 1200)})
        assert caught.value.status_code == 422 and "larger than 4096 bytes" in caught.value.message
        _no_secret(caught.value.response.text)
        rid = caught.value.response.headers["x-request-id"]
        row = eventually(lambda: next((e for e in admin(small, "GET", "/api/v1/events")[2]["events"] if e["request_id"] == rid), None),
                         what="audit row")
        assert row["decision"] == "block" and row["error"] == "answer_too_large" and row["status"] == 422


# --- other providers, raw HTTP ------------------------------------------------


def test_gemini_block_and_redact(daemon: Daemon, fake: str) -> None:
    url = daemon.url + "/proxy/gemini/v1beta/models/gemini-1.5-pro:generateContent"
    status, headers, body = http_json("POST", url, {
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [{"role": "user", "parts": [{"text": f"card {CARD}"}]}]}, {"x-goog-api-key": "g-e2e"})
    assert status == 403 and headers["x-proxilion-decision"] == "block"
    assert body["error"]["status"] == "PERMISSION_DENIED" and "credit_card" in body["error"]["message"]
    _no_secret(json.dumps(body))
    clear_fake(fake)
    status, headers, body = http_json("POST", url, {
        "contents": [{"role": "user", "parts": [{"text": "hello"}, {"text": f"mail {EMAIL}"}]}],
        "generationConfig": {"temperature": 0.1}}, {"x-goog-api-key": "g-e2e"})
    assert status == 200 and headers["x-proxilion-decision"] == "redact"
    sent = json.loads(fake_requests(fake)[0]["body"])
    assert sent == {"contents": [{"role": "user", "parts": [{"text": "hello"}, {"text": "mail [REDACTED:EMAIL]"}]}],
                    "generationConfig": {"temperature": 0.1}}


def test_gemini_stream_as_one_json_array_is_redacted_across_its_chunks(daemon: Daemon) -> None:
    """streamGenerateContent without alt=sse answers one JSON array of chunks; a card split between them is still found."""
    url = daemon.url + "/proxy/gemini/v1beta/models/gemini-1.5-pro:streamGenerateContent"
    status, _, chunks = http_json("POST", url, {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
                                  {"x-goog-api-key": "g-e2e", "x-fake-reply": f"card {CARD} ok", "x-fake-chunks": "6"})
    assert status == 200 and isinstance(chunks, list) and len(chunks) > 2
    text = "".join(part.get("text", "") for chunk in chunks for c in chunk.get("candidates", [])
                   for part in c.get("content", {}).get("parts", []))
    assert text == "card [REDACTED:CREDIT_CARD] ok"


def test_an_error_answer_quoting_the_prompt_is_inspected_too(daemon: Daemon) -> None:
    url = daemon.url + "/proxy/openai/v1/chat/completions"
    status, _, body = http_json("POST", url, {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
                                {"x-fake-status": "400", "x-fake-error": f"Invalid value near '{CARD}'"})
    assert status == 400
    assert body["error"]["message"] == "Invalid value near '[REDACTED:CREDIT_CARD]'"


def test_cohere_v1_and_v2_block_and_redact(daemon: Daemon, fake: str) -> None:
    auth = {"authorization": "Bearer co-e2e"}
    status, headers, body = http_json("POST", daemon.url + "/proxy/cohere/v2/chat", {
        "model": "command-r", "messages": [{"role": "user", "content": f"key {AWS_KEY}"}]}, auth)
    assert status == 403 and headers["x-proxilion-decision"] == "block"
    assert "aws_access_key_id" in body["message"]
    _no_secret(json.dumps(body))
    clear_fake(fake)
    status, headers, _ = http_json("POST", daemon.url + "/proxy/cohere/v1/chat", {
        "model": "command-r", "message": f"ping {EMAIL}", "preamble": "be kind",
        "chat_history": [{"role": "USER", "message": "earlier"}]}, auth)
    assert status == 200 and headers["x-proxilion-decision"] == "redact"
    sent = json.loads(fake_requests(fake)[0]["body"])
    assert sent["message"] == "ping [REDACTED:EMAIL]"
    assert sent["preamble"] == "be kind" and sent["chat_history"] == [{"role": "USER", "message": "earlier"}]


# --- metrics ------------------------------------------------------------------


def test_inspection_metrics(daemon: Daemon, oai: openai.OpenAI) -> None:
    with pytest.raises(openai.PermissionDeniedError):
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"card {CARD}"}])
    oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"to {EMAIL}"}])
    assert daemon.metric("proxilion_findings_total", type="credit_card", action="block") >= 1
    assert daemon.metric("proxilion_findings_total", type="email", action="redact") >= 1
    assert daemon.metric("proxilion_policy_decisions_total", action="block") >= 1
    assert daemon.metric("proxilion_policy_decisions_total", action="redact") >= 1
    assert daemon.metric("proxilion_scan_duration_seconds_count") >= 2
    assert "proxilion_scan_duration_seconds_bucket" in daemon.metrics()


# --- policy reload (last: it changes the module's policy and puts it back) ----


def test_policy_reload_on_sighup_and_on_file_change(daemon: Daemon, policy_file: Path, oai: openai.OpenAI, fake: str) -> None:
    def email_outcome() -> str:
        raw = oai.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"to {EMAIL}"}])
        return raw.headers["x-proxilion-decision"]

    ok_before = daemon.metric("proxilion_policy_reloads_total", result="ok")
    errors_before = daemon.metric("proxilion_policy_reloads_total", result="error")
    assert email_outcome() == "redact"

    # SIGHUP: emails are now only logged.
    policy_file.write_text(_policy_text().replace("match: {types: [email, phone]}\n    action: redact",
                                                  "match: {types: [email, phone]}\n    action: log"))
    daemon.signal(signal.SIGHUP)
    eventually(lambda: daemon.metric("proxilion_policy_reloads_total", result="ok") > ok_before, what="SIGHUP reload")
    assert email_outcome() == "log"

    # An invalid file (noticed by the file watcher) is rejected; the current policy stays.
    policy_file.write_text(_policy_text() + "  - id: broken\n    action: explode\n")
    eventually(lambda: daemon.metric("proxilion_policy_reloads_total", result="error") > errors_before,
               timeout=8, what="rejected reload")
    assert email_outcome() == "log"
    status = admin(daemon, "GET", "/status")[2]
    assert status["components"]["policy"]["state"] == "degraded"
    assert "broken" in status["components"]["policy"]["last_error"]

    # Putting the original back is picked up by the watcher alone.
    ok_mid = daemon.metric("proxilion_policy_reloads_total", result="ok")
    policy_file.write_text(_policy_text())
    eventually(lambda: daemon.metric("proxilion_policy_reloads_total", result="ok") > ok_mid, timeout=8, what="file reload")
    assert email_outcome() == "redact"
    assert admin(daemon, "GET", "/status")[2]["components"]["policy"]["state"] == "ok"


def test_invalid_policy_stops_startup_with_a_clear_message(tmp_path: Path, fake: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - id: no-action-here\n    match: {types: [email]}\n    action: obliterate\n")
    d = Daemon(tmp_path, [*upstream_args(fake), "--policy", str(bad)])
    d.start(wait=False)
    try:
        code = d.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        d.kill()
        raise
    d.stop()
    assert code != 0
    log = d.log()
    assert "configuration error" in log and "no-action-here" in log and "action" in log
    assert "Traceback" not in log


# --- providers' OpenAI-compatible endpoints ----------------------------------

COMPATIBLE = {"gemini": "/v1beta/openai", "anthropic": "/v1", "cohere": "/compatibility/v1", "bedrock": "/openai/v1"}


@pytest.mark.parametrize("provider", sorted(COMPATIBLE))
def test_openai_compatible_endpoints_of_other_providers_speak_openai(daemon: Daemon, provider: str) -> None:
    """The OpenAI SDK pointed at Gemini's (Anthropic's, ...) OpenAI-compatible endpoint: streams are
    read as OpenAI streams, so a split card is redacted, and errors come in OpenAI's shape."""
    client = openai.OpenAI(base_url=daemon.url + f"/proxy/{provider}" + COMPATIBLE[provider], api_key="k", max_retries=0)
    chunks = client.chat.completions.create(
        model="m", stream=True, messages=[{"role": "user", "content": "which card?"}],
        extra_headers={"x-fake-reply": f"Your card {CARD} is on file.", "x-fake-chunks": "20"})
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Your card [REDACTED:CREDIT_CARD] is on file."
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": f"card {CARD}"}])
    assert caught.value.body["code"] == "blocked_by_policy" and CARD not in str(caught.value)
