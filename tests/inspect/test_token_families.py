"""Vendor token families: generated values (checksums computed in valuegen) are found with their
type and exact span; wrong checksums, placeholders and near misses are not that family."""

from __future__ import annotations

import base64
import json
import random

import pytest

import valuegen as g
from proxilion.inspect.catalog import BUILTIN
from proxilion.inspect.policy import load_policy
from proxilion.inspect.scanner import Scanner

SCANNER = Scanner()
N = 60


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _types(text: str) -> list[tuple[str, str]]:
    return [(h.type, text[h.start:h.end]) for h in SCANNER.scan(text)]


def _found(text: str, value: str, kind: str) -> bool:
    return (kind, value) in _types(text)


FAMILIES = {
    "github_token": (g.github_token, "export GITHUB_TOKEN={}"),
    "gitlab_token": (g.gitlab_token, "git push with {} please"),
    "slack_token": (g.slack_token_any, "SLACK={}"),
    "slack_webhook_url": (lambda rng: g.slack_webhook(rng)[len("https://"):], "post to https://{} now"),
    "stripe_test_key": (g.stripe_test_key, "stripe.api_key = '{}'"),
    "twilio_api_key": (g.twilio_api_key, "api key sid {} in use"),
    "sendgrid_api_key": (g.sendgrid_key, "SENDGRID={}"),
    "mailgun_api_key": (g.mailgun_key, "mailgun {} ok"),
    "huggingface_token": (g.huggingface_token, "huggingface-cli login --token {}"),
    "npm_token": (g.npm_token, "//registry.npmjs.org/:_authToken={}"),
    "pypi_token": (g.pypi_token, "twine upload -p {} dist/*"),
    "dockerhub_token": (g.dockerhub_token, "echo {} | docker login -u me --password-stdin"),
    "azure_storage_account_key": (g.azure_storage_key,
                                  "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={};EndpointSuffix=core.windows.net"),
    "newrelic_key": (g.newrelic_key, "NEW_RELIC_API_KEY={}"),
    "shopify_token": (g.shopify_token, "X-Shopify-Access-Token: {}"),
    "atlassian_token": (g.atlassian_token, "jira token {} here"),
    "square_token": (g.square_token, "SQUARE_ACCESS_TOKEN={}"),
    "age_secret_key": (g.age_secret_key, "# created: 2024-01-01\n{}\n"),
    "discord_bot_token": (g.discord_bot_token, "DISCORD_BOT_TOKEN={}"),
    "discord_webhook_url": (lambda rng: g.discord_webhook(rng)[len("https://"):], "curl https://{}"),
    "telegram_bot_token": (g.telegram_bot_token, "TELEGRAM_BOT_TOKEN={}"),
    "braintree_access_token": (g.braintree_token, "BRAINTREE_TOKEN={}"),
    "kubernetes_service_account_token": (g.kubernetes_sa_token, "Authorization: Bearer {}"),
}


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_family_values_are_found_with_their_type(kind):
    make, template = FAMILIES[kind]
    rng = random.Random(kind)
    for _ in range(N):
        value = make(rng)
        text = template.format(value)
        assert _found(text, value, kind), (kind, text, _types(text))


def test_every_family_is_in_the_catalog_and_blocked_or_alerted_by_the_shipped_policy():
    policy = load_policy(None)
    for kind in [*FAMILIES, "twilio_auth_token", "datadog_api_key", "datadog_app_key", "azure_shared_access_key",
                 "azure_sas_token", "gcp_service_account_key", "braintree_sandbox_token", "stripe_key"]:
        info = BUILTIN[kind]
        assert info.category == "credential" and info.description
        actions = {r.action for r in policy.rules_for("request", "openai", "/v1/chat/completions", None)
                   if r.selects(kind, info.category, info.severity)}
        assert actions & {"block", "alert"}, kind


# --- checksums: a wrong one is not the family ------------------------------------------------------
def _break_last(value: str) -> str:
    return value[:-1] + ("A" if value[-1] != "A" else "B")


@pytest.mark.parametrize("make", [g.github_token, g.npm_token])
def test_a_wrong_crc32_is_not_the_family(make):
    rng = random.Random(5)
    for _ in range(N):
        value = make(rng)
        if value.startswith("github_pat_"):
            continue
        text = f"token {_break_last(value)} here"
        assert all(t not in ("github_token", "npm_token") for t, _ in _types(text)), text


