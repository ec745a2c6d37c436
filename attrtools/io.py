"""Atomic file writes (temporary name in the same folder, then rename).

The finished file gets the mode a plain ``open(path, "w")`` would give it (``0o666`` minus the
process umask), not the private ``0o600`` of ``tempfile.mkstemp``: reports, CSVs and saved models
can be served or shared as they are.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager


def default_file_mode() -> int:
    """``0o666 & ~umask``: the mode ``open(path, "w")`` creates files with in this process."""
    try:  # Linux: read it without changing it (threads may be creating files meanwhile)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)  # elsewhere: set it and put it back
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yield a temporary path next to ``path``; rename it over ``path`` if the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix or os.path.splitext(path)[1], dir=directory)
    os.close(fd)
    try:
        yield tmp
        # After the block: some writers (safetensors) replace the temporary file with their own.
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str, text: str) -> str:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return path


def write_json(path: str, obj) -> str:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
