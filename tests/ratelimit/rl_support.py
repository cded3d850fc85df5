"""Helpers for the rate limiter tests: redis-server processes and reactor polling."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from twisted.internet import reactor, task

from proxilion.config import load_settings
from proxilion.metrics import Metrics
from proxilion.proxy.identity import Identity
from proxilion.ratelimit.service import RateLimiter

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"

def free_port(avoid_bus: bool = False) -> int:
    """A free loopback port (and, for cluster nodes, port + 10000 free too)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not avoid_bus:
            return port
        if port + 10000 < 65536:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


def cli(port: int, *args: str, timeout: float = 10.0) -> str:
    out = subprocess.run([REDIS_CLI, "-p", str(port), *args], capture_output=True, text=True, timeout=timeout)
    return out.stdout.strip()


def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer:
    """One redis-server process that a test can kill and bring back on the same port."""

    def __init__(self, directory: Path, port: int | None = None, *extra: str) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.extra = extra
        self.process: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        return [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.directory), *self.extra]

    def start(self, wait: bool = True) -> "RedisServer":
        self.process = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.directory)
        if wait:
            wait_for(lambda: _answers(self.port), what=f"redis on {self.port}")
        return self

    def ready(self) -> bool:
        return _answers(self.port)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

ALICE = Identity(key="user:alice", kind="user", tenant=None, client_ip="203.0.113.1")


def redis_limiter(url: str | None, **env: str) -> tuple[RateLimiter, Metrics]:
    environ = {"RATE_LIMIT_STORE": "redis", "RATE_LIMIT_PER_MINUTE": "600", "RATE_LIMIT_BURST": "5", "REDIS_TIMEOUT": "0.2"}
    if url:
        environ["REDIS_URL"] = url
    environ.update(env)
    metrics = Metrics()
    return RateLimiter(load_settings({}, environ=environ), metrics, reactor), metrics


def sleep(seconds: float):
    return task.deferLater(reactor, seconds, lambda: None)


async def eventually(predicate, timeout: float = 5.0, what: str = "condition") -> float:
    """Poll C{predicate} on the reactor; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        await sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0
