"""Placeholders are not findings: each rule of proxilion/inspect/placeholders.py, for generic secrets
and for vendor token families, next to the real values the same rule must let through."""

from __future__ import annotations

import random

import pytest

import valuegen as g
from proxilion.inspect.placeholders import placeholder_reason, token_placeholder_reason
from proxilion.inspect.scanner import Scanner

SCANNER = Scanner()


@pytest.mark.parametrize("value,reason", [
    ("AKIAIOSFODNN7EXAMPLE", "a vendor's documented example"),
    ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "a vendor's documented example"),
    ("sk_test_4eC39HqLyjWDarjtT1zdp7dc", "a vendor's documented example"),
    ("xxxxxxxxxxxx", "masked or elided"),
    ("XXXXXXXXXXXX", "masked or elided"),
    ("************", "masked or elided"),
    ("############", "masked or elided"),
    ("sk-proj-****abcd", "masked or elided"),
    ("sk-...", "masked or elided"),
    ("000000000000", "two characters or fewer"),
    ("............", "masked or elided"),
    ("<your-api-key>", "template syntax"),
    ("<API_KEY>", "template syntax"),
    ("${DB_PASSWORD}", "template syntax"),
    ("{{ vault_token }}", "template syntax"),
    ("{{.Values.secret}}", "template syntax"),
    ("%s", "template syntax"),
    ("%(password)s", "template syntax"),
    ("$API_TOKEN", "template syntax"),
    ("$(cat /run/secrets/token)", "template syntax"),
    ("YOUR_API_KEY", "placeholder wording"),
    ("changeme", "a word"),
    ("change_me_please", "placeholder wording"),
    ("RANDOMSTRINGHERE", "placeholder wording"),
    ("INSERT_KEY_HERE", "placeholder wording"),
    ("MY_SECRET_TOKEN", "upper-case words"),
    ("REPLACE-WITH-TOKEN", "placeholder wording"),
    ("dummy-password-1", "placeholder wording"),
    ("aaaaaaa1Q9", "mostly one repeated character"),
    ("abcdefgh1234", "mostly a sequential alphabet"),
    ("qwe9876543210", "mostly a sequential alphabet"),
])
def test_each_rule_names_its_placeholders(value, reason):
    assert placeholder_reason(value) == reason


@pytest.mark.parametrize("value", [
    "Xk9]mq2Lp7zQ", "hunter2-Xk9#mQ2v", "S3cr3t!Pa55w0rd", "Tr0ub4dor&3xyz", "aB3dE5fG7hJ9kL1m",
    "P4ss.w0rd.2024", "Summer123456!", "django-insecure-8f$k2x!q9z@w3e",
])
def test_real_looking_values_are_not_placeholders(value):
    assert placeholder_reason(value) is None


def test_random_token_bodies_are_not_placeholders():
    rng = random.Random(1)
    for _ in range(2000):
        token = g.github_token(rng)
        body = token.split("_", 1)[1] if not token.startswith("github_pat_") else token[11:]
        assert token_placeholder_reason(token, body) is None, token
        hex_key = g._hex(rng, 32)
        assert token_placeholder_reason(hex_key, hex_key) is None, hex_key


@pytest.mark.parametrize("line", [
    "password=changeme",
    "api_key=<your-key>",
    "token: ${TOKEN}",
    "password: ********",
    "secret=xxxxxxxxxxxx",
    'api_key = "YOUR_API_KEY"',
    'api_key = "INSERT_KEY_HERE"',
    'secret_key: "RANDOMSTRINGHERE"',
    "password: '{{ db_password }}'",
    'password = "%s"',
    "auth_token=abcdefghijklmnop1",
    "client_secret=1234567890abcdef",
    "password=00000000#",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
    "db: postgres://app:${DB_PASSWORD}@db.internal/app",
    "db: postgres://app:<password>@db.internal/app",
])
def test_placeholder_assignments_are_not_findings(line):
    assert SCANNER.scan(f"config:\n{line}\n") == [], line


@pytest.mark.parametrize("token", [
    "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    "ghp_" + "a" * 35 + "1",
    "github_pat_11AAAAAAA0AAAAAAAAAAAA_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1",
    "sk_live_" + "0" * 24,
    "sk_live_1234567890abcdefghijklmn",
    "glpat-XXXXXXXXXXXXXXXXXXXX",
    "xoxb-your-bot-token-here-123",
    "AKIAAAAAAAAAAAAAAAA2",
    "AKIAI44QH8DHBEXAMPLE",
    "SK" + "0" * 32,
    "npm_" + "x" * 36,
    "hf_" + "x" * 34,
    "dckr_pat_" + "*" * 27,
    "shpat_" + "0123456789abcdef" * 2,
])
def test_placeholder_tokens_are_not_findings(token):
    assert SCANNER.scan(f"use {token} here") == [], token