def test_a_checksummed_token_assigned_to_a_secret_name_is_still_a_generic_secret_when_its_checksum_fails():
    body = "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0"
    value = "ghp_" + body + "ZZZZZZ"
    assert _types(f"GITHUB_TOKEN={value}") == [("generic_secret", value)]


def test_age_key_with_a_wrong_bech32_checksum_is_not_found():
    value = g.age_secret_key(random.Random(1))
    swapped = value[:-2] + value[-1] + value[-2] if value[-1] != value[-2] else _break_last(value)
    assert not any(t == "age_secret_key" for t, _ in _types(swapped))


def test_a_sequential_body_is_a_placeholder_even_with_a_correct_checksum():
    body = "0123456789" * 3
    assert _types(f"token ghp_{body}{g.crc32_base62(body)} ok") == []


def test_the_shipped_policy_alerts_on_test_keys_and_blocks_live_ones():
    from proxilion.inspect.inspector import Inspector
    rng = random.Random(11)
    inspector = Inspector(load_policy(None))

    def action(value: str) -> str:
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": f"key {value}"}]}).encode()
        return inspector.inspect_request("openai", "/v1/chat/completions", body).action

    assert action(g.stripe_test_key(rng)) == "alert"
    assert action(g.stripe_key(rng)) == "block"
    assert action(g.gitlab_token(rng)) == "block"


# --- context families ---------------------------------------------------------------------------------
def test_twilio_auth_token_needs_twilio_context():
    rng = random.Random(2)
    token = g._hex(rng, 32)
    sid = "AC" + g._hex(rng, 32)
    assert _found(f"TWILIO_AUTH_TOKEN: {token}", token, "twilio_auth_token")
    assert _found(f'client = Client("{sid}", "{token}")', token, "twilio_auth_token")
    assert _types(f"md5 {token} of the upload") == []


def test_datadog_keys_need_datadog_context():
    rng = random.Random(3)
    api, app = g._hex(rng, 32), g._hex(rng, 40)
    assert _found(f"DD_API_KEY={api}", api, "datadog_api_key")
    assert _found(f'-H "DD-APPLICATION-KEY: {app}"', app, "datadog_app_key")
    assert _found(f"datadog:\n  api_key: {api}\n  app_key: {app}", app, "datadog_app_key")
    assert _types(f"commit {app} and etag {api}") == []


def test_discord_bot_token_needs_a_numeric_id():
    """The id part, base64 of 17-20 digits, is what no look-alike has: no context word is needed
    (detect-secrets' examples are bare tokens)."""
    rng = random.Random(4)
    token = g.discord_bot_token(rng)
    assert _types(f"see {token} in the log") == [("discord_bot_token", token)]
    not_an_id = f"{_b64('hello world, folks!').rstrip('=')}.{token.split('.', 1)[1]}"
    assert not any(t == "discord_bot_token" for t, _ in _types(f"discord bot {not_an_id}"))


def test_azure_shared_access_key_and_sas():
    rng = random.Random(6)
    key = base64.b64encode(rng.randbytes(32)).decode()
    text = f"Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={key}"
    assert _found(text, key, "azure_shared_access_key")
    sig = base64.b64encode(rng.randbytes(32)).decode().replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    url = f"https://acme.blob.core.windows.net/c/f.txt?sv=2022-11-02&ss=b&srt=o&sp=r&se=2025-01-01T00:00:00Z&sig={sig}"
    # Percent escapes make the decoding pass report the whole URL, which holds the signature.
    ((kind, span),) = _types(f"download {url} now")
    assert kind == "azure_sas_token" and span.endswith(sig)
    plain = sig.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")
    assert ("azure_sas_token", plain) in _types(f"sv=2022-11-02&se=2025-01-01&sig={plain} ok")
    assert _types(f"see https://example.com/x?page=2&sig={g._hex(rng, 44)} ok") == []


def test_gcp_service_account_json():
    rng = random.Random(7)
    pem = "-----BEGIN PRIVATE KEY-----\n" + base64.b64encode(rng.randbytes(120)).decode() + "\n-----END PRIVATE KEY-----\n"
    doc = json.dumps({"type": "service_account", "project_id": "acme", "private_key_id": g._hex(rng, 40),
                      "private_key": pem, "client_email": "ci@acme.iam.gserviceaccount.com"}, indent=2)
    hits = _types(f"here is our key file:\n{doc}")
    assert ("gcp_service_account_key", json.dumps(pem)[1:-1]) in hits, hits
    nested = json.dumps({"content": doc})  # the document inside a JSON string
    assert any(t == "gcp_service_account_key" for t, _ in _types(nested))


