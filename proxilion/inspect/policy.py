"""The policy file: rules that turn findings into actions, redaction settings, custom detectors.

Loading validates everything and reports every problem at once, each naming
the rule (id and position) and the field, so an operator can fix a file in one go.
"""

from __future__ import annotations

import fnmatch
import os
import re
from importlib import resources
from typing import Any, Literal

import attrs
import yaml

from proxilion.inspect.catalog import BUILTIN, CATEGORIES
from proxilion.inspect.findings import ACTIONS, SEVERITIES, SEVERITY_RANK, Action
from proxilion.inspect.scanner import CustomDetector
from proxilion.inspect.textview import context_words
from proxilion.inspect.validators import VALIDATORS
from proxilion.providers.names import PROVIDER_LABELS

PROVIDERS = PROVIDER_LABELS
DIRECTIONS = ("request", "response", "both")
REDACTION_STYLES = ("placeholder", "mask", "hash")
DEFAULT_HASH_KEY_ENV = "PROXILION_REDACTION_KEY"


class PolicyError(Exception):
    """An invalid policy; str() lists every problem found."""

    def __init__(self, errors: list[str], source: str = "policy"):
        self.errors = list(errors)
        self.source = source
        super().__init__(f"{source}: {len(errors)} error(s)\n" + "\n".join(f"  - {e}" for e in errors))

    def lines(self) -> list[str]:
        """One line per problem, each naming the file: for terminals and CI logs."""
        return [f"{self.source}: " + " ".join(error.split()) for error in self.errors]


@attrs.frozen
class Rule:
    id: str
    action: Action
    priority: int = 0
    direction: str = "request"
    types: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    min_severity: str = "low"
    min_count: int = 1
    providers: tuple[str, ...] = ()
    identities: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    index: int = 0

    def applies_to(self, direction: str, provider: str, path: str, identity: str | None) -> bool:
        if self.direction != "both" and self.direction != direction:
            return False
        if self.providers and provider not in self.providers:
            return False
        if self.identities and not any(fnmatch.fnmatchcase(identity or "", g) for g in self.identities):
            return False
        return not self.paths or any(fnmatch.fnmatchcase(path, g) for g in self.paths)

    def selects(self, finding_type: str, category: str, severity: str) -> bool:
        if SEVERITY_RANK[severity] < SEVERITY_RANK[self.min_severity]:
            return False
        if not self.types and not self.categories:
            return True
        return finding_type in self.types or category in self.categories


@attrs.frozen
class Redaction:
    style: str = "placeholder"
    placeholder: str = "[REDACTED:{TYPE}]"
    mask_char: str = "*"
    keep_last: int = 4
    hash_key: bytes = attrs.field(default=b"", repr=False)
    hash_length: int = 12


@attrs.frozen
class PolicySettings:
    redaction: Redaction = Redaction()
    on_scanner_error: Literal["block", "allow"] = "block"
    stream_holdback_chars: int = 256
    max_scan_bytes: int = 8 * 1024 * 1024
    disabled_detectors: frozenset[str] = frozenset()


_MAX_SCOPED = 4096


@attrs.frozen
class Policy:
    rules: tuple[Rule, ...]
    settings: PolicySettings = PolicySettings()
    custom_detectors: tuple[CustomDetector, ...] = ()
    source: str = "<default>"

    # Rules in priority order, and the scoped lists already worked out: a policy
    # never changes (a reload builds a new one), and every request asks again.
    _ordered: tuple[Rule, ...] = attrs.field(init=False, repr=False, eq=False)
    _scoped: dict[tuple[Any, ...], tuple[Rule, ...]] = attrs.field(init=False, repr=False, eq=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_ordered", tuple(sorted(self.rules, key=lambda r: (-r.priority, r.index))))

    def rules_for(self, direction: str, provider: str, path: str, identity: str | None) -> tuple[Rule, ...]:
        """Rules in scope, highest priority first (file order breaks ties)."""
        key = (direction, provider, path, identity)
        scoped = self._scoped.get(key)
        if scoped is None:
            scoped = tuple(r for r in self._ordered if r.applies_to(direction, provider, path, identity))
            if len(self._scoped) >= _MAX_SCOPED:
                self._scoped.clear()
            self._scoped[key] = scoped
        return scoped


class _Errors:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, field: str, problem: str) -> None:
        self.items.append(f"{where}: {field}: {problem}")


