"""Settings precedence (option > env > file > default) and configuration errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxilion.config import SPECS, ConfigError, load_settings

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
PROXILION = os.path.join(os.path.dirname(sys.executable), "proxilion")


def _file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "proxilion.yaml"
    path.write_text(text)
    return str(path)


def test_defaults() -> None:
    s = load_settings({}, environ={})
    assert (s.port, s.admin_port, s.bind) == (8787, 8788, "0.0.0.0")
    assert s.max_body_size == 10 * 1024 * 1024
    assert s.pool_size >= 64
    assert s.upstreams == {}
    assert s.admin_token is None


def test_option_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    config = _file(tmp_path, "port: 1001\nadmin_port: 2001\npool_size: 3001\nlog_level: warn\n")
    env = {"PORT": "1002", "ADMIN_PORT": "2002"}
    s = load_settings({"port": "1003"}, environ=env, config_file=config)
    assert s.port == 1003  # option
    assert s.admin_port == 2002  # env
    assert s.pool_size == 3001  # file
    assert s.log_level == "warn"  # file
    assert s.connect_timeout == 10.0  # default


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = _file(tmp_path, "max-body-size: 2M\n")
    assert load_settings({}, environ={"PROXILION_CONFIG": config}).max_body_size == 2 * 1024 * 1024


def test_upstreams_merge_per_provider_with_the_same_precedence(tmp_path: Path) -> None:
    config = _file(tmp_path, "upstreams:\n  openai: http://file-openai:1\n  anthropic: http://file-anthropic:1\n  gemini: http://file-gemini:1\n")
    env = {"PROXILION_UPSTREAM_ANTHROPIC": "http://env-anthropic:2", "PROXILION_UPSTREAM_GEMINI": "http://env-gemini:2/"}
    s = load_settings({"upstreams": ["gemini=http://option-gemini:3"]}, environ=env, config_file=config)
    assert s.upstreams == {
        "openai": "http://file-openai:1",
        "anthropic": "http://env-anthropic:2",
        "gemini": "http://option-gemini:3",
    }


def test_secret_settings_stay_out_of_repr() -> None:
    s = load_settings({"admin_token": "hunter2-admin"}, environ={"REDIS_URL": "redis://:pw-secret@r:6379/0"})
    assert "hunter2-admin" not in repr(s)
    assert "pw-secret" not in repr(s)


@pytest.mark.parametrize(
    ("options", "env", "names"),
    [
        ({"port": "abc"}, {}, "--port"),
        ({"port": "70000"}, {}, "--port"),
        ({}, {"PORT": "-1"}, "PORT"),
        ({}, {"ADMIN_PORT": "8787"}, "ADMIN_PORT"),
        ({"max_body_size": "lots"}, {}, "--max-body-size"),
        ({"response_timeout": "0"}, {}, "--upstream-timeout"),
        ({}, {"UPSTREAM_TIMEOUT": "nan"}, "UPSTREAM_TIMEOUT"),
        ({"log_format": "xml"}, {}, "--log-format"),
        ({"upstreams": ["openai"]}, {}, "--upstream"),
        ({"upstreams": ["nosuch=http://x"]}, {}, "--upstream"),
        ({"upstreams": ["openai=ftp://x"]}, {}, "--upstream"),
        ({}, {"PROXILION_UPSTREAM_OPENAI": "not a url"}, "PROXILION_UPSTREAM_OPENAI"),
        ({}, {"PROXILION_UPSTREAM_NOSUCH": "http://x"}, "PROXILION_UPSTREAM_NOSUCH"),
        ({}, {"TRUSTED_PROXIES": "10.0.0.0/33"}, "TRUSTED_PROXIES"),
        ({}, {"RATE_LIMIT_FAIL_CLOSED": "maybe"}, "RATE_LIMIT_FAIL_CLOSED"),
    ],
)
def test_bad_value_is_one_line_naming_the_setting(options: dict, env: dict, names: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(options, environ=env)
    message = str(caught.value)
    assert message.startswith(names + ":") or message.startswith(names + " ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("port: [\n", "not valid YAML at line"),
        ("- a\n- b\n", "must hold a mapping"),
        ("port: 1\nbogus_key: 2\n", "unknown setting(s): bogus_key"),
        ("pool_size: many\n", "pool_size (in "),
    ],
)
def test_bad_config_file_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}, environ={}, config_file=_file(tmp_path, text))
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read .*missing.yaml"):
        load_settings({}, environ={}, config_file=str(tmp_path / "missing.yaml"))


def _run(argv: list[str], cwd: str = "/tmp", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # No PYTHONPATH: the installed package and plugin must be found on their own.
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROXILION_CONFIG")}
    return subprocess.run(argv, cwd=cwd, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--port", "abc"], {}, "--port: must be an integer"),
        (["--upstream", "openai=ftp://x"], {}, "--upstream: openai: must be an http"),
        ([], {"MAX_BODY_SIZE": "0"}, "MAX_BODY_SIZE: must be positive"),
        (["--policy", "/nonexistent/policy.yaml"], {}, "/nonexistent/policy.yaml"),
    ],
)
def test_twistd_with_a_bad_setting_exits_with_one_line(args: list[str], env: dict[str, str], expected: str) -> None:
    result = _run([TWISTD, "-n", "--pidfile=", "proxilion", *args], env=env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("proxilion: configuration error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_twistd_bad_yaml_exits_with_one_line(tmp_path: Path) -> None:
    result = _run([TWISTD, "-n", "--pidfile=", "proxilion", "--config", _file(tmp_path, "port: [\n")])
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0
    assert "not valid YAML" in result.stderr


def test_plugin_help_from_another_directory_lists_every_option() -> None:
    result = _run([TWISTD, "proxilion", "--help"], cwd="/tmp")
    assert result.returncode == 0, result.stderr
    for spec in SPECS:
        if not spec.file_only:
            assert f"--{spec.cli_flag}" in result.stdout
    assert "--config" in result.stdout


def test_twistd_nodaemon_help_and_plugin_listing() -> None:
    result = _run([TWISTD, "-n", "proxilion", "--help"])
    assert result.returncode == 0
    assert "--upstream=" in result.stdout and "--max-body-size=" in result.stdout
    listing = _run([TWISTD, "--help"])
    assert "proxilion" in listing.stdout


def test_proxilion_command_help() -> None:
    result = _run([PROXILION, "--help"])
    assert result.returncode == 0
    for command in ("run", "scan", "check-config", "fake-provider", "options"):
        assert command in result.stdout


@pytest.mark.parametrize("args", [["--port", "abc"], ["--", "--port", "abc"]])
def test_proxilion_run_passes_its_options_to_twistd(args: list[str]) -> None:
    result = _run([PROXILION, "run", *args])
    assert result.returncode == 2
    assert result.stderr.strip() == "proxilion: configuration error: --port: must be an integer, got 'abc'"


def test_proxilion_run_help_lists_the_proxy_options() -> None:
    result = _run([PROXILION, "run", "--help"])
    assert result.returncode == 0
    assert "--upstream=" in result.stdout and "--admin-port=" in result.stdout
