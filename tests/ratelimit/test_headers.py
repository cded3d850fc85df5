"""Rate-limit answer headers under the names and meanings each provider's SDKs and docs use."""

from __future__ import annotations

import pytest

from proxilion.ratelimit.buckets import Bucket, Admission, Limit, decide, go_duration

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def _decision(**overrides) -> Admission:
    values = dict(allowed=True, limit=10, remaining=4, reset_seconds=90.0, retry_after=0.0, store="memory",
                  per_minute=120, unit="requests")
    values.update(overrides)
    return Admission(**values)


def test_openai_and_anthropic_names_carry_the_per_minute_limit() -> None:
    headers = _decision().headers(now=NOW)
    assert headers["x-ratelimit-limit-requests"] == "120"
    assert headers["x-ratelimit-remaining-requests"] == "4"
    assert headers["x-ratelimit-reset-requests"] == "1m30s"
    assert headers["anthropic-ratelimit-requests-limit"] == "120"
    assert headers["anthropic-ratelimit-requests-remaining"] == "4"
    assert headers["anthropic-ratelimit-requests-reset"] == "2023-11-14T22:14:50Z"
    # The generic headers keep describing the bucket: its capacity, level and seconds to full.
    assert (headers["X-RateLimit-Limit"], headers["X-RateLimit-Remaining"], headers["X-RateLimit-Reset"]) == ("10", "4", "90")
    assert "Retry-After" not in headers


def test_refused_carries_retry_after_and_token_limits_use_token_names() -> None:
    headers = _decision(allowed=False, remaining=0, retry_after=2.2, unit="tokens", per_minute=40000).headers(now=NOW)
    assert headers["Retry-After"] == "3"
    assert headers["x-ratelimit-limit-tokens"] == "40000" and headers["anthropic-ratelimit-tokens-remaining"] == "0"
    assert not any(name.endswith("-requests") or "-requests-" in name for name in headers)


def test_no_limit_no_headers() -> None:
    assert _decision(limit=0, per_minute=0).headers(now=NOW) == {}


@pytest.mark.parametrize("seconds,text", [
    (0.0, "0s"), (0.02, "20ms"), (0.9991, "1s"), (1.0, "1s"), (1.5, "1.5s"), (59.25, "59.25s"),
    (360.0, "6m0s"), (3661.0, "1h1m1s"), (7200.0, "2h0m0s"),
])
def test_go_duration_as_openai_writes_it(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_decide_reports_the_tightest_buckets_per_minute_limit_and_unit() -> None:
    requests = Limit("default", "identity", 60, 5, "requests")
    tokens = Limit("tpm", "identity", 6000, 1000, "tokens")
    buckets = [Bucket("a", "k", requests, 1), Bucket("b", "k", tokens, 100)]
    admitted = decide(buckets, [4.0, 100.0], True, "memory")
    assert (admitted.per_minute, admitted.unit, admitted.limit) == (6000, "tokens", 1000)
    refused = decide(buckets, [0.0, 900.0], False, "memory")
    assert (refused.per_minute, refused.unit, refused.limit) == (60, "requests", 5)
