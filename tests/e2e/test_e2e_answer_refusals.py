"""An answer Proxilion refuses costs one upstream call, with every official SDK at its default retries.

Answers compressed against our request are decoded, inspected and released
decoded; refusals made after the provider answered use statuses the SDKs do
not retry (403 blocked, 422 not inspectable).
"""

from __future__ import annotations

from pathlib import Path

import anthropic
import boto3
import botocore.config
import botocore.exceptions
import cohere
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors, types as genai_types

from support.daemon import Daemon, clear_fake, eventually, fake_requests, running
from support.policies import BLOCK_SSN_IN_ANSWERS, shipped_policy_with


from .conftest import admin, upstream_args

SSN = "536-22-4187"
CARD = "4111 1111 1111 1111"
BLOCKED = {"x-fake-reply": f"The SSN is {SSN}."}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, fake: str):
    workdir = tmp_path_factory.mktemp("refusals")
    policy = workdir / "policy.yaml"
    policy.write_text(shipped_policy_with(BLOCK_SSN_IN_ANSWERS))
    args = [*upstream_args(fake), *upstream_args(fake, "bedrock"), "--policy", str(policy), "--admin-token", "e2e-admin-token"]
    with running(Daemon(workdir, args, {"RATE_LIMIT_PER_MINUTE": "0"})) as d:
        yield d


def _calls(fake: str) -> int:
    return len(fake_requests(fake))


def _one_call(fake: str, call) -> BaseException:
    clear_fake(fake)
    with pytest.raises(Exception) as caught:
        call()
    assert _calls(fake) == 1, f"{_calls(fake)} upstream calls for one refused answer"
    assert SSN not in str(caught.value)
    return caught.value


def test_openai_blocked_answer_is_one_call(daemon: Daemon, fake: str) -> None:
    client = openai.OpenAI(base_url=daemon.url + "/proxy/openai/v1", api_key="sk-e2e-refusals")  # default retries
    e = _one_call(fake, lambda: client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], extra_headers=BLOCKED))
    assert isinstance(e, openai.PermissionDeniedError) and e.code == "blocked_by_policy"


def test_anthropic_blocked_answer_is_one_call(daemon: Daemon, fake: str) -> None:
    client = anthropic.Anthropic(base_url=daemon.url + "/proxy/anthropic", api_key="sk-ant-e2e-refusals")
    e = _one_call(fake, lambda: client.messages.create(
        model="claude-3-5-sonnet-latest", max_tokens=64, messages=[{"role": "user", "content": "hi"}], extra_headers=BLOCKED))
    assert isinstance(e, anthropic.PermissionDeniedError)


def test_gemini_blocked_answer_is_one_call(daemon: Daemon, fake: str) -> None:
    # google-genai retries only when asked to: ask, with its default statuses.
    client = genai.Client(api_key="g-e2e-refusals", http_options=genai_types.HttpOptions(
        base_url=daemon.url + "/proxy/gemini", headers=BLOCKED,
        retry_options=genai_types.HttpRetryOptions(attempts=3, initial_delay=0.1)))
    e = _one_call(fake, lambda: client.models.generate_content(model="gemini-2.0-flash", contents="hi"))
    assert isinstance(e, genai_errors.ClientError) and e.code == 403


def test_cohere_blocked_answer_is_one_call(daemon: Daemon, fake: str) -> None:
    client = cohere.ClientV2(api_key="co-e2e-refusals", base_url=daemon.url + "/proxy/cohere")
    e = _one_call(fake, lambda: client.chat(model="command-r", messages=[{"role": "user", "content": "hi"}],
                                             request_options={"additional_headers": BLOCKED}))
    assert isinstance(e, cohere.ForbiddenError)


@pytest.mark.parametrize("mode", ["standard", "legacy"])
def test_bedrock_blocked_answer_is_one_call(daemon: Daemon, fake: str, mode: str) -> None:
    client = boto3.client(
        "bedrock-runtime", endpoint_url=daemon.url + "/proxy/bedrock", region_name="us-east-1",
        aws_access_key_id="AKIAE2EREFUSALSNOTREAL", aws_secret_access_key="e2e-not-a-real-secret",
        config=botocore.config.Config(retries={"mode": mode, "max_attempts": 3}))
    client.meta.events.register("before-sign.bedrock-runtime.*",
                                lambda request, **_: request.headers.__setitem__("x-fake-reply", BLOCKED["x-fake-reply"]))
    e = _one_call(fake, lambda: client.converse(modelId="anthropic.claude-3-5-sonnet-20240620-v1:0",
                                                messages=[{"role": "user", "content": [{"text": "hi"}]}]))
    assert isinstance(e, botocore.exceptions.ClientError) and e.response["Error"]["Code"] == "AccessDeniedException"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_a_compressed_answer_is_inspected_and_arrives_decoded(daemon: Daemon, fake: str, encoding: str) -> None:
    client = openai.OpenAI(base_url=daemon.url + "/proxy/openai/v1", api_key="sk-e2e-refusals")
    clear_fake(fake)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-fake-reply": f"card {CARD}", "x-fake-encoding": encoding})
    assert raw.headers.get("content-encoding") is None
    assert int(raw.headers["content-length"]) == len(raw.http_response.content)
    assert raw.parse().choices[0].message.content == "card [REDACTED:CREDIT_CARD]"
    e = _one_call(fake, lambda: client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], extra_headers={**BLOCKED, "x-fake-encoding": encoding}))
    assert isinstance(e, openai.PermissionDeniedError)


