"""What an operator reads when a flag is described or the daemon cannot start."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from support.daemon import Daemon

from proxilion.config import SPECS

TWISTD = str(Path(sys.executable).parent / "twistd")


def test_a_flag_that_turns_a_setting_off_says_so() -> None:
    out = subprocess.run([TWISTD, "proxilion", "--help"], capture_output=True, text=True, check=True).stdout
    flat = " ".join(out.split())
    start = flat.index("--no-inspection")
    described = flat[start:start + 120]
    assert "unscanned" in described and not described.startswith("--no-inspection Inspect"), described
    inverted = [spec for spec in SPECS if spec.is_flag and spec.default]
    assert inverted and all(spec.off_help for spec in inverted)


def test_a_busy_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        daemon = Daemon(tmp_path, port=port)
        daemon.start(wait=False)
        assert daemon.proc is not None
        try:
            assert daemon.proc.wait(timeout=30) == 1
        finally:
            daemon.kill()
    lines = [line for line in daemon.log().splitlines() if "in use" in line]
    assert len(lines) == 1, daemon.log()
    line = lines[0]
    assert "Traceback" not in line and "traceback" not in line
    assert f"127.0.0.1:{port}" in line and "--port" in line and "PORT" in line


def test_a_busy_port_with_reuse_port_is_the_same_error() -> None:
    from twisted.internet.error import CannotListenError
    from twisted.internet.task import Clock

    from proxilion.listen import listen_tcp

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        try:
            listen_tcp(Clock(), port, None, "127.0.0.1", reuse_port=True)
        except CannotListenError as e:
            assert e.port == port
        else:
            raise AssertionError("listened on a busy port")
