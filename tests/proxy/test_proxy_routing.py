"""Routing: which requests reach which upstream, and that nothing else is reachable."""

from __future__ import annotations

import pytest

from proxilion.proxy.routing import Route, RouteError, Router, provider_for_host

FAKE = "http://127.0.0.1:9000"


@pytest.fixture
def router() -> Router:
    return Router({})


@pytest.mark.parametrize(
    ("alias", "base"),
    [
        ("openai", "https://api.openai.com"),
        ("anthropic", "https://api.anthropic.com"),
        ("gemini", "https://generativelanguage.googleapis.com"),
        ("cohere", "https://api.cohere.com"),
        ("bedrock", "https://bedrock-runtime.us-east-1.amazonaws.com"),
        ("OpenAI", "https://api.openai.com"),
    ],
)
def test_alias_routes_to_the_provider_default_host(router: Router, alias: str, base: str) -> None:
    route = router.route(f"/proxy/{alias}/v1/chat/completions".encode(), b"proxy.internal:8787")
    assert route == Route(alias.lower(), base, "/v1/chat/completions", "")
    assert route.url == (base + "/v1/chat/completions").encode()


@pytest.mark.parametrize(
    ("host", "provider"),
    [
        ("api.openai.com", "openai"),
        ("api.anthropic.com", "anthropic"),
        ("generativelanguage.googleapis.com", "gemini"),
        ("api.cohere.com", "cohere"),
        ("api.cohere.ai", "cohere"),
        ("my-resource.openai.azure.com", "azure"),
        ("bedrock-runtime.us-east-1.amazonaws.com", "bedrock"),
        ("bedrock-runtime.eu-west-3.amazonaws.com", "bedrock"),
        ("bedrock-runtime-fips.us-gov-west-1.amazonaws.com", "bedrock"),
        ("API.OpenAI.com.", "openai"),
    ],
)
def test_host_name_in_the_path_routes_to_that_host(router: Router, host: str, provider: str) -> None:
    route = router.route(f"/proxy/{host}/some/path?a=1".encode(), None)
    assert route.provider == provider
    assert route.base == "https://" + host.lower().rstrip(".")
    assert (route.path, route.query) == ("/some/path", "a=1")


@pytest.mark.parametrize(
    "host",
    [
        "evil.com",
        "api.openai.com.evil.com",
        "openai.azure.com",
        "a.b.openai.azure.com",
        "x.openai.azure.com.evil.com",
        "bedrock-runtime.amazonaws.com",
        "bedrock.us-east-1.amazonaws.com",
        "bedrock-runtime.us-east-1.amazonaws.com.evil.com",
        "127.0.0.1",
        "localhost",
        "api.openai.com:443",
    ],
)
def test_unknown_host_in_the_path_is_403(router: Router, host: str) -> None:
    with pytest.raises(RouteError) as caught:
        router.route(f"/proxy/{host}/v1/x".encode(), b"api.openai.com")
    assert caught.value.status == 403
    assert caught.value.code == "unknown_upstream"


@pytest.mark.parametrize(
    ("host", "provider"),
    [
        (b"api.openai.com", "openai"),
        (b"api.anthropic.com:443", "anthropic"),
        (b"res1.openai.azure.com", "azure"),
        (b"bedrock-runtime.ap-southeast-2.amazonaws.com", "bedrock"),
        (b"GENERATIVELANGUAGE.googleapis.com", "gemini"),
    ],
)
def test_transparent_mode_routes_by_host_header(router: Router, host: bytes, provider: str) -> None:
    route = router.route(b"/v1/messages?beta=true", host)
    assert route.provider == provider
    assert route.base == "https://" + host.decode().lower().split(":")[0]
    assert (route.path, route.query) == ("/v1/messages", "beta=true")


@pytest.mark.parametrize("host", [b"evil.com", b"proxy.internal:8787", b"[::1]:8787", b"127.0.0.1", None, b""])
def test_transparent_mode_refuses_other_hosts(router: Router, host: bytes | None) -> None:
    with pytest.raises(RouteError) as caught:
        router.route(b"/v1/chat/completions", host)
    assert (caught.value.status, caught.value.code) == (403, "unknown_upstream")


