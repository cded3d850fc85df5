"""Run the real daemon (`twistd -n proxilion`) as a subprocess for end-to-end tests."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
from signal import SIGTERM
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[2]
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Bound but never listening: connections are refused, and no other server
# (another test's daemon, say) can take the port while the session runs.
_RESERVED: list[socket.socket] = []


def closed_port() -> int:
    """A loopback port nothing listens on, reserved for the rest of the test session."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _RESERVED.append(sock)
    return sock.getsockname()[1]


def raw_reply(port: int, data: bytes, source: str = "127.0.0.1", timeout: float = 10.0) -> bytes:
    """Send raw bytes from C{source}, then read until the server closes; a reset ends the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0)) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


def haproxy_stat(stats_socket: Path) -> list[dict[str, str]]:
    """HAProxy's "show stat" rows, read from its admin socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(stats_socket))
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    return [dict(zip(header, line.split(","))) for line in lines[1:] if line]


def http_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict[str, str], Any]:
    """One blocking request; returns (status, lower-cased headers, parsed JSON or raw bytes)."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        conn.request(method, "/" + path, body=data, headers={"content-type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        raw = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw
        return resp.status, hdrs, parsed
    finally:
        conn.close()


class Daemon:
    """One `twistd -n proxilion` process on free loopback ports, with its own data dir."""

    def __init__(self, workdir: Path, args: list[str] | tuple[str, ...] = (), env: dict[str, str] | None = None, port: int | None = None,
                 twistd_args: list[str] | tuple[str, ...] = ()) -> None:
        """C{args} follow C{proxilion}; C{twistd_args} (such as C{--reactor}) go before it, to twistd."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.args = list(args)
        self.twistd_args = list(twistd_args)
        self.env = dict(env or {})
        self.port = port or free_port()
        self.admin_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"daemon-{self.port}-{self.admin_port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, wait: bool = True, timeout: float = 30) -> "Daemon":
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PROXILION_DATA_DIR": str(self.workdir / "data"),
            "DRAIN_GRACE": "0",
            "DRAIN_TIMEOUT": "10",
            **self.env,
        }
        argv = [TWISTD, "-n", "--pidfile=", *self.twistd_args, "proxilion", "--bind", "127.0.0.1",
                "--port", str(self.port), "--admin-port", str(self.admin_port), *self.args]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=self.workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, _, _ = http_json("GET", self.admin_url + "/ready", timeout=1)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    def signal(self, sig: int = SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = SIGTERM, timeout: float = 30) -> int:
        """Send C{sig} and wait for exit; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if hasattr(self, "_log"):
            self._log.close()

    def metrics(self) -> str:
        host = self.admin_url.removeprefix("http://")
        conn = http.client.HTTPConnection(*host.split(":"), timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        return text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of samples of C{name} whose labels include C{labels}."""
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, label_text = head.partition("{")
            if metric != name:
                continue
            if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
                total += float(value)
        return total


@contextlib.contextmanager
def running(daemon: Daemon, start: bool = True) -> Iterator[Daemon]:
    """Start C{daemon}; whatever happens, it does not outlive the block (SIGTERM, then kill)."""
    if start:
        daemon.start()
    try:
        yield daemon
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            try:
                daemon.stop(timeout=20)
            except Exception:  # noqa: BLE001 - a hung daemon must still go
                daemon.kill()


def eventually(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition", interval: float = 0.05) -> Any:
    """Poll C{predicate} until it returns something true; fail after C{timeout} seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def fake_requests(fake_url: str) -> list[dict[str, Any]]:
    """What the fake provider received."""
    return http_json("GET", fake_url + "/_fake/requests")[2]["requests"]


def clear_fake(fake_url: str) -> None:
    http_json("DELETE", fake_url + "/_fake/requests")
