"""The official openai SDK against the fake provider."""

from __future__ import annotations

import base64
import json
import struct

import openai
import pytest

from proxilion.fakeprovider.testing import call, sse_events


@pytest.fixture
def client(fake_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake_url + "/v1", api_key="sk-test", max_retries=0)


def test_chat_echoes_the_last_user_message(client: openai.OpenAI) -> None:
    done = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "system", "content": "be brief"},
                  {"role": "user", "content": "first"},
                  {"role": "assistant", "content": "ok"},
                  {"role": "user", "content": [{"type": "text", "text": "my name is Ada"}]}],
    )
    assert done.choices[0].message.content == "my name is Ada"
    assert done.choices[0].finish_reason == "stop"
    assert done.model == "gpt-4o"
    assert done.usage.completion_tokens > 0
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens


def test_chat_stream_arrives_in_several_chunks_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "one two three four five"}],
    )
    chunks = list(stream)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(texts) == "one two three four five"
    assert len(texts) == 5
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_scripted_reply_and_chunk_count(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o", stream=True, messages=[{"role": "user", "content": "ignored"}],
        extra_headers={"x-fake-reply": "abcdefghij", "x-fake-chunks": "4",
                       "x-fake-chunk-delay": "0"},
    )
    texts = [c.choices[0].delta.content for c in stream if c.choices[0].delta.content]
    assert texts == ["ab", "cde", "fgh", "ij"]


def test_completions_embeddings_models(client: openai.OpenAI) -> None:
    done = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say this")
    assert done.choices[0].text == "say this"
    streamed = list(client.completions.create(model="m", prompt="a b c", stream=True))
    assert "".join(c.choices[0].text for c in streamed) == "a b c"

    floats = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"],
                                      dimensions=8, encoding_format="float")
    packed = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"],
                                      dimensions=8, encoding_format="base64")
    assert [len(d.embedding) for d in floats.data] == [8, 8]
    assert floats.data[0].embedding != floats.data[1].embedding
    decoded = struct.unpack("<8f", base64.b64decode(packed.data[1].embedding))
    assert decoded == pytest.approx(floats.data[1].embedding, abs=1e-6)

    assert "gpt-4o" in [m.id for m in client.models.list()]


def test_responses_api(client: openai.OpenAI) -> None:
    done = client.responses.create(model="gpt-4o", instructions="x", input="hello responses")
    assert done.output_text == "hello responses"
    assert done.usage.output_tokens > 0

    events = list(client.responses.create(model="gpt-4o", input="a b c", stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 3
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].response.output_text == "a b c"

    with client.responses.stream(model="gpt-4o", input=[
            {"role": "user", "content": [{"type": "input_text", "text": "via helper"}]}]) as s:
        assert s.get_final_response().output_text == "via helper"


def test_responses_stream_wire_has_event_lines(fake_url: str) -> None:
    reply = call(fake_url, "POST", "/v1/responses", {"model": "m", "input": "x", "stream": True})
    events = sse_events(reply.body)
    assert all(event == json.loads(data)["type"] for event, data in events)


def test_azure_deployment_path(fake_url: str) -> None:
    azure = openai.AzureOpenAI(azure_endpoint=fake_url, api_key="k", api_version="2024-10-21",
                               max_retries=0)
    done = azure.chat.completions.create(model="my-deployment",
                                         messages=[{"role": "user", "content": "azure hi"}])
    assert done.choices[0].message.content == "azure hi"
    assert done.model == "my-deployment"
    last = call(fake_url, "GET", "/_fake/requests").json()["requests"][-1]
    assert last["path"] == "/openai/deployments/my-deployment/chat/completions"
    assert last["query"] == "api-version=2024-10-21"
    assert last["headers"]["api-key"] == "k"


@pytest.mark.parametrize(("status", "exception"), [
    (400, openai.BadRequestError), (401, openai.AuthenticationError),
    (429, openai.RateLimitError), (500, openai.InternalServerError),
])
def test_scripted_errors_raise_the_sdk_exceptions(client: openai.OpenAI, status: int,
                                                  exception: type) -> None:
    with pytest.raises(exception) as caught:
        client.chat.completions.create(
            model="gpt-4o", stream=True, messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-fake-status": str(status), "x-fake-error": "scripted failure"},
        )
    assert caught.value.status_code == status
    assert caught.value.body["message"] == "scripted failure"
