"""What each upstream example is expected to be in Proxilion's terms, and why where it is a judgement.

Read by scripts/build_external_set.py; the JSONL files it writes carry the
outcome (`expect`, `scope`, `why`) per example, so the tests need only those.
`scope` is "in" for a type Proxilion claims to detect and "out" otherwise:
out-of-scope examples stay in the set, counted apart, never silently dropped.
"""

from __future__ import annotations

import ipaddress

# gitleaks puts each GenerateSampleSecrets secret in ~25 assignment syntaxes; we take one of them,
# as a token family is found by its own shape whatever the syntax around it.
GITLEAKS_SAMPLE = '{i}_token = "{s}"'

_CREDENTIAL_SYNTAX = "generic credential syntax: measured as it is, owned by the credential-syntax work"

_GITLEAKS_PREFIXES = (
    ("age-secret-key", "age_secret_key"),
    ("anthropic-", "anthropic_api_key"),
    ("atlassian-api-token", "atlassian_token"),
    ("aws-access-token", "aws_access_key_id"),
    ("gcp-service-account", "gcp_service_account_key"),
    ("gcp-api-key", "google_api_key"),
    ("github-", "github_token"),
    ("gitlab-session-cookie", None),
    ("gitlab-", "gitlab_token"),
    ("huggingface-", "huggingface_token"),
    ("jwt-base64", "jwt"),
    ("jwt", "jwt"),
    ("mailgun-private-api-token", "mailgun_api_key"),
    ("new-relic-user-api-key", "newrelic_key"),
    ("new-relic-browser-api-token", "newrelic_key"),
    ("new-relic-insert-key", "newrelic_key"),
    ("npm-access-token", "npm_token"),
    ("openai-api-key", "openai_api_key"),
    ("private-key", "private_key"),
    ("pypi-upload-token", "pypi_token"),
    ("sendgrid-api-token", "sendgrid_api_key"),
    ("shopify-", "shopify_token"),
    ("slack-webhook-url", "slack_webhook_url"),
    ("slack-", "slack_token"),
    ("square-", "square_token"),
    ("stripe-access-token", "stripe_key"),
    ("telegram-bot-api-token", "telegram_bot_token"),
    ("twilio-api-key", "twilio_api_key"),
    ("datadog-access-token", "datadog_api_key"),
    ("discord-api-token", "discord_bot_token"),
)
# Rules for a credential written in a syntax (not a vendor's token shape): generic_secret.
_GITLEAKS_GENERIC = ("generic-api-key", "curl-auth-user", "curl-auth-header", "kubernetes-secret-yaml",
                     "hashicorp-tf-password", "nuget-config-password")


def gitleaks_rule(rule_id: str) -> tuple[str, str, str]:
    """(expected type of the rule's true positives, scope, why)."""
    if rule_id in _GITLEAKS_GENERIC:
        return "generic_secret", "in", _CREDENTIAL_SYNTAX
    for prefix, type_ in _GITLEAKS_PREFIXES:
        if rule_id.startswith(prefix):
            if type_ is None:
                break
            return type_, "in", ""
    return "none", "out", "a vendor whose token format Proxilion does not claim"


PRESIDIO_FILES = {
    "credit_card": ("credit_card", "in", ""),
    "iban": ("iban", "in", ""),
    "email": ("email", "in", ""),
    "phone": ("phone", "in", ""),
    "us_ssn": ("ssn", "in", ""),
    "us_itin": ("itin", "in", ""),
    "ip": ("ip_address", "in", ""),
    "aba_routing": ("aba_routing", "in", ""),
    "us_mbi": ("mbi", "in", ""),
    "us_npi": ("npi", "in", ""),
    "us_passport": ("passport", "in", ""),
    "url": ("none", "out", "URLs without credentials are not a type Proxilion detects"),
    "crypto": ("none", "out", "cryptocurrency addresses are not a type Proxilion detects"),
    "us_driver_license": ("none", "out", "driver's licence numbers are not a type Proxilion detects"),
    "us_bank": ("none", "out", "bank account numbers without an IBAN are not a type Proxilion detects"),
    "uk_nhs": ("none", "out", "NHS numbers are not a type Proxilion detects"),
    "mac": ("none", "out", "MAC addresses are not a type Proxilion detects"),
}

# Recognizers whose test gives every result the same base score (phonenumbers decides, not the score).
PRESIDIO_FLAT_SCORE = frozenset({"phone"})

