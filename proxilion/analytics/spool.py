"""The disk spool: audit rows kept while the database cannot take them.

Append-only JSON lines in C{<data_dir>/spool/}: rows go to C{active.jsonl},
which is sealed (renamed to C{seg-<n>.jsonl}) once it reaches 4 MiB or when a
replay begins. Replay reads the oldest sealed segment and deletes it only
after every row in it committed. Rows the database refuses for their content
go to C{rejected.jsonl}, which is never replayed.

Every method does blocking file I/O: call them from one dedicated thread,
never from the reactor. The writer does.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

from proxilion.analytics.event import row_from_json, row_json

__all__ = ["Spool", "Segment"]

_SEGMENT = re.compile(r"^seg-(\d{12})\.jsonl$")
_ACTIVE = "active.jsonl"
_REJECTED = "rejected.jsonl"


class Segment:
    """A sealed spool file read back for replay."""

    def __init__(self, name: str, rows: list[tuple], damaged: int) -> None:
        self.name = name
        self.rows = rows
        self.damaged = damaged


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Spool:
    """Spool files in C{directory}, holding at most C{max_bytes} of unreplayed rows."""

    segment_bytes = 4 * 1024 * 1024

    def __init__(self, directory: str, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        # Bytes of unreplayed rows. Written by the spool thread only; the
        # reactor reads it for /status and to decide whether to replay.
        self.size = 0
        self._active_fd: int | None = None
        self._active_bytes = 0
        self._next = 0
        self._rejected_bytes = 0

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _segments(self) -> list[str]:
        return sorted(name for name in os.listdir(self.directory) if _SEGMENT.match(name))

    def load(self) -> int:
        """Create the directory, seal what a previous run left active, and return the bytes waiting."""
        os.makedirs(self.directory, exist_ok=True)
        segments = self._segments()
        self._next = int(segments[-1][len("seg-") : -len(".jsonl")]) + 1 if segments else 0  # a name _SEGMENT accepted
        active = self._path(_ACTIVE)
        if os.path.exists(active):
            if os.path.getsize(active):
                self._seal()
            else:
                os.remove(active)
        self.size = sum(os.path.getsize(self._path(name)) for name in self._segments())
        rejected = self._path(_REJECTED)
        self._rejected_bytes = os.path.getsize(rejected) if os.path.exists(rejected) else 0
        return self.size

    def adopt(self, paths: Sequence[str]) -> int:
        """Take files of spool lines (a previous run's journal) as sealed segments, in order; returns their bytes.

        A rename: the files must be on the same filesystem as the spool.
        """
        taken = 0
        for path in paths:
            size = os.path.getsize(path)
            if not size:
                os.remove(path)
                continue
            os.rename(path, self._path(f"seg-{self._next:012d}.jsonl"))
            self._next += 1
            self.size += size
            taken += size
        if taken:
            self._sync_directory()
        return taken

    def _seal(self) -> None:
        if self._active_fd is not None:
            os.close(self._active_fd)
            self._active_fd = None
        os.rename(self._path(_ACTIVE), self._path(f"seg-{self._next:012d}.jsonl"))
        self._next += 1
        self._active_bytes = 0
        self._sync_directory()

    def _open_active(self) -> int:
        if self._active_fd is None:
            path = self._path(_ACTIVE)
            self._active_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._active_bytes = os.fstat(self._active_fd).st_size
            self._sync_directory()
        return self._active_fd

    def _write_chunk(self, data: bytes) -> None:
        fd = self._open_active()
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except OSError:
            # Cut a torn write back so the next append starts on a clean line.
            try:
                os.ftruncate(fd, self._active_bytes)
            except OSError:
                os.close(fd)
                self._active_fd = None
            raise
        self._active_bytes += len(data)
        self.size += len(data)
        if self._active_bytes >= self.segment_bytes:
            self._seal()

    def append(self, rows: Sequence[tuple]) -> tuple[int, OSError | None]:
        """Append, fsynced, as many leading C{rows} as fit under C{max_bytes}.

        Returns how many are on disk, and the error that stopped the rest
        early (a full or read-only disk), if any.
        """
        done = 0
        chunk: list[bytes] = []
        chunk_bytes = 0
        try:
            for row in rows:
                line = (row_json(row) + "\n").encode()
                if self.size + chunk_bytes + len(line) > self.max_bytes:
                    break
                chunk.append(line)
                chunk_bytes += len(line)
                if self._active_bytes + chunk_bytes >= self.segment_bytes:
                    self._write_chunk(b"".join(chunk))
                    done += len(chunk)
                    chunk, chunk_bytes = [], 0
            if chunk:
                self._write_chunk(b"".join(chunk))
                done += len(chunk)
        except OSError as e:
            return done, e
        return done, None

    def oldest(self) -> Segment | None:
        """The oldest sealed segment (sealing the active file if nothing else waits), or None."""
        segments = self._segments()
        if not segments and self._active_bytes:
            self._seal()
            segments = self._segments()
        if not segments:
            return None
        name = segments[0]
        rows, damaged = [], 0
        with open(self._path(name), "rb") as f:
            for line in f:
                try:
                    rows.append(row_from_json(line.decode()))
                except ValueError:
                    damaged += 1
        return Segment(name, rows, damaged)

    def remove(self, name: str) -> None:
        """Delete a replayed segment (its rows are committed)."""
        path = self._path(name)
        size = os.path.getsize(path)
        os.remove(path)
        self.size -= size
        self._sync_directory()

    def reject(self, rows: Sequence[tuple]) -> int:
        """Keep rows the database refused in C{rejected.jsonl}; returns how many fit."""
        lines = []
        total = 0
        for row in rows:
            line = (row_json(row) + "\n").encode()
            if self._rejected_bytes + total + len(line) > self.max_bytes:
                break
            lines.append(line)
            total += len(line)
        if lines:
            fd = os.open(self._path(_REJECTED), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                _write_all(fd, b"".join(lines))
                os.fsync(fd)
            finally:
                os.close(fd)
            self._rejected_bytes += total
        return len(lines)

    def close(self) -> None:
        if self._active_fd is not None:
            os.close(self._active_fd)
            self._active_fd = None
