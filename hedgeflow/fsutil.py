"""File-system checks made before any work: what kind of file a path is, and whether
a directory is usable (for the warehouse home and output folders)."""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

from hedgeflow.errors import OutOfSpaceError

__all__ = ["atomic_write", "directory_problem", "file_kind"]


def file_kind(mode: int) -> str:
    """What a file is, for an error message: 'a directory', 'a FIFO (named pipe)', ..."""
    kinds = (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    for test, name in kinds:
        if test(mode):
            return name
    return "not a regular file"


def directory_problem(path: Path, *, writable: bool) -> str | None:
    """Why ``path`` cannot serve as a directory hedgeflow uses (None when it can): it
    must be a directory, or not exist yet under a directory; with ``writable``, one
    hedgeflow may write in. A file system with no space left raises OutOfSpaceError."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        return f"is not usable: {exc.strerror or exc}"
    target = path
    if info is not None and not stat.S_ISDIR(info.st_mode):
        return f"is {file_kind(info.st_mode)}, not a directory"
    if info is None:  # created on first write: the nearest existing ancestor decides
        target = _existing_ancestor(path)
        try:
            mode = os.stat(target).st_mode
        except OSError as exc:
            return f"cannot be created: {target} is not usable ({exc.strerror or exc})"
        if not stat.S_ISDIR(mode):
            return f"cannot be created: {target} is {file_kind(mode)}"
    if writable:
        if not os.access(target, os.W_OK | os.X_OK):
            return "is not writable" if target == path else f"cannot be created in {target}"
        try:
            free = os.statvfs(target).f_bavail
        except OSError:
            free = 1
        if free == 0:
            raise OutOfSpaceError(path)
    return None


def _existing_ancestor(path: Path) -> Path:
    current = path.absolute()
    while not os.path.lexists(current) and current != current.parent:
        current = current.parent
    return current


def atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    """Write a unique temporary file beside ``target``, then rename it into place. The
    writer creates the file, so it gets the user's umask (mkstemp made it 0600)."""
    tmp = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
