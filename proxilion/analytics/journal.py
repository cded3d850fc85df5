"""The audit journal: every audit row on disk before its response's last byte leaves.

Files C{<data_dir>/journal/journal-<n>.jsonl} hold one JSON line per row, in
the spool's format. L{Journal.append} runs on the reactor thread and costs one
C{write(2)} to an C{O_APPEND} file: once it returns the row is in the page
cache and survives a kill of the process (not a power cut or a kernel crash:
the journal is not fsynced, which would cost a disk flush per request).

The writer reports each row's fate: L{settle} once it is committed to the
database or fsynced in the spool, L{pin} when it was dropped from memory and
only the journal still holds it. A file whose rows are all settled is
truncated (the active one) or deleted (older ones); a file with a pinned row
is kept. Whatever a previous run left here is handed to the spool at start
and replayed into the database, where inserts ignore request ids already
stored.
"""

from __future__ import annotations

import builtins
import errno
import os
import re
from typing import Any, Callable

__all__ = ["Journal"]

_FILE = re.compile(r"^journal-(\d{12})\.jsonl$")
# After a failed write, the journal is not tried again for this long: a full
# disk must not cost a failing syscall (and a truncate) per request.
_RETRY_AFTER = 1.0


class Journal:
    """The journal files in C{directory}, at most C{max_bytes} of them.

    @param write: C{os.write} (injectable so tests can fill the disk).
    """

    segment_bytes = 1024 * 1024

    def __init__(self, directory: str, max_bytes: int, clock: Any, write: Callable[[int, bytes], int] = os.write) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._clock = clock
        self._write = write
        self._fd: int | None = None
        self._gen = 0
        self._size = 0  # bytes in the active file
        self._sealed: dict[int, int] = {}  # generation -> bytes, files awaiting their rows' fate
        self._open_rows: dict[int, int] = {}  # generation -> rows neither settled nor pinned
        self._pinned: set[int] = set()
        self._retry_at: float | None = None
        self.last_error: str | None = None

    @property
    def bytes(self) -> int:
        return self._size + sum(self._sealed.values())

    def usable(self) -> bool:
        """True when the next row is likely to reach the journal."""
        return self._fd is not None and not self._failing() and self.bytes < self.max_bytes

    def _failing(self) -> bool:
        return self._retry_at is not None and self._clock.seconds() < self._retry_at

    def _path(self, gen: int) -> str:
        return os.path.join(self.directory, f"journal-{gen:012d}.jsonl")

    def start(self) -> list[str]:
        """Open a new active file; return the files a previous run left, oldest first. Blocking, once."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        found = sorted((m for m in map(_FILE.match, os.listdir(self.directory)) if m), key=lambda m: m.group(0))
        self._gen = int(found[-1].group(1)) + 1 if found else 0
        self._open_active()
        return [os.path.join(self.directory, m.group(0)) for m in found]

    def _open_active(self) -> None:
        self._fd = os.open(self._path(self._gen), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
        self._size = 0

    def append(self, line: builtins.bytes) -> int | None:  # C{bytes} here is the property above
        """Write one row's line; its generation, or None when it is not journaled (full, failing, closed).

        On the reactor thread: one C{write(2)}, no fsync.
        """
        if self._fd is None or self._failing():
            return None
        if self.bytes + len(line) > self.max_bytes:
            return None
        if self._size >= self.segment_bytes:
            self._rotate()
        try:
            written = self._write(self._fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, "short write")
        except OSError as e:
            self.last_error = f"{type(e).__name__}: {e.strerror or e}"
            self._retry_at = self._clock.seconds() + _RETRY_AFTER
            try:
                # Cut a torn line back so the next row starts on a clean line.
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            return None
        self._retry_at = None
        self._size += written
        self._open_rows[self._gen] = self._open_rows.get(self._gen, 0) + 1
        return self._gen

    def _rotate(self) -> None:
        assert self._fd is not None
        os.close(self._fd)
        self._sealed[self._gen] = self._size
        self._gen += 1
        self._open_active()

    def settle(self, gen: int) -> None:
        """One row of generation C{gen} is safe elsewhere (committed, or fsynced in the spool)."""
        self._release(gen)

    def pin(self, gen: int) -> None:
        """One row of generation C{gen} lives only in the journal: keep that file for the next start."""
        self._pinned.add(gen)
        self._release(gen)

    def _release(self, gen: int) -> None:
        left = self._open_rows.get(gen, 0) - 1
        if left > 0:
            self._open_rows[gen] = left
            return
        self._open_rows.pop(gen, None)
        if gen in self._pinned:
            if gen == self._gen and self._fd is not None:
                self._rotate()
            return
        try:
            if gen == self._gen and self._fd is not None:
                os.ftruncate(self._fd, 0)
                self._size = 0
            elif gen in self._sealed:
                os.remove(self._path(gen))
                del self._sealed[gen]
        except OSError as e:
            self.last_error = f"{type(e).__name__}: {e.strerror or e}"

    def close(self) -> None:
        """Close the active file, removing it when none of its rows needs it."""
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        if not self._open_rows.get(self._gen) and self._gen not in self._pinned:
            try:
                os.remove(self._path(self._gen))
            except OSError:
                pass
