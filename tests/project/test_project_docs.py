"""The README, CI entry and packaging keep their promises."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_readme_settings_table_matches_the_code() -> None:
    table = subprocess.run(
        [sys.executable, "-m", "proxilion.cli", "options"], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert table.strip() in (REPO / "README.md").read_text()


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    assert "./scripts/test.sh" in readme and "./scripts/run.sh" in readme
    lines = [line for line in (REPO / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[-1] == "exec ./scripts/test.sh"


def test_wheel_installs_the_twistd_plugin(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("proxilion-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/proxilion_plugin.py" in names
    assert "proxilion/inspect/default_policy.yaml" in names
    assert not any(name.startswith("twisted/__init__") or name == "twisted/plugins/__init__.py" for name in names)
    assert any(name.endswith("entry_points.txt") for name in names)


def test_plugin_is_listed_by_twistd_from_another_directory(tmp_path: Path) -> None:
    twistd = Path(sys.executable).parent / "twistd"
    out = subprocess.run([str(twistd), "--help"], capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert "proxilion" in out


def test_only_entry_points_touch_the_global_reactor() -> None:
    """Library code takes its reactor as an argument, so tests can drive time with a Clock."""
    allowed = {"proxilion/fakeprovider/command.py"}
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "proxilion").rglob("*.py")
        if "import reactor" in path.read_text() and str(path.relative_to(REPO)) not in allowed
    ]
    assert offenders == []


def test_readme_settings_table_names_each_config_file_key() -> None:
    from proxilion.config import SPECS

    readme = (REPO / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| ") and line.count("|") == 6]
    header = rows[0]
    assert header == "| Option | Environment | Config file key | Default | Meaning |"
    keys = {row.split("|")[3].strip().strip("`") for row in rows[1:]}
    assert {spec.name for spec in SPECS} <= keys
    assert "rate_limits" in keys and "policy_file" in keys


def test_readme_documents_what_an_app_developer_meets() -> None:
    readme = (REPO / "README.md").read_text()
    for needle in ("extends: default", "proxilion policy show-default", "x-ratelimit-limit-requests",
                   "anthropic-ratelimit-requests-reset", "google.rpc.RetryInfo", "ThrottlingException",
                   "Authorization: Bearer $ADMIN_TOKEN", '"redacted"', "exit status"):
        assert needle in readme, needle
