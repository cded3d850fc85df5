"""docs/HIGH_AVAILABILITY.md names only things that exist, and names the ones users rely on."""

from __future__ import annotations

import re

from .helpers import ROOT, exported_metrics

DOC = ROOT / "docs/HIGH_AVAILABILITY.md"


def test_every_artifact_it_names_exists():
    text = DOC.read_text()
    paths = set(re.findall(r"`((?:k8s|packaging|systemd|scripts|tests/deploy)/[A-Za-z0-9_./@-]+|Dockerfile|\.dockerignore)`", text))
    assert len(paths) > 15
    for path in paths:
        assert (ROOT / path).exists(), path


def test_every_setting_it_names_is_real():
    from proxilion.config import SPECS

    names = {s.env for s in SPECS if s.env} | {"ADMIN_TOKEN", "SO_REUSEPORT"}
    text = DOC.read_text()
    used = set(re.findall(r"`([A-Z][A-Z0-9]*_[A-Z0-9_]+)(?:=[^`]*)?`", text))
    assert {"DRAIN_GRACE", "DRAIN_TIMEOUT", "REDIS_URL", "RATE_LIMIT_STORE", "ANALYTICS_DSN", "PROXILION_DATA_DIR"} <= used
    assert used <= names, used - names


def test_every_metric_it_names_is_exported():
    exported = exported_metrics()
    families = {re.sub(r"_(total|bucket|count|sum|created)$", "", n) for n in exported} | set(exported)
    text = DOC.read_text()
    # Names that are not metrics: HAProxy sections, NGINX upstream, Docker secrets and service.
    not_metrics = {"proxilion_back", "proxilion_front", "proxilion_backend", "proxilion_ca_crt", "proxilion_ca_key", "proxilion_proxilion"}
    for name in set(re.findall(r"\bproxilion_[a-z_]+[a-z]", text)) - not_metrics:
        assert name in families or any(f.startswith(name) for f in families), name


def test_promises_of_the_guide_are_stated():
    text = DOC.read_text()
    for needle in ("8787", "8788", "/health", "/ready", "/api/v1/drain", "503", "terminationGracePeriodSeconds: 30",
                   "< 30 seconds", "--reuse-port", "kubectl apply -f k8s/deployment.yaml"):
        assert needle in text, needle
