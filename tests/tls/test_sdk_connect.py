"""The official SDKs through HTTPS_PROXY, trusting only the interception CA, reach the fake provider via the full pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import anthropic
import openai
import pytest

from support.daemon import Daemon, fake_requests, clear_fake

CARD = "4111 1111 1111 1111"
EMAIL = "jane.roe@example.org"


@pytest.fixture
def proxied_env(monkeypatch: pytest.MonkeyPatch, daemon: Daemon, ca_dir: Path) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", daemon.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_dir / "ca.crt"))


@pytest.fixture
def oai(proxied_env: None) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(api_key="sk-test-connect", max_retries=0, timeout=20)
    assert str(client.base_url).startswith("https://api.openai.com")
    yield client
    client.close()


@pytest.fixture
def claude(proxied_env: None) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(api_key="sk-ant-test-connect", max_retries=0, timeout=20)
    yield client
    client.close()


def _chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_openai_plain_and_streaming(oai: openai.OpenAI, daemon: Daemon) -> None:
    reply = oai.chat.completions.create(model="gpt-4o-mini", messages=_chat("hello"))
    assert reply.choices[0].message.content
    stream = oai.chat.completions.create(model="gpt-4o-mini", messages=_chat("count to five"), stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text
    assert daemon.metric("proxilion_connect_requests_total", decision="intercept") >= 1
    assert daemon.metric("proxilion_tls_handshakes_total", mode="connect", result="ok") >= 1
    assert daemon.metric("proxilion_http_requests_total", provider="openai", status="200") >= 2


def test_anthropic_plain_and_streaming(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=50, messages=_chat("hello"))
    assert message.content[0].text
    with claude.messages.stream(model="claude-3-5-haiku-latest", max_tokens=50, messages=_chat("hello")) as stream:
        assert "".join(stream.text_stream)


def test_a_card_is_blocked_inside_the_tunnel(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    with pytest.raises(openai.PermissionDeniedError) as e:
        oai.chat.completions.create(model="gpt-4o-mini", messages=_chat(f"my card is {CARD}"))
    assert CARD not in str(e.value)
    with pytest.raises(anthropic.PermissionDeniedError):
        claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=50, messages=_chat(f"card {CARD}"))


def test_an_email_is_redacted_before_it_reaches_the_provider(oai: openai.OpenAI, fake: str) -> None:
    clear_fake(fake)
    oai.chat.completions.create(model="gpt-4o-mini", messages=_chat(f"write to {EMAIL}"))
    seen = fake_requests(fake)
    assert seen and EMAIL not in str(seen)


def test_a_429_reaches_the_sdk(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        oai.chat.completions.create(model="gpt-4o-mini", messages=_chat("hi"), extra_headers={"x-fake-status": "429"})