def test_an_answer_too_large_to_inspect_is_one_call(tmp_path: Path, fake: str) -> None:
    with running(Daemon(tmp_path, [*upstream_args(fake, "openai"), "--max-body-size", "4096"], {"RATE_LIMIT_PER_MINUTE": "0"})) as small:
        client = openai.OpenAI(base_url=small.url + "/proxy/openai/v1", api_key="sk-e2e-large")
        e = _one_call(fake, lambda: client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fake-reply": " ".join(["word"] * 1200), "x-fake-encoding": "br"}))
        assert isinstance(e, openai.UnprocessableEntityError) and e.code == "uninspectable_answer"


def _row(daemon: Daemon, rid: str) -> dict:
    return eventually(lambda: next((e for e in admin(daemon, "GET", "/api/v1/events")[2]["events"] if e["request_id"] == rid), None),
                      what="audit row")


def _line(daemon: Daemon, rid: str) -> dict:
    return eventually(lambda: next((e for e in daemon.log_events() if e.get("request_id") == rid), None), what="access line")


def test_request_and_answer_blocks_name_the_same_code_and_their_rule_everywhere(daemon: Daemon, fake: str) -> None:
    client = openai.OpenAI(base_url=daemon.url + "/proxy/openai/v1", api_key="sk-e2e-refusals", max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as request_side:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"card {CARD}"}])
    error = request_side.value.body
    rule = error["rule"]
    assert error["code"] == "blocked_by_policy" and rule
    assert request_side.value.message.count("blocked") == 1 and f"rule '{rule}'" in request_side.value.message

    with pytest.raises(openai.PermissionDeniedError) as answer_side:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], extra_headers=BLOCKED)
    assert answer_side.value.body["code"] == "blocked_by_policy" and answer_side.value.body["rule"] == "block-ssn-in-answers"

    with pytest.raises(openai.APIError) as streamed:
        for _ in client.chat.completions.create(model="gpt-4o", stream=True, messages=[{"role": "user", "content": "hi"}],
                                                extra_headers={**BLOCKED, "x-fake-chunks": "6"}):
            pass
    assert streamed.value.body["code"] == "blocked_by_policy" and streamed.value.body["rule"] == "block-ssn-in-answers"
    assert streamed.value.body["type"] == "permission_error"

    for caught, expected in ((request_side, rule), (answer_side, "block-ssn-in-answers")):
        rid = caught.value.response.headers["x-request-id"]
        assert _row(daemon, rid)["rule"] == expected
        assert _line(daemon, rid)["rule"] == expected
    assert daemon.metric("proxilion_policy_rule_decisions_total", direction="response", action="block",
                         rule="block-ssn-in-answers") >= 2
    assert daemon.metric("proxilion_policy_rule_decisions_total", direction="request", action="block", rule=rule) >= 1


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_a_compressed_stream_is_inspected_and_arrives_decoded_in_one_call(daemon: Daemon, fake: str, encoding: str) -> None:
    client = openai.OpenAI(base_url=daemon.url + "/proxy/openai/v1", api_key="sk-e2e-refusals")
    clear_fake(fake)
    with client.chat.completions.with_streaming_response.create(
            model="gpt-4o", stream=True, messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fake-reply": f"my card is {CARD} thanks", "x-fake-encoding": encoding, "x-fake-chunks": "6"}) as raw:
        assert raw.headers.get("content-encoding") is None
        text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    assert text == "my card is [REDACTED:CREDIT_CARD] thanks"
    assert _calls(fake) == 1

    e = _one_call(fake, lambda: list(client.chat.completions.create(
        model="gpt-4o", stream=True, messages=[{"role": "user", "content": "hi"}],
        extra_headers={**BLOCKED, "x-fake-encoding": encoding, "x-fake-chunks": "6"})))
    assert isinstance(e, openai.APIError) and e.body["code"] == "blocked_by_policy"
