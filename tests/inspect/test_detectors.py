"""Each detector: generated valid values are found exactly; look-alikes are not."""

import random

import pytest

import valuegen as g
from proxilion.inspect.scanner import Scanner

SCANNER = Scanner()
N = 150

PLANTED = {
    "credit_card": (g.card, "Please charge {} for the order."),
    "ssn": (g.ssn, "Employee SSN is {} per HR."),
    "aba_routing": (g.aba, "Wire to routing number {} today."),
    "iban": (g.iban, "Pay into IBAN {} please."),
    "npi": (g.npi, "Dr. Lee, NPI {}, signed it."),
    "dea": (g.dea, "Prescriber DEA {} on file."),
    "mbi": (g.mbi, "Medicare id {} for the claim."),
    "email": (g.email, "Write to {} soon."),
    "phone": (g.phone, "Reach me at {} tomorrow."),
    "ip_address": (g.public_ip, "Traffic came from {} last night."),
    "aws_access_key_id": (g.aws_key_id, "key id {} in the config"),
    "github_token": (g.github_token, "token {} leaked"),
    "openai_api_key": (g.openai_key, "use {} for the client"),
    "anthropic_api_key": (g.anthropic_key, "use {} for the client"),
    "slack_token": (g.slack_token, "bot token {} here"),
    "stripe_key": (g.stripe_key, "stripe {} live"),
    "google_api_key": (g.google_key, "maps key {} there"),
    "jwt": (g.jwt, "Authorization header carries {} ok"),
    "private_key": (g.private_key, "here is the key:\n{}\nthanks"),
}


def _found(text: str, value: str, kind: str) -> bool:
    return any(h.type == kind and text[h.start:h.end] == value for h in SCANNER.scan(text))


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_generated_values_are_found(kind):
    make, template = PLANTED[kind]
    rng = random.Random(kind)
    for _ in range(N):
        value = make(rng)
        text = template.format(value)
        assert _found(text, value, kind), (kind, text)


@pytest.mark.parametrize("name", sorted(g.LOOKALIKES))
def test_lookalikes_do_not_fire(name):
    rng = random.Random(name)
    for _ in range(N):
        text = f"Note: {g.LOOKALIKES[name](rng)} is in the ticket."
        assert SCANNER.scan(text) == [], text


def test_aws_secret_needs_context():
    rng = random.Random(1)
    secret = g.aws_secret(rng)
    assert _found(f"aws_secret_access_key = {secret}", secret, "aws_secret_access_key")
    assert _found(f"{g.aws_key_id(rng)} / {secret}", secret, "aws_secret_access_key")
    assert SCANNER.scan(f"checksum {secret} of the file") == []


def test_database_urls_and_assignments():
    rng = random.Random(2)
    for _ in range(50):
        url, password = g.database_password(rng)
        text = f"connect with {url} then"
        hits = SCANNER.scan(text)
        assert [(h.type, text[h.start:h.end]) for h in hits] == [("database_url", password)]
        line, value = g.assigned_secret(rng)
        text = f"config:\n{line}\n"
        assert any(h.type == "generic_secret" and text[h.start:h.end] == value for h in SCANNER.scan(text)), line


def test_https_userinfo_is_url_credentials():
    hits = SCANNER.scan("fetch https://bob:Xy7pQ2mR9z@example.com/x")
    assert [h.type for h in hits] == ["url_credentials"]


@pytest.mark.parametrize("text,kind", [
    ("SWIFT code DEUTDEFF500 for the transfer", "swift_bic"),
    ("BIC: NWBKGB2L", "swift_bic"),
    ("EIN 12-3456789 on the W-9", "ein"),
    ("passport number C12345678", "passport"),
    ("passport no. 123456789", "passport"),
    ("DOB: 03/14/1985", "date_of_birth"),
    ("born on March 3rd, 1985 in Ohio", "date_of_birth"),
    ("date of birth 1985-03-14", "date_of_birth"),
    ("SSN 123456780", "ssn"),
    ("ITIN 912-78-1234", "itin"),
    ("call 4155552671 tonight", "phone"),
])
def test_context_detectors(text, kind):
    assert [h.type for h in SCANNER.scan(text)] == [kind]


