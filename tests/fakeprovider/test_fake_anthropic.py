"""The official anthropic SDK against the fake provider."""

from __future__ import annotations

import json

import anthropic
import pytest

from proxilion.fakeprovider.testing import call, sse_events


@pytest.fixture
def client(fake_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake_url, api_key="sk-ant-test", max_retries=0)


def test_message_echoes_the_last_user_text(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="claude-fake", max_tokens=100, system="be kind",
        messages=[{"role": "user", "content": "earlier"},
                  {"role": "assistant", "content": "yes"},
                  {"role": "user", "content": [{"type": "text", "text": "call me at 555"}]}],
    )
    assert message.content[0].text == "call me at 555"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_stream_arrives_in_several_deltas(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="claude-fake", max_tokens=100,
                                messages=[{"role": "user", "content": "alpha beta gamma"}]) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert pieces == ["alpha ", "beta ", "gamma"]
    assert final.content[0].text == "alpha beta gamma"
    assert final.usage.output_tokens > 0


def test_stream_event_sequence_is_anthropics(fake_url: str) -> None:
    reply = call(fake_url, "POST", "/v1/messages",
                 {"model": "c", "max_tokens": 10, "stream": True,
                  "messages": [{"role": "user", "content": "x y"}]},
                 headers={"anthropic-version": "2023-06-01"})
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = sse_events(reply.body)
    assert [e for e, _ in events] == [
        "message_start", "content_block_start", "ping", "content_block_delta",
        "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert all(event == json.loads(data)["type"] for event, data in events)
    assert len(reply.chunks) > 2


@pytest.mark.parametrize(("status", "exception"), [
    (400, anthropic.BadRequestError), (429, anthropic.RateLimitError),
    (500, anthropic.InternalServerError), (529, anthropic.OverloadedError),
])
def test_scripted_errors_raise_the_sdk_exceptions(client: anthropic.Anthropic, status: int,
                                                  exception: type) -> None:
    with pytest.raises(exception) as caught:
        client.messages.create(model="c", max_tokens=10,
                               messages=[{"role": "user", "content": "x"}],
                               extra_headers={"x-fake-status": str(status)})
    assert caught.value.status_code == status
    assert caught.value.body["type"] == "error"
