"""The alert rules and the Grafana dashboard use only what a running daemon's /metrics exports.

tests/deploy checks them against the metric definitions; this checks them
against the real exposition: names and label names as scraped, after traffic
that gives every labelled metric the rules use at least one sample.
"""

from __future__ import annotations

import json
import re
import socket

import pytest
import yaml

from deploy.helpers import check_promql
from support.daemon import Daemon, REPO, free_port, http_json, running

from .conftest import CHAT_PATH, Client, LIMITS

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')


def scrape(text: str) -> tuple[dict[str, set[str]], set[str]]:
    """(sample name -> label names seen, every family named by a # TYPE line)."""
    samples: dict[str, set[str]] = {}
    families = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            families.add(line.split()[2])
            continue
        match = _SAMPLE.match(line)
        if match:
            samples.setdefault(match.group(1), set()).update(_LABEL.findall(match.group(2) or ""))
    return samples, families


def expressions() -> list[tuple[str, str]]:
    alerts = yaml.safe_load((REPO / "packaging/prometheus/alerts.yml").read_text())
    found = [(f"alert {r.get('alert') or r.get('record')}", r["expr"]) for g in alerts["groups"] for r in g["rules"]]
    dashboard = json.loads((REPO / "packaging/grafana/proxilion-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found += [(f"panel {inner['title']}", t["expr"]) for t in inner.get("targets", [])]
    return found


@pytest.fixture(scope="module")
def live_metrics(tmp_path_factory: pytest.TempPathFactory, fake: str) -> str:
    closed = free_port()  # nothing listens here: an unreachable upstream
    args = ["--upstream", f"openai={fake}", "--upstream", f"anthropic=http://127.0.0.1:{closed}"]
    with running(Daemon(tmp_path_factory.mktemp("ha-metrics"), args, LIMITS)) as daemon:
        client = Client("127.0.0.1", daemon.port, "metrics")
        assert client.request(stream=False).ok
        assert client.request(stream=True, chunks=3, chunk_delay=0.01).ok
        chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "mail jane.doe@example.com please"}]}
        assert http_json("POST", daemon.url + CHAT_PATH, chat)[0] == 200
        blocked = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "key AKIAZ7VRSQ5TJW3MXQ4B secret"}]}
        assert http_json("POST", daemon.url + CHAT_PATH, blocked)[0] == 403
        assert http_json("POST", daemon.url + "/proxy/anthropic/v1/messages", {"model": "claude-3-5-haiku-latest", "max_tokens": 5, "messages": []})[0] == 502
        assert http_json("GET", daemon.url + "/proxy/not-a-provider.example/x")[0] == 403
        with socket.create_connection(("127.0.0.1", daemon.port)) as s:
            s.sendall(b"NONSENSE\r\n\r\n")
            s.recv(1024)
        return daemon.metrics()


def test_live_metrics_cover_alerts_and_dashboard(live_metrics: str) -> None:
    samples, families = scrape(live_metrics)
    assert {"proxilion_http_requests_total", "proxilion_http_request_duration_seconds_bucket", "proxilion_health_check_status"} <= set(samples)
    problems = []
    for where, expr in expressions():
        for name in set(re.findall(r"\bproxilion_[A-Za-z0-9_]+", expr)) - set(samples):
            declared = any(name == f or name.startswith(f + "_") for f in families)
            problems.append(f"{where}: {name} " + ("has no sample in this run: drive it in the fixture" if declared else "is not exported"))
        problems += [f"{where}: {p}" for p in check_promql(expr, samples) if "is not exported" not in p]
    assert not problems, "\n".join(problems)


def test_checker_catches_a_name_the_daemon_does_not_export(live_metrics: str) -> None:
    samples, _ = scrape(live_metrics)
    assert check_promql("rate(proxilion_http_request_total[5m])", samples)
    assert check_promql('sum by (route) (rate(proxilion_http_requests_total[5m]))', samples)
