"""High-availability tests: the real daemon under load, drained, restarted and killed.

Clients here check every answer in full (the text the fake provider was told
to send), so a stream cut short by a drain is a failure, not a short read.
"""

from __future__ import annotations

import functools
import http.client
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import attrs
import pytest

from proxilion.fakeprovider.testing import running_fake_provider
from support.daemon import eventually
from support.policies import CREDENTIALS_BLOCKED_IN_PROMPTS

TOKEN = "ha-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
CHAT_PATH = "/proxy/openai/v1/chat/completions"

# These tests need a stream's real timing: request rules only (see support.policies).
POLICY = CREDENTIALS_BLOCKED_IN_PROMPTS


@pytest.fixture(scope="session")
def fake() -> Iterator[str]:
    with running_fake_provider(chunk_delay=0.005) as url:
        yield url


@pytest.fixture(scope="session")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ha-policy") / "policy.yaml"
    path.write_text(POLICY)
    return path


# Generous limits: these tests measure availability, not rate limiting.
LIMITS = {"RATE_LIMIT_PER_MINUTE": "600000", "RATE_LIMIT_BURST": "100000"}


def daemon_args(fake_url: str, policy: Path) -> list[str]:
    return ["--upstream", f"openai={fake_url}", "--policy", str(policy), "--admin-token", TOKEN]


# HAProxy checks every 200 ms in these tests: poll finer than that.
wait_until = functools.partial(eventually, interval=0.02)


@attrs.define
class Outcome:
    """One request as the client saw it."""

    kind: str  # "chat" or "stream"
    tag: str  # the X-Request-ID the client sent
    started: float
    ended: float = 0.0
    first_byte: float | None = None
    longest_gap: float = 0.0  # between two reads of an answer: a stall mid-stream
    status: int | None = None
    request_id: str | None = None
    served_by: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def wait(self) -> float:
        """How long the client waited before the answer began (the pause it saw)."""
        return (self.first_byte if self.first_byte is not None else self.ended) - self.started


def words(tag: str, n: int) -> str:
    return " ".join(f"{tag}-{i}" for i in range(n))


def stream_text(body: bytes) -> str:
    """The text of an OpenAI chat completion stream; raises unless it ended with [DONE]."""
    text, done = [], False
    for block in body.decode("utf-8").split("\n\n"):
        if not block.startswith("data: "):
            continue
        data = block[6:]
        if data == "[DONE]":
            done = True
            continue
        for choice in json.loads(data)["choices"]:
            text.append(choice["delta"].get("content") or "")
    if not done:
        raise ValueError("stream ended without [DONE]")
    return "".join(text)


class Client:
    """One keep-alive HTTP/1.1 connection issuing chat requests and checking every answer."""

    def __init__(self, host: str, port: int, name: str, timeout: float = 15.0, keep_alive: bool = True) -> None:
        self.host, self.port, self.name, self.timeout = host, port, name, timeout
        self.keep_alive = keep_alive
        self.conn: http.client.HTTPConnection | None = None
        self.count = 0

    def request(self, stream: bool, chunks: int = 20, chunk_delay: float = 0.1) -> Outcome:
        self.count += 1
        tag = f"{self.name}-{self.count}-{uuid.uuid4().hex[:6]}"
        reply = words(tag, chunks if stream else 8)
        body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello " + tag}]}
        headers = {"content-type": "application/json", "x-fake-reply": reply, "x-request-id": tag}
        if stream:
            body["stream"] = True
            headers.update({"x-fake-chunks": str(chunks), "x-fake-chunk-delay": str(chunk_delay)})
        out = Outcome("stream" if stream else "chat", tag, time.monotonic())
        # A kept-alive connection the server closed since the last answer fails
        # on send, before the request left: only then is a retry safe and fair.
        reused = self.conn is not None
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request("POST", CHAT_PATH, body=json.dumps(body), headers=headers)
            except (BrokenPipeError, ConnectionResetError):
                if not reused:
                    raise
                self.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.conn.request("POST", CHAT_PATH, body=json.dumps(body), headers=headers)
            resp = self.conn.getresponse()
            out.status = resp.status
            out.request_id = resp.getheader("x-request-id")
            out.served_by = resp.getheader("x-served-by")
            chunks_read = []
            while chunk := resp.read1(65536):
                now = time.monotonic()
                if out.first_byte is None:
                    out.first_byte = now
                else:
                    out.longest_gap = max(out.longest_gap, now - last)
                last = now
                chunks_read.append(chunk)
            # read1 leaves a fully read Content-Length body "open"; read() completes it for the next request.
            raw = b"".join(chunks_read) + resp.read()
            if resp.getheader("connection", "").lower() == "close" or resp.will_close or not self.keep_alive:
                self.close()
            if resp.status != 200:
                out.error = f"status {resp.status}: {raw[:200]!r}"
            else:
                got = stream_text(raw) if stream else json.loads(raw)["choices"][0]["message"]["content"]
                if got != reply:
                    out.error = f"content mismatch: {len(got)} of {len(reply)} characters"
                elif out.request_id != tag:
                    out.error = f"x-request-id {out.request_id!r} is not {tag!r}"
        except Exception as e:  # noqa: BLE001 - every failure is counted, none stops the load
            out.error = f"{type(e).__name__}: {e}"
            self.close()
        out.ended = time.monotonic()
        return out

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Load:
    """A steady, bounded load: C{threads} clients in a loop; every C{stream_every}-th request streams."""

    def __init__(
        self, host: str, port: int, threads: int = 4, stream_every: int = 5, pause: float = 0.02, name: str = "c", keep_alive: bool = True
    ) -> None:
        self.clients = [Client(host, port, f"{name}{i}", keep_alive=keep_alive) for i in range(threads)]
        self.stream_every = stream_every
        self.pause = pause
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(c, i), daemon=True) for i, c in enumerate(self.clients)]

    def _run(self, client: Client, offset: int) -> None:
        n = offset
        while not self._stop.is_set():
            n += 1
            out = client.request(stream=n % self.stream_every == 0)
            with self._lock:
                self.outcomes.append(out)
            time.sleep(self.pause)
        client.close()

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def failures(self) -> list[Outcome]:
        return [o for o in self.snapshot() if not o.ok]

    def summary(self) -> dict[str, Any]:
        outs = self.snapshot()
        return {
            "requests": len(outs),
            "streams": sum(o.kind == "stream" for o in outs),
            "ok": sum(o.ok for o in outs),
            "failed": sum(not o.ok for o in outs),
            "longest_chat_s": round(max((o.wait for o in outs if o.kind == "chat"), default=0.0), 3),
            "longest_stream_first_byte_s": round(max((o.wait for o in outs if o.kind == "stream"), default=0.0), 3),
            "longest_stream_gap_s": round(max((o.longest_gap for o in outs), default=0.0), 3),
        }
