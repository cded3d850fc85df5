"""Identity extraction: key fingerprints, identity header, client IP behind trusted proxies."""

from __future__ import annotations

import hashlib

import pytest

from proxilion.config import load_settings
from proxilion.proxy.identity import client_ip, identify as identify_pairs, sanitise


def identify(headers: dict[str, str], peer: str, settings, query_key: str | None = None):
    """L{identify_pairs} from a mapping of header names to one value each."""
    pairs = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    return identify_pairs(pairs, peer, settings, query="key=" + query_key if query_key else "")


@pytest.fixture
def settings():
    return load_settings({}, environ={"TRUSTED_PROXIES": "10.0.0.0/8,fd00::/8", "TENANT_HEADER": "X-Tenant"})


SECRET = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"


@pytest.mark.parametrize(
    "headers,query",
    [
        ({"authorization": f"Bearer {SECRET}"}, None),
        ({"authorization": f"bearer   {SECRET}"}, None),
        ({"x-api-key": SECRET}, None),
        ({"api-key": SECRET}, None),
        ({"x-goog-api-key": SECRET}, None),
        ({}, SECRET),
    ],
)
def test_provider_key_fingerprint_never_contains_the_key(settings, headers, query):
    identity = identify(headers, "203.0.113.9", settings, query_key=query)
    expected = "key:" + hashlib.sha256(SECRET.encode()).hexdigest()[:16]
    assert identity.key == expected
    assert identity.kind == "key"
    assert SECRET not in repr(identity)
    assert SECRET[3:19] not in identity.key


def test_key_beats_user_header_and_ip(settings):
    identity = identify({"x-api-key": "k1", "x-user-id": "alice"}, "203.0.113.9", settings)
    assert identity.kind == "key"


def test_sigv4_counts_the_access_key_id_not_the_signature(settings):
    def auth(signature):
        return {
            "authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/bedrock/aws4_request, "
            f"SignedHeaders=host;x-amz-date, Signature={signature}"
        }

    a = identify(auth("aaaa"), "203.0.113.9", settings)
    b = identify(auth("bbbb"), "203.0.113.9", settings)
    assert a.key == b.key and a.kind == "key"
    assert "AKIDEXAMPLE" not in a.key


def test_user_header_is_sanitised_and_bounded(settings):
    identity = identify({"x-user-id": " bob {x} é " + "z" * 300}, "203.0.113.9", settings)
    assert identity.kind == "user"
    assert identity.key.startswith("user:bob%20%7Bx%7D%20%C3%A9%20z")
    assert len(identity.key) == len("user:") + 128
    assert "{" not in identity.key and "}" not in identity.key
    # Distinct values never collapse into one bucket.
    assert sanitise("a b") != sanitise("a_b")


def test_configured_identity_header(settings):
    import attrs

    custom = attrs.evolve(settings, identity_header="X-Caller")
    assert identify({"x-caller": "svc-1"}, "203.0.113.9", custom).key == "user:svc-1"
    assert identify({"x-user-id": "svc-1"}, "203.0.113.9", custom).key == "ip:203.0.113.9"


def test_tenant(settings):
    identity = identify({"x-tenant": "acme corp", "x-user-id": "u"}, "203.0.113.9", settings)
    assert identity.tenant == "acme%20corp"
    assert identify({}, "203.0.113.9", settings).tenant is None


def test_ip_fallback_ignores_forwarded_for_from_untrusted_peer(settings):
    identity = identify({"x-forwarded-for": "1.2.3.4"}, "203.0.113.9", settings)
    assert identity.key == "ip:203.0.113.9"
    assert identity.client_ip == "203.0.113.9"


def test_forwarded_for_from_trusted_proxy_takes_rightmost_untrusted_hop(settings):
    headers = {"x-forwarded-for": "6.6.6.6, 198.51.100.7, 10.1.1.1"}
    identity = identify(headers, "10.0.0.2", settings)
    # 6.6.6.6 was written by the client itself and is not believed.
    assert identity.client_ip == "198.51.100.7"
    assert identity.key == "ip:198.51.100.7"


@pytest.mark.parametrize(
    "xff,peer,expected",
    [
        ("198.51.100.7", "10.0.0.2", "198.51.100.7"),
        ("10.2.2.2, 10.3.3.3", "10.0.0.2", "10.2.2.2"),  # all trusted: the leftmost
        ("garbage, 10.3.3.3", "10.0.0.2", "10.3.3.3"),  # unparseable hop: the proxy that appended it
        ("198.51.100.7:4711", "10.0.0.2", "198.51.100.7"),
        ("[2001:db8::1]:443", "fd00::1", "2001:db8::1"),
        ("198.51.100.7", "::ffff:10.0.0.2", "198.51.100.7"),  # IPv4-mapped peer
        (None, "::ffff:203.0.113.1", "203.0.113.1"),
    ],
)
def test_client_ip(settings, xff, peer, expected):
    assert client_ip(xff, peer, settings.trusted_proxies) == expected


# --- every header line, one walk ---------------------------------------------------------

from hypothesis import given, strategies as st  # noqa: E402

from proxilion.proxy.identity import IdentityConflict, forwarded_hops, resolve_client  # noqa: E402


def pairs(*lines: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in lines]


def test_every_forwarded_for_line_counts(settings):
    # The load balancer appends its own line after the one the client sent.
    identity = identify_pairs(pairs(("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.7")), "10.0.0.2", settings)
    assert identity.client_ip == "198.51.100.7"
    assert identity.forwarded_chain == ("198.51.100.7",)


