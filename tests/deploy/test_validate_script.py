"""scripts/validate-deploy.sh: passes on the shipped artifacts, fails on a broken one."""

from __future__ import annotations

import os
import shutil

from .helpers import ROOT, run, tool

SCRIPT = ROOT / "scripts/validate-deploy.sh"
COPIED = ["scripts/validate-deploy.sh", "systemd", "k8s", "packaging", "Dockerfile", ".hadolint.yaml",
          "tests/deploy/yamllint.yaml", "tests/deploy/alerts_test.yml"]


def copy_tree(dst):
    for rel in COPIED:
        src = ROOT / rel
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst / rel)
        else:
            shutil.copy2(src, dst / rel)
    if (ROOT / ".venv").exists():
        (dst / ".venv").symlink_to(ROOT / ".venv")


def test_shellcheck():
    result = run([tool("shellcheck"), SCRIPT])
    assert result.returncode == 0, result.stdout


def test_script_passes():
    result = run(["bash", SCRIPT], cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout


BREAKAGES = [
    # (file, text, replacement, the check that must fail)
    ("systemd/proxilion.service", "ProtectSystem=strict", "ProtectSystm=strict", "FAIL systemd proxilion.service"),
    ("k8s/deployment.yaml", "readinessProbe:", "readinesProbe:", "FAIL kubernetes-validate k8s/deployment.yaml"),
    ("packaging/haproxy/haproxy.cfg", "balance leastconn", "balance fastest", "FAIL haproxy -c"),
    ("packaging/nginx/proxilion.conf", "least_conn;", "least_con;", "FAIL nginx -t"),
    ("packaging/prometheus/alerts.yml", "[5m])) > 1\n", "[5m]) > 1\n", "FAIL promtool check rules"),
    ("Dockerfile", 'CMD ["twistd", "--nodaemon", "--pidfile=", "proxilion"]', "CMD twistd -n proxilion", "FAIL hadolint"),
]


def test_script_fails_on_broken_artifacts(tmp_path):
    """One run over a copy with one breakage per validator; each must be reported."""
    copy_tree(tmp_path)
    for path, old, new, _ in BREAKAGES:
        target = tmp_path / path
        text = target.read_text()
        assert old in text, (path, old)
        target.write_text(text.replace(old, new, 1))
    result = run(["bash", tmp_path / "scripts/validate-deploy.sh"], cwd=tmp_path, env={**os.environ, "STRICT": "0"})
    assert result.returncode == 1, result.stdout
    for *_, expected in BREAKAGES:
        assert expected in result.stdout, (expected, result.stdout)
    ok_lines = [line for line in result.stdout.splitlines() if line.startswith("ok ")]
    assert "ok   kubernetes-validate k8s/ingress.yaml" in ok_lines