@pytest.mark.parametrize("text", [
    "The SWIFT language has BOFAUS3N-like tokens",  # no context word right before? still a code
    "invoice 12-3456789 due",
    "order C12345678 shipped",
    "order 123456789 shipped",
    "meeting on 03/14/1985 about budgets",
    "released 2019-05-01, see release notes",
    "call me at extension 1234",
    "the public key ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC",
    "max_tokens: 4096000000",
    "pip install scikit-learn sk-learn",
    "import boto3; s3 = boto3.client('s3')  # EKS cluster",
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
    "user@localhost and icon@2x.png",
])
def test_no_false_positives(text):
    hits = SCANNER.scan(text)
    assert [h.type for h in hits if h.type != "swift_bic"] == [], text


def test_swift_needs_context():
    assert SCANNER.scan("codes like DEUTDEFF appear") == []


def test_spans_never_overlap_and_are_sorted():
    rng = random.Random(3)
    text = " ".join(f"{g.card(rng)} {g.email(rng)} {g.phone(rng)} {g.ssn(rng)}" for _ in range(20))
    hits = SCANNER.scan(text)
    assert all(a.end <= b.start for a, b in zip(hits, hits[1:]))


def test_non_ascii_text_keeps_offsets():
    text = "Zoë’s card — 4111 1111 1111 1111 — and émilie@exämple.com, jean@example.fr"
    hits = SCANNER.scan(text)
    assert [text[h.start:h.end] for h in hits] == ["4111 1111 1111 1111", "jean@example.fr"]


# --- generic_secret: code on the right-hand side is not a secret --------------------------------
@pytest.mark.parametrize("text", [
    'secret = os.getenv("APP_SECRET")',
    'token = request.headers.get("Authorization")',
    "self.token = tokenizer.encode(text)",
    "csrf_token = generate_csrf()",
    "SECRET_KEY = settings.SECRET_KEY",
    "secret_key=settings.SECRET_KEY",
    'password = document.getElementById("password").value',
    "token = create_access_token(identity=user.id)",
    "token: create_access_token(identity=user.id)",
    "token = next(token_iterator)",
    'api_key = os.environ["API_KEY"]',
    "auth_token = self._token_cache[key]",
    "secret_key = secrets.token_hex(32)",
    "token = base64.b64encode(os.urandom(32))",
    'token := os.Getenv("GITHUB_TOKEN")',
    'let token = std::env::var("GITHUB_TOKEN")?;',
    "auth = HTTPBasicAuth(user, pw)",
    "password = user_password",
    "if password == confirm_password:",
    "tokenizer = AutoTokenizer.from_pretrained(model_id)\ntokenizer.pad_token = tokenizer.eos_token",
])
def test_generic_secret_ignores_code_values(text):
    # Only generic_secret is asserted: "std::env" is a separate ip_address look-alike ("d::e").
    assert [h.type for h in SCANNER.scan(text) if h.type == "generic_secret"] == [], text


@pytest.mark.parametrize("text,value", [
    ('password = "hunter2-Xk9#mQ2v"', "hunter2-Xk9#mQ2v"),
    ("api_key: 'Zk8sJ2mQ9xV4nB7c'", "Zk8sJ2mQ9xV4nB7c"),
    ('SECRET_KEY="django-insecure-8f$k2x!q9z@w3e"', "django-insecure-8f$k2x!q9z@w3e"),
    ("token=ghx_aB3dE5fG7hJ9kL1mZxQ", "ghx_aB3dE5fG7hJ9kL1mZxQ"),
    ('{"client_secret": "aB3dE5fG7hJ9kL1m"}', "aB3dE5fG7hJ9kL1m"),
    ("DB_PASSWORD=S3cr3t!Pa55w0rd", "S3cr3t!Pa55w0rd"),
    ("password: Tr0ub4dor&3xyz", "Tr0ub4dor&3xyz"),
    ("SMTP_PASSWORD=P4ss.w0rd.2024", "P4ss.w0rd.2024"),  # dotted, but digits inside the names
    ("API_KEY=Xk9mQ2v(abc)", "Xk9mQ2v(abc)"),  # "(" after a random name is not a call
    # A quoted literal is judged on its content, even when it reads like code.
    ('password = "settings.SECRET_KEY"', "settings.SECRET_KEY"),
])
def test_generic_secret_still_finds_literals(text, value):
    assert _found(text, value, "generic_secret"), text


