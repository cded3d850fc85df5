"""Generators of valid values (checksums computed here, independently of the detectors) and look-alikes."""

from __future__ import annotations

import base64
import json
import random
import string
import zlib


def luhn_digit(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return str((10 - total % 10) % 10)


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


CARD_PREFIXES = [("4", 16), ("4", 19), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15),
                 ("37", 15), ("6011", 16), ("65", 16), ("3528", 16), ("3589", 16), ("36", 14), ("300", 14)]


def card(rng: random.Random, fmt: str | None = None) -> str:
    prefix, length = rng.choice(CARD_PREFIXES)
    body = prefix + _digits(rng, length - len(prefix) - 1)
    number = body + luhn_digit(body)
    fmt = fmt or rng.choice(["plain", "space", "dash"])
    if fmt == "plain":
        return number
    sep = " " if fmt == "space" else "-"
    if length == 15:
        groups = [number[:4], number[4:10], number[10:]]
    elif length == 14:
        groups = [number[:4], number[4:10], number[10:]]
    else:
        groups = [number[i:i + 4] for i in range(0, length, 4)]
    return sep.join(groups)


def bad_luhn_card(rng: random.Random) -> str:
    number = card(rng, "plain")
    last = int(number[-1])
    return number[:-1] + str((last + rng.randint(1, 9)) % 10)


