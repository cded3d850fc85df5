"""Credentials in every syntax people write them in (issue 19, item 1).

Each positive names the value that must be found, exactly: the finding's span covers the
value and nothing of the key, quotes or operator, so redaction keeps `password = "[REDACTED:…]"`.
The negatives are placeholders, references to a value kept elsewhere, and prose.
"""

from __future__ import annotations

import pytest

from proxilion.inspect.policy import Redaction
from proxilion.inspect.redact import redact_text
from proxilion.inspect.scanner import Scanner

SCANNER = Scanner()
# Types a credential written in a configuration or command line may be found as.
CREDENTIAL_TYPES = {"generic_secret", "database_url", "url_credentials"}

POSITIVES = [
    # --- assignment operators of many languages ---
    ("=", 'password = "Xk9mq2Lp7v"', "Xk9mq2Lp7v"),
    (":", "password: Xk9mq2Lp7v", "Xk9mq2Lp7v"),
    (":= (Go, Makefile)", 'token := "Xk9mq2Lp7vRt"', "Xk9mq2Lp7vRt"),
    ("=> (PHP, Ruby, Perl)", "'password' => 'Xk9mq2Lp7v',", "Xk9mq2Lp7v"),
    ("=> Ruby symbol", ":api_key => \"Xk9mq2Lp7v\"", "Xk9mq2Lp7v"),
    ("?= (Makefile)", "DB_PASSWORD ?= Xk9mq2Lp7v", "Xk9mq2Lp7v"),
    (".= (PHP)", '$password .= "Xk9mq2Lp7v";', "Xk9mq2Lp7v"),
    ("::= (BNF, Makefile)", "SECRET ::= Xk9mq2Lp7v", "Xk9mq2Lp7v"),
    ("+= (Makefile)", "API_TOKEN += Xk9mq2Lp7v", "Xk9mq2Lp7v"),
    ("<- (R)", 'api_key <- "Xk9mq2Lp7v"', "Xk9mq2Lp7v"),
    ("backticks", "password = `Xk9mq2Lp7v`", "Xk9mq2Lp7v"),
    ("triple quotes", 'password = """Xk9mq2Lp7v"""', "Xk9mq2Lp7v"),
    ("triple single quotes", "secret = '''Xk9mq2Lp7v'''", "Xk9mq2Lp7v"),
    ("subscript", 'config["password"] = "Xk9mq2Lp7v"', "Xk9mq2Lp7v"),
    ("PHP superglobal", "$_ENV['DB_PASSWORD'] = 'Xk9mq2Lp7v';", "Xk9mq2Lp7v"),
    ("PHP define", "define('DB_PASSWORD', 'Xk9]mq2Lp7v');", "Xk9]mq2Lp7v"),
    ("escaped JSON in a string", '"{\\"password\\": \\"Xk9mq2Lp7v\\"}"', "Xk9mq2Lp7v"),
    # --- files: .env, heredoc, YAML, TOML, INI, properties, XML, JSON5, HCL ---
    (".env", "DB_HOST=db\nDB_PASSWORD=Xk9]mq2Lp7v\n", "Xk9]mq2Lp7v"),
    (".env export, quoted", "export API_TOKEN='Xk9mq2Lp7v(x)'\n", "Xk9mq2Lp7v(x)"),
    ("heredoc", "cat > .env <<'EOF'\nSECRET_KEY=Xk9mq2Lp7v$z\nEOF\n", "Xk9mq2Lp7v$z"),
    ("YAML", "db:\n  password: 'Xk9mq2Lp7v'\n", "Xk9mq2Lp7v"),
    ("YAML literal block", "db:\n  password: |\n    Xk9mq2Lp7v>x\n  user: app\n", "Xk9mq2Lp7v>x"),
    ("YAML folded block", "db:\n  password: >-\n    Xk9mq2Lp7v)x\n", "Xk9mq2Lp7v)x"),
    ("YAML flow mapping", "creds: {user: app, password: Xk9mq2Lp7v}", "Xk9mq2Lp7v"),
    ("TOML", '[database]\npassword = "Xk9mq2Lp7v"\n', "Xk9mq2Lp7v"),
    ("INI", "[client]\npassword = Xk9]mq2Lp7v\n", "Xk9]mq2Lp7v"),
    ("Java properties", "spring.datasource.password=Xk9mq2Lp7v\n", "Xk9mq2Lp7v"),
    ("XML attribute", '<db user="app" password="Xk9&gt;mq2Lp7"/>', "Xk9&gt;mq2Lp7"),
    ("XML element", "<password>Xk9]mq2Lp7v</password>", "Xk9]mq2Lp7v"),
    ("XML namespaced element", "<ns:clientSecret>Xk9mq2Lp7v</ns:clientSecret>", "Xk9mq2Lp7v"),
    (".NET appSettings", '<add key="DbPassword" value="Xk9mq2Lp7v" />', "Xk9mq2Lp7v"),
    (".NET appSettings, spaced", "<add key='Smtp.Password'   value = 'Xk9mq2Lp7v'/>", "Xk9mq2Lp7v"),
    ("JSON", '{"client_secret": "Xk9]mq2Lp7v"}', "Xk9]mq2Lp7v"),
    ("JSON5", "{password: 'Xk9mq2Lp7v', }", "Xk9mq2Lp7v"),
    ("HCL", 'resource "x" "y" {\n  password = "Xk9mq2Lp7v"\n}', "Xk9mq2Lp7v"),
    ("HCL variable default", 'variable "db_password" {\n  type = string\n  default = "Xk9]mq2Lp7v"\n}', "Xk9]mq2Lp7v"),
    ("Java properties, blank separator", "a.b=c\nspring.datasource.password   Xk9]mq2Lp7v\n", "Xk9]mq2Lp7v"),
    ("docker config.json auth", '{"auths": {"ghcr.io": {"auth": "Ym90OlhrOW1xMkxwN3ZSdDU="}}}',
     "Ym90OlhrOW1xMkxwN3ZSdDU="),
    # --- typed declarations and keyword arguments ---
    ("Go var", 'var token string = "Xk9mq2Lp7v"', "Xk9mq2Lp7v"),
    ("Rust let", 'let password: &str = "Xk9mq2Lp7v";', "Xk9mq2Lp7v"),
    ("TypeScript", 'const apiKey: string = "Xk9mq2Lp7v";', "Xk9mq2Lp7v"),
    ("Kotlin", 'val password: String = "Xk9mq2Lp7v"', "Xk9mq2Lp7v"),
    ("Python annotated", 'password: str = "Xk9mq2Lp7v"', "Xk9mq2Lp7v"),
    ("Java", 'private static final String PASSWORD = "Xk9mq2Lp7v";', "Xk9mq2Lp7v"),
    ("C#", 'string password = "Xk9mq2Lp7v";', "Xk9mq2Lp7v"),
    ("Python kwargs", 'psycopg.connect(host="db", password="Xk9)mq2Lp7v")', "Xk9)mq2Lp7v"),
    ("Python raw string", "secret = r'Xk9mq2Lp7v\\d'", "Xk9mq2Lp7v\\d"),
    ("PowerShell $env:", '$env:API_KEY = "Xk9mq2Lp7v"', "Xk9mq2Lp7v"),
    # --- comparisons with a literal, C and C++ and Objective-C forms, directives ---
    ("== literal", 'if (api_key == "Xk9]mq2Lp7v") {', "Xk9]mq2Lp7v"),
    ("!== literal", "if (db_pass !== 'Xk9)mq2Lp7v') {", "Xk9)mq2Lp7v"),
    ("literal == name", 'if ("Xk9>mq2Lp7v" === my_private_key) {', "Xk9>mq2Lp7v"),
    ("literal != name", "if ('Xk9mq2Lp7v' != passwd)", "Xk9mq2Lp7v"),
    ("C array", 'char password[] = "Xk9]mq2Lp7v";', "Xk9]mq2Lp7v"),
    ("C array with a size", 'char secret[25] = "Xk9]mq2Lp7v";', "Xk9]mq2Lp7v"),
    ("Objective-C", 'NSString *password = @"Xk9mq2Lp7v";', "Xk9mq2Lp7v"),
    ("C++ constructor", 'std::string secret("Xk9]mq2Lp7v");', "Xk9]mq2Lp7v"),
    ("C++ assign", 'password.assign("Xk9]mq2Lp7v", 11);', "Xk9]mq2Lp7v"),
    ("directive (BIND key clause)", 'key "rndc" {\n    secret "OmItW1lOyLVUEuvv+Fme+Q==";\n};',
     "OmItW1lOyLVUEuvv+Fme+Q=="),
    # --- names: a part after the secret's name, *_pass, a common misspelling ---
    ("a part after the name", 'db_pass_secure := "Xk9mq2Lp7v"', "Xk9mq2Lp7v"),
    ("two parts after the name", "apikey_my_service: 'Xk9mq2Lp7v'", "Xk9mq2Lp7v"),
    ("SMTP_PASS", "SMTP_PASS=Xk9mq2Lp7v", "Xk9mq2Lp7v"),
    ("client_secrete", 'client_secrete = "Xk9mq2Lp7v"', "Xk9mq2Lp7v"),
    # --- Kubernetes Secrets ---
    ("Secret data (base64)", "kind: Secret\ndata:\n  password: WGs5XW1xMkxwN3Y=\n", "WGs5XW1xMkxwN3Y="),
    ("Secret stringData", "kind: Secret\nstringData:\n  api-token: Xk9mq2Lp7v\n", "Xk9mq2Lp7v"),
    # --- any printable punctuation inside the value ---
    ("]", 'password = "Xk9]mq2Lp7"', "Xk9]mq2Lp7"),
    (">", 'password = "Xk9>mq2Lp7"', "Xk9>mq2Lp7"),
    (")", 'password = "Xk9)mq2Lp7"', "Xk9)mq2Lp7"),
    ("quotes of the other kind", "password = \"Xk9'mq2`Lp7\"", "Xk9'mq2`Lp7"),
    # ("<=>" would read as a <placeholder>: angle brackets around a word)
    ("every symbol", 'password = "a1!#$%&()*+,-./:;=>?@[]^_{|}~<Z"', "a1!#$%&()*+,-./:;=>?@[]^_{|}~<Z"),
    ("escaped quote", r'password = "Xk9\"mq2Lp7"', r'Xk9\"mq2Lp7'),
    ("'${' and '{{' inside a random value", 'api_key = "m{{h}o)p${e]nob(ody[finds>-_$#thisone}}"',
     "m{{h}o)p${e]nob(ody[finds>-_$#thisone}}"),
    ("a format field inside a random value", "secret: Xk9{h}mq2Lp7v", "Xk9{h}mq2Lp7v"),
    ("balanced parentheses, unquoted", "API_KEY=Xk9mQ2v(abc)", "Xk9mQ2v(abc)"),
    # --- command lines and HTTP ---
    ("curl -u", "curl -u admin:Xk9mq2Lp7v https://api.example.com/x", "Xk9mq2Lp7v"),
    ("curl --user", "curl --user 'admin:Xk9]mq2Lp7v' https://api.example.com", "Xk9]mq2Lp7v"),
    ("curl -H Authorization: Token", 'curl -H "Authorization: Token Xk9mq2Lp7v" https://x', "Xk9mq2Lp7v"),
    ("curl -H X-Api-Key", "curl -H 'X-Api-Key: Xk9mq2Lp7v' https://x", "Xk9mq2Lp7v"),
    ("Authorization: Basic", "Authorization: Basic YWRtaW46WGs5bXEyTHA3dg==", "YWRtaW46WGs5bXEyTHA3dg=="),
    ("Authorization: Bearer", "Authorization: Bearer Xk9mq2Lp7vRt5", "Xk9mq2Lp7vRt5"),
    ("JSON header Bearer", '{"headers": {"Authorization": "Bearer Xk9mq2Lp7vRt5"}}', "Xk9mq2Lp7vRt5"),
    ("Authorization: bearer (lower case)", "authorization: bearer Xk9mq2Lp7vRt5", "Xk9mq2Lp7vRt5"),
    ("Authorization: Digest", 'Authorization: Digest username="bob", realm="api", nonce="abc",'
     ' uri="/", response="6629fae49393a05397450978507c4ef1"', "6629fae49393a05397450978507c4ef1"),
    ("mysql -p", "mysql -u root -pXk9mq2Lp7v mydb", "Xk9mq2Lp7v"),
    ("mysqldump --password=", "mysqldump --password=Xk9mq2Lp7v shop", "Xk9mq2Lp7v"),
    ("--password value", "pg_dump --password Xk9mq2Lp7v", "Xk9mq2Lp7v"),
    ("--token value", "vault login --token Xk9mq2Lp7vRt", "Xk9mq2Lp7vRt"),
    ("--<tool>-token value", "gh-release --github-token 'Xk9mq2Lp7vRt' v1", "Xk9mq2Lp7vRt"),
    ("PGPASSWORD", "PGPASSWORD=Xk9mq2Lp7v psql -h db -U app", "Xk9mq2Lp7v"),
    ("docker login -p", "docker login -u bot -p Xk9mq2Lp7v registry.example.com", "Xk9mq2Lp7v"),
    ("docker login --password", "docker login --password Xk9mq2Lp7v ghcr.io", "Xk9mq2Lp7v"),
    # --- connection strings ---
    ("JDBC", "jdbc:postgresql://db:5432/app?user=app&password=Xk9]mq2Lp7v&ssl=true", "Xk9]mq2Lp7v"),
    ("ADO.NET", "Server=db;Database=app;User Id=sa;Password=Xk9]mq2Lp7v;", "Xk9]mq2Lp7v"),
    ("ODBC Pwd", "Driver={ODBC Driver 18};Server=db;Uid=sa;Pwd=Xk9mq2Lp7v;", "Xk9mq2Lp7v"),
    ("MongoDB", "mongodb://app:Xk9mq2Lp7v@mongo:27017/app", "Xk9mq2Lp7v"),
    ("Redis, no user", "redis://:Xk9mq2Lp7v@cache:6379/0", "Xk9mq2Lp7v"),
    ("AMQP", "amqp://guest:Xk9mq2Lp7v@rabbit:5672/", "Xk9mq2Lp7v"),
    ("SQLAlchemy", "postgresql+psycopg://app:Xk9mq2Lp7v@db/app", "Xk9mq2Lp7v"),
    # --- credential files ---
    (".netrc one line", "machine api.example.com login bot password Xk9mq2Lp7v", "Xk9mq2Lp7v"),
    (".netrc lines", "machine api.example.com\n  login bot\n  password Xk9]mq2Lp7v\n", "Xk9]mq2Lp7v"),
    (".pgpass", "db.example.com:5432:app:alice:Xk9mq2Lp7v\n", "Xk9mq2Lp7v"),
    (".pgpass wildcards", "*:*:*:alice:Xk9]mq2Lp7v", "Xk9]mq2Lp7v"),
    (".npmrc", "//registry.npmjs.org/:_authToken=5b1f4e8a-9c3d-4e2f-8a7b-6c5d4e3f2a1b\n",
     "5b1f4e8a-9c3d-4e2f-8a7b-6c5d4e3f2a1b"),
    (".pypirc", "[pypi]\nusername = __token__\npassword = Xk9mq2Lp7vRt5\n", "Xk9mq2Lp7vRt5"),
    ("Git credential URL", "https://alice:Xk9mq2Lp7vRt5@github.com/acme/app.git", "Xk9mq2Lp7vRt5"),
]


