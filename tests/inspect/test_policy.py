import pytest

from valuegen import luhn_digit

from proxilion.inspect.decide import decide
from proxilion.inspect.findings import Finding
from proxilion.inspect.policy import PolicyError, load_policy, parse_policy


def _f(type_, category="pii", severity="medium"):
    return Finding(type_, category, severity, (), "messages[0].content", 0, 1)


def test_default_policy_loads_and_has_documented_rules():
    policy = load_policy(None)
    ids = [r.id for r in policy.rules]
    assert ids == ["alert-test-keys", "block-credentials", "block-cards-and-ssn", "redact-contact-details", "log-other-findings",
                   "redact-secrets-in-answers", "log-answer-findings"]
    assert policy.settings.on_scanner_error == "block"


def test_error_names_rule_and_field():
    with pytest.raises(PolicyError) as err:
        parse_policy({"rules": [{"id": "ok", "action": "log"}, {"id": "block-cards", "action": "deny"}]})
    assert "rule 'block-cards' (#2): action: must be one of block, redact, alert, log, allow; got 'deny'" in str(err.value)


def test_every_error_is_listed():
    data = {
        "settings": {"on_scanner_error": "maybe", "stream_holdback_chars": 1, "redaction": {"style": "hash"}},
        "detectors": {"custom": [{"name": "emp", "pattern": "(", "validator": "nope"}], "disable": ["zzz"]},
        "rules": [{"action": "block"}, {"id": "x", "action": "block", "priority": "high",
                                        "match": {"types": ["nope"], "min_severity": "huge", "min_count": -1,
                                                  "providers": ["aol"]}, "direction": "sideways"},
                  {"id": "x", "action": "log"}],
    }
    with pytest.raises(PolicyError) as err:
        parse_policy(data, environ={})
    text = str(err.value)
    for needle in ["on_scanner_error", "stream_holdback_chars", "redaction.hash_key", "detector 'emp' (#1): pattern",
                   "detector 'emp' (#1): validator", "disable: unknown detector type 'zzz'", "rule #1: id",
                   "rule 'x' (#2): priority", "rule 'x' (#2): match.types", "rule 'x' (#2): match.min_severity",
                   "rule 'x' (#2): match.min_count", "rule 'x' (#2): match.providers", "rule 'x' (#2): direction",
                   "rule 'x' (#3): id: is used by another rule"]:
        assert needle in text, needle
    assert len(err.value.errors) >= 14


