"""A stream's final decision rides in the `x-proxilion-decision` trailer, and no official SDK minds.

Each SDK streams through the real daemon twice on one client (so a second
request reuses the connection the trailer ended) and then asks once more
without streaming; a raw socket shows what the trailer said for the same
request: `redact` when the answer was redacted mid-stream, `block` when it was
cut off.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import anthropic
import boto3
import botocore.config
import botocore.exceptions
import cohere
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from support.daemon import Daemon, running
from support.policies import BLOCK_SSN_IN_ANSWERS, shipped_policy_with

from .conftest import upstream_args

CARD = "4111 1111 1111 1111"
SSN = "536-22-4187"
REDACTED = {"x-fake-reply": f"Card {CARD} noted, thanks.", "x-fake-chunks": "8"}
# Enough text ahead of the number (past the 256-character holdback) that some of the stream has left when it is cut off.
BLOCKED = {"x-fake-reply": "Here is a long opening that leaves well before anything sensitive arrives. " * 6
                           + f"The SSN is {SSN} and that is all.", "x-fake-chunks": "40"}
CLEAN = "Card [REDACTED:CREDIT_CARD] noted, thanks."


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, fake: str):
    workdir = tmp_path_factory.mktemp("trailers")
    policy = workdir / "policy.yaml"
    policy.write_text(shipped_policy_with(BLOCK_SSN_IN_ANSWERS))
    args = [*upstream_args(fake), *upstream_args(fake, "bedrock"), "--policy", str(policy)]
    with running(Daemon(workdir, args, {"RATE_LIMIT_PER_MINUTE": "0"})) as d:
        yield d


def _raw(daemon: Daemon, path: str, body: dict, headers: dict[str, str], version: str = "HTTP/1.1") -> tuple[bytes, bytes]:
    """(head, rest) of one answer read off a socket until the daemon closes it."""
    url = urlsplit(daemon.url)
    data = json.dumps(body).encode()
    lines = [f"POST {path} {version}", f"Host: {url.netloc}", "Connection: close", "Content-Type: application/json",
             f"Content-Length: {len(data)}", "Authorization: Bearer e2e-trailer-key", *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    return head.lower(), rest


def _trailer(daemon: Daemon, path: str, body: dict, headers: dict[str, str]) -> str:
    head, rest = _raw(daemon, path, body, headers)
    assert b"\r\ntransfer-encoding: chunked" in head and b"\r\ntrailer: x-proxilion-decision" in head
    assert b"\r\nx-proxilion-decision: allow" in head  # the headers left before the answer was inspected
    last, _, trailer = rest.rpartition(b"\r\n0\r\n")
    assert trailer.startswith(b"x-proxilion-decision: ") and trailer.endswith(b"\r\n\r\n"), rest[-200:]
    return trailer[len(b"x-proxilion-decision: "):-4].decode()


CHAT = "/proxy/openai/v1/chat/completions"


def test_openai_sdk_streams_past_the_trailer(daemon: Daemon) -> None:
    client = openai.OpenAI(base_url=daemon.url + "/proxy/openai/v1", api_key="sk-e2e-trailers", max_retries=0)
    for _ in range(2):
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="gpt-4o", stream=True, messages=[{"role": "user", "content": "hi"}], extra_headers=REDACTED) if c.choices)
        assert text == CLEAN
    with pytest.raises(openai.APIError) as caught:
        list(client.chat.completions.create(model="gpt-4o", stream=True, messages=[{"role": "user", "content": "hi"}],
                                            extra_headers=BLOCKED))
    assert caught.value.body["code"] == "blocked_by_policy"
    assert client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello"}]).choices[0].message.content == "hello"
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    assert _trailer(daemon, CHAT, body, REDACTED) == "redact"
    assert _trailer(daemon, CHAT, body, BLOCKED) == "block"
    assert _trailer(daemon, CHAT, body, {"x-fake-reply": "nothing to see here"}) == "allow"


def test_anthropic_sdk_streams_past_the_trailer(daemon: Daemon) -> None:
    client = anthropic.Anthropic(base_url=daemon.url + "/proxy/anthropic", api_key="sk-ant-e2e-trailers", max_retries=0)
    for _ in range(2):
        with client.messages.stream(model="claude-3-5-sonnet-latest", max_tokens=64, extra_headers=REDACTED,
                                    messages=[{"role": "user", "content": "hi"}]) as stream:
            assert "".join(stream.text_stream) == CLEAN
    assert client.messages.create(model="claude-3-5-sonnet-latest", max_tokens=64,
                                  messages=[{"role": "user", "content": "hello"}]).content[0].text == "hello"
    body = {"model": "claude-3-5-sonnet-latest", "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    assert _trailer(daemon, "/proxy/anthropic/v1/messages", body, REDACTED) == "redact"


def test_google_genai_streams_past_the_trailer(daemon: Daemon) -> None:
    client = genai.Client(api_key="g-e2e-trailers", http_options=genai_types.HttpOptions(
        base_url=daemon.url + "/proxy/gemini", headers=REDACTED))
    for _ in range(2):
        assert "".join(c.text or "" for c in client.models.generate_content_stream(model="gemini-2.0-flash", contents="hi")) == CLEAN
    assert client.models.generate_content(model="gemini-2.0-flash", contents="hi").text == CLEAN
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    path = "/proxy/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    assert _trailer(daemon, path, body, REDACTED) == "redact"
    assert _trailer(daemon, path, body, BLOCKED) == "block"


def test_cohere_sdk_v2_and_v1_stream_past_the_trailer(daemon: Daemon) -> None:
    v2 = cohere.ClientV2(api_key="co-e2e-trailers", base_url=daemon.url + "/proxy/cohere")
    v1 = cohere.Client(api_key="co-e2e-trailers", base_url=daemon.url + "/proxy/cohere")
    options = {"additional_headers": REDACTED}
    for _ in range(2):
        deltas = [e.delta.message.content.text for e in v2.chat_stream(
            model="command-r", messages=[{"role": "user", "content": "hi"}], request_options=options) if e.type == "content-delta"]
        assert "".join(deltas) == CLEAN
        texts = [e.text for e in v1.chat_stream(model="command-r", message="hi", request_options=options)
                 if e.event_type == "text-generation"]
        assert "".join(texts) == CLEAN
    assert v1.chat(model="command-r", message="hello v1").text == "hello v1"
    assert _trailer(daemon, "/proxy/cohere/v1/chat", {"message": "hi", "stream": True}, REDACTED) == "redact"
    # A blocked Cohere stream is cut after its error event, so that the SDK raises (it reads past
    # finish_reason ERROR): it has no trailer; its block is in that event and the audit row.
    assert _trailer(daemon, "/proxy/cohere/v2/chat", {"model": "command-r", "stream": True,
                                                      "messages": [{"role": "user", "content": "hi"}]}, REDACTED) == "redact"


CLAUDE_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"


def test_boto3_streams_past_the_trailer(daemon: Daemon) -> None:
    client = boto3.client(
        "bedrock-runtime", endpoint_url=daemon.url + "/proxy/bedrock", region_name="us-east-1",
        aws_access_key_id="AKIAE2ETRAILERSNOTREAL", aws_secret_access_key="e2e-not-a-real-secret",
        config=botocore.config.Config(retries={"max_attempts": 1}))
    script: dict[str, str] = dict(REDACTED)

    def add_script(request, **_) -> None:
        for name, value in script.items():
            request.headers[name] = value

    client.meta.events.register("before-sign.bedrock-runtime.*", add_script)
    messages = [{"role": "user", "content": [{"text": "hi"}]}]
    for _ in range(2):
        events = list(client.converse_stream(modelId=CLAUDE_ID, messages=messages)["stream"])
        assert "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e) == CLEAN
    script.update(BLOCKED)
    with pytest.raises(botocore.exceptions.EventStreamError):
        list(client.converse_stream(modelId=CLAUDE_ID, messages=messages)["stream"])
    script.update(REDACTED)
    reply = client.converse(modelId=CLAUDE_ID, messages=messages)
    assert reply["output"]["message"]["content"][0]["text"] == CLEAN
    path = f"/proxy/bedrock/model/{CLAUDE_ID}/converse-stream"
    assert _trailer(daemon, path, {"messages": messages}, REDACTED) == "redact"
    assert _trailer(daemon, path, {"messages": messages}, BLOCKED) == "block"


def test_an_http_1_0_client_gets_no_trailer(daemon: Daemon) -> None:
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    head, rest = _raw(daemon, CHAT, body, REDACTED, version="HTTP/1.0")
    assert b"chunked" not in head and b"trailer" not in head
    assert rest.endswith(b"data: [DONE]\n\n: x-proxilion-decision: redact\n\n")
