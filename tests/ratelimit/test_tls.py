"""rediss://: decisions over TLS against a real TLS-only redis-server, and a clear error for a certificate we do not trust."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import pytest_twisted
from twisted.logger import formatEvent, globalLogPublisher

from rl_support import ALICE, REDIS_SERVER, TlsRedisServer, eventually, make_certificates, redis_limiter, sample


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedisServer]:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server not installed")
    server = TlsRedisServer(tmp_path / "redis", make_certificates(tmp_path / "pki", "redis"), "--requirepass", "tls-s3cret")
    try:
        server.start()
    except AssertionError:
        pytest.skip("this redis-server does not speak TLS")
    yield server
    server.kill()


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []

    def observe(event: dict) -> None:
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


@pytest_twisted.ensureDeferred
async def test_decisions_go_through_tls(tls_redis, monkeypatch, log_lines):
    # A private CA is trusted the way OpenSSL-based clients usually are: SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_redis.certificates["ca"]))
    rl, metrics = redis_limiter(f"rediss://:tls-s3cret@localhost:{tls_redis.port}/2")
    rl.startService()
    try:
        await eventually(lambda: rl.health() == "ok", what="TLS connection")
        decisions = [await rl.take(ALICE, "openai") for _ in range(7)]
        assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
        assert {d.store for d in decisions} == {"redis"}
        assert sample(metrics, "proxilion_ratelimit_fallback_total") == 0
        assert rl.status()["redis"]["target"] == f"rediss://localhost:{tls_redis.port}/2"
    finally:
        await rl.stopService()
    # The server has no plain port, so the bucket can only have come over TLS (with AUTH and SELECT 2).
    tokens = tls_redis.cli("-a", "tls-s3cret", "--no-auth-warning", "-n", "2", "hget", "proxilion:rl:{user:alice}:default", "t")
    assert 0 <= float(tokens) < 1
    assert not any("tls-s3cret" in line for line in log_lines)


@pytest_twisted.ensureDeferred
async def test_untrusted_certificate_is_a_clear_error(tls_redis, tmp_path, monkeypatch, log_lines):
    other = make_certificates(tmp_path / "other-pki", "unrelated")
    monkeypatch.setenv("SSL_CERT_FILE", str(other["ca"]))
    rl, metrics = redis_limiter(f"rediss://:tls-s3cret@localhost:{tls_redis.port}")
    rl.startService()
    try:
        decision = await rl.take(ALICE, "openai")
        assert decision.store == "fallback" and decision.allowed
        assert rl.health() == "degraded"
        await eventually(lambda: any("certificate verify failed" in line for line in log_lines), what="the TLS error logged")
        [line] = [line for line in log_lines if "certificate verify failed" in line]
        assert f"localhost:{tls_redis.port}" in line and "TLS error" in line
        assert not any("tls-s3cret" in line for line in log_lines)
    finally:
        await rl.stopService()


@pytest_twisted.ensureDeferred
async def test_certificate_for_another_host_is_a_clear_error(tmp_path, monkeypatch, log_lines):
    certificates = make_certificates(tmp_path / "pki", "redis", hostname="redis.internal")
    server = TlsRedisServer(tmp_path / "redis", certificates).start()
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates["ca"]))
    # A trusted CA, but the certificate names redis.internal, not localhost.
    rl, _ = redis_limiter(f"rediss://localhost:{server.port}")
    rl.startService()
    try:
        assert (await rl.take(ALICE, "openai")).store == "fallback"
        await eventually(lambda: any("does not match the host name" in line for line in log_lines), what="the mismatch logged")
    finally:
        await rl.stopService()
        server.kill()
