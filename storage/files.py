"""Writing files so that a crash never leaves half of one behind."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

TEMP_PREFIX = ".part-"


class AtomicFile:
    """A file written through a temporary file in the target's folder.

    The target appears, whole, only when :meth:`commit` renames the flushed
    temporary file onto it; leaving the ``with`` block without committing
    (an error, a failed check) deletes the temporary file.
    """

    def __init__(self, path: Path, tag: str = "") -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, self.temp_name = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{tag}")
        self.file = os.fdopen(handle, "wb")
        self.committed = False

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.temp_name, self.path)
        self.committed = True

    def discard(self) -> None:
        self.file.close()
        try:
            os.unlink(self.temp_name)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, *_exc) -> None:
        if not self.committed:
            self.discard()


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``: after a crash the path holds either nothing or the whole file."""
    with AtomicFile(path) as target:
        target.file.write(data)
        target.commit()


def remove_temp_files(folder: Path, tag: str) -> None:
    """Delete the temporary files written with ``tag`` in ``folder`` (a dead writer's leftovers)."""
    if folder.is_dir():
        for path in folder.glob(f"{TEMP_PREFIX}{tag}*"):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


def remove_stale_temp_files(folder: Path, older_than_seconds: float) -> int:
    """Delete the temporary files a crashed writer left under ``folder``; return how many."""
    if not folder.is_dir():
        return 0
    cutoff = time.time() - older_than_seconds
    removed = 0
    for path in folder.rglob(f"{TEMP_PREFIX}*"):
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed
