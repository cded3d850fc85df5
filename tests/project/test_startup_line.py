"""The one line an operator reads to see what a started daemon is wired to."""

from __future__ import annotations

from pathlib import Path

from support.daemon import Daemon, closed_port, eventually, running


def _ready_lines(daemon: Daemon) -> list[str]:
    return [event["message"] for event in daemon.log_events() if event.get("message", "").startswith("Proxilion ready:")]


def test_defaults_are_announced_in_one_line(tmp_path: Path) -> None:
    with running(Daemon(tmp_path, args=["--upstream", "openai=http://127.0.0.1:9000"])) as daemon:
        (line,) = eventually(lambda: _ready_lines(daemon), what="the ready line")
    assert line.startswith(f"Proxilion ready: proxy :{daemon.port}, admin :{daemon.admin_port}; ")
    assert "openai=http://127.0.0.1:9000" in line and "anthropic=https://api.anthropic.com" in line
    assert "; policy: shipped default; rate limits: memory; analytics: sqlite " in line
    assert line.endswith("analytics.db")


def test_stores_are_named_without_their_passwords(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("extends: default\n")
    # Neither store is reachable: the daemon starts degraded and still announces where it looks.
    env = {
        "ANALYTICS_DSN": f"postgresql://audit:pg-s3cret-pw@127.0.0.1:{closed_port()}/proxilion",
        "RATE_LIMIT_STORE": "redis",
        "REDIS_URL": f"redis://:redis-s3cret-pw@127.0.0.1:{closed_port()}/0",
        "POLICY_FILE": str(policy),
    }
    with running(Daemon(tmp_path, env=env, args=["--upstream", "cohere=http://user:up-s3cret-pw@127.0.0.1:9000"])) as daemon:
        (line,) = eventually(lambda: _ready_lines(daemon), what="the ready line")
    assert f"policy: {policy};" in line
    assert "rate limits: redis redis://127.0.0.1:" in line
    assert "analytics: postgresql 127.0.0.1:" in line and line.endswith("/proxilion")
    assert "cohere=http://127.0.0.1:9000" in line
    assert "s3cret" not in daemon.log()
