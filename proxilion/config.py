"""Settings: one frozen value built from options > environment > config file > defaults.

Every setting is declared once in L{SPECS}; the twistd options, the environment
names, the YAML keys, the README table and the validation all come from it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any, Callable, Literal, Mapping, TypedDict, cast, get_args
from urllib.parse import urlsplit

import attrs
import yaml

from proxilion.providers.names import PROVIDER_NAMES

__all__ = ["ConfigError", "RateLimitEntry", "Settings", "SPECS", "Spec", "load_settings", "setting", "PROVIDER_NAMES"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LimitScope = Literal["identity", "tenant", "provider", "identity+provider", "global"]
LimitUnit = Literal["requests", "tokens"]


class RateLimitEntry(TypedDict):
    """One extra token-bucket limit from the config file, validated."""

    name: str
    scope: LimitScope
    per_minute: int
    burst: int
    unit: LimitUnit


class ConfigError(ValueError):
    """A setting has a bad value; the message names the setting and the problem."""


def _int_range(lo: int, hi: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"must be an integer, got {value!r}")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError(f"must be an integer, got {value!r}") from None
        if not lo <= number <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {number}")
        return number

    return parse


def _positive_float(value: Any) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError(f"must be a number of seconds, got {value!r}") from None
    if not number > 0 or number != number or number == float("inf"):
        raise ValueError(f"must be a positive number, got {value!r}")
    return number


def _non_negative_float(value: Any) -> float:
    if str(value).strip() in ("0", "0.0"):
        return 0.0
    return _positive_float(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}; got {value!r}")
        return text

    return parse


def _text(value: Any) -> str:
    return str(value).strip()


def _optional_text(value: Any) -> str | None:
    text = str(value).strip()
    return text or None


def _host(value: Any) -> str:
    text = str(value).strip()
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not text or any(c.isspace() for c in text):
            raise ValueError(f"must be an IP address or host name, got {value!r}") from None
    return text


def _size(value: Any) -> int:
    """Bytes, with an optional K/M/G (binary) suffix."""
    text = str(value).strip().upper().removesuffix("B").removesuffix("I")
    factor = 1
    for suffix, mult in (("K", 1024), ("M", 1024**2), ("G", 1024**3)):
        if text.endswith(suffix):
            text, factor = text[:-1], mult
            break
    try:
        number = int(float(text) * factor)
    except ValueError:
        raise ValueError(f"must be a size in bytes (e.g. 10M), got {value!r}") from None
    if number <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    return number


def _networks(value: Any) -> tuple[IPNetwork, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    nets: list[IPNetwork] = []
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP network (e.g. 10.0.0.0/8)") from None
    return tuple(nets)


def _url(*schemes: str) -> Callable[[Any], str | None]:
    def parse(value: Any) -> str | None:
        text = str(value).strip()
        if not text:
            return None
        parts = urlsplit(text)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"must be a {'/'.join(s + '://' for s in schemes)} URL, got a value with scheme {parts.scheme!r}")
        try:
            parts.port
        except ValueError:
            raise ValueError("has an invalid port") from None
        return text

    return parse


def _upstream_url(value: Any) -> str:
    text = str(value).strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"has an invalid port: {value!r}") from None
    return text


def _upstreams(value: Any) -> dict[str, str]:
    """C{name=url} pairs (list or comma-separated) or a mapping."""
    if isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        items = value if isinstance(value, (list, tuple)) else str(value).split(",")
        pairs = []
        for item in items:
            item = str(item).strip()
            if not item:
                continue
            name, sep, url = item.partition("=")
            if not sep:
                raise ValueError(f"{item!r} must look like NAME=URL, e.g. openai=http://127.0.0.1:9000")
            pairs.append((name, url))
    result: dict[str, str] = {}
    for name, url in pairs:
        name = str(name).strip().lower()
        if name not in PROVIDER_NAMES:
            raise ValueError(f"unknown provider {name!r}; known: {', '.join(PROVIDER_NAMES)}")
        try:
            result[name] = _upstream_url(url)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    return result


def _rate_limits(value: Any) -> tuple[RateLimitEntry, ...]:
    """Extra token-bucket limits from the config file: [{scope, per_minute, burst, unit}]."""
    if not isinstance(value, (list, tuple)):
        raise ValueError("must be a list of {scope, per_minute, burst, unit} entries")
    out: list[RateLimitEntry] = []
    scopes = get_args(LimitScope)
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise ValueError(f"entry #{index + 1} must be a mapping")
        unknown = set(item) - {"scope", "per_minute", "burst", "unit", "name"}
        if unknown:
            raise ValueError(f"entry #{index + 1}: unknown key(s) {', '.join(sorted(unknown))}")
        scope = str(item.get("scope", "identity"))
        if scope not in scopes:
            raise ValueError(f"entry #{index + 1}: scope must be one of {', '.join(scopes)}; got {scope!r}")
        unit = str(item.get("unit", "requests"))
        if unit not in get_args(LimitUnit):
            raise ValueError(f"entry #{index + 1}: unit must be requests or tokens; got {unit!r}")
        try:
            per_minute = _int_range(1, 10**9)(item.get("per_minute"))
            burst = _int_range(1, 10**9)(item.get("burst", per_minute))
        except ValueError as e:
            raise ValueError(f"entry #{index + 1}: {e}") from None
        name = str(item.get("name") or f"{scope}-{unit}")
        out.append({"name": name, "scope": cast(LimitScope, scope), "per_minute": per_minute, "burst": burst, "unit": cast(LimitUnit, unit)})
    return tuple(out)


def _connect_allow(value: Any) -> tuple[str, ...]:
    """CONNECT targets allowed beyond the default: host[:port] patterns (``*`` wildcards; port defaults to 443)."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    patterns = []
    for item in items:
        item = str(item).strip().lower()
        if not item:
            continue
        if any(c.isspace() or c in "/@?#" for c in item):
            raise ValueError(f"{item!r} must look like host, host:port or *.example.com:443")
        patterns.append(item)
    return tuple(patterns)


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@attrs.frozen
class Spec:
    """One setting: its attribute name, env var, option flag, parser, default and help."""

    env: str | None
    parse: Callable[[Any], Any]
    default: Any
    help: str
    flag: str | None = None
    repeatable: bool = False
    secret: bool = False
    file_only: bool = False
    # Help for a flag that switches a default-on setting off (`--no-...`): `help` describes the setting.
    off_help: str | None = None
    # Filled in from the attribute name when L{SPECS} is derived from L{Settings}.
    name: str = ""

    @property
    def option(self) -> str:
        return self.flag or self.name.replace("_", "-")

    @property
    def is_flag(self) -> bool:
        return self.parse is _bool

    @property
    def cli_flag(self) -> str:
        """The command-line spelling: a flag can only switch a setting away from its default."""
        return "no-" + self.option if self.is_flag and self.default else self.option

    @property
    def cli_help(self) -> str:
        return self.off_help if self.is_flag and self.default and self.off_help else self.help


