"""The built-in detector types: category, severity and compliance tags of each."""

from __future__ import annotations

import attrs


@attrs.frozen
class DetectorInfo:
    type: str
    category: str
    severity: str
    compliance: tuple[str, ...]
    description: str


def _d(type_: str, category: str, severity: str, compliance: list[str], description: str) -> DetectorInfo:
    return DetectorInfo(type_, category, severity, tuple(compliance), description)


BUILTIN = {d.type: d for d in (
    _d("credit_card", "financial", "critical", ["PCI-DSS"],
       "Payment card number: IIN range, length and Luhn check; spaced, dashed or contiguous"),
    _d("ssn", "pii", "critical", ["GLBA", "CCPA"],
       "US Social Security number, dashed/spaced (contiguous only after 'SSN'); invalid areas, groups, serials rejected"),
    _d("itin", "pii", "critical", ["GLBA"], "US Individual Taxpayer Identification Number (9xx-xx-xxxx, group 50-65, 70-88, 90-92 or 94-99)"),
    _d("aba_routing", "financial", "high", ["GLBA"],
       "ABA routing number: checksum, near 'routing', 'ABA', 'RTN', 'ACH' or 'wire'"),
    _d("iban", "financial", "high", ["GDPR", "GLBA"],
       "IBAN: country length and mod-97, spaced or not"),
    _d("swift_bic", "financial", "medium", ["GLBA"], "SWIFT/BIC code after 'SWIFT' or 'BIC'"),
    _d("ein", "financial", "medium", ["GLBA"], "US Employer Identification Number after 'EIN', 'FEIN', 'employer identification' or 'tax id'"),
    _d("passport", "pii", "high", ["GDPR", "CCPA"], "Passport number after 'passport'"),
    _d("email", "pii", "medium", ["GDPR", "CCPA"], "Email address"),
    _d("phone", "pii", "medium", ["GDPR", "CCPA"],
       "Phone number, NANP or international E.164 forms, validated with phonenumbers"),
    _d("ip_address", "pii", "low", ["GDPR"],
       "Public IPv4/IPv6 address (private, loopback, link-local, documentation ranges excluded)"),
    _d("date_of_birth", "pii", "medium", ["GDPR", "HIPAA"], "Date after 'born', 'birth', 'DOB'"),
    _d("npi", "health", "medium", ["HIPAA"], "US National Provider Identifier (Luhn with 80840 prefix) near 'NPI' or 'provider'"),
    _d("dea", "health", "high", ["HIPAA"], "US DEA registration number (checksum)"),
    _d("mbi", "health", "critical", ["HIPAA"], "US Medicare Beneficiary Identifier (format)"),
    _d("aws_access_key_id", "credential", "critical", ["SOC2", "PCI-DSS"], "AWS access key id (AKIA/ASIA...)"),
    _d("aws_secret_access_key", "credential", "critical", ["SOC2", "PCI-DSS"],
       "AWS secret access key near an access key id or an aws_secret name"),
    _d("github_token", "credential", "critical", ["SOC2"],
       "GitHub token (ghp_, gho_, ghu_, ghs_, ghr_ with a valid CRC32 checksum; github_pat_)"),
    _d("openai_api_key", "credential", "critical", ["SOC2"], "OpenAI API key (sk-, sk-proj-)"),
    _d("anthropic_api_key", "credential", "critical", ["SOC2"], "Anthropic API key (sk-ant-)"),
    _d("slack_token", "credential", "critical", ["SOC2"],
       "Slack token (xoxa-, xoxb-, xoxe-, xoxo-, xoxp-, xoxr-, xoxs-, xoxe.xoxp-, xapp-)"),
    _d("slack_webhook_url", "credential", "high", ["SOC2"], "Slack incoming webhook or workflow URL (hooks.slack.com/...)"),
    _d("stripe_key", "credential", "critical", ["SOC2", "PCI-DSS"], "Stripe live secret or restricted key (sk_live_, rk_live_, rk_prod_)"),
    _d("stripe_test_key", "credential", "medium", ["SOC2"],
       "Stripe test-mode secret or restricted key (sk_test_, rk_test_): no real money, still an account's key"),
    _d("google_api_key", "credential", "high", ["SOC2"], "Google API key (AIza...)"),
    _d("jwt", "credential", "high", ["SOC2"], "JSON Web Token whose header decodes to JSON with 'alg'"),
    _d("private_key", "credential", "critical", ["SOC2", "PCI-DSS"],
       "Private key block: PEM (RSA, EC, DSA, OPENSSH, PKCS#8, encrypted, PGP), SSH2 and PuTTY key files"),
    _d("gitlab_token", "credential", "critical", ["SOC2"],
       "GitLab token (glpat-, gldt-, glrt-, glptt-, glft-, glimt-, glagent-, glcbt-, gloas-, glsoat-, glffct-, GR1348941)"),
    _d("twilio_api_key", "credential", "high", ["SOC2"], "Twilio API key SID (SK + 32 hex)"),
    _d("twilio_auth_token", "credential", "critical", ["SOC2"], "Twilio auth token: 32 hex after 'twilio' or an account SID"),
    _d("sendgrid_api_key", "credential", "critical", ["SOC2"], "SendGrid API key (SG.xxx.yyy)"),
    _d("mailgun_api_key", "credential", "critical", ["SOC2"], "Mailgun private API key (key- + 32 hex)"),
    _d("huggingface_token", "credential", "high", ["SOC2"], "Hugging Face access token (hf_, api_org_)"),
    _d("npm_token", "credential", "critical", ["SOC2"], "npm access token (npm_ with a valid CRC32 checksum)"),
    _d("pypi_token", "credential", "critical", ["SOC2"], "PyPI or TestPyPI API token (pypi-AgEIcHlwaS5vcmc...)"),
    _d("dockerhub_token", "credential", "critical", ["SOC2"], "Docker Hub personal or organisation access token (dckr_pat_, dckr_oat_)"),
    _d("azure_storage_account_key", "credential", "critical", ["SOC2"], "Azure storage account key (AccountKey=...88 base64)"),
    _d("azure_shared_access_key", "credential", "critical", ["SOC2"],
       "Azure Service Bus / Event Hubs / IoT Hub key in a connection string (SharedAccessKey=...)"),
    _d("azure_sas_token", "credential", "high", ["SOC2"], "Azure shared access signature (sig=... with sv=/se=/sp=)"),
    _d("gcp_service_account_key", "credential", "critical", ["SOC2"],
       "Google Cloud service-account JSON key: the private_key of a \"type\": \"service_account\" document"),
    _d("datadog_api_key", "credential", "high", ["SOC2"], "Datadog API key: 32 hex after 'datadog', DD_API_KEY, DD-API-KEY"),
    _d("datadog_app_key", "credential", "high", ["SOC2"], "Datadog application key: 40 hex after 'datadog', DD_APP_KEY"),
    _d("newrelic_key", "credential", "high", ["SOC2"], "New Relic key (NRAK-, NRII-, NRIQ-, NRRA-, NRJS-, ...NRAL license key)"),
    _d("shopify_token", "credential", "critical", ["SOC2", "PCI-DSS"], "Shopify token (shpat_, shpca_, shppa_, shpss_)"),
    _d("atlassian_token", "credential", "critical", ["SOC2"], "Atlassian API token (ATATT3..., ATCTT3..., or 24 characters after jira/atlassian/confluence) or Bitbucket app password (ATBB...)"),
    _d("discord_bot_token", "credential", "critical", ["SOC2"], "Discord bot token (base64 numeric user id.timestamp.hmac)"),
    _d("discord_webhook_url", "credential", "medium", ["SOC2"], "Discord webhook URL (discord.com/api/webhooks/id/token)"),
    _d("telegram_bot_token", "credential", "high", ["SOC2"], "Telegram bot token (bot id:AA + 33 characters)"),
    _d("square_token", "credential", "critical", ["SOC2", "PCI-DSS"], "Square access token or OAuth secret (sq0atp-, sq0csp-, EAAA...)"),
    _d("braintree_access_token", "credential", "critical", ["SOC2", "PCI-DSS"],
       "PayPal/Braintree production access token (access_token$production$...)"),
    _d("braintree_sandbox_token", "credential", "medium", ["SOC2"],
       "PayPal/Braintree sandbox access token (access_token$sandbox$...)"),
    _d("age_secret_key", "credential", "critical", ["SOC2"], "age encryption identity (AGE-SECRET-KEY-1... with a valid bech32 checksum)"),
    _d("kubernetes_service_account_token", "credential", "critical", ["SOC2"],
       "Kubernetes service-account JWT (iss kubernetes/serviceaccount, or a kubernetes.io claim)"),
    _d("database_url", "credential", "critical", ["SOC2"], "Password in a database URL (postgres://user:pw@...)"),
    _d("url_credentials", "credential", "high", ["SOC2"], "Password in any other URL (https://user:pw@...)"),
    _d("generic_secret", "credential", "high", ["SOC2"],
       "High-entropy value a name like password, secret, token or api_key gives, in any syntax: assignments, YAML, XML, typed declarations, command-line options, .netrc, .pgpass"),
)}

CATEGORIES = frozenset({"pii", "financial", "health", "credential"})
