"""The official Gemini (google-genai) and Cohere SDKs through the real daemon: answers, streams, blocks, redaction."""

from __future__ import annotations

import cohere
import pytest
from google import genai
from google.genai import errors as genai_errors, types as genai_types

from support.daemon import Daemon, running

from .conftest import upstream_args

CARD = "4111 1111 1111 1111"
SCRIPT = {"x-fake-reply": "Card 4111111111111111 noted, thanks.", "x-fake-chunks": "8"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, fake: str):
    with running(Daemon(tmp_path_factory.mktemp("sdks"), upstream_args(fake, "gemini", "cohere"),
                        {"RATE_LIMIT_PER_MINUTE": "0"})) as d:
        yield d


def _gemini(daemon: Daemon, headers: dict[str, str] | None = None):
    return genai.Client(api_key="g-e2e-sdk", http_options=genai_types.HttpOptions(
        base_url=daemon.url + "/proxy/gemini", headers=headers or {}))


def test_gemini_sdk(daemon: Daemon) -> None:
    client = _gemini(daemon)
    assert client.models.generate_content(model="gemini-2.0-flash", contents="hello there gemini").text == "hello there gemini"
    pieces = [c.text for c in client.models.generate_content_stream(model="gemini-2.0-flash", contents="stream this answer")]
    assert "".join(p or "" for p in pieces) == "stream this answer" and len(pieces) > 2
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model="gemini-2.0-flash", contents=f"card {CARD}")
    assert caught.value.code == 403 and "credit_card" in caught.value.message and "4111" not in caught.value.message
    scripted = _gemini(daemon, SCRIPT)
    streamed = "".join(c.text or "" for c in scripted.models.generate_content_stream(model="gemini-2.0-flash", contents="hi"))
    assert streamed == "Card [REDACTED:CREDIT_CARD] noted, thanks."
    assert scripted.models.generate_content(model="gemini-2.0-flash", contents="hi").text == streamed


def test_gemini_sdk_text_file_bytes_are_read(daemon: Daemon) -> None:
    # Part.from_bytes sends the file in URL-safe base64.
    notes = genai_types.Part.from_bytes(data=f"Invoice notes >>> paid with card {CARD} ??? ok\n".encode(), mime_type="text/plain")
    client = _gemini(daemon)  # held: a collected client closes its connections
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model="gemini-2.0-flash", contents=[notes, "summarise"])
    assert caught.value.code == 403 and "credit_card" in caught.value.message


def test_cohere_sdk_v2_and_v1(daemon: Daemon) -> None:
    v2 = cohere.ClientV2(api_key="co-e2e-sdk", base_url=daemon.url + "/proxy/cohere")
    reply = v2.chat(model="command-r", messages=[{"role": "user", "content": "hello cohere"}])
    assert reply.message.content[0].text == "hello cohere"
    with pytest.raises(cohere.ForbiddenError):
        v2.chat(model="command-r", messages=[{"role": "user", "content": f"card {CARD}"}])
    deltas = [e.delta.message.content.text for e in v2.chat_stream(
        model="command-r", messages=[{"role": "user", "content": "hi"}], request_options={"additional_headers": SCRIPT})
        if e.type == "content-delta"]
    assert "".join(deltas) == "Card [REDACTED:CREDIT_CARD] noted, thanks." and len(deltas) > 2

    v1 = cohere.Client(api_key="co-e2e-sdk", base_url=daemon.url + "/proxy/cohere")
    assert v1.chat(model="command-r", message="hello v1").text == "hello v1"
    texts = [e.text for e in v1.chat_stream(model="command-r", message="hi", request_options={"additional_headers": SCRIPT})
             if e.event_type == "text-generation"]
    assert "".join(texts) == "Card [REDACTED:CREDIT_CARD] noted, thanks."