_SPEC = "proxilion.spec"


def setting(
    env: str | None,
    parse: Callable[[Any], Any],
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    repeatable: bool = False,
    secret: bool = False,
    file_only: bool = False,
    off_help: str | None = None,
) -> Any:
    """Declare one field of L{Settings}; its L{Spec} rides in the field's metadata."""
    spec = Spec(env, parse, default, help, flag=flag, repeatable=repeatable, secret=secret, file_only=file_only, off_help=off_help)
    return attrs.field(repr=not secret, metadata={_SPEC: spec})


@attrs.frozen
class Settings:
    """Every setting of one Proxilion process, validated. Build with L{load_settings}.

    One line per setting: its type, then env var, parser, default and help (see L{setting}).
    """

    bind: str = setting("BIND_ADDRESS", _host, "0.0.0.0", "Address the proxy and admin ports listen on.")
    port: int = setting("PORT", _int_range(0, 65535), 8787, "Proxy port (load balancers probe /health here).")
    admin_port: int = setting("ADMIN_PORT", _int_range(0, 65535), 8788, "Admin port: /health /ready /status /metrics and the API.")
    upstreams: dict[str, str] = setting(None, _upstreams, {}, "Point a provider elsewhere: NAME=URL (repeatable); env PROXILION_UPSTREAM_<NAME>=URL.", flag="upstream", repeatable=True)
    connect_timeout: float = setting("CONNECT_TIMEOUT", _positive_float, 10.0, "Seconds to connect to an upstream.")
    response_timeout: float = setting("UPSTREAM_TIMEOUT", _positive_float, 120.0, "Seconds to wait for an upstream's response headers (504 after).", flag="upstream-timeout")
    stream_idle_timeout: float = setting("STREAM_IDLE_TIMEOUT", _positive_float, 300.0, "Seconds a response body may stay silent before it is cut.")
    client_timeout: float = setting("CLIENT_TIMEOUT", _positive_float, 60.0, "Seconds a client may stay idle while sending its request.")
    max_body_size: int = setting("MAX_BODY_SIZE", _size, 10 * 1024 * 1024, "Largest request body accepted (413 above); bytes or 10M-style.")
    max_headers: int = setting("MAX_HEADERS", _int_range(8, 1000), 100, "Most request headers accepted (431 above).")
    max_header_size: int = setting("MAX_HEADER_SIZE", _size, 16384, "Longest request header line accepted (431 above).")
    pool_size: int = setting("POOL_SIZE", _int_range(1, 100000), 128, "Persistent upstream connections kept per host.")
    log_format: Literal["json", "text"] = setting("LOG_FORMAT", _choice("json", "text"), "json", "Log line format: json or text.")
    log_level: Literal["debug", "info", "warn", "error"] = setting("LOG_LEVEL", _choice("debug", "info", "warn", "error"), "info", "Lowest log level written.")
    admin_token: str | None = setting("ADMIN_TOKEN", _optional_text, None, "Bearer token for the admin API (/api/v1/*); unset disables the API.", secret=True)
    instance_id: str = setting("INSTANCE_ID", _text, None, "This replica's name in analytics rows (default: hostname-pid).")
    trusted_proxies: tuple[IPNetwork, ...] = setting("TRUSTED_PROXIES", _networks, (), "Load balancers whose client address is believed (comma-separated CIDRs): their CLIENT_IP_HEADER, their PROXY protocol header.")
    client_ip_header: Literal["x-forwarded-for", "forwarded"] = setting("CLIENT_IP_HEADER", _choice("x-forwarded-for", "forwarded"), "x-forwarded-for", "The one header trusted proxies write the client into: x-forwarded-for or forwarded (RFC 7239); the other is ignored.")
    proxy_protocol: bool = setting("PROXY_PROTOCOL", _bool, False, "Trusted proxies open each proxy-port connection with a PROXY protocol v1/v2 header (required from them; never honoured from others).")
    identity_header: str = setting("IDENTITY_HEADER", _text, "x-user-id", "Header naming the caller when no provider key is sent.")
    tenant_header: str | None = setting("TENANT_HEADER", _optional_text, None, "Header naming the caller's tenant (for tenant-wide limits).")
    inspection: bool = setting("INSPECTION", _bool, True, "Inspect prompts and answers; false forwards everything unscanned (troubleshooting, benchmarks).", off_help="Turn inspection off: forward prompts and answers unscanned (troubleshooting, benchmarks).")
    max_findings_per_body: int = setting("MAX_FINDINGS_PER_BODY", _int_range(1, 10**7), 5000, "A body (or streamed answer) with more findings than this is blocked as abusive (403, too_many_findings).")
    scan_offload_bytes: int = setting("SCAN_OFFLOAD_BYTES", _size, 64 * 1024, "Bodies larger than this (or compressed and decoding past it) are decoded and scanned in the scan pool, off the reactor.")
    scan_workers: int = setting("SCAN_WORKERS", _int_range(1, 256), 2, "Worker processes of the scan pool.")
    scan_queue_size: int = setting("SCAN_QUEUE_SIZE", _int_range(0, 10000), 8, "Large bodies waiting for a scan worker; beyond it they are refused with 503.")
    stream_max_event_bytes: int = setting("STREAM_MAX_EVENT_BYTES", _size, 64 * 1024, "A streamed answer's event larger than this is not scanned (that scan would hold the reactor): the stream ends with the provider's error event (stream_event_too_large), or passes uninspected if on_scanner_error is allow.")
    policy_file: str | None = setting("POLICY_FILE", _optional_text, None, "Inspection policy YAML (default: the shipped policy).", flag="policy")
    rate_limit_store: Literal["memory", "redis"] = setting("RATE_LIMIT_STORE", _choice("memory", "redis"), "memory", "Rate limit buckets: memory (per instance) or redis (shared).")
    rate_limit_per_minute: int = setting("RATE_LIMIT_PER_MINUTE", _int_range(0, 10**9), 600, "Requests per minute per identity (0 turns limiting off).")
    rate_limit_burst: int = setting("RATE_LIMIT_BURST", _int_range(1, 10**9), 100, "Burst size of the per-identity bucket.")
    rate_limit_fail_closed: bool = setting("RATE_LIMIT_FAIL_CLOSED", _bool, False, "Answer 503 instead of falling back to local buckets when Redis fails.")
    rate_limits: tuple[RateLimitEntry, ...] = setting(None, _rate_limits, (), "More limits (config file only): a list of {name, scope, per_minute, burst, unit}; see docs/RATE_LIMITING.md.", file_only=True)
    redis_url: str | None = setting("REDIS_URL", _url("redis", "rediss"), None, "Redis for shared rate limits: redis://[:password@]host:port/db or rediss://.", secret=True)
    redis_sentinels: str = setting("REDIS_SENTINELS", _text, "", "Sentinel addresses host:port,host:port (with REDIS_SENTINEL_MASTER).")
    redis_sentinel_master: str | None = setting("REDIS_SENTINEL_MASTER", _optional_text, None, "Sentinel master name.")
    redis_cluster: bool = setting("REDIS_CLUSTER", _bool, False, "Treat REDIS_URL as a seed node of a Redis Cluster.")
    redis_timeout: float = setting("REDIS_TIMEOUT", _positive_float, 0.05, "Seconds per Redis call before falling back.")
    data_dir: str = setting("PROXILION_DATA_DIR", _text, "proxilion-data", "Directory for the SQLite analytics file and the spool.")
    analytics_dsn: str | None = setting("ANALYTICS_DSN", _url("postgresql", "postgres", "sqlite"), None, "postgresql://user:pass@host/db for shared analytics (default: SQLite in data_dir).", secret=True)
    analytics_flush_interval: float = setting("ANALYTICS_FLUSH_INTERVAL", _positive_float, 1.0, "Seconds between analytics flushes.")
    analytics_batch_size: int = setting("ANALYTICS_BATCH_SIZE", _int_range(1, 100000), 500, "Rows per analytics insert batch.")
    analytics_queue_size: int = setting("ANALYTICS_QUEUE_SIZE", _int_range(100, 10**7), 100000, "Rows held in memory before spilling to the spool.")
    analytics_spool_max_bytes: int = setting("ANALYTICS_SPOOL_MAX_BYTES", _size, 1024**3, "Largest spool file while the database is down.")
    analytics_journal_max_bytes: int = setting("ANALYTICS_JOURNAL_MAX_BYTES", _size, 256 * 1024**2, "Largest audit journal (rows not yet committed or spooled); beyond it rows are not crash-safe (counted).")
    audit_fail_closed: bool = setting("AUDIT_FAIL_CLOSED", _bool, False, "Answer 503 while audit rows can be neither journaled, stored nor spooled.")
    analytics_retention_days: int = setting("ANALYTICS_RETENTION_DAYS", _int_range(0, 36500), 90, "Days audit rows are kept (0 keeps them forever).")
    analytics_truncate_ip: bool = setting("ANALYTICS_TRUNCATE_IP", _bool, False, "Store client IPs truncated to /24 (IPv4) or /48 (IPv6).")
    drain_grace: float = setting("DRAIN_GRACE", _non_negative_float, 5.0, "Seconds /health reports draining before the port closes.")
    drain_timeout: float = setting("DRAIN_TIMEOUT", _positive_float, 25.0, "Seconds in-flight requests get to finish during shutdown.")
    ca_cert_file: str | None = setting("CA_CERT_FILE", _optional_text, None, "Interception CA certificate (PEM), the same file on every replica; enables CONNECT interception. Re-read on SIGHUP.")
    ca_key_file: str | None = setting("CA_KEY_FILE", _optional_text, None, "Private key of CA_CERT_FILE (PEM, unencrypted, mode 0600); never logged.")
    ca_extra_cert_file: str | None = setting("CA_EXTRA_CERT_FILE", _optional_text, None, "During a CA rotation: the other CA certificate clients may still trust (reported in /status, printed by `proxilion ca export`; never signs).")
    connect_policy: Literal["deny", "tunnel"] = setting("CONNECT_POLICY", _choice("deny", "tunnel"), "deny", "CONNECT to a host that is not a provider: deny (403) or tunnel (blind relay, audited as tunnel).")
    connect_allow: tuple[str, ...] = setting("CONNECT_ALLOW", _connect_allow, (), "CONNECT targets allowed beyond the default (comma-separated host[:port], * wildcards); with it, tunnel reaches only these. IP literals and ports other than 443 need it.")
    tls_port: int = setting("TLS_PORT", _int_range(0, 65535), 0, "Transparent HTTPS listener choosing the leaf by SNI (0: off); needs CA_CERT_FILE.")
    upstream_ca_bundle: str | None = setting("UPSTREAM_CA_BUNDLE", _optional_text, None, "PEM bundle trusted for upstream TLS instead of the system store.")
    reuse_port: bool = setting("REUSE_PORT", _bool, False, "Listen with SO_REUSEPORT so several processes share the proxy port.")


