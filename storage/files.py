"""Writing files so that a crash never leaves half of one behind."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

TEMP_PREFIX = ".part-"
# A big file is pushed to the disk every this many bytes while it is still being written,
# so that the fsync before the rename has only the tail left to wait for.
SYNC_EVERY = 32 * 1024 * 1024
_datasync = getattr(os, "fdatasync", os.fsync)  # Windows has no fdatasync


class _WriteBehindFile:
    """A binary file that starts syncing its data to disk in the background as it grows.

    fsync'ing 200 MB at the end stalls the download for a good part of a
    second; an ``fdatasync`` (``fsync`` on Windows) started every :data:`SYNC_EVERY` bytes on a side
    thread (it releases the GIL) overlaps that disk work with the decryption,
    and :meth:`sync` then waits for it and flushes the rest.
    """

    def __init__(self, handle: int) -> None:
        self._file = os.fdopen(handle, "wb")
        self._unsynced = 0
        self._syncing: Optional[threading.Thread] = None
        self._error: Optional[OSError] = None

    def write(self, data) -> int:
        written = self._file.write(data)
        self._unsynced += written or 0
        if self._unsynced >= SYNC_EVERY and (self._syncing is None or not self._syncing.is_alive()):
            self._file.flush()
            self._unsynced = 0
            self._syncing = threading.Thread(target=self._sync_in_background, name="zaphook-fsync", daemon=True)
            self._syncing.start()
        return written

    def _sync_in_background(self) -> None:
        try:
            _datasync(self._file.fileno())
        except OSError as exc:  # reported by sync(): the file must not be kept
            self._error = exc

    def sync(self) -> None:
        """Everything written is on disk when this returns (or it raises)."""
        self._file.flush()
        if self._syncing is not None:
            self._syncing.join()
        if self._error is not None:
            raise self._error
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._syncing is not None:
            self._syncing.join()  # never close the descriptor under a running fdatasync
        self._file.close()

    def flush(self) -> None:
        self._file.flush()

    def fileno(self) -> int:
        return self._file.fileno()


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
        self.file = _WriteBehindFile(handle)
        self.committed = False

    def commit(self) -> None:
        self.file.sync()
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
