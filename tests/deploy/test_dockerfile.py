"""Dockerfile, .dockerignore, .hadolint.yaml. No Docker engine runs here: lint + structure."""

from __future__ import annotations

import fnmatch
import json
import re

import yaml

from .helpers import ROOT, run, tool

DOCKERFILE = ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    out, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def test_hadolint_clean():
    hadolint = tool("hadolint")
    result = run([hadolint, "--config", ROOT / ".hadolint.yaml", DOCKERFILE], cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_shell_form_cmd(tmp_path):
    hadolint = tool("hadolint")
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace('CMD ["twistd", "--nodaemon", "--pidfile=", "proxilion"]', "CMD twistd --nodaemon proxilion"))
    result = run([hadolint, "--config", ROOT / ".hadolint.yaml", broken], cwd=ROOT)
    assert result.returncode != 0 and "DL3025" in result.stdout, result.stdout


def test_every_ignored_rule_is_justified():
    text = (ROOT / ".hadolint.yaml").read_text()
    config = yaml.safe_load(text)
    assert config.get("failure-threshold") == "style"
    for rule in config.get("ignored", []):
        # A comment naming the rule explains why.
        assert re.search(rf"#\s*{rule}\b.*\S", text), f"{rule} ignored without a reason"


def test_multi_stage_slim_python():
    text = DOCKERFILE.read_text()
    build, runtime = stages(text)[0], stages(text)[-1]
    assert len(stages(text)) >= 2
    arg = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M).group(1)
    assert arg.startswith("python:3.11-slim")
    assert build[0][1].startswith("${PYTHON_IMAGE} AS ")
    assert runtime[0][1].startswith("${PYTHON_IMAGE} AS ")
    assert any(w == "COPY" and a.startswith("--from=build ") for w, a in runtime)
    # The package is built in the build stage, not the runtime one.
    assert any(w == "RUN" and "pip install" in a for w, a in build)
    assert not any(w == "RUN" and "pip install" in a for w, a in runtime)


def test_runtime_stage():
    runtime = stages(DOCKERFILE.read_text())[-1]
    words = [w for w, _ in runtime]
    last = {w: a for w, a in runtime}  # last of each instruction wins
    # Non-root, numerically (so Kubernetes' runAsNonRoot can check it).
    user = last["USER"].split(":")[0]
    assert user.isdigit() and int(user) != 0
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN"), "RUN after USER"
    assert json.loads(last["CMD"]) == ["twistd", "--nodaemon", "--pidfile=", "proxilion"]
    assert "ENTRYPOINT" not in words
    assert set(last["EXPOSE"].split()) == {"8787", "8788"}
    assert json.loads(last["VOLUME"]) == ["/var/lib/proxilion"]
    assert last["STOPSIGNAL"] == "SIGTERM"
    env = " ".join(a for w, a in runtime if w == "ENV")
    assert "PROXILION_DATA_DIR=/var/lib/proxilion" in env
    # The image starts without a CA; the deployments set CA_CERT_FILE where they mount one.
    assert "CA_CERT_FILE" not in env and "CA_KEY_FILE" not in env
    # HEALTHCHECK on the proxy port's /health with wget, which is installed.
    health = last["HEALTHCHECK"]
    assert health.split("CMD", 1)[1].strip() == '["wget", "-q", "--spider", "http://localhost:8787/health"]'
    assert any(w == "RUN" and re.search(r"apt-get install .*\bwget\b", a) for w, a in runtime)
    # Twisted plugin cache generated at build time (the image runs read-only).
    assert any(
        w == "RUN" and 'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))' in a for w, a in runtime
    )


def test_dockerignore_keeps_what_the_build_copies():
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            if pat == "**" or fnmatch.fnmatch(path, pat) or path.startswith(pat + "/") or fnmatch.fnmatch(path, pat.replace("**/", "*/")):
                keep = negate
        return keep

    copies = [a for w, a in instructions(DOCKERFILE.read_text()) if w == "COPY" and not a.startswith("--from")]
    sources = [s for a in copies for s in a.split()[:-1]]
    assert sources
    for source in sources:
        if source.endswith("*"):
            continue  # optional file (README.md*)
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert included(source), f"COPY {source}: excluded by .dockerignore"
    assert not included(".venv/bin/python")
    assert not included(".git/config")
    assert not included("tests/deploy/test_dockerfile.py")
    assert not included("proxilion/__pycache__/x.pyc")
