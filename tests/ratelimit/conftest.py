"""Fixtures: real redis-server processes on free loopback ports: single, 3-node cluster, sentinel."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from rl_support import REDIS_CLI, REDIS_SERVER, RedisServer, _answers, cli, free_port, wait_for


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


@pytest.fixture(autouse=True)
def no_logged_failures() -> Iterator[None]:
    """Any failure logged through twisted.logger fails the test."""
    from twisted.logger import globalLogPublisher

    failures: list[dict] = []

    def observe(event: dict) -> None:
        if "log_failure" in event:
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    yield
    globalLogPublisher.removeObserver(observe)
    assert not failures, [f["log_failure"].getTraceback() for f in failures]