SPECS: tuple[Spec, ...] = tuple(attrs.evolve(f.metadata[_SPEC], name=f.name) for f in attrs.fields(Settings))

_BY_NAME = {spec.name: spec for spec in SPECS}


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"config: cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config: {path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a mapping of settings")
    unknown = sorted(str(k) for k in data if str(k).replace("-", "_") not in _BY_NAME)
    if unknown:
        raise ConfigError(f"config: {path}: unknown setting(s): {', '.join(unknown)}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _merged_upstreams(
    options: Mapping[str, Any], environ: Mapping[str, str], from_file: Mapping[str, Any], config_file: str | None
) -> dict[str, str]:
    """Upstream overrides merged per provider: `--upstream gemini=...` must not drop the file's openai entry."""
    layers: list[tuple[str, Any]] = []
    if "upstreams" in from_file:
        layers.append((f"upstreams (in {config_file})", from_file["upstreams"]))
    for key in sorted(environ):
        if key.startswith("PROXILION_UPSTREAM_"):
            layers.append((key, {key.removeprefix("PROXILION_UPSTREAM_"): environ[key]}))
    if "upstreams" in options:
        layers.append(("--upstream", options["upstreams"]))
    merged: dict[str, str] = {}
    for source, raw in layers:
        try:
            merged.update(_upstreams(raw))
        except ValueError as e:
            raise ConfigError(f"{source}: {e}") from None
    return merged