def ssn(rng: random.Random) -> str:
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            break
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def bad_ssn(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return f"000-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    if kind == 1:
        return f"666-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    if kind == 2:
        return f"{rng.randint(1, 665):03d}-00-{rng.randint(1, 9999):04d}"
    return f"{rng.randint(1, 665):03d}-{rng.randint(1, 99):02d}-0000"


def aba(rng: random.Random) -> str:
    while True:
        head = rng.choice(["01", "02", "03", "05", "07", "09", "11", "12", "21", "26", "31", "32", "61", "67"])
        body = head + _digits(rng, 6)
        w = [3, 7, 1, 3, 7, 1, 3, 7]
        check = (10 - sum(int(c) * w[i] for i, c in enumerate(body)) % 10) % 10
        return body + str(check)


def bad_aba(rng: random.Random) -> str:
    value = aba(rng)
    return value[:-1] + str((int(value[-1]) + rng.randint(1, 9)) % 10)


IBAN_LAYOUTS = {"DE": 18, "GB": 18, "FR": 23, "ES": 20, "NL": 14, "IT": 23, "BE": 12, "CH": 17}


def _iban_check(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    number = int("".join(str(int(c, 36)) for c in rearranged))
    return f"{98 - number % 97:02d}"


def _bban(rng: random.Random, country: str) -> str:
    n = IBAN_LAYOUTS[country]
    if country == "GB":
        return "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + _digits(rng, 14)
    if country == "NL":
        return "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + _digits(rng, 10)
    if country == "IT":
        return rng.choice(string.ascii_uppercase) + _digits(rng, 22)
    return _digits(rng, n)


def iban(rng: random.Random, spaced: bool | None = None) -> str:
    from stdnum import iban as stdnum_iban
    while True:
        country = rng.choice(sorted(IBAN_LAYOUTS))
        bban = _bban(rng, country)
        value = country + _iban_check(country, bban) + bban
        # Some countries add a national check digit inside the BBAN; keep only those stdnum accepts.
        if stdnum_iban.is_valid(value):
            break
    if spaced is None:
        spaced = rng.random() < 0.5
    return " ".join(value[i:i + 4] for i in range(0, len(value), 4)) if spaced else value


def bad_iban(rng: random.Random) -> str:
    value = iban(rng, spaced=False)
    check = int(value[2:4])
    return value[:2] + f"{(check + rng.randint(1, 50)) % 97 + 2:02d}" + value[4:]


def npi(rng: random.Random) -> str:
    body = rng.choice("12") + _digits(rng, 8)
    return body + luhn_digit("80840" + body)


def dea(rng: random.Random) -> str:
    letters = rng.choice("ABFGMPRX") + rng.choice(string.ascii_uppercase)
    d = [rng.randint(0, 9) for _ in range(6)]
    check = (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10
    return letters + "".join(map(str, d)) + str(check)


def mbi(rng: random.Random) -> str:
    alpha = "ACDEFGHJKMNPQRTUVWXY"
    alnum = alpha + string.digits
    c = [rng.choice("123456789"), rng.choice(alpha), rng.choice(alnum), rng.choice(string.digits),
         rng.choice(alpha), rng.choice(alnum), rng.choice(string.digits), rng.choice(alpha), rng.choice(alpha),
         rng.choice(string.digits), rng.choice(string.digits)]
    value = "".join(c)
    return value if rng.random() < 0.5 else f"{value[:4]}-{value[4:7]}-{value[7:]}"


def email(rng: random.Random) -> str:
    user = rng.choice(["john.doe", "a.smith", "maria_garcia", "k.lee+news", "ops-team", "j2024"])
    domain = rng.choice(["example.com", "corp.co.uk", "mail.acme.io", "uni.edu", "gmail.com"])
    return f"{user}{rng.randint(0, 99)}@{domain}"


def phone(rng: random.Random) -> str:
    area = rng.choice(["415", "212", "312", "646", "617", "503"])
    mid = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
    if mid[1:] == "11":
        mid = mid[0] + "23"
    last = f"{rng.randint(0, 9999):04d}"
    fmt = rng.randrange(5)
    if fmt == 0:
        return f"({area}) {mid}-{last}"
    if fmt == 1:
        return f"{area}-{mid}-{last}"
    if fmt == 2:
        return f"+1 {area} {mid} {last}"
    if fmt == 3:
        return f"{area}.{mid}.{last}"
    return rng.choice(["+44 20 7946 0958", "+33 1 42 68 53 00", "+49 30 901820", "+81 3-3224-5000",
                       "+61 2 9374 4000"])


def public_ip(rng: random.Random) -> str:
    if rng.random() < 0.8:
        return f"{rng.choice([8, 23, 45, 52, 104, 151, 185])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    return rng.choice(["2001:4860:4860::8888", "2606:4700:4700::1111", "2a00:1450:4001:81b::200e"])


def private_ip(rng: random.Random) -> str:
    return rng.choice([f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                       f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}", "127.0.0.1",
                       f"172.16.{rng.randint(0, 255)}.{rng.randint(1, 254)}", "169.254.10.20",
                       "192.0.2.15", "198.51.100.7", "203.0.113.9", "::1", "fe80::1", "2001:db8::1"])


def _b62(rng: random.Random, n: int) -> str:
    alphabet = string.ascii_letters + string.digits
    while True:
        value = "".join(rng.choice(alphabet) for _ in range(n))
        if any(c.isdigit() for c in value) and any(c.isupper() for c in value) and any(c.islower() for c in value):
            return value


def aws_key_id(rng: random.Random) -> str:
    return rng.choice(["AKIA", "ASIA"]) + "".join(rng.choice(string.ascii_uppercase + "234567") for _ in range(16))


def aws_secret(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + "+/"
    while True:
        value = "".join(rng.choice(alphabet) for _ in range(40))
        if any(c.isdigit() for c in value) and any(c.isupper() for c in value) and any(c.islower() for c in value):
            return value


_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def crc32_base62(body: str) -> str:
    """GitHub's and npm's checksum: CRC32 of the random part, base62 (0-9A-Za-z), 6 characters."""
    number, out = zlib.crc32(body.encode()), ""
    while number:
        number, digit = divmod(number, 62)
        out = _BASE62[digit] + out
    return out.rjust(6, "0")


def github_token(rng: random.Random) -> str:
    if rng.random() < 0.8:
        body = _b62(rng, 30)
        return rng.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]) + body + crc32_base62(body)
    return "github_pat_" + _b62(rng, 22) + "_" + _b62(rng, 59)


def npm_token(rng: random.Random) -> str:
    body = _b62(rng, 30)
    return "npm_" + body + crc32_base62(body)


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _bech32_polymod(values: list[int]) -> int:
    generators = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            if (top >> i) & 1:
                chk ^= generators[i]
    return chk


def age_secret_key(rng: random.Random) -> str:
    """An age X25519 identity: bech32 of 32 random bytes under the HRP age-secret-key-, upper case."""
    bits = "".join(f"{b:08b}" for b in rng.randbytes(32)) + "0000"
    data = [int(bits[i:i + 5], 2) for i in range(0, len(bits), 5)]
    hrp = "age-secret-key-"
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    polymod = _bech32_polymod(expanded + data + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return (hrp + "1" + "".join(_BECH32[d] for d in data + checksum)).upper()


def _hex(rng: random.Random, n: int) -> str:
    return "%0*x" % (n, rng.getrandbits(4 * n))


def _b64(rng: random.Random, n: int) -> str:
    return base64.b64encode(rng.randbytes(n)).decode()


def _b64url_chars(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits + "_-") for _ in range(n - 3)) + _b62(rng, 3)


def gitlab_token(rng: random.Random) -> str:
    kind = rng.choice(["glpat-", "gldt-", "glrt-", "glft-", "glcbt-", "GR1348941"])
    return kind + _b62(rng, 20)


def slack_token_any(rng: random.Random) -> str:
    kind = rng.choice(["xoxb-", "xoxp-", "xoxe.xoxp-1-", "xoxe-1-", "xapp-1-"])
    return f"{kind}{_digits(rng, 11)}-{_digits(rng, 13)}-{_b62(rng, 24)}"


def slack_webhook(rng: random.Random) -> str:
    return f"https://hooks.slack.com/services/T{_b62(rng, 8).upper()}/B{_b62(rng, 10).upper()}/{_b62(rng, 24)}"


def stripe_test_key(rng: random.Random) -> str:
    return rng.choice(["sk_test_", "rk_test_"]) + _b62(rng, 24)


def twilio_api_key(rng: random.Random) -> str:
    return "SK" + _hex(rng, 32)


def sendgrid_key(rng: random.Random) -> str:
    return f"SG.{_b64url_chars(rng, 22)}.{_b64url_chars(rng, 43)}"


def mailgun_key(rng: random.Random) -> str:
    return "key-" + _hex(rng, 32)


def huggingface_token(rng: random.Random) -> str:
    return "hf_" + "".join(rng.choice(string.ascii_letters) for _ in range(34))


def pypi_token(rng: random.Random) -> str:
    return "pypi-AgEIcHlwaS5vcmc" + _b64url_chars(rng, 140)


def dockerhub_token(rng: random.Random) -> str:
    return "dckr_pat_" + _b64url_chars(rng, 27)


def azure_storage_key(rng: random.Random) -> str:
    return _b64(rng, 64)


def newrelic_key(rng: random.Random) -> str:
    return rng.choice(["NRAK-" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(27)),
                       "NRII-" + _b64url_chars(rng, 32), "NRJS-" + _hex(rng, 19)])


