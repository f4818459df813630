"""Exception types shared by the core, the warehouse and the flows.

Every error raised on bad input names the problem (the key, the symbol, the
file, the HTTP status) and never carries a secret.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator


class HedgeflowError(Exception):
    """Base class: an error hedgeflow explains to its user."""


class ConfigError(HedgeflowError, ValueError):
    """A setting has a wrong value; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"setting {key!r}: {problem}")


class InvalidInputError(HedgeflowError, ValueError):
    """A user-supplied symbol, date, interval, parameter or file is not acceptable."""


class SourceError(HedgeflowError):
    """A market data source failed."""


class TransientSourceError(SourceError):
    """Worth retrying: timeout, connection reset, HTTP 5xx, 429, malformed body from a proxy."""


class PermanentSourceError(SourceError):
    """Never retried: bad token (401/403), unknown ticker (404), bad request."""


class DataFormatError(SourceError):
    """The vendor answered with something that is not the documented format."""


class DataValidationError(HedgeflowError, ValueError):
    """A frame does not satisfy its schema (and cannot be quarantined row by row)."""


class OutOfSpaceError(HedgeflowError):
    """A write failed because the file system is full (ENOSPC, in any library's words).

    The message is exactly ``no space left on <path>``: the file system being written
    (the warehouse home, the lake, the database file, a report or output folder). The
    write it interrupted left the earlier data as it was (atomic renames, rolled-back
    transactions)."""

    def __init__(self, path: object) -> None:
        self.path = str(path)
        super().__init__(f"no space left on {self.path}")

    def __str__(self) -> str:
        return f"no space left on {self.path}"

    def __reduce__(self) -> tuple[type[OutOfSpaceError], tuple[str]]:
        return (type(self), (self.path,))  # pickles across Dask workers with its path


# How libraries word ENOSPC: OSError's strerror, Arrow's ArrowIOError / OSError text,
# DuckDB's IOException / TransactionException ("... .wal: No space left on device").
NO_SPACE_TEXT = "No space left on device"


def is_out_of_space(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from) reports a full disk."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OutOfSpaceError):
            return True
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        if NO_SPACE_TEXT.lower() in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False


@contextlib.contextmanager
def out_of_space_as(path: object) -> Iterator[None]:
    """Re-raise a full-disk failure inside the block as ``OutOfSpaceError(path)``
    (an ``OutOfSpaceError`` raised deeper keeps its own path)."""
    try:
        yield
    except OutOfSpaceError:
        raise
    except Exception as exc:
        if is_out_of_space(exc):
            raise OutOfSpaceError(path) from exc
        raise
