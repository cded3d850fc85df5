"""`proxilion check-config` and `proxilion policy show-default`: what a policy author is told."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from proxilion import cli


def _check(capsys: pytest.CaptureFixture[str], tmp_path: Path, policy: str | None, config: str = "") -> tuple[int, str, str]:
    argv = ["check-config"]
    if policy is not None:
        (tmp_path / "policy.yaml").write_text(policy)
        argv += ["--policy", str(tmp_path / "policy.yaml")]
    if config:
        (tmp_path / "config.yaml").write_text(config)
        argv += ["--config", str(tmp_path / "config.yaml")]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("proxilion: warning: ")]


def test_the_shipped_policy_and_an_extension_draw_no_warning(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("TENANT_HEADER", raising=False)
    code, out, err = _check(capsys, tmp_path, None)
    assert (code, err) == (0, "") and "configuration ok" in out
    code, out, err = _check(capsys, tmp_path, "extends: default\nrules:\n  - {id: block-ips, match: {types: [ip_address]}, action: block}\n")
    assert (code, err) == (0, "")


def test_a_policy_without_rules_is_warned_about(capsys, tmp_path) -> None:
    code, out, err = _check(capsys, tmp_path, "rules: []\n")
    warnings = _warnings(err)
    assert code == 0 and "configuration ok" in out
    assert any("no rules" in w for w in warnings), err
    assert err.count("\n") == len(warnings)


def test_a_policy_that_inspects_no_answers_is_warned_about(capsys, tmp_path) -> None:
    code, _, err = _check(capsys, tmp_path, "rules:\n  - {id: r, match: {types: [email]}, action: redact}\n")
    (warning,) = _warnings(err)
    assert code == 0 and "answers" in warning and "extends: default" in warning


def test_a_tenant_limit_without_tenant_header_is_warned_about(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("TENANT_HEADER", raising=False)
    config = "rate_limits:\n  - {name: per-tenant, scope: tenant, per_minute: 100, burst: 10}\n"
    code, _, err = _check(capsys, tmp_path, None, config)
    (warning,) = _warnings(err)
    assert code == 0 and "'per-tenant'" in warning and "TENANT_HEADER" in warning
    monkeypatch.setenv("TENANT_HEADER", "x-tenant")
    assert _check(capsys, tmp_path, None, config)[2] == ""


def test_policy_errors_are_one_per_line(capsys, tmp_path) -> None:
    code, out, err = _check(capsys, tmp_path, "extends: default\ndisable: [nope]\nrules:\n  - {id: x, action: deny}\n")
    lines = err.splitlines()
    assert code == 2 and out == "" and len(lines) == 2
    assert all(line.startswith(f"proxilion: policy error: {tmp_path / 'policy.yaml'}: ") for line in lines)


def test_show_default_prints_the_shipped_policy(capsys) -> None:
    assert cli.main(["policy", "show-default"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Proxilion's shipped policy")
    assert [r["id"] for r in yaml.safe_load(out)["rules"]][:2] == ["alert-test-keys", "block-credentials"]