def test_quoted_code_like_literal_is_judged_as_a_value():
    # "os.getenv" is too plain to be a secret, quoted or not; quoting does not make code a secret.
    assert SCANNER.scan('password = "os.getenv"') == []


def test_generic_secret_code_check_does_not_backtrack():
    import time
    texts = [f"password={s}!" for s in ("a" * 250, "aA" * 125, "a1" * 125, "a(" * 125, "a_" * 125)]
    start = time.perf_counter()
    for text in texts:
        SCANNER.scan(text)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("text,value,kind", [
    ("-4111111111111111", "4111111111111111", "credit_card"),
    ("card:-4111 1111 1111 1111 thanks", "4111 1111 1111 1111", "credit_card"),
    ("balance moved to =-5555555555554444", "5555555555554444", "credit_card"),
    ("ssn:-123-45-6789", "123-45-6789", "ssn"),
])
def test_a_minus_sign_or_bullet_does_not_hide_a_value(text, value, kind):
    assert _found(text, value, kind), text


@pytest.mark.parametrize("text", [
    "order ID-4111111111111111 shipped",
    "range 1-4111111111111111",
    "case 2021-078-05-1120 closed",
])
def test_a_dash_joining_a_number_to_a_word_or_number_is_not_a_value(text):
    assert SCANNER.scan(text) == [], text


@pytest.mark.parametrize("text", [
    "SNMP OID 1.3.6.1.4.1.2011.212.555.1234",
    "Cisco IOS 15.212.555.1234",
    "pkg version 2024.212.555.1234",
    "Coordinates: 40.712.776.4123",
    "ticket JIRA-212-555-1234",
    "Run ID 617-555-0123-7",
    "local dev: postgres://postgres:postgres@localhost:5432/test_db",
    "broker amqp://guest:guest@localhost:5672",
])
def test_tails_of_number_chains_and_default_credentials_are_not_findings(text):
    assert SCANNER.scan(text) == [], text


@pytest.mark.parametrize("text,kind", [
    ("call 212-555-1234.", "phone"),
    ("call me at 1-212-555-1234 today", "phone"),
    ("phone: (212) 555-1234", "phone"),
    ("db postgres://app:S3cr3t-Pa55@db.internal/prod", "database_url"),
])
def test_phones_and_url_passwords_beside_the_rejected_forms_are_still_found(text, kind):
    assert [h.type for h in SCANNER.scan(text)] == [kind], text


@pytest.mark.parametrize("text,value,kind", [
    ("card 4111.1111.1111.1111 ok", "4111.1111.1111.1111", "credit_card"),
    ("card 4111  1111  1111  1111 ok", "4111  1111  1111  1111", "credit_card"),
    ("card 4111 - 1111 - 1111 - 1111 ok", "4111 - 1111 - 1111 - 1111", "credit_card"),
    ("card 4111/1111/1111/1111 ok", "4111/1111/1111/1111", "credit_card"),
    ("amex 3782.822463.10005 ok", "3782.822463.10005", "credit_card"),
    ("card\t4111\t1111\t1111\t1111\tok", "4111\t1111\t1111\t1111", "credit_card"),
    ("SSN 123.45.6789 on file", "123.45.6789", "ssn"),
])
def test_cards_and_ssns_printed_with_other_separators_are_found(text, value, kind):
    assert _found(text, value, kind), text


@pytest.mark.parametrize("text", [
    "build 1.4111.1111.1111.1111",
    "range 4111.1111.1111.1111.5",
    "version 110.12.2345",
])
def test_dotted_numbers_in_chains_or_without_context_are_not_cards_or_ssns(text):
    assert SCANNER.scan(text) == [], text


@pytest.mark.parametrize("text,value", [
    ("my password is Tr0ub4dor&3", "Tr0ub4dor&3"),
    ("Your passcode was Xk9#mP2$vL7q.", "Xk9#mP2$vL7q"),
    ("the password is 'Qz8#kLm2pW'", "Qz8#kLm2pW"),
    ("my password is: Qz8kLm2pW9x", "Qz8kLm2pW9x"),
    ("my pass is Tr0ub4dor&3xyz", "Tr0ub4dor&3xyz"),
])
def test_a_password_named_in_prose_is_found(text, value):
    assert _found(text, value, "generic_secret"), text


