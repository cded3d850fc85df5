"""Helpers for tests that need a fake provider in another process, and for reading its answers."""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

import attrs

_RUN = ("import sys, argparse; from proxilion.fakeprovider import command as c; "
        "p = argparse.ArgumentParser(); c.add_arguments(p); "
        "sys.exit(c.run(p.parse_args(sys.argv[1:])))")


@contextlib.contextmanager
def running_fake_provider(chunk_delay: float = 0.01) -> Iterator[str]:
    """Start `proxilion fake-provider` on a free port; yield its base URL; stop it after."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUN, "--port", "0", "--chunk-delay", str(chunk_delay)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout is not None else ""
        if not line.startswith("fake provider listening on "):
            raise RuntimeError(f"fake provider did not start: {line!r}")
        yield line.split()[-1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@attrs.frozen
class Reply:
    status: int
    headers: dict[str, str]
    chunks: list[bytes]

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def json(self) -> object:
        return json.loads(self.body)


def call(base: str, method: str, path: str, body: object = None,
         headers: dict[str, str] | None = None, timeout: float = 10) -> Reply:
    """One blocking request; the body is kept as the reads that delivered it, so a
    test can tell a stream that arrived in pieces from one lump."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, parts.path.rstrip("/") + path, body=data,
                     headers={"content-type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        chunks = []
        while chunk := resp.read1(65536):
            chunks.append(chunk)
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, chunks)
    finally:
        conn.close()


def sse_events(body: bytes) -> list[tuple[str | None, str]]:
    """The (event, data) pairs of an SSE body."""
    events = []
    for block in body.decode("utf-8").split("\n\n"):
        if not block.strip():
            continue
        event = None
        data = []
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])
        events.append((event, "\n".join(data)))
    return events
