"""directory_problem / file_kind: the checks made before any work on homes and --out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hedgeflow.errors import OutOfSpaceError
from hedgeflow.fsutil import directory_problem, file_kind


def test_file_kinds(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "file").write_text("x")
    kinds = {
        tmp_path: "a directory",
        tmp_path / "file": "a regular file",
        fifo: "a FIFO (named pipe)",
        Path("/dev/null"): "a character device",
    }
    for path, kind in kinds.items():
        assert file_kind(os.stat(path).st_mode) == kind


def test_usable_directories(tmp_path: Path) -> None:
    assert directory_problem(tmp_path, writable=True) is None
    assert directory_problem(tmp_path / "new" / "deeper", writable=True) is None  # creatable
    assert directory_problem(Path("/proc/self"), writable=False) is None  # readable


def test_unusable_directories(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    cases = {
        Path("/dev/null"): "is a character device, not a directory",
        tmp_path / "file": "is a regular file, not a directory",
        tmp_path / "file" / "sub": "is not usable: Not a directory",
        Path("/proc/self"): "is not writable",
        Path("/proc/self/new"): "cannot be created in /proc/self",
    }
    for path, problem in cases.items():
        assert directory_problem(path, writable=True) == problem, path


def test_no_block_left_is_out_of_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.statvfs

    def full(path: object) -> os.statvfs_result:
        fields = list(real(path))  # type: ignore[arg-type]
        fields[4] = 0  # f_bavail
        return os.statvfs_result(fields)

    monkeypatch.setattr(os, "statvfs", full)
    with pytest.raises(OutOfSpaceError, match=f"^no space left on {tmp_path}$"):
        directory_problem(tmp_path, writable=True)
    assert directory_problem(tmp_path, writable=False) is None  # reading needs no space
