"""A streamed answer the policy blocks ends in a form each official SDK raises on, before the value leaves."""

from __future__ import annotations

import cohere
import pytest

from support.daemon import Daemon, running
from support.policies import BLOCK_SSN_IN_ANSWERS, shipped_policy_with

from .conftest import upstream_args

SSN = "536-22-4187"
BLOCKED = {"x-fake-reply": f"Sure, here it is. The SSN is {SSN}, as requested.", "x-fake-chunks": "12"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, fake: str):
    workdir = tmp_path_factory.mktemp("stream-block")
    policy = workdir / "policy.yaml"
    policy.write_text(shipped_policy_with(BLOCK_SSN_IN_ANSWERS))
    with running(Daemon(workdir, [*upstream_args(fake), "--policy", str(policy)], {"RATE_LIMIT_PER_MINUTE": "0"})) as d:
        yield d


def _read(events, text_of):
    received = []
    with pytest.raises(Exception) as raised:
        for event in events:
            received.append(text_of(event) or "")
    return "".join(received), raised.value


def test_a_blocked_cohere_v2_stream_raises_in_the_sdk(daemon: Daemon) -> None:
    client = cohere.ClientV2(api_key="co-e2e-stream-block", base_url=daemon.url + "/proxy/cohere")
    events = client.chat_stream(model="command-r", messages=[{"role": "user", "content": "hi"}],
                                request_options={"additional_headers": BLOCKED, "max_retries": 0})

    def text_of(event):
        if event.type == "content-delta":
            return event.delta.message.content.text
        return None
    received, error = _read(events, text_of)
    assert SSN[:3] not in received and "The SSN is" in received, received
    assert error is not None


def test_a_blocked_cohere_v1_stream_raises_in_the_sdk(daemon: Daemon) -> None:
    client = cohere.Client(api_key="co-e2e-stream-block", base_url=daemon.url + "/proxy/cohere")
    events = client.chat_stream(model="command-r", message="hi",
                                request_options={"additional_headers": BLOCKED, "max_retries": 0})
    received, error = _read(events, lambda e: e.text if e.event_type == "text-generation" else None)
    assert SSN[:3] not in received and "The SSN is" in received, received
    assert error is not None
