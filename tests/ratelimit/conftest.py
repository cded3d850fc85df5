"""Real redis-server processes on free loopback ports: single, 3-node cluster, sentinel."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"

needs_redis = pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="redis-server not installed")


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


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server not installed")
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisServer]]:
    """Three masters, all 16384 slots assigned."""
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server not installed")
    base = tmp_path_factory.mktemp("cluster")
    nodes = []
    for index in range(3):
        port = free_port(avoid_bus=True)
        node = RedisServer(base / f"n{index}", port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
        nodes.append(node.start())
    try:
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes), "--cluster-yes"],
            capture_output=True,
            check=True,
            timeout=30,
        )
        wait_for(lambda: all("cluster_state:ok" in cli(n.port, "cluster", "info") for n in nodes), what="cluster state ok")
        yield nodes
    finally:
        for node in nodes:
            node.kill()


@pytest.fixture
def redis_sentinel(tmp_path: Path) -> Iterator[dict]:
    """A master, a replica and one sentinel watching them as "mymaster"."""
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server not installed")
    master = RedisServer(tmp_path / "master").start()
    replica = RedisServer(tmp_path / "replica", None, "--replicaof", "127.0.0.1", str(master.port)).start()
    sentinel_port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds mymaster 1000\n"
        "sentinel failover-timeout mymaster 5000\n"
    )
    sentinel = subprocess.Popen([REDIS_SERVER, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _answers(sentinel_port), what="sentinel")
        wait_for(lambda: "connected_slaves:1" in cli(master.port, "info", "replication"), what="replica attached")
        wait_for(lambda: "slaves=1" in cli(sentinel_port, "info", "sentinel"), what="sentinel sees the replica")
        yield {"master": master, "replica": replica, "sentinel_port": sentinel_port}
    finally:
        sentinel.kill()
        sentinel.wait(5)
        master.kill()
        replica.kill()