def settings_warnings(settings: Settings) -> list[str]:
    """Valid but probably unintended settings (one line each)."""
    warnings = []
    if settings.tenant_header is None:
        for limit in settings.rate_limits:
            if limit["scope"] == "tenant":
                warnings.append(f"rate limit {limit['name']!r} is tenant-scoped but TENANT_HEADER (tenant_header) "
                                "is not set: no request has a tenant, so it never applies")
    return warnings


def load_settings(
    options: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> Settings:
    """Merge options > environment > config file > defaults and validate each value.

    C{options} maps setting names to values given on the command line (None
    or absent = not given). Raises L{ConfigError} naming the first bad setting.
    """
    options = {k: v for k, v in (options or {}).items() if v is not None and v != [] and v != ()}
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get("PROXILION_CONFIG") or None
    from_file = _read_file(config_file) if config_file else {}
    values: dict[str, Any] = {}
    for spec in SPECS:
        raw, source = spec.default, None
        if spec.name in from_file:
            raw, source = from_file[spec.name], f"{spec.name} (in {config_file})"
        if spec.env and spec.env in environ:
            raw, source = environ[spec.env], spec.env
        if spec.name in options:
            raw, source = options[spec.name], f"--{spec.option}"
        if source is None:
            values[spec.name] = raw
            continue
        try:
            values[spec.name] = spec.parse(raw)
        except ValueError as e:
            raise ConfigError(f"{source}: {e}") from None
    values["upstreams"] = _merged_upstreams(options, environ, from_file, config_file)
    if values["instance_id"] is None:
        values["instance_id"] = _default_instance_id()
    if values["rate_limit_store"] == "redis" and not values["redis_url"] and not values["redis_sentinel_master"]:
        raise ConfigError("RATE_LIMIT_STORE: redis needs REDIS_URL (or REDIS_SENTINELS and REDIS_SENTINEL_MASTER)")
    if bool(values["redis_sentinels"]) != bool(values["redis_sentinel_master"]):
        raise ConfigError("REDIS_SENTINELS: needs REDIS_SENTINEL_MASTER too (and the other way round)")
    if values["ca_cert_file"] and not values["ca_key_file"]:
        raise ConfigError("CA_KEY_FILE: must be set with CA_CERT_FILE")
    if values["tls_port"] and not values["ca_cert_file"]:
        raise ConfigError("TLS_PORT: needs CA_CERT_FILE and CA_KEY_FILE")
    if values["tls_port"] and values["tls_port"] in (values["port"], values["admin_port"]):
        raise ConfigError(f"TLS_PORT: must differ from PORT and ADMIN_PORT ({values['tls_port']})")
    if values["port"] and values["port"] == values["admin_port"]:
        raise ConfigError(f"ADMIN_PORT: must differ from PORT ({values['port']})")
    return Settings(**values)