def test_kubernetes_jwt_is_a_subtype_and_other_jwts_stay_jwt():
    rng = random.Random(8)
    assert _types(f"token {g.jwt(rng)} ok")[0][0] == "jwt"


@pytest.mark.parametrize("armour", [
    "PuTTY-User-Key-File-2: ssh-rsa\nEncryption: none\nComment: rsa-key-20240101\nPublic-Lines: 2\n"
    "AAAAB3NzaC1yc2EAAAADAQABAAABAQC\nAAAAB3NzaC1yc2EAAAADAQABAAABAQC\nPrivate-Lines: 2\n"
    "AAABAQCtaB3dE5fG7hJ9kL1mN2pQ4rS6\nAAABAQCtaB3dE5fG7hJ9kL1mN2pQ4rS7\nPrivate-MAC: 9a8b7c6d5e4f30211203",
    "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: k\nPublic-Lines: 1\nAAAAC3NzaC1lZDI1NTE5\n"
    "Private-Lines: 1\nAAAAIKq1b2c3d4e5f6g7h8\nPrivate-MAC: 0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\nComment: \"k\"\nP2/56wAAA+4AAAA3aWYtbW9kbntzaWdue3JzYS1wa2NzMS1zaGExfS\n"
    "---- END SSH2 ENCRYPTED PRIVATE KEY ----",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----",
    "-----BEGIN DSA PRIVATE KEY-----\nMIIBuwIBAAKBgQD\n-----END DSA PRIVATE KEY-----",
    "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBk\n-----END EC PRIVATE KEY-----",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBGXk\n-----END PGP PRIVATE KEY BLOCK-----",
])
def test_private_keys_in_every_armour(armour):
    assert _types(f"key:\n{armour}\nthanks") == [("private_key", armour)]


# --- not secrets, or not that family ---------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "pk_live_51H8zqLKj2mN4pQ6rS8tU0vW",  # Stripe publishable keys are public
    "pk_test_TYooMQauvdEDq54NiTphI7jx",
    "AC" + "0123456789abcdef" * 2,  # an account SID alone is an identifier
    "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "glpat-xxxxxxxxxxxxxxxxxxxx",
    "glpat-<your-token-here>",
    "xoxb-0000000000-0000000000-xxxxxxxxxxxxxxxxxxxxxxxx",
    "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "sk_live_xxxxxxxxxxxxxxxxxxxxxxxx",
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",  # Stripe's docs key
    "SG.xxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH",
    "npm_000000000000000000000000000000000000",
    "dckr_pat_YOUR_PERSONAL_ACCESS_TOKEN",
    "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
    "shpat_00000000000000000000000000000000",
    "key-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AKIAXXXXXXXXXXXXXXXX",
    "123456789:AAxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "access_token$production$xxxxxxxxxxxxxxxx$00000000000000000000000000000000",
    "the keyword key-value store",
    "SG.Tokyo and NRAL notes",
])
def test_placeholders_and_public_values_are_not_findings(text):
    assert _types(f"config: {text} ok") == [], text


def test_stripe_test_keys_are_a_lower_severity_type_than_live_keys():
    rng = random.Random(9)
    live, test = g.stripe_key(rng), g.stripe_test_key(rng)
    assert _types(f"{live} and {test}") == [("stripe_key", live), ("stripe_test_key", test)]
    assert BUILTIN["stripe_test_key"].severity == "medium" and BUILTIN["stripe_key"].severity == "critical"


def test_braintree_sandbox_is_its_own_lower_type():
    value = "access_token$sandbox$9xk2mqv8t4bz7w1c$" + g._hex(random.Random(10), 32)
    assert _types(f"BT={value}") == [("braintree_sandbox_token", value)]


def test_keys_inside_long_runs_are_found_through_windows():
    rng = random.Random(12)
    token, npm = g.github_token(rng), g.npm_token(rng)
    text = "A" * 5000 + "." + token + "." + "b" * 3000 + "=" + npm + "=" + "c" * 3000
    assert [t for t, _ in _types(text)] == ["github_token", "npm_token"]


def test_many_headers_without_an_end_cost_one_search():
    import time
    started = time.process_time()
    SCANNER.scan('"type": "service_account" ' * 20000 + "PuTTY-User-Key-File-2: x\n" * 5000)
    assert time.process_time() - started < 1.0