def shopify_token(rng: random.Random) -> str:
    return rng.choice(["shpat_", "shpca_", "shppa_", "shpss_"]) + _hex(rng, 32)


def atlassian_token(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return "ATBB" + _b62(rng, 32)
    return "ATATT3xFfGF0" + _b64url_chars(rng, 170) + "=" + _hex(rng, 8).upper()


def square_token(rng: random.Random) -> str:
    return rng.choice(["sq0atp-" + _b64url_chars(rng, 22), "sq0csp-" + _b64url_chars(rng, 43),
                       "EAAA" + _b64url_chars(rng, 60)])


def discord_bot_token(rng: random.Random) -> str:
    user_id = str(rng.randint(10**17, 10**19 - 1)).encode()
    return f"{_b64url(user_id)}.{_b64url_chars(rng, 6)}.{_b64url_chars(rng, 38)}"


def discord_webhook(rng: random.Random) -> str:
    return f"https://discord.com/api/webhooks/{rng.randint(10**17, 10**19 - 1)}/{_b64url_chars(rng, 68)}"


def telegram_bot_token(rng: random.Random) -> str:
    return f"{rng.randint(10**8, 10**10 - 1)}:AA{_b64url_chars(rng, 33)}"


def braintree_token(rng: random.Random) -> str:
    return f"access_token$production${_hex(rng, 16)}${_hex(rng, 32)}"


def kubernetes_sa_token(rng: random.Random) -> str:
    header = _b64url(json.dumps({"alg": "RS256", "kid": _b62(rng, 16)}).encode())
    if rng.random() < 0.5:
        claims = {"iss": "kubernetes/serviceaccount", "kubernetes.io/serviceaccount/namespace": "default",
                  "kubernetes.io/serviceaccount/service-account.name": "deployer"}
    else:
        claims = {"aud": ["https://kubernetes.default.svc"], "iss": "https://kubernetes.default.svc",
                  "kubernetes.io": {"namespace": "prod", "serviceaccount": {"name": "api", "uid": _hex(rng, 8)}}}
    payload = _b64url(json.dumps(claims).encode())
    return f"{header}.{payload}.{_b64url(rng.randbytes(64))}"


def openai_key(rng: random.Random) -> str:
    return rng.choice(["sk-", "sk-proj-"]) + _b62(rng, 48)


def anthropic_key(rng: random.Random) -> str:
    return "sk-ant-api03-" + _b62(rng, 93) + "-" + _b62(rng, 6) + "AA"


def slack_token(rng: random.Random) -> str:
    return f"xox{rng.choice('abprs')}-{_digits(rng, 12)}-{_digits(rng, 12)}-{_b62(rng, 24)}"


def stripe_key(rng: random.Random) -> str:
    return rng.choice(["sk_live_", "rk_live_"]) + _b62(rng, 24)


def google_key(rng: random.Random) -> str:
    return "AIza" + _b62(rng, 35)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(rng: random.Random) -> str:
    header = _b64url(json.dumps({"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"}).encode())
    payload = _b64url(json.dumps({"sub": _digits(rng, 8), "iat": rng.randint(1600000000, 1800000000)}).encode())
    return f"{header}.{payload}.{_b64url(rng.randbytes(32))}"


def private_key(rng: random.Random) -> str:
    kind = rng.choice(["RSA ", "EC ", "OPENSSH ", "", "ENCRYPTED "])
    body = "\n".join(base64.b64encode(rng.randbytes(48)).decode() for _ in range(4))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


def database_password(rng: random.Random) -> tuple[str, str]:
    password = _b62(rng, 14)
    scheme = rng.choice(["postgres", "postgresql", "mysql", "mongodb+srv", "redis"])
    return f"{scheme}://app_user:{password}@db{rng.randint(1, 9)}.internal.example.com:5432/app", password


def assigned_secret(rng: random.Random) -> tuple[str, str]:
    value = _b62(rng, rng.randint(12, 32))
    name = rng.choice(["password", "DB_PASSWORD", "client_secret", "api_key", "GITHUB_TOKEN", "apiKey"])
    return rng.choice([f"{name}={value}", f'{name}: "{value}"', f"{name} = '{value}'"]), value


LOOKALIKES = {
    "uuid": lambda rng: "%08x-%04x-%04x-%04x-%012x" % (rng.getrandbits(32), rng.getrandbits(16),
                                                       rng.getrandbits(16), rng.getrandbits(16), rng.getrandbits(48)),
    "git_sha": lambda rng: "%040x" % rng.getrandbits(160),
    "epoch_ms": lambda rng: str(rng.randint(1_500_000_000_000, 1_900_000_000_000)),
    "epoch_s": lambda rng: str(rng.randint(1_500_000_000, 1_900_000_000)),
    "version": lambda rng: f"v{rng.randint(0, 20)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}",
    "version4": lambda rng: f"version {rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}",
    "isbn": lambda rng: rng.choice(["978-0-306-40615-7", "978-3-16-148410-0", "0-306-40615-2", "978-1-4028-9462-6"]),
    "order_number": lambda rng: f"order #{rng.randint(10_000_000, 999_999_999)}",
    "luhn_fail_card": bad_luhn_card,
    "bad_ssn": bad_ssn,
    "bad_iban": bad_iban,
    "bad_aba": lambda rng: "routing number " + bad_aba(rng),
    "aba_without_context": lambda rng: "reference " + aba(rng),
    "private_ip": private_ip,
    "words": lambda rng: rng.choice(["S3", "EKS", "sk-learn", "scikit-learn", "AKIA", "ghp_", "xoxb",
                                     "TOKEN_LIMIT", "password reset", "secret sauce", "api_key=None"]),
    "price": lambda rng: f"${rng.randint(1, 99999)}.{rng.randint(0, 99):02d}",
    "date": lambda rng: f"{rng.randint(2000, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    "hex_digest": lambda rng: "%064x" % rng.getrandbits(256),
    "swift_no_context": lambda rng: rng.choice(["DEUTDEFF", "BOFAUS3N", "NWBKGB2L"]),
    "placeholder_secret": lambda rng: rng.choice(["password=changeme", "api_key=<your-key>", "token: ${TOKEN}",
                                                  "password: ********", "secret=xxxxxxxxxxxx"]),
    "phone_like": lambda rng: f"{rng.randint(100, 999)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
    "placeholder_token": lambda rng: rng.choice([
        "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "sk_live_" + "x" * 24, "AKIAIOSFODNN7EXAMPLE", "glpat-" + "X" * 20,
        "xoxb-000000000000-000000000000-xxxxxxxxxxxxxxxxxxxxxxxx", "npm_" + "0" * 36, "dckr_pat_<your-token>",
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", "sk_test_4eC39HqLyjWDarjtT1zdp7dc"]),
    "bad_checksum_token": lambda rng: rng.choice(["ghp_", "gho_", "npm_"]) + _b62(rng, 36),
    "publishable_key": lambda rng: rng.choice(["pk_live_", "pk_test_"]) + _b62(rng, 24),
    "hex_without_context": lambda rng: rng.choice(["md5 ", "etag ", "id "]) + "%032x" % rng.getrandbits(128),
}