@pytest.mark.parametrize("text", [
    "the password is required for login",
    "the password would be generated by os.urandom(16)",
    "Remember: your passphrase is something only you know.",
    "my password is expired123",
    "the pass is valid until Friday",
])
def test_prose_about_passwords_is_not_a_secret(text):
    assert SCANNER.scan(text) == [], text


@pytest.mark.parametrize("text,kind", [
    ("decode this: NDExMTExMTExMTExMTExMQ== please", "credit_card"),
    ("unpadded NDExMTExMTExMTExMTExMQ ok", "credit_card"),
    ("see QUtJQVozTVZKUTVUNFhXN1BMUUE= ok", "aws_access_key_id"),
    ("nested TkRFeE1URXhNVEV4TVRFeE1URXhNUT09 twice", "credit_card"),
])
def test_base64_inside_prose_is_decoded_and_the_whole_run_is_the_finding(text, kind):
    hits = SCANNER.scan(text)
    assert [h.type for h in hits] == [kind]
    run = text[hits[0].start:hits[0].end]
    assert " " not in run and len(run) >= 16


@pytest.mark.parametrize("text", [
    "class AbstractSingletonProxyFactoryBean extends X",
    "sha 9fceb02d0ae598e95dc970b74767f19372d61af8",
    "token eyJhbGciOiJub25lIn0 is a header only",
    "see https://example.com/AbCdEfGhIjKlMnOpQrStUvWx/path",
    "mixed iPhoneXsMaxProCaseBlue variant",
])
def test_identifiers_and_paths_that_look_like_base64_are_not_findings(text):
    assert SCANNER.scan(text) == [], text


@pytest.mark.parametrize("text,kind", [
    ("data:text/plain,card%204111%201111%201111%201111%20thanks", "credit_card"),
    ("see https://x.example/pay?cc=4111%201111%201111%201111&x=1 now", "credit_card"),
    ("mail jane.roe%40example.org today", "email"),
])
def test_percent_encoded_values_are_decoded_and_the_whole_token_is_the_finding(text, kind):
    hits = SCANNER.scan(text)
    assert kind in [h.type for h in hits]
    token = text[hits[0].start:hits[0].end]
    assert " " not in token and "%" in token


@pytest.mark.parametrize("text", ["we grew 50% of revenue, 100%25 sure", "https://example.com/search?q=hello%20world"])
def test_percent_signs_and_clean_escapes_are_not_findings(text):
    assert SCANNER.scan(text) == [], text


@pytest.mark.parametrize("text", [
    "order 4111111111111111A shipped",
    "id 4111111111111111-b",
    "etag 2647042135703194fd7bfcc531ce9da3",
    "EAN 4262527601894",  # a German barcode: 13 digits from 4, Luhn-valid
    "ssn 123-45-6789x",
])
def test_numbers_glued_to_letters_and_13_digit_barcodes_are_not_cards(text):
    assert SCANNER.scan(text) == [], text


@pytest.mark.parametrize("text", [
    "pageToken: eyJvZmZzZXQiOjEwMH0=",
    "idempotency_token: 3f2b1c4e-8d7a-4b6c-9e1f-2a3b4c5d6e7f",
    "auth: oauth2-pkce",
    "token: text-embedding-3-small",
    "password: must-be-rotated-90d",
    "secret: kv/data/app#v3",
    "export OPENAI_API_KEY=sk-...your-key-here...",
    "git clone git@github.com:acme/repo.git",
    "ssh ec2-user@ip-10-0-0-1.ec2.internal",
    "kubectl --context=admin@prod-cluster.k8s.local get pods",
    "Author: ci <ci@users.noreply.github.com>",
    "use std::fs; let v = std::env::var(\"X\"); boost::asio; arr[::2]; a::b",
])
def test_engineering_text_that_looked_like_secrets_emails_or_addresses_is_not(text):
    assert SCANNER.scan(text) == [], text


def test_pagination_cursors_in_tool_results_are_not_secrets():
    from proxilion.inspect.scan_credentials import is_secret_name
    assert not any(is_secret_name(n) for n in ("nextPageToken", "page_token", "next_token", "continuationToken",
                                                "idempotency_token", "csrf_token", "ClientToken"))
    assert all(is_secret_name(n) for n in ("api_token", "accessToken", "refresh_token", "password", "AWS_SECRET"))