DETECT_SECRETS_FILES = {
    "aws_key": ("aws_access_key_id", "in", ""),
    "azure_storage_key": ("azure_storage_account_key", "in", ""),
    "basic_auth": ("url_credentials", "in", ""),
    "discord": ("discord_bot_token", "in", ""),
    "github_token": ("github_token", "in", ""),
    "gitlab_token": ("gitlab_token", "in", ""),
    "ip_public": ("ip_address", "in", ""),
    "jwt": ("jwt", "in", ""),
    "keyword": ("generic_secret", "in", _CREDENTIAL_SYNTAX),
    "mailchimp_key": ("none", "out", "Mailchimp keys are not a type Proxilion detects"),
    "npm": ("npm_token", "in", ""),
    "openai": ("openai_api_key", "in", ""),
    "private_key": ("private_key", "in", ""),
    "pypi_token": ("pypi_token", "in", ""),
    "sendgrid": ("sendgrid_api_key", "in", ""),
    "slack": ("slack_token", "in", ""),
    "square_oauth": ("square_token", "in", ""),
    "stripe_key": ("stripe_key", "in", ""),
    "telegram_token": ("telegram_bot_token", "in", ""),
    "twilio": ("twilio_api_key", "in", ""),
    "artifactory": ("none", "out", "Artifactory tokens are not a type Proxilion detects"),
    "cloudant": ("none", "out", "Cloudant credentials are not a type Proxilion detects"),
    "ibm_cloud_iam": ("none", "out", "IBM Cloud keys are not a type Proxilion detects"),
    "ibm_cos_hmac": ("none", "out", "IBM COS keys are not a type Proxilion detects"),
    "softlayer": ("none", "out", "SoftLayer keys are not a type Proxilion detects"),
}

_KEYWORD_SECRET = "m{{h}o)p${e]nob(ody[finds>-_$#thisone}}"
# detect-secrets' keyword negatives that hold only for the file language they are listed under:
# "Double quotes required" (C, where '...' is a character and an unquoted value is code) and
# "Secret without quotes" (C++, Java, JavaScript, Python, where an unquoted value is code).
# A prompt carries no file language, and read as a config line each one is its value written out.
KEYWORD_LANGUAGE_NEGATIVES = frozenset(line.format(_KEYWORD_SECRET) for line in (
    "api_key = '{}';", "aws_secret_access_key = @'{}';", "db_pass[] = '{}';", "passwd = {};",
    "private_key = {};", "secret[] = {};", "password = {}", "password => {}",
))
KEYWORD_LANGUAGE_WHY = ("silent in detect-secrets only for the file language it is listed under (C: double quotes "
                        "required; C++/Java/JS/Python: an unquoted value is code); a prompt has no language")

_NOT_GLOBAL = "a private, loopback, link-local or documentation address: Proxilion claims public addresses only"
_NO_CONTEXT = "a bare number with no context word: Proxilion needs one (a checksum alone passes 1 time in 10)"
_NATIONAL_PHONE = ("a national number of another country written without +: Proxilion reads numbers without + "
                   "as North American only")

