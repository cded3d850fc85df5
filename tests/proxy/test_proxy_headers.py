"""Header filtering between client and upstream, both directions."""

from __future__ import annotations

import re

import pytest
from proxilion.proxy.headers import client_response_headers, replace_header, request_id, upstream_request_headers

Pairs = list[tuple[bytes, bytes]]

HOP_BY_HOP = [
    ("Connection", "keep-alive"),
    ("Keep-Alive", "timeout=5, max=100"),
    ("Proxy-Connection", "keep-alive"),
    ("Proxy-Authenticate", "Basic realm=x"),
    ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
    ("Proxy-Anything", "1"),
    ("TE", "trailers"),
    ("Trailer", "X-Checksum"),
    ("Transfer-Encoding", "chunked"),
    ("Upgrade", "h2c"),
]
END_TO_END = [
    ("Authorization", "Bearer sk-test-123"),
    ("x-api-key", "sk-ant-test"),
    ("api-key", "azure-key"),
    ("x-goog-api-key", "AIza-test"),
    ("Content-Type", "application/json"),
    ("Accept", "text/event-stream"),
    ("anthropic-version", "2023-06-01"),
    ("User-Agent", "OpenAI/Python 1.0"),
]


def _headers(pairs: list[tuple[str, str]]) -> Pairs:
    # As both parsers hand them over: names lower-cased.
    return [(name.lower().encode(), value.encode()) for name, value in pairs]


def _names(headers: Pairs) -> set[str]:
    return {name.decode().lower() for name, _ in headers}


def _values(headers: Pairs, name: bytes) -> list[bytes]:
    return [v for k, v in headers if k.lower() == name]


def _upstream(pairs: list[tuple[str, str]], trusted: bytes | None = None) -> Pairs:
    return upstream_request_headers(_headers(pairs), "10.1.2.3", b"http", b"rid-0123456789", trusted)


@pytest.mark.parametrize(("name", "value"), HOP_BY_HOP)
def test_hop_by_hop_request_header_is_not_forwarded(name: str, value: str) -> None:
    assert name.lower() not in _names(_upstream([(name, value), *END_TO_END]))


@pytest.mark.parametrize(("name", "value"), HOP_BY_HOP)
def test_hop_by_hop_response_header_is_not_relayed(name: str, value: str) -> None:
    assert name.lower() not in _names((client_response_headers(_headers([(name, value), *END_TO_END]))))


def test_end_to_end_headers_and_credentials_go_upstream_untouched() -> None:
    out = _upstream(END_TO_END)
    for name, value in END_TO_END:
        assert _values(out, name.lower().encode()) == [value.encode()]


def test_headers_named_in_connection_are_dropped_both_ways() -> None:
    pairs = [("Connection", "close, X-Hop-One"), ("Connection", " x-hop-two "), ("X-Hop-One", "1"), ("X-Hop-Two", "2"), ("X-Kept", "3")]
    for names in (_names(_upstream(pairs)), _names((client_response_headers(_headers(pairs))))):
        assert not {"connection", "x-hop-one", "x-hop-two"} & names
        assert "x-kept" in names


def test_forwarding_headers_are_set_by_the_proxy_not_copied_from_the_client() -> None:
    out = _upstream([("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https"), ("Forwarded", "for=6.6.6.6"),
                     ("X-Forwarded-Host", "evil"), ("Host", "evil"), ("Content-Length", "99"), ("Expect", "100-continue")])
    assert _values(out, b"x-forwarded-for") == [b"10.1.2.3"]
    assert _values(out, b"x-forwarded-proto") == [b"http"]
    for name in (b"forwarded", b"x-forwarded-host", b"host", b"content-length", b"expect"):
        # The upstream client writes Host and Content-Length for the request it really sends.
        assert not _values(out, name)


def test_trusted_forwarded_for_chain_is_extended() -> None:
    out = _upstream([], trusted=b"203.0.113.7, 10.0.0.1")
    assert _values(out, b"x-forwarded-for") == [b"203.0.113.7, 10.0.0.1, 10.1.2.3"]


def test_request_id_goes_upstream_replacing_the_clients() -> None:
    out = _upstream([("X-Request-ID", "client-value")])
    assert _values(out, b"x-request-id") == [b"rid-0123456789"]


def test_upstream_response_identity_headers_are_replaced_by_ours() -> None:
    relayed = _names((client_response_headers(_headers([("Date", "x"), ("Server", "upstream"), ("Content-Length", "5"),
                                                             ("X-Request-ID", "req_upstream"), ("openai-processing-ms", "12")]))))
    assert relayed == {"openai-processing-ms"}


@pytest.mark.parametrize("value", [b"abcdefgh", b"0f0e-11aa-22bb", b"req_ABC.def:123", b"a" * 64])
def test_well_formed_client_request_id_is_kept(value: bytes) -> None:
    assert request_id(value) == value


@pytest.mark.parametrize("value", [None, b"", b"short", b"a" * 65, b"has space in it", b"semi;colon12", b"\xff" * 10, b"new\nline123"])
def test_malformed_client_request_id_is_replaced(value: bytes | None) -> None:
    generated = request_id(value)
    assert generated != value
    assert re.fullmatch(rb"[0-9a-f]{32}", generated)


def test_generated_request_ids_differ() -> None:
    assert len({request_id(None) for _ in range(100)}) == 100


def test_relayed_response_header_names_are_lower_case() -> None:
    assert client_response_headers(_headers([("OpenAI-Processing-Ms", "12"), ("X-RateLimit-Limit", "9")])) == [
        (b"openai-processing-ms", b"12"), (b"x-ratelimit-limit", b"9")]


def test_replace_header_replaces_every_value() -> None:
    out = replace_header(_headers([("Accept-Encoding", "gzip"), ("accept-encoding", "br"), ("X-Kept", "1")]), b"accept-encoding", b"identity")
    assert out == [(b"x-kept", b"1"), (b"accept-encoding", b"identity")]
