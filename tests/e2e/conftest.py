"""End-to-end fixtures: the real daemon (`twistd -n proxilion`), the fake provider, and helpers.

Redis and PostgreSQL servers come from the rate limiter and analytics suites'
helpers, so every suite starts them the same way.
"""

from __future__ import annotations

import http.client
import json
from typing import Any, Iterator

import pytest

from proxilion.fakeprovider.testing import running_fake_provider
from support.daemon import Daemon, http_json

PROVIDERS = ("openai", "anthropic", "gemini", "cohere")
TOKEN = "e2e-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="session")
def fake() -> Iterator[str]:
    with running_fake_provider(chunk_delay=0.005) as url:
        yield url


def upstream_args(fake_url: str, *providers: str) -> list[str]:
    args = []
    for name in providers or PROVIDERS:
        args += ["--upstream", f"{name}={fake_url}"]
    return args








def admin(daemon: Daemon, method: str, path: str, token: bool = True) -> tuple[int, dict[str, str], Any]:
    return http_json(method, daemon.admin_url + path, headers=AUTH if token else None)




class KeepAlive:
    """One keep-alive HTTP/1.1 connection for load loops; reconnects when the server closes it."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port, self.timeout = host, int(port.split("/")[0]), timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        retried = False
        while True:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request("POST", path, body=data, headers={"content-type": "application/json", **(headers or {})})
                resp = self.conn.getresponse()
                raw = resp.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest):
                # A keep-alive connection the server closed between requests: retry once on a new one.
                self.close()
                if retried:
                    raise
                retried = True
                continue
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            if hdrs.get("connection", "").lower() == "close":
                self.close()
            return resp.status, hdrs, raw

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}