def _one_of(value: Any, choices: tuple[str, ...]) -> str:
    return f"must be one of {', '.join(choices)}; got {value!r}"


def _str_list(value: Any, where: str, field: str, errors: _Errors) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.add(where, field, f"must be a string or a list of strings; got {value!r}")
        return ()
    return tuple(value)


_RULE_KEYS = {"id", "description", "priority", "direction", "match", "action", "enabled"}
_MATCH_KEYS = {"types", "categories", "min_severity", "min_count", "providers", "identities", "paths"}


def _parse_rule(raw: Any, index: int, position: str, known_types: set[str], known_categories: set[str],
                seen_ids: set[str], errors: _Errors) -> Rule | None:
    """C{index} orders the rule (ties in priority); C{position} names it in errors ("#2": its place in the file)."""
    if not isinstance(raw, dict):
        errors.add(f"rule {position}", "rule", f"must be a mapping; got {raw!r}")
        return None
    rule_id = raw.get("id")
    where = f"rule {rule_id!r} ({position})" if isinstance(rule_id, str) else f"rule {position}"
    if not isinstance(rule_id, str) or not rule_id:
        errors.add(where, "id", "is required and must be a non-empty string")
    elif rule_id in seen_ids:
        errors.add(where, "id", "is used by another rule")
    else:
        seen_ids.add(rule_id)
    for key in sorted(set(raw) - _RULE_KEYS):
        errors.add(where, key, "unknown field")
    action = raw.get("action")
    if action not in ACTIONS:
        errors.add(where, "action", _one_of(action, tuple(reversed(ACTIONS))))
    priority = raw.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        errors.add(where, "priority", f"must be an integer; got {priority!r}")
        priority = 0
    direction = raw.get("direction", "request")
    if direction not in DIRECTIONS:
        errors.add(where, "direction", _one_of(direction, DIRECTIONS))
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        errors.add(where, "enabled", f"must be true or false; got {enabled!r}")
    match = raw.get("match") or {}
    if not isinstance(match, dict):
        errors.add(where, "match", f"must be a mapping; got {match!r}")
        match = {}
    for key in sorted(set(match) - _MATCH_KEYS):
        errors.add(where, f"match.{key}", "unknown field")
    types = _str_list(match.get("types"), where, "match.types", errors)
    for t in types:
        if t not in known_types:
            errors.add(where, "match.types", f"unknown detector type {t!r}")
    categories = _str_list(match.get("categories"), where, "match.categories", errors)
    for c in categories:
        if c not in known_categories:
            errors.add(where, "match.categories", _one_of(c, tuple(sorted(known_categories))))
    min_severity = match.get("min_severity", "low")
    if min_severity not in SEVERITIES:
        errors.add(where, "match.min_severity", _one_of(min_severity, SEVERITIES))
        min_severity = "low"
    min_count = match.get("min_count", 1)
    if not isinstance(min_count, int) or isinstance(min_count, bool) or min_count < 0:
        errors.add(where, "match.min_count", f"must be an integer >= 0; got {min_count!r}")
        min_count = 1
    providers = _str_list(match.get("providers"), where, "match.providers", errors)
    for p in providers:
        if p not in PROVIDERS:
            errors.add(where, "match.providers", _one_of(p, PROVIDERS))
    identities = _str_list(match.get("identities"), where, "match.identities", errors)
    paths = _str_list(match.get("paths"), where, "match.paths", errors)
    if action not in ACTIONS or direction not in DIRECTIONS or not isinstance(rule_id, str) or not enabled:
        return None
    return Rule(id=rule_id, action=action, priority=priority, direction=direction,
                types=frozenset(types), categories=frozenset(categories), min_severity=min_severity,
                min_count=min_count, providers=providers, identities=identities, paths=paths, index=index)


