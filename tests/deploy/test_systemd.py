"""systemd/proxilion.service and systemd/proxilion@.service."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from .helpers import ROOT, run, tool

UNITS = ("proxilion.service", "proxilion@.service")
TWISTD = "/opt/proxilion/venv/bin/twistd"


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value given (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}: bad line {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(section: dict[str, list[str]], key: str) -> str:
    values = section.get(key)
    assert values, f"missing {key}="
    return values[-1]


def seconds(value: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h)?", value):
        total += float(number) * {"ms": 0.001, "s": 1, "": 1, "m": 60, "min": 60, "h": 3600}[unit]
    return total


def verify(tmp_path: Path, unit_text: str, filename: str, instance: str | None = None) -> str:
    """systemd-analyze verify a copy whose ExecStart binary exists; return what it printed."""
    analyze = tool("systemd-analyze")
    stub = tmp_path / "bin" / "twistd"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    (tmp_path / filename).write_text(unit_text.replace(TWISTD, str(stub)))
    target = filename
    if instance is not None:
        target = filename.replace("@.", f"@{instance}.")
        link = tmp_path / target
        if not link.exists():
            link.symlink_to(filename)
    result = run([analyze, "verify", f"./{target}"], cwd=tmp_path, env={**os.environ, "SYSTEMD_LOG_LEVEL": "info"})
    out = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, out
    return out


@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_prints_nothing(tmp_path, name):
    # systemd-analyze exits 0 on unknown keys and bad values: any output is a failure.
    out = verify(tmp_path, (ROOT / "systemd" / name).read_text(), name, instance="8788" if "@" in name else None)
    assert out == "", out


def test_verify_catches_a_misspelt_key(tmp_path):
    text = (ROOT / "systemd" / "proxilion.service").read_text().replace("NoNewPrivileges=", "NoNewPrivilegs=")
    out = verify(tmp_path, text, "proxilion.service")
    assert "Unknown key" in out


@pytest.mark.parametrize("name", UNITS)
def test_security_exposure_is_low(tmp_path, name):
    analyze = tool("systemd-analyze")
    verify(tmp_path, (ROOT / "systemd" / name).read_text(), name, instance="8788" if "@" in name else None)
    target = name.replace("@.", "@8788.")
    result = run([analyze, "security", "--offline=yes", "--no-pager", f"./{target}"], cwd=tmp_path)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


@pytest.mark.parametrize("name", UNITS)
def test_required_settings(name):
    unit = parse_unit(ROOT / "systemd" / name)
    service = unit["Service"]
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    exec_start = one(service, "ExecStart")
    assert exec_start.startswith(f"{TWISTD} --nodaemon --pidfile= proxilion"), exec_start
    assert one(service, "EnvironmentFile") == "/etc/proxilion/proxilion.env"
    assert one(service, "User") == "proxilion"
    assert one(service, "Group") == "proxilion"
    assert one(service, "Restart") == "on-failure"
    assert one(service, "KillSignal") == "SIGTERM"
    assert one(service, "KillMode") in ("mixed", "process")
    # Longer than the default drain (DRAIN_GRACE 5 + DRAIN_TIMEOUT 25) plus time to flush analytics.
    assert seconds(one(service, "TimeoutStopSec")) >= 5 + 25 + 10
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "PrivateDevices"):
        assert one(service, key) == "yes", key
    assert one(service, "ProtectSystem") == "strict"
    assert "/var/lib/proxilion" in one(service, "ReadWritePaths").split()
    assert "proxilion" in one(service, "StateDirectory").split()
    assert one(service, "CapabilityBoundingSet") == ""
    env = dict(v.split("=", 1) for v in service.get("Environment", []))
    assert env["CA_CERT_FILE"] == "/etc/proxilion/ca/ca.crt"
    assert env["CA_KEY_FILE"] == "/etc/proxilion/ca/ca.key"
    assert one(unit["Install"], "WantedBy") == "multi-user.target"
    assert "network-online.target" in one(unit["Unit"], "After")


def test_single_unit_uses_the_state_directory():
    service = parse_unit(ROOT / "systemd" / "proxilion.service")["Service"]
    env = dict(v.split("=", 1) for v in service.get("Environment", []))
    assert env["PROXILION_DATA_DIR"] == "/var/lib/proxilion"


def test_template_shares_the_proxy_port_with_its_own_admin_port_and_data_dir():
    service = parse_unit(ROOT / "systemd" / "proxilion@.service")["Service"]
    args = one(service, "ExecStart").split()
    assert "--reuse-port" in args
    assert "--admin-port=%i" in args
    assert "--data-dir=/var/lib/proxilion/%i" in args
    assert "proxilion/%i" in one(service, "StateDirectory").split()
    assert one(service, "WorkingDirectory") == "/var/lib/proxilion/%i"
    # The proxy port is never set per instance: every instance listens on 8787.
    assert not any(a.startswith("--port") for a in args)


def test_env_example_names_only_real_settings():
    from proxilion.config import SPECS

    names = {s.env for s in SPECS if s.env}
    text = (ROOT / "systemd" / "proxilion.env.example").read_text()
    used = re.findall(r"^#?([A-Z][A-Z0-9_]+)=", text, re.M)
    assert used
    assert set(used) <= names, set(used) - names


def test_template_options_are_understood_by_the_plugin():
    """The per-instance options of ExecStart parse with the real twistd plugin options."""
    import importlib.util

    plugin = ROOT / "twisted" / "plugins" / "proxilion_plugin.py"
    if not plugin.exists():
        pytest.skip("twisted/plugins/proxilion_plugin.py not there yet")
    spec = importlib.util.spec_from_file_location("_proxilion_plugin_under_test", plugin)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    service = parse_unit(ROOT / "systemd" / "proxilion@.service")["Service"]
    args = one(service, "ExecStart").replace("%i", "8790").split()
    options = module.serviceMaker.options()
    options.parseOptions(args[args.index("proxilion") + 1 :])
    settings = options.settings
    assert settings.reuse_port is True
    assert settings.admin_port == 8790
    assert settings.data_dir == "/var/lib/proxilion/8790"
