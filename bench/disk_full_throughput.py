"""Throughput with the data dir (SQLite, journal, spool) on a full tmpfs vs. on one with room (issue #14, item 4).

Needs root (mount) and wrk. Rounds alternate normal/full; on a shared 2-core machine compare pairs.

    .venv/bin/python bench/disk_full_throughput.py
"""
from pathlib import Path
import re
import subprocess
import sys

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.daemon import Daemon, running  # noqa: E402
from proxilion.fakeprovider.testing import running_fake_provider  # noqa: E402
env = {"RATE_LIMIT_PER_MINUTE": "60000000", "RATE_LIMIT_BURST": "10000000"}


def wrk(d: Daemon) -> float:
    out = subprocess.run(["wrk","-t1","-c16","-d6s","-s",str(Path(__file__).resolve().parent / "lib" / "chat_post.lua"), d.url+"/proxy/openai/v1/chat/completions"],capture_output=True,text=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
with running_fake_provider(chunk_delay=0.0) as fake:
    for full in (False, True, False, True):
        tmp = Path(f"/tmp/tp{int(full)}"); subprocess.run(["rm","-rf",str(tmp)]); data = tmp/"data"; data.mkdir(parents=True)
        subprocess.run(["mount","-t","tmpfs","-o","size=8m","tmpfs",str(data)], check=True)
        try:
            d = Daemon(tmp, ["--upstream", f"openai={fake}"], env=env)
            with running(d):
                if full:
                    with open(data/"filler","wb",buffering=0) as f:
                        try:
                            while True: f.write(b"\0"*65536)
                        except OSError: pass
                print("full" if full else "normal", wrk(d), "req/s", flush=True)
        finally:
            subprocess.run(["umount","-l",str(data)])