_DETECTOR_KEYS = {"name", "pattern", "validator", "context", "context_window", "category",
                  "severity", "compliance", "ignore_case"}
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")


def _parse_detector(raw: Any, index: int, errors: _Errors) -> CustomDetector | None:
    if not isinstance(raw, dict):
        errors.add(f"detector #{index + 1}", "detector", f"must be a mapping; got {raw!r}")
        return None
    name = raw.get("name")
    where = f"detector {name!r} (#{index + 1})" if isinstance(name, str) else f"detector #{index + 1}"
    ok = True
    for key in sorted(set(raw) - _DETECTOR_KEYS):
        errors.add(where, key, "unknown field")
    if not isinstance(name, str) or not _NAME.match(name):
        errors.add(where, "name", "must be lower_snake_case letters, digits and _")
        ok = False
    elif name in BUILTIN:
        errors.add(where, "name", "is a built-in detector type")
        ok = False
    pattern = raw.get("pattern")
    compiled = None
    if not isinstance(pattern, str) or not pattern:
        errors.add(where, "pattern", "is required and must be a regular expression")
    else:
        try:
            compiled = re.compile(pattern, re.IGNORECASE if raw.get("ignore_case") else 0)
        except re.error as exc:
            errors.add(where, "pattern", f"invalid regular expression: {exc}")
    validator = raw.get("validator")
    if validator is not None and validator not in VALIDATORS:
        errors.add(where, "validator", _one_of(validator, tuple(sorted(VALIDATORS))))
        ok = False
    category = raw.get("category", "pii")
    if not isinstance(category, str) or not _NAME.match(category):
        errors.add(where, "category", "must be a lower_snake_case name")
        ok = False
    severity = raw.get("severity", "medium")
    if severity not in SEVERITIES:
        errors.add(where, "severity", _one_of(severity, SEVERITIES))
        ok = False
    context = _str_list(raw.get("context"), where, "context", errors)
    compliance = _str_list(raw.get("compliance"), where, "compliance", errors)
    window = raw.get("context_window", 48)
    if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= 1000:
        errors.add(where, "context_window", f"must be an integer from 1 to 1000; got {window!r}")
        ok = False
    if not ok or compiled is None or not isinstance(name, str):
        return None
    return CustomDetector(name=name, pattern=compiled, category=category, severity=severity,
                          compliance=compliance, validator=validator,
                          context=context_words(*context) if context else None,
                          context_window=window)


def _parse_redaction(raw: Any, errors: _Errors, environ: dict[str, str]) -> Redaction:
    where = "settings"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.add(where, "redaction", f"must be a mapping; got {raw!r}")
        return Redaction()
    known = {"style", "placeholder", "mask_char", "keep_last", "hash_key", "hash_key_env", "hash_length"}
    for key in sorted(set(raw) - known):
        errors.add(where, f"redaction.{key}", "unknown field")
    style = raw.get("style", "placeholder")
    if style not in REDACTION_STYLES:
        errors.add(where, "redaction.style", _one_of(style, REDACTION_STYLES))
        style = "placeholder"
    placeholder = raw.get("placeholder", "[REDACTED:{TYPE}]")
    if not isinstance(placeholder, str) or any(c in placeholder for c in "\"\\\n"):
        errors.add(where, "redaction.placeholder", "must be a string without quotes, backslashes or newlines")
        placeholder = "[REDACTED:{TYPE}]"
    mask_char = raw.get("mask_char", "*")
    if not isinstance(mask_char, str) or len(mask_char) != 1 or mask_char in "\"\\":
        errors.add(where, "redaction.mask_char", f"must be one character (not a quote or backslash); got {mask_char!r}")
        mask_char = "*"
    keep_last = raw.get("keep_last", 4)
    if not isinstance(keep_last, int) or isinstance(keep_last, bool) or not 0 <= keep_last <= 8:
        errors.add(where, "redaction.keep_last", f"must be an integer from 0 to 8; got {keep_last!r}")
        keep_last = 4
    hash_length = raw.get("hash_length", 12)
    if not isinstance(hash_length, int) or isinstance(hash_length, bool) or not 8 <= hash_length <= 64:
        errors.add(where, "redaction.hash_length", f"must be an integer from 8 to 64; got {hash_length!r}")
        hash_length = 12
    key = raw.get("hash_key")
    env_name = raw.get("hash_key_env", DEFAULT_HASH_KEY_ENV)
    if key is None and isinstance(env_name, str):
        key = environ.get(env_name)
    if style == "hash" and not key:
        errors.add(where, "redaction.hash_key",
                   f"style 'hash' needs a key: set hash_key, or the environment variable {env_name}")
    return Redaction(style=style, placeholder=placeholder, mask_char=mask_char, keep_last=keep_last,
                     hash_key=(key or "").encode("utf-8"), hash_length=hash_length)


