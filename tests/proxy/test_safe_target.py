"""What the proxy keeps of a request target, a request id and identity headers: scanned, masked, fingerprinted."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from proxilion.proxy.headers import request_id
from proxilion.proxy.identity import identify
from proxilion.proxy.safe_target import safe_path, safe_target, safe_uri

KEY = "sk-proj-Q3xT9vLm2RkP8wZ4nB7yH1cJ6dF0gS5aE3uK9iO2pL7mN4bV"
CARD = "4111111111111111"
EMAIL = "victim.person@corp-mail.com"


def _escaped(text: str) -> str:
    return "".join("%%%02X" % b for b in text.encode())


@pytest.mark.parametrize(("uri", "expected"), [
    ("/v1/chat/completions", "/v1/chat/completions"),
    (f"/v1/{KEY}/chat", "/v1/[REDACTED:OPENAI_API_KEY]/chat"),
    (f"/v1/{CARD}/x", "/v1/[REDACTED:CREDIT_CARD]/x"),
    (f"/v1/models/{_escaped(EMAIL)}", "/v1/models/[REDACTED:EMAIL]"),
    (f"/v1/a%2F{CARD}/b", "/v1/[REDACTED:CREDIT_CARD]/b"),
    (f"/v1/x?api-version={CARD}&stream=true", "/v1/x?api-version=[REDACTED:CREDIT_CARD]&stream=true"),
    ("/v1/x?api-version=4111+1111+1111+1111", "/v1/x?api-version=[REDACTED:CREDIT_CARD]"),
    (f"/v1/x?{KEY}", "/v1/x?[REDACTED:OPENAI_API_KEY]"),
    (f"/v1/x?key={KEY}&alt=sse", "/v1/x?key=REDACTED&alt=sse"),
    (f"/v1/x#{KEY}?api-version=1", "/v1/x"),
    (f"/v1/x?alt=sse#{EMAIL}", "/v1/x?alt=sse"),
    ("/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01",
     "/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01"),
    ("/model/anthropic.claude-3-5-sonnet-20240620-v1:0/invoke", "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/invoke"),
])
def test_targets_are_kept_with_findings_masked(uri: str, expected: str) -> None:
    assert safe_uri(uri.encode()) == expected
    # Twice (the second from the cache of clean targets) and again over its own output: the same.
    assert safe_uri(uri.encode()) == expected
    assert safe_path(expected) == expected


def test_targets_are_bounded() -> None:
    assert len(safe_target("/v1/" + "a" * 10_000, "")) == 2048


@pytest.mark.parametrize("value", [KEY, "AKIAQ3EGRTXW5JZ7BVMD", CARD, EMAIL, "eyJhbGc" + "x" * 3])
def test_request_ids_holding_findings_are_replaced(value: str) -> None:
    rid = request_id(value.encode())
    if value.startswith("eyJ"):
        assert rid == value.encode()
    else:
        assert value.encode() not in rid


def test_ordinary_request_ids_are_kept() -> None:
    for value in (b"trace-0af7651916cd43dd", b"3f2a9c1e-7b4d-4e2a-9c1e-7b4d4e2a9c1e"):
        assert request_id(value) == value
    assert request_id(b"x" * 65) != b"x" * 65


def _lines(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in headers.items()]


def _settings() -> SimpleNamespace:
    return SimpleNamespace(trusted_proxies=(), identity_header="x-user-id", tenant_header="x-tenant", client_ip_header="x-forwarded-for")


@pytest.mark.parametrize("secret", [KEY, CARD, EMAIL, f"team {CARD}"])
def test_identity_headers_holding_findings_are_fingerprinted(secret: str) -> None:
    identity = identify(_lines({"x-user-id": secret, "x-tenant": secret}), "10.0.0.1", _settings())
    assert identity.key.startswith("user:#") and len(identity.key) == len("user:#") + 16
    assert identity.tenant is not None and identity.tenant.startswith("#")
    assert secret not in identity.key + identity.tenant
    other = identify(_lines({"x-user-id": secret + "0"}), "10.0.0.1", _settings())
    assert other.key != identity.key


def test_ordinary_identity_headers_are_kept() -> None:
    identity = identify(_lines({"x-user-id": "alice", "x-tenant": "acme"}), "10.0.0.1", _settings())
    assert (identity.key, identity.tenant) == ("user:alice", "acme")
