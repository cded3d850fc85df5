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


def _d(type_, category, severity, compliance, description):
    return DetectorInfo(type_, category, severity, tuple(compliance), description)


BUILTIN = {d.type: d for d in (
    _d("credit_card", "financial", "critical", ["PCI-DSS"],
       "Payment card number: IIN range, length and Luhn check; spaced, dashed or contiguous"),
    _d("ssn", "pii", "critical", ["GLBA", "CCPA"],
       "US Social Security number, dashed/spaced (contiguous only after 'SSN'); invalid areas, groups, serials rejected"),
    _d("itin", "pii", "critical", ["GLBA"], "US Individual Taxpayer Identification Number (9xx-[5-9]x-xxxx)"),
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
    _d("github_token", "credential", "critical", ["SOC2"], "GitHub token (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_)"),
    _d("openai_api_key", "credential", "critical", ["SOC2"], "OpenAI API key (sk-, sk-proj-)"),
    _d("anthropic_api_key", "credential", "critical", ["SOC2"], "Anthropic API key (sk-ant-)"),
    _d("slack_token", "credential", "critical", ["SOC2"], "Slack token (xoxa-, xoxb-, xoxp-, xoxr-, xoxs-)"),
    _d("stripe_key", "credential", "critical", ["SOC2", "PCI-DSS"], "Stripe live secret or restricted key"),
    _d("google_api_key", "credential", "high", ["SOC2"], "Google API key (AIza...)"),
    _d("jwt", "credential", "high", ["SOC2"], "JSON Web Token whose header decodes to JSON with 'alg'"),
    _d("private_key", "credential", "critical", ["SOC2", "PCI-DSS"],
       "PEM private key block (RSA, EC, DSA, OPENSSH, PKCS#8, encrypted, PGP)"),
    _d("database_url", "credential", "critical", ["SOC2"], "Password in a database URL (postgres://user:pw@...)"),
    _d("url_credentials", "credential", "high", ["SOC2"], "Password in any other URL (https://user:pw@...)"),
    _d("generic_secret", "credential", "high", ["SOC2"],
       "High-entropy value assigned to a name like password, secret, token, api_key"),
)}

CATEGORIES = frozenset({"pii", "financial", "health", "credential"})