def _positive_int(raw: dict[str, Any], key: str, default: int, low: int, high: int, errors: _Errors) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        errors.add("settings", key, f"must be an integer from {low} to {high}; got {value!r}")
        return default
    return value


def default_policy_text() -> str:
    """The shipped policy file, comments included (`proxilion policy show-default`)."""
    return resources.files("proxilion.inspect").joinpath("default_policy.yaml").read_text("utf-8")


def _merge_settings(base: Any, override: Any) -> Any:
    """Mappings merged key by key, at every depth; anything else is replaced."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return override
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge_settings(base.get(key), value) if key in base else value
    return merged


def _extend(data: dict[str, Any], errors: _Errors) -> tuple[dict[str, Any], list[tuple[Any, str]]]:
    """Apply C{extends} and C{disable}: the document to parse, and its rules each with the position errors name.

    Rules whose id is in the base replace it in its place; other rules follow
    the base's; C{disable} drops base rules by id. Settings merge key by key.
    """
    raw_rules = data.get("rules")
    own = [(raw, f"#{i + 1}") for i, raw in enumerate(raw_rules)] if isinstance(raw_rules, list) else []
    extends = data.get("extends")
    disable = _str_list(data.get("disable"), "top level", "disable", errors)
    if extends is None:
        if "disable" in data:
            errors.add("top level", "disable", "only applies to a policy with 'extends: default'")
        return data, own
    if extends != "default":
        errors.add("top level", "extends", f"must be 'default' (the shipped policy); got {extends!r}")
        return data, own
    if "rules" in data and not isinstance(raw_rules, list):
        errors.add("top level", "rules", "must be a list")
    base = yaml.safe_load(default_policy_text())
    base_ids = [raw["id"] for raw in base["rules"]]
    for rule_id in disable:
        if rule_id not in base_ids:
            errors.add("top level", "disable", f"the default policy has no rule {rule_id!r}; its rules: {', '.join(base_ids)}")
    kept = [raw for raw in base["rules"] if raw["id"] not in disable]
    kept_ids = {raw["id"] for raw in kept}
    overrides: dict[str, tuple[Any, str]] = {}
    added = []
    for item in own:
        own_id = item[0].get("id") if isinstance(item[0], dict) else None
        if isinstance(own_id, str) and own_id in kept_ids and own_id not in overrides:
            overrides[own_id] = item
        else:
            # Includes a second rule with an overridden id: parsing reports it as a duplicate.
            added.append(item)
    rules = [overrides.get(raw["id"], (raw, "of the default policy")) for raw in kept] + added
    merged = dict(data)
    # The shipped policy has no detectors section (a test holds it to that): this file's is the whole of it.
    merged["settings"] = _merge_settings(base.get("settings") or {}, data.get("settings") or {})
    return merged, rules


def parse_policy(data: Any, source: str = "<policy>", environ: dict[str, str] | None = None) -> Policy:
    """A Policy from parsed YAML; raises PolicyError listing every problem."""
    environ = dict(os.environ) if environ is None else environ
    errors = _Errors()
    if not isinstance(data, dict):
        raise PolicyError(["top level: must be a mapping with 'rules' (or 'extends: default')"], source)
    for key in sorted(set(data) - {"version", "extends", "disable", "settings", "detectors", "rules"}):
        errors.add("top level", key, "unknown field")
    data, positioned_rules = _extend(data, errors)
    if data.get("version", 1) != 1:
        errors.add("top level", "version", f"must be 1; got {data.get('version')!r}")

    detectors_raw = data.get("detectors") or {}
    custom: list[CustomDetector] = []
    disabled: tuple[str, ...] = ()
    if not isinstance(detectors_raw, dict):
        errors.add("detectors", "detectors", "must be a mapping with 'custom' and/or 'disable'")
    else:
        for key in sorted(set(detectors_raw) - {"custom", "disable"}):
            errors.add("detectors", key, "unknown field")
        disabled = _str_list(detectors_raw.get("disable"), "detectors", "disable", errors)
        for name in disabled:
            if name not in BUILTIN:
                errors.add("detectors", "disable", f"unknown detector type {name!r}")
        raw_custom = detectors_raw.get("custom") or []
        if not isinstance(raw_custom, list):
            errors.add("detectors", "custom", "must be a list")
            raw_custom = []
        for i, raw in enumerate(raw_custom):
            detector = _parse_detector(raw, i, errors)
            if detector is not None:
                custom.append(detector)
    known_types = set(BUILTIN) | {d.name for d in custom}
    known_categories = set(CATEGORIES) | {d.category for d in custom}

    settings_raw = data.get("settings") or {}
    if not isinstance(settings_raw, dict):
        errors.add("settings", "settings", "must be a mapping")
        settings_raw = {}
    for key in sorted(set(settings_raw) - {"redaction", "on_scanner_error", "stream_holdback_chars",
                                           "max_scan_bytes"}):
        errors.add("settings", key, "unknown field")
    redaction = _parse_redaction(settings_raw.get("redaction"), errors, environ)
    on_error = settings_raw.get("on_scanner_error", "block")
    if on_error not in ("block", "allow"):
        errors.add("settings", "on_scanner_error", _one_of(on_error, ("block", "allow")))
    holdback = _positive_int(settings_raw, "stream_holdback_chars", 256, 32, 65536, errors)
    max_scan = _positive_int(settings_raw, "max_scan_bytes", 8 * 1024 * 1024, 1024, 1 << 30, errors)

    rules: list[Rule] = []
    if "extends" not in data and not isinstance(data.get("rules"), list):
        errors.add("top level", "rules", "is required and must be a list (or start the policy with 'extends: default')")
    seen: set[str] = set()
    for i, (raw, position) in enumerate(positioned_rules):
        rule = _parse_rule(raw, i, position, known_types, known_categories, seen, errors)
        if rule is not None:
            rules.append(rule)
    if errors.items:
        raise PolicyError(errors.items, source)
    settings = PolicySettings(redaction=redaction, on_scanner_error=on_error, stream_holdback_chars=holdback,
                        max_scan_bytes=max_scan, disabled_detectors=frozenset(disabled))
    return Policy(rules=tuple(rules), settings=settings, custom_detectors=tuple(custom), source=source)


def policy_warnings(policy: Policy) -> list[str]:
    """Valid but probably unintended: a policy that leaves data unprotected (one line each)."""
    if not policy.rules:
        return [f"{policy.source}: the policy has no rules: nothing is blocked, redacted or alerted on "
                "(start it with 'extends: default' to keep the shipped rules)"]
    # The condition under which the proxy does not read answers at all (Inspector.response_inspection_enabled).
    if not any(rule.direction in ("response", "both") and rule.action != "allow" for rule in policy.rules):
        return [f"{policy.source}: no rule with direction response or both acts on findings: answers are not inspected "
                "(start the policy with 'extends: default' to keep the shipped answer rules)"]
    return []


def load_policy(path: str | None, environ: dict[str, str] | None = None) -> Policy:
    """The policy at `path`, or the shipped default when `path` is None."""
    if path is None:
        text = default_policy_text()
        source = "<default policy>"
    else:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise PolicyError([f"cannot read: {exc.strerror}"], path) from None
        source = path
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError([f"invalid YAML: {exc}"], source) from None
    return parse_policy(data, source, environ)