def test_load_policy_reports_yaml_and_io_errors(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("rules: [\n")
    with pytest.raises(PolicyError, match="invalid YAML"):
        load_policy(str(bad))
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(str(tmp_path / "missing.yaml"))


def test_hash_key_from_environment():
    policy = parse_policy({"settings": {"redaction": {"style": "hash"}}, "rules": []},
                          environ={"PROXILION_REDACTION_KEY": "s3cr3t-hmac-key"})
    assert policy.settings.redaction.hash_key == b"s3cr3t-hmac-key"
    assert "s3cr3t-hmac-key" not in repr(policy)


def _policy(*rules):
    return parse_policy({"rules": list(rules)}, environ={})


def test_highest_priority_rule_decides_each_finding():
    policy = _policy({"id": "low", "priority": 1, "action": "block"},
                     {"id": "high", "priority": 10, "match": {"types": ["email"]}, "action": "redact"})
    d = decide(policy, "request", "openai", "/v1/chat/completions", None, [_f("email")])
    assert (d.action, d.rule, d.findings[0].action) == ("redact", "high", "redact")
    d = decide(policy, "request", "openai", "/", None, [_f("email"), _f("phone")])
    assert (d.action, d.rule, d.message) == ("block", "low", "blocked: 1 phone")


def test_strongest_action_wins_across_findings_and_ties_go_to_file_order():
    policy = _policy({"id": "a", "priority": 5, "match": {"types": ["email"]}, "action": "alert"},
                     {"id": "b", "priority": 5, "match": {"types": ["email"]}, "action": "block"},
                     {"id": "c", "priority": 1, "match": {"types": ["ip_address"]}, "action": "log"})
    d = decide(policy, "request", "openai", "/", None, [_f("email"), _f("ip_address")])
    assert (d.action, d.rule) == ("alert", "a")


def test_min_count_and_min_severity():
    policy = _policy({"id": "many", "match": {"types": ["email"], "min_count": 3}, "action": "block"},
                     {"id": "crit", "match": {"min_severity": "critical"}, "action": "alert"})
    assert decide(policy, "request", "x", "/", None, [_f("email")] * 2).action == "log"
    assert decide(policy, "request", "x", "/", None, [_f("email")] * 3).action == "block"
    assert decide(policy, "request", "x", "/", None, [_f("ssn", severity="critical")]).action == "alert"


def test_scope_by_provider_identity_path_and_direction():
    policy = _policy({"id": "r", "action": "block", "match": {"providers": ["openai"], "identities": ["team-*"],
                                                              "paths": ["/v1/chat/*"]}})
    f = [_f("email")]
    assert decide(policy, "request", "openai", "/v1/chat/completions", "team-a", f).action == "block"
    assert decide(policy, "request", "anthropic", "/v1/chat/completions", "team-a", f).action == "log"
    assert decide(policy, "request", "openai", "/v1/chat/completions", "ops", f).action == "log"
    assert decide(policy, "request", "openai", "/v1/embeddings", "team-a", f).action == "log"
    assert decide(policy, "response", "openai", "/v1/chat/completions", "team-a", f).action == "log"


def test_allow_rule_exempts_and_min_count_zero_applies_without_findings():
    policy = _policy({"id": "exempt", "priority": 100, "match": {"identities": ["svc-trusted"]}, "action": "allow"},
                     {"id": "everything", "priority": 1, "action": "block"},
                     {"id": "deny-guests", "priority": 50, "match": {"identities": ["guest"], "min_count": 0},
                      "action": "block"})
    assert decide(policy, "request", "x", "/", "svc-trusted", [_f("email")]).action == "allow"
    assert decide(policy, "request", "x", "/", "alice", []).action == "allow"
    d = decide(policy, "request", "x", "/", "guest", [])
    assert (d.action, d.rule) == ("block", "deny-guests")


def test_custom_detector_from_policy():
    from proxilion.inspect.inspector import Inspector
    policy = parse_policy({
        "detectors": {"custom": [{"name": "employee_id", "pattern": r"\bEMP-\d{6}\b", "context": ["employee"],
                                  "category": "hr", "severity": "high"},
                                 {"name": "member_card", "pattern": r"\b\d{12}\b", "validator": "luhn"}]},
        "rules": [{"id": "hr", "match": {"categories": ["hr"]}, "action": "block"}],
    }, environ={})
    ins = Inspector(policy)
    v = ins.inspect_request("openai", "/", b"employee EMP-123456")
    assert (v.action, [f.type for f in v.findings]) == ("block", ["employee_id"])
    assert ins.inspect_request("openai", "/", b"ticket EMP-123456").action == "allow"
    valid = "12345678901" + luhn_digit("12345678901")
    invalid = valid[:-1] + str((int(valid[-1]) + 1) % 10)
    assert [f.type for f in ins.inspect_request("x", "/", f"no {valid}".encode()).findings] == ["member_card"]
    assert [f.type for f in ins.inspect_request("x", "/", f"no {invalid}".encode()).findings] == []


# --- extends: default ---------------------------------------------------------


def _ids(policy):
    return [r.id for r in policy.rules]


def test_extends_default_keeps_every_default_rule_and_adds_new_ones():
    default = load_policy(None)
    policy = parse_policy({"extends": "default", "rules": [
        {"id": "block-ip-addresses", "priority": 60, "match": {"types": ["ip_address"]}, "action": "block"}]}, environ={})
    assert _ids(policy) == _ids(default) + ["block-ip-addresses"]
    assert policy.settings == default.settings
    card = _f("credit_card", "financial", "critical")
    assert decide(policy, "request", "openai", "/", None, [card]).action == "block"
    assert decide(policy, "response", "openai", "/", None, [card]).action == "redact"
    assert decide(policy, "request", "openai", "/", None, [_f("ip_address")]).action == "block"


def test_extends_overrides_a_rule_by_id_and_disables_by_id():
    policy = parse_policy({"extends": "default", "disable": ["redact-secrets-in-answers"], "rules": [
        {"id": "redact-contact-details", "priority": 50, "match": {"types": ["email", "phone"]}, "action": "block"}]},
        environ={})
    assert "redact-secrets-in-answers" not in _ids(policy)
    # An override keeps the default rule's place: file order still breaks ties.
    assert _ids(policy).index("redact-contact-details") == _ids(load_policy(None)).index("redact-contact-details")
    assert decide(policy, "request", "openai", "/", None, [_f("email")]).action == "block"
    assert decide(policy, "response", "openai", "/", None, [_f("credit_card", "financial", "critical")]).action == "log"


def test_extends_merges_settings_key_by_key():
    policy = parse_policy({"extends": "default", "settings": {"redaction": {"style": "mask"}, "stream_holdback_chars": 512}},
                          environ={})
    assert policy.settings.redaction.style == "mask"
    assert policy.settings.redaction.placeholder == "[REDACTED:{TYPE}]"
    assert policy.settings.stream_holdback_chars == 512
    assert policy.settings.on_scanner_error == "block"
    assert _ids(policy) == _ids(load_policy(None))


def test_extends_errors_name_the_file_position_of_the_rule():
    with pytest.raises(PolicyError) as err:
        parse_policy({"extends": "strict", "disable": ["no-such-rule", 3], "rules": [
            {"id": "a", "action": "log"}, {"id": "b", "action": "deny"}]}, environ={})
    errors = err.value.errors
    assert any("extends" in e and "'default'" in e for e in errors), errors
    with pytest.raises(PolicyError) as err:
        parse_policy({"extends": "default", "disable": ["no-such-rule"], "rules": [
            {"id": "a", "action": "log"}, {"id": "b", "action": "deny"}]}, environ={})
    errors = err.value.errors
    assert any("disable" in e and "'no-such-rule'" in e for e in errors), errors
    assert any(e.startswith("rule 'b' (#2): action") for e in errors), errors
    with pytest.raises(PolicyError) as err:
        parse_policy({"disable": ["log-other-findings"], "rules": []}, environ={})
    assert any("disable" in e and "extends" in e for e in err.value.errors)


def test_default_policy_text_is_the_shipped_file():
    import yaml

    from proxilion.inspect.policy import default_policy_text

    text = default_policy_text()
    assert text.startswith("# Proxilion's shipped policy")
    # extends: default takes a policy's detectors section as written: merging one with the default's is not built.
    assert "detectors" not in yaml.safe_load(text)
    assert _ids(parse_policy(yaml.safe_load(text), environ={})) == _ids(load_policy(None))


def test_extends_with_a_custom_detector_and_a_rule_for_it():
    policy = parse_policy({"extends": "default",
                           "detectors": {"custom": [{"name": "employee_id", "pattern": r"\bEMP-\d{6}\b", "category": "hr"}]},
                           "rules": [{"id": "block-hr", "priority": 90, "match": {"categories": ["hr"]}, "action": "block"}]},
                          environ={})
    assert [d.name for d in policy.custom_detectors] == ["employee_id"]
    assert _ids(policy)[-1] == "block-hr" and "block-credentials" in _ids(policy)
