"""Fixtures for the proxy suite: the fake provider in its own process, daemons on free ports, raw HTTP."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxilion.fakeprovider.testing import running_fake_provider
from support.daemon import Daemon, http_json

# Rate limiting is not under test here: the suite sends many requests from one identity.
NO_LIMITS = {"RATE_LIMIT_PER_MINUTE": "0"}


@pytest.fixture(scope="session")
def fake_provider() -> Iterator[str]:
    with running_fake_provider(chunk_delay=0.01) as url:
        yield url


def request_rules_only_policy(directory: Path) -> Path:
    """The shipped policy without its answer rules, so streams pass without holdback."""
    text = resources.files("proxilion.inspect").joinpath("default_policy.yaml").read_text("utf-8")
    path = directory / "request-only-policy.yaml"
    policy = yaml.safe_load(text)
    policy["rules"] = [rule for rule in policy["rules"] if rule.get("direction", "request") == "request"]
    path.write_text(yaml.safe_dump(policy))
    return path








def fake_stats(fake_url: str) -> dict[str, int]:
    return http_json("GET", fake_url + "/_fake/stats")[2]






def access_lines(daemon: Daemon, **fields: Any) -> list[dict[str, Any]]:
    """The daemon's access log lines whose fields have these values."""
    return [e for e in daemon.log_events()
            if e.get("logger") == "proxilion.access" and all(e.get(k) == v for k, v in fields.items())]


def raw_exchange(port: int, data: bytes, timeout: float = 5.0, pause: float = 0.0) -> bytes:
    """Send raw bytes, then read until the server closes (or C{timeout}); returns what came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if pause:
            time.sleep(pause)
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return received


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body
