"""systemd Type=notify: READY=1 once the proxy listens, STOPPING=1 when the drain starts, over NOTIFY_SOCKET."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from support.daemon import Daemon, http_json, running

from .conftest import LIMITS


def receive(sock: socket.socket, timeout: float = 30) -> dict[str, str]:
    sock.settimeout(timeout)
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_ready_and_stopping_are_notified(tmp_path: Path, abstract: bool) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"proxilion-notify-{os.getpid()}-{tmp_path.name}"
        sock.bind("\0" + name)
        address = "@" + name
    else:
        address = str(tmp_path / "notify.sock")
        sock.bind(address)
    with sock, running(Daemon(tmp_path, [], {**LIMITS, "NOTIFY_SOCKET": address, "DRAIN_GRACE": "0.5"}), start=False) as daemon:
        daemon.start(wait=False)
        ready = receive(sock)
        assert ready["READY"] == "1"
        # By READY=1 every port answers.
        assert http_json("GET", daemon.url + "/health")[0] == 200
        assert http_json("GET", daemon.admin_url + "/ready")[0] == 200
        daemon.signal(signal.SIGTERM)
        stopping = receive(sock, timeout=5)
        assert stopping["STOPPING"] == "1"
        assert http_json("GET", daemon.admin_url + "/health")[0] == 503
        assert daemon.proc.wait(15) == 0


def test_unreachable_notify_socket_does_not_stop_the_daemon(tmp_path: Path) -> None:
    env = {**LIMITS, "NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")}
    with running(Daemon(tmp_path, [], env)) as daemon:
        assert http_json("GET", daemon.url + "/health")[0] == 200
        assert daemon.stop() == 0
    assert "could not notify systemd" in daemon.log()
