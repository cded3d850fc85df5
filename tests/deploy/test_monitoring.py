"""packaging/prometheus and packaging/grafana: rules that parse, fire, and use only exported metrics."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from .helpers import ROOT, check_promql, exported_metrics, run, tool

PROMETHEUS = ROOT / "packaging/prometheus"
DASHBOARD = ROOT / "packaging/grafana/proxilion-dashboard.json"

GUIDE_ALERTS = {
    "ProxilionInstanceDown": ('up{job="proxilion"} == 0', "1m", "critical", "Proxilion instance down"),
    "ProxilionHighLatency": (
        "histogram_quantile(0.95, rate(proxilion_http_request_duration_seconds_bucket[5m])) > 1",
        "5m",
        "warning",
        "Proxilion high latency",
    ),
    "ProxilionLowReplicas": (
        'kube_deployment_status_replicas_available{deployment="proxilion"} < 2',
        "5m",
        "critical",
        "Proxilion below minimum replicas",
    ),
}


@pytest.fixture(scope="module")
def exported():
    return exported_metrics()


@pytest.fixture(scope="module")
def rules():
    return yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())


def all_rules(rules):
    return [r for g in rules["groups"] for r in g["rules"]]


def test_guide_metric_names_are_exported(exported):
    for name in ("proxilion_http_requests_total", "proxilion_http_request_duration_seconds_bucket", "proxilion_health_check_status"):
        assert name in exported, name


def test_promtool_check_rules():
    result = run([tool("promtool"), "check", "rules", PROMETHEUS / "alerts.yml"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules_catches_bad_promql(tmp_path):
    broken = tmp_path / "alerts.yml"
    broken.write_text((PROMETHEUS / "alerts.yml").read_text().replace("rate(proxilion_http_request_duration_seconds_bucket[5m])", "rate(proxilion_http_request_duration_seconds_bucket[5m]"))
    assert run([tool("promtool"), "check", "rules", broken]).returncode != 0


def test_promtool_check_config(tmp_path):
    promtool = tool("promtool")
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS / name, tmp_path / name)
    result = run([promtool, "check", "config", tmp_path / "prometheus.yml"])
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "proxilion"]
    assert job["metrics_path"] == "/metrics"
    assert all(t.endswith(":8788") for c in job["static_configs"] for t in c["targets"])


def test_alerts_fire_as_intended(tmp_path):
    promtool = tool("promtool")
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    shutil.copy(ROOT / "tests/deploy/alerts_test.yml", tmp_path / "alerts_test.yml")
    result = run([promtool, "test", "rules", tmp_path / "alerts_test.yml"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_guide_alerts_verbatim(rules):
    by_name = {r["alert"]: r for r in all_rules(rules) if "alert" in r}
    for name, (expr, duration, severity, summary) in GUIDE_ALERTS.items():
        rule = by_name[name]
        assert rule["expr"] == expr
        assert rule["for"] == duration
        assert rule["labels"] == {"severity": severity}
        assert rule["annotations"] == {"summary": summary}
    group = next(g for g in rules["groups"] if g["name"] == "proxilion-ha")
    assert [r["alert"] for r in group["rules"]] == list(GUIDE_ALERTS)


def test_alerts_use_only_exported_metrics(rules, exported):
    problems = [p for r in all_rules(rules) for p in check_promql(r["expr"], exported)]
    assert not problems, problems
    used = {m for r in all_rules(rules) for m in re.findall(r"\bproxilion_[A-Za-z0-9_]+", r["expr"])}
    for ours in ("proxilion_analytics_rows_spooled_total", "proxilion_ratelimit_fallback_total", "proxilion_draining"):
        assert ours in used, ours


def test_metric_checker_catches_a_wrong_name(exported):
    assert check_promql("rate(proxilion_http_request_total[5m])", exported)
    assert check_promql('rate(proxilion_http_requests_total{route="x"}[5m])', exported)
    assert check_promql("sum by (route) (rate(proxilion_http_requests_total[5m]))", exported)


# ---- Grafana ---------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard():
    return json.loads(DASHBOARD.read_text())


def panels(dashboard):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def targets(dashboard):
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def test_dashboard_shape(dashboard):
    assert dashboard["uid"] and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= variables
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
    refs = [(id(p), t["refId"]) for p, t in targets(dashboard)]
    assert len(refs) == len(set(refs)), "duplicate refId in a panel"


def test_dashboard_uses_only_exported_metrics(dashboard, exported):
    problems = []
    for panel, target in targets(dashboard):
        problems += [f"{panel['title']}: {p}" for p in check_promql(target["expr"], exported)]
    assert not problems, problems
    used = {m for _, t in targets(dashboard) for m in re.findall(r"\bproxilion_[A-Za-z0-9_]+", t["expr"])}
    for name in ("proxilion_http_requests_total", "proxilion_http_request_duration_seconds_bucket", "proxilion_health_check_status", "proxilion_draining", "proxilion_inflight_requests"):
        assert name in used, name


def test_dashboard_promql_parses(tmp_path, dashboard):
    """Every panel query, with Grafana's variables filled in, as a recording rule promtool parses."""
    promtool = tool("promtool")
    records = []
    for n, (panel, target) in enumerate(targets(dashboard)):
        expr = (
            target["expr"]
            .replace("$__rate_interval", "5m")
            .replace("$job", "proxilion")
            .replace("$instance", ".*")
        )
        assert "$" not in expr, expr
        records.append({"record": f"dashboard:query_{n}", "expr": expr})
    (tmp_path / "dashboard-rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    result = run([promtool, "check", "rules", tmp_path / "dashboard-rules.yml"])
    assert result.returncode == 0, result.stdout + result.stderr
