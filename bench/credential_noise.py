"""Credential findings on text nobody planted secrets in: the installed libraries' own files.

    .venv/bin/python bench/credential_noise.py [DIR ...] [--list]

Code, docs and configuration written by others name passwords and tokens all the
time (`token = get_token()`, `:param password:`, `["access_token", ...]`), so
nearly every finding here is noise: the count is what a generic detector costs
in false alarms on real code. Default DIR: this interpreter's site-packages.
--list prints file:line and type of each finding (never the value).
"""

from __future__ import annotations

import collections
import pathlib
import sys
import sysconfig

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # the working tree, not an installed copy

from proxilion.inspect.scanner import Scanner

SUFFIXES = {".py", ".md", ".rst", ".txt", ".cfg", ".toml", ".yaml", ".yml", ".ini", ".json"}
TYPES = {"generic_secret", "database_url", "url_credentials"}


def main(argv: list[str]) -> None:
    show = "--list" in argv
    roots = [pathlib.Path(a) for a in argv if a != "--list"] or [pathlib.Path(sysconfig.get_paths()["purelib"])]
    scanner = Scanner()
    files = size = 0
    counts: collections.Counter[str] = collections.Counter()
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.suffix in SUFFIXES and p.is_file()):
            try:
                text = path.read_text("utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            files += 1
            size += len(text)
            for hit in scanner.scan(text):
                if hit.type in TYPES:
                    counts[hit.type] += 1
                    if show:
                        print(f"{path}:{text.count(chr(10), 0, hit.start) + 1}: {hit.type}")
    print(f"{files} files, {size / 1e6:.0f} MB: {sum(counts.values())} credential findings "
          + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))


if __name__ == "__main__":
    main(sys.argv[1:])