# (source, rule or file, a substring of the text, or of the span for Presidio) -> (expect, scope, why):
# the per-example judgements. First match wins.
OVERRIDES: tuple[tuple[str, str, str, str, str, str], ...] = (
    # Fake keys that fail their family's own rule: not that family (they may be nothing at all).
    ("detect-secrets", "discord", "MZ1yGvKTjE0rY0cV8i47CjAa.uRHQPq", "none", "in",
     "its first part is not a base64 numeric user id, which every Discord bot token starts with"),
    ("detect-secrets", "discord", "OTUyNED5MDk2MTMxNzc2MkEz", "none", "in",
     "its first part is not a base64 numeric user id, which every Discord bot token starts with"),
    ("detect-secrets", "discord", "MTAyOTQ4MTN5OTU5MTDwMEcxNg", "none", "in",
     "its first part is not a base64 numeric user id, which every Discord bot token starts with"),
    ("detect-secrets", "discord", "ATMyOTQ4MTN5OTU5MTDwMEcxNg", "none", "in",
     "its first part is not a base64 numeric user id, which every Discord bot token starts with"),
    ("detect-secrets", "discord", "=MTAyOTQ4MTN5OTU5MTDwMEcxN.", "none", "in",
     "its first part is not a base64 numeric user id, which every Discord bot token starts with"),
    ("gitleaks", "jwt", "eyJhbGciOieeei", "none", "in", "its header does not decode to JSON: not a JWT"),
    ("gitleaks", "age-secret-key", "AGE-SECRET-KEY-1QQQQ", "none", "in",
     "all Q (bech32 zeros): a placeholder, and its bech32 checksum fails"),
    ("gitleaks", "slack-legacy-workspace-token", "511111111-31111111111", "none", "in",
     "more than half of it is the digit 1: a made-up token (placeholder rule: mostly one character)"),
    ("detect-secrets", "basic_auth", "username:password@", "none", "in",
     "the password is the word 'password': a placeholder"),
    ("detect-secrets", "twilio", "SKxxxxxxxx", "none", "in", "a mask of x: a placeholder"),
    ("detect-secrets", "twilio", "ACxxxxxxxx", "none", "in", "a mask of x, and an account SID names an account: no secret"),
    ("detect-secrets", "gitlab_token", "glptt-Need5_T00-be-exactly-40-chars--ELse_fail", "none", "in",
     "a trigger token is SecureRandom.hex(20), 40 hex digits; this is a sentence of the test's"),
    ("detect-secrets", "npm", "npm_xxxxxxxxxxx", "none", "in", "a mask of x: a placeholder"),
    ("detect-secrets", "npm", "_authToken=${NPM_TOKEN}", "none", "in", ""),
    ("detect-secrets", "npm", "_authToken", "generic_secret", "in",
     "a legacy npm token is a UUID with no shape of its own: what makes it a credential is the name "
     "_authToken (credential syntax), in detect-secrets' negatives as much as its positives"),
    ("detect-secrets", "gitlab_token", "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", "github_token", "in",
     "a negative for detect-secrets' GitLab plugin only: it is a GitHub token with a valid CRC32"),
    ("detect-secrets", "telegram_token", "110201543:AAHdqTcvCH1vGWJxfSe1ofSAs0K5PALDsaw", "none", "in",
     "the example token of Telegram's Bot API documentation"),
    ("presidio", "iban", "440-600-5124", "phone", "in",
     "a negative for Presidio's IBAN recognizer only: the text ends in a US phone number"),
    # Presidio examples that Proxilion's documented rules leave out on purpose.
    ("presidio", "credit_card", "122000000000003", "credit_card", "out",
     "a UATP (airline) card: 15 digits from 1 are mostly epoch milliseconds and IDs, and UATP is not claimed"),
    ("presidio", "us_ssn", "078.05.1123", "ssn", "out",
     "a dotted SSN with no SSN word: dotted 9 digits are read as versions and OIDs without one (documented)"),
    ("presidio", "aba_routing", "", "aba_routing", "out", _NO_CONTEXT),
    ("presidio", "us_npi", "", "npi", "out", _NO_CONTEXT),
    ("presidio", "phone", "09-7625400", "phone", "out", _NATIONAL_PHONE),
    ("presidio", "phone", "090-1234-5678", "phone", "out", _NATIONAL_PHONE),
    ("presidio", "phone", "13812345678", "phone", "out", _NATIONAL_PHONE),
    ("presidio", "phone", "91-415-555-0132", "phone", "out", _NATIONAL_PHONE),
)


def case_override(source: str, rule: str, text: str, expect: str, scope: str, why: str) -> tuple[str, str, str]:
    for o_source, o_rule, part, o_expect, o_scope, o_why in OVERRIDES:
        if source == o_source and rule == o_rule and part in text:
            if not part and expect == "none":
                continue  # a rule about a whole file's positives leaves its negatives alone
            return o_expect, o_scope, o_why or why
    if source == "presidio" and rule == "ip" and expect == "ip_address" and not _is_global(text):
        return expect, "out", _NOT_GLOBAL
    if expect == "jwt" and text.count(".") == 1:
        return "none", scope, "two parts, no signature: a JWS has three, and header.payload authenticates nothing"
    if expect == "stripe_key" and ("sk_test_" in text or "rk_test_" in text):
        return "stripe_test_key", scope, "a Stripe test-mode key: its own, medium-severity type"
    if expect == "jwt" and "eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50Ii" in text:
        return "kubernetes_service_account_token", scope, "a Kubernetes service-account JWT: Proxilion names its kind"
    return expect, scope, why


def _is_global(span: str) -> bool:
    address = span.strip("[]").split("%")[0]
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False
