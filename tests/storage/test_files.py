"""Atomic files: whole or absent, pushed to disk while they grow, and never kept when a sync fails."""

from __future__ import annotations

import os

import pytest

from storage import files
from storage.files import TEMP_PREFIX, AtomicFile, write_atomically


def test_a_committed_file_appears_whole_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    write_atomically(target, b"hello")
    assert target.read_bytes() == b"hello"
    assert [path.name for path in target.parent.iterdir()] == ["out.bin"]


def test_leaving_without_commit_deletes_the_temporary_file(tmp_path):
    target = tmp_path / "out.bin"
    with AtomicFile(target, tag="7-") as out:
        out.file.write(b"half")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_a_growing_file_is_synced_in_the_background_then_fully_at_commit(tmp_path, monkeypatch):
    synced = []

    def counting_datasync(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)
        os.fsync(fd)

    monkeypatch.setattr(files, "SYNC_EVERY", 1000)
    monkeypatch.setattr(files, "_datasync", counting_datasync)
    target = tmp_path / "big.bin"
    chunks = [bytes([n]) * 700 for n in range(10)]
    with AtomicFile(target) as out:
        for chunk in chunks:
            out.file.write(chunk)
        out.commit()
    assert target.read_bytes() == b"".join(chunks)
    # A sync started while the file grew, once SYNC_EVERY bytes were written (commit then fsyncs the rest).
    assert synced and synced[0] >= 1000


def test_a_background_sync_that_fails_keeps_nothing(tmp_path, monkeypatch):
    def failing_datasync(_fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files, "SYNC_EVERY", 10)
    monkeypatch.setattr(files, "_datasync", failing_datasync)
    target = tmp_path / "out.bin"
    with pytest.raises(OSError, match="Input/output error"):
        with AtomicFile(target) as out:
            out.file.write(b"x" * 100)
            out.commit()
    assert not target.exists()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(TEMP_PREFIX)]
