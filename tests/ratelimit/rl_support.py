"""Helpers for the rate limiter tests: redis-server processes and reactor polling."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import ssl
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
            wait_for(self.ready, what=f"redis on {self.port}")
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


def make_certificates(directory: Path, name: str, hostname: str = "localhost") -> dict[str, Path]:
    """A throwaway CA (ca.pem) and a server certificate it signed for C{hostname} and 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    names = [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


class TlsRedisServer(RedisServer):
    """A redis-server that speaks TLS only (no plain port), with a certificate from C{make_certificates}."""

    def __init__(self, directory: Path, certificates: dict[str, Path], *extra: str) -> None:
        super().__init__(directory, None, *extra)
        self.certificates = certificates

    def argv(self) -> list[str]:
        files = self.certificates
        return [
            REDIS_SERVER, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(files["cert"]), "--tls-key-file", str(files["key"]),
            "--tls-ca-cert-file", str(files["ca"]), "--tls-auth-clients", "no",
            "--save", "", "--appendonly", "no", "--dir", str(self.directory), *self.extra,
        ]

    def ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.certificates["ca"]))
        context.check_hostname = False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
                with context.wrap_socket(raw) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def cli(self, *args: str) -> str:
        command = [REDIS_CLI, "--tls", "--cacert", str(self.certificates["ca"]), "-h", "127.0.0.1", "-p", str(self.port), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip()

    @property
    def url(self) -> str:
        return f"rediss://localhost:{self.port}"

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