@pytest.mark.parametrize("target", [b".evil.com/v1", b"@evil.com/v1", b"*", b":8080/v1", b"evil.com/v1"])
def test_transparent_target_must_be_a_path(router: Router, target: bytes) -> None:
    # Appended to "https://api.openai.com" these would name another host.
    with pytest.raises(RouteError) as caught:
        router.route(target, b"api.openai.com")
    assert caught.value.status == 400


def test_absolute_form_uri_routes_by_its_host(router: Router) -> None:
    route = router.route(b"http://api.anthropic.com/v1/messages?x=1", b"ignored.example")
    assert route == Route("anthropic", "https://api.anthropic.com", "/v1/messages", "x=1")
    assert router.route(b"https://api.openai.com", None).path == "/"


@pytest.mark.parametrize("uri", [b"http://evil.com/v1", b"https://api.openai.com.evil.com/v1", b"http:///v1"])
def test_absolute_form_uri_to_other_hosts_is_403(router: Router, uri: bytes) -> None:
    with pytest.raises(RouteError) as caught:
        router.route(uri, b"api.openai.com")
    assert caught.value.status == 403


@pytest.mark.parametrize(
    "query",
    [
        "key=AIzaSyA-secret&alt=sse",
        "api-version=2024-06-01",
        "a=1&a=2&b=%2F%3F&empty=",
        "flag",
    ],
)
def test_query_is_preserved_byte_for_byte(query: str) -> None:
    router = Router({"gemini": FAKE})
    route = router.route(f"/proxy/gemini/v1beta/models/g:streamGenerateContent?{query}".encode(), None)
    assert route.query == query
    assert route.url == f"{FAKE}/v1beta/models/g:streamGenerateContent?{query}".encode()


def test_overrides_replace_the_base_for_alias_host_and_transparent_routes() -> None:
    router = Router({"openai": FAKE, "azure": FAKE + "/prefix"})
    assert router.route(b"/proxy/openai/v1/models", None).url == b"http://127.0.0.1:9000/v1/models"
    assert router.route(b"/proxy/api.openai.com/v1/models", None).base == FAKE
    assert router.route(b"/v1/models", b"api.openai.com").base == FAKE
    azure = router.route(b"/proxy/r.openai.azure.com/openai/deployments/d/chat/completions?api-version=1", None)
    assert azure.url == b"http://127.0.0.1:9000/prefix/openai/deployments/d/chat/completions?api-version=1"
    # Providers without an override still go to their real host.
    assert router.route(b"/proxy/anthropic/v1/messages", None).base == "https://api.anthropic.com"


def test_azure_alias_needs_a_resource_host_or_an_override() -> None:
    with pytest.raises(RouteError) as caught:
        Router({}).route(b"/proxy/azure/openai/deployments/d/chat/completions", None)
    assert caught.value.status == 403
    assert "openai.azure.com" in caught.value.message
    assert Router({"azure": FAKE}).route(b"/proxy/azure/openai/x", None).base == FAKE


def test_bare_proxy_prefix_names_no_provider(router: Router) -> None:
    with pytest.raises(RouteError) as caught:
        router.route(b"/proxy/", None)
    assert caught.value.status == 404
    assert router.route(b"/proxy/openai", None).path == "/"
    assert router.route(b"/proxy/openai?x=1", None) == Route("openai", "https://api.openai.com", "/", "x=1")


def test_non_ascii_uri_is_400(router: Router) -> None:
    with pytest.raises(RouteError) as caught:
        router.route("/proxy/openai/v1/é".encode(), None)
    assert caught.value.status == 400


def test_provider_for_host() -> None:
    assert provider_for_host("api.cohere.ai") == "cohere"
    assert provider_for_host("x-1.openai.azure.com") == "azure"
    assert provider_for_host("-x.openai.azure.com") is None
    assert provider_for_host("example.com") is None


def test_logged_paths_keep_only_the_values_of_known_harmless_query_parameters():
    from proxilion.proxy.safe_target import safe_target

    assert safe_target("/v1/x", "") == "/v1/x"
    assert safe_target("/v1beta/m:streamGenerateContent", "alt=sse&key=AIzaSecret") == "/v1beta/m:streamGenerateContent?alt=sse&key=REDACTED"
    assert safe_target("/d/chat", "api-version=2024-06-01&k=sk-proj-secret&flag") == "/d/chat?api-version=2024-06-01&k=REDACTED&flag"