def _credentials(text: str) -> list[tuple[str, str]]:
    return [(h.type, text[h.start:h.end]) for h in SCANNER.scan(text) if h.type in CREDENTIAL_TYPES]


@pytest.mark.parametrize("text,value", [(t, v) for _, t, v in POSITIVES], ids=[f for f, _, _ in POSITIVES])
def test_the_value_is_found_and_its_span_is_the_value(text, value):
    assert [v for _, v in _credentials(text)] == [value], text


NEGATIVES = [
    # placeholders
    'password = "changeme"',
    "DB_PASSWORD=${DB_PASSWORD}",
    "password: {{ .Values.password }}",
    'password: "{{ .Values.db.password }}"',
    "password = <your-password>",
    'password = "<your-password>"',
    "password: '****************'",
    "api_key = YOUR_API_KEY_HERE",
    "SECRET_KEY=xxxxxxxxxxxxxxxx",
    # references to a value kept elsewhere
    'password = os.environ["PASSWORD"]',
    "password = os.environ['DB_PASSWORD'];",
    "password = get_secret()",
    "password = get_secret();",
    "token = vault.read(path)",
    'password := os.Getenv("DB_PASSWORD")',
    "$env:API_KEY = $secretValue",
    "password: $(cat /run/secrets/db)",
    "api_key <- Sys.getenv('API_KEY')",
    "let password: &str = &config.password;",
    "var token string = cfg.Token",
    "'password' => env('DB_PASSWORD'),",
    "<password>${DB_PASSWORD}</password>",
    '<add key="DbPassword" value="{0}" />',
    "define('DB_PASSWORD', getenv('DB_PASSWORD'));",
    # types, empty and constant values
    "password: str",
    "password: Optional[str] = None",
    "password = None",
    "password: null",
    "secret = true",
    'password = ""',
    "password: ''",
    "token: string;",
    "def login(user: str, password: str) -> bool:",
    # Kubernetes Secret data that decodes to a placeholder ("changeme", "password")
    "kind: Secret\ndata:\n  password: Y2hhbmdlbWU=\n",
    "kind: Secret\ndata:\n  password: cGFzc3dvcmQ=\n",
    # prose and commands that only mention a secret
    "the password field is required",
    "Enter your password: ",
    "The password is required for login; tokens expire after 30 minutes.",
    "machine learning models need a login and a password reset flow",
    "mkdir -p /var/lib/app && docker run -p 8080:80 app",
    "curl -u $USER:$TOKEN https://api.example.com",
    "curl -u admin https://api.example.com",
    "mysql -u root -p mydb",
    "docker login -u bot --password-stdin ghcr.io",
    "git push -u origin main",
    "Authorization: Bearer $TOKEN",
    '{"Authorization": "Bearer {{token}}"}',
    "use --token to pass a personal token, or --password for basic auth",
    "db:\n  password: |\n    ${DB_PASSWORD}\n",
    "<password></password>",
    "String password = request.getParameter(\"password\");",
    '"password", "username", "email"',
    # code and templates seen in real libraries
    'TOKENS = ["aws_security_token", "aws_session_token"]',
    '@field_serializer("password", "password_bytes", when_used="json")',
    'monkeypatch.setenv("GOOGLE_API_KEY", "env_api_key")',
    "kw['auth'] = (self.username, self.token)",
    ":param passphrase: (optional) if encrypted PEM format",
    "@type password: L{bytes} or L{None}",
    "return f\"AccessToken(token='{masked}', expires_at={self.expires_at!r})\"",
    '"ssl:4321:privateKey={}:certKey={}".format(a, b)',
    "token = b64encode(userpass).decode()",
    "self.password = params[-1]",
    "if value_token := s.accept(TokenType.STRING):",
    "def f(last_token: Optional[Token]=None):",
    "repo.connect(sandbox_id, token=token).kill()",
    "secret_key=hashlib.sha256(session_secret.encode()).hexdigest(),",
    'tok = re.findall("token=([a-z0-9]+)", url)[0]',
    "token = r\"[-!#$%&'*+.^_`|~0-9a-zA-Z]+\"",
    "# cached token: `get_token()` may refresh an OAuth token",
    'api_key = "google_api_key"',
    "headers={'Authorization': 'Bearer fake_access_token'}",
    'GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"',
    ".. _refresh token: https://tools.ietf.org/html/rfc6749#section-6",
    "sharedSecret = self._finishEphemeralDH(f)",
    'prompt = "{}@{}\'s password: ".format(',
    "Authorization: Bearer <token>",
    "Authorization: Basic ${CREDS}",
    "if password == confirm_password:",
    "</password>",
    "db.example.com:5432:app:alice:*",
    "10:30:45:12:99",
    "https://github.com/acme/app.git",
    # comparisons with a name, not a literal; the name of something about a secret
    "if (password != confirm_password) {",
    'if (token === "") {',
    'if (user_input == password) {',
    'token_type = "Xk9mq2Lp7v"',
    "password_hash: Xk9mq2Lp7v",
    "api_key_id = 'Xk9mq2Lp7v'",
    'tokenizer = "Xk9mq2Lp7v"',
    # prose and calls that put a quote near a secret's name
    'the password "is required" here',
    'print("password") == check',
    'std::string token(buffer, len);',
    'variable "db_password" {\n  default = var.generated\n}',
    "set db.password Xk9mq2Lp7v now",
    "see db.password docs",
    # a text cut off after the opening quote (a stream's first piece)
    "password = '",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_placeholders_references_and_prose_are_not_findings(text):
    assert _credentials(text) == [], text


def test_a_token_as_a_url_user_name_is_found_by_its_family():
    import valuegen as g

    body = "R7kq2Lp9Vx3mZt8Wb4Nc6Hy1Jd5Qe0"
    token = "ghp_" + body + g.crc32_base62(body)
    text = f"git clone https://{token}@github.com/acme/app.git"
    assert [(h.type, text[h.start:h.end]) for h in SCANNER.scan(text)] == [("github_token", token)]


def test_redaction_keeps_the_key_and_the_quotes():
    text = 'config:\n  password: "Xk9]mq2Lp7"\n  url: jdbc:mysql://db/app?password=Xk9>mq2Lp7&ssl=1\n'
    redacted = redact_text(text, [(h.start, h.end, h.type) for h in SCANNER.scan(text)], Redaction())
    assert 'password: "[REDACTED' in redacted
    assert "?password=[REDACTED" in redacted and "&ssl=1" in redacted
    assert "Xk9" not in redacted


@pytest.mark.parametrize("unit", [
    'password="' + "a" * 250 + "\n",             # a quote never closed
    'password="' + '\\"' * 120 + "\n",           # escaped quotes all the way
    "password: |\n" + "  aB3dE5\n" * 30,          # block scalars
    " -p -u --password ",                         # options on one endless line
    "the password is required and the password field ",
    "a:1:b:c:dddddddd\n",                         # .pgpass-shaped lines
    ":1:",                                        # one endless run of colons (IPv6 and .pgpass triggers)
    "'aB3dE5fG' == password ",                   # literals compared with names on one endless line
    'password "aB3dE5fG" ',                       # directives that never end a line
    "a.password aB3dE5fG ",                       # properties keys on one endless line
    'variable "password" {\n default = 1 \n',   # HCL variables with no closing brace
])
def test_text_dense_with_triggers_costs_time_in_proportion_to_its_length(unit):
    import time

    def cost(size: int) -> float:
        text = unit * (size // len(unit))
        start = time.process_time()
        SCANNER.scan(text)
        return time.process_time() - start

    cost(20_000)  # warm the caches
    small, large = min(cost(20_000) for _ in range(3)), min(cost(80_000) for _ in range(3))
    # Four times the text: linear is about 4x; quadratic would be 16x.
    assert large < 8 * small + 0.01, (small, large)