def test_forwarded_chain_keeps_only_what_trusted_proxies_vouch_for(settings):
    identity = identify_pairs(pairs(("X-Forwarded-For", "6.6.6.6, 198.51.100.7"), ("X-Forwarded-For", "10.1.1.1")), "10.0.0.2", settings)
    assert identity.client_ip == "198.51.100.7"
    assert identity.forwarded_chain == ("198.51.100.7", "10.1.1.1")


@pytest.mark.parametrize(
    "lines,expected",
    [
        (["for=192.0.2.60;proto=http;by=203.0.113.43"], ["192.0.2.60"]),
        (['for="[2001:db8:cafe::17]:4711"', "For=198.51.100.7"], ['"[2001:db8:cafe::17]:4711"', "198.51.100.7"]),
        (["for=unknown, for=_hidden"], ["unknown", "_hidden"]),
        (["proto=https", "for=1.1.1.1;for=2.2.2.2"], ["", ""]),  # no for=, two for=: garbage
        (['for="1.1.1.1, for=2.2.2.2'], ['"1.1.1.1', "2.2.2.2"]),  # quotes never swallow a later element
    ],
)
def test_forwarded_hops(lines, expected):
    assert forwarded_hops(lines) == expected


def test_forwarded_header_when_chosen(settings):
    import attrs

    chosen = attrs.evolve(settings, client_ip_header="forwarded")
    headers = pairs(("Forwarded", "for=6.6.6.6"), ("Forwarded", 'for="[2001:db8::7]:443";proto=https'), ("X-Forwarded-For", "7.7.7.7"))
    identity = identify_pairs(headers, "10.0.0.2", chosen)
    assert identity.client_ip == "2001:db8::7"
    # The header not chosen is never read, and the chosen one never from an untrusted peer.
    assert identify_pairs(headers, "10.0.0.2", settings).client_ip == "7.7.7.7"
    assert identify_pairs(headers, "203.0.113.9", chosen).client_ip == "203.0.113.9"
    assert identify_pairs(pairs(("Forwarded", "for=unknown")), "10.0.0.2", chosen).client_ip == "10.0.0.2"


_ADDRESSES = st.one_of(st.sampled_from(["10.0.0.1", "10.9.9.9", "fd00::1"]), st.ip_addresses(v=4).map(str), st.text(max_size=6))


@given(client_hops=st.lists(_ADDRESSES, max_size=4), proxies=st.lists(st.sampled_from(["10.0.0.1", "10.2.3.4", "fd00::2"]), max_size=3),
       client=st.ip_addresses(v=4).filter(lambda a: not a.is_private).map(str))
def test_nothing_a_client_writes_is_believed(client_hops, proxies, client):
    """Behind trusted proxies that each append their peer, the client is the address the first proxy saw."""
    networks = load_settings({}, environ={"TRUSTED_PROXIES": "10.0.0.0/8,fd00::/8"}).trusted_proxies
    chain = [*client_hops, client, *proxies]
    # Written as lines at random places: every line counts.
    lines = [", ".join(chain[:1]), ", ".join(chain[1:])] if len(chain) > 1 else chain
    hops = [hop.strip() for line in lines for hop in line.split(",")]
    address = resolve_client(hops, "10.0.0.2", networks)
    assert address.ip == client
    assert address.chain == (client, *proxies)


@pytest.mark.parametrize(
    "provider,lines,query,expected",
    [
        ("anthropic", [("x-api-key", "K")], "", "K"),
        ("anthropic", [("Authorization", "Bearer T")], "", "T"),
        ("openai", [("x-api-key", "K")], "", None),  # not what OpenAI reads: names nobody
        ("azure", [("api-key", "K")], "", "K"),
        ("gemini", [], "alt=sse&key=K", "K"),
        ("openai", [], "key=K", None),
        ("bedrock", [], "X-Amz-Credential=AKIDEXAMPLE%2F20240101%2Fus-east-1%2Fbedrock%2Faws4_request", "AKIDEXAMPLE"),
        ("cohere", [("Authorization", "bearer  T ")], "", "T"),
    ],
)
def test_identity_comes_from_what_the_provider_reads(settings, provider, lines, query, expected):
    identity = identify_pairs(pairs(*lines), "203.0.113.9", settings, provider=provider, query=query)
    if expected is None:
        assert identity.kind == "ip"
    else:
        assert identity.key == "key:" + hashlib.sha256(expected.encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    "provider,lines,query",
    [
        ("anthropic", [("x-api-key", "K"), ("Authorization", "Bearer junk")], ""),
        ("anthropic", [("x-api-key", "K"), ("X-API-KEY", "K")], ""),
        ("anthropic", [("x-api-key", "K"), ("x-api-key", "")], ""),
        ("openai", [("Authorization", "Bearer a"), ("Authorization", "Bearer b")], ""),
        ("openai", [("Authorization", "Bearer a, Bearer b")], ""),
        ("openai", [("Authorization", "Bearer a b")], ""),
        ("openai", [("Authorization", "Bearer a"), ("x-goog-api-key", "b")], ""),
        ("gemini", [("x-goog-api-key", "a")], "key=b"),
        ("gemini", [], "key=a&key=a"),
        ("bedrock", [("Authorization", "AWS4-HMAC-SHA256 Credential=A/x, Credential=B/y, Signature=s")], ""),
        (None, [("x-user-id", "alice"), ("X-User-Id", "bob")], ""),
    ],
)
def test_ambiguous_requests_raise(settings, provider, lines, query):
    with pytest.raises(IdentityConflict) as raised:
        identify_pairs(pairs(*lines), "203.0.113.9", settings, provider=provider, query=query)
    assert "K" not in raised.value.message.replace("KEY", "")
    # The row of a request refused for another reason counts it as its IP.
    assert identify_pairs(pairs(*lines), "203.0.113.9", settings, provider=provider, query=query, strict=False).key == "ip:203.0.113.9"
