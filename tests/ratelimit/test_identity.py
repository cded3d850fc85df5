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
