"""Reading a user's table file (CSV, gzipped CSV or Parquet) within ceilings.

One reader for every file a command is handed (``backtest --bars``, ``overfit
--returns``): the size on disk and decompressed, the rows and, for wide files, the cells
are checked before the data is held in memory (Parquet from its metadata, CSV through a
bounded stream, so a small ``.csv.gz`` that inflates without bound is refused early).
A file that cannot be parsed is one ``InvalidInputError`` naming it.

A plain (uncompressed) CSV is first read by pyarrow's multi-threaded reader, which also
parses ISO 8601 times natively (~4x pandas' ``read_csv`` plus text-to-time parsing on a
1M-row file). Whatever pyarrow refuses or reads differently from pandas (a value that
does not fit the type it inferred from the first block, duplicate or blank column
names) goes to pandas' reader, whose result and error messages the callers know; both
give the same frame for a well-formed file.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from hedgeflow.errors import InvalidInputError

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".txt")


@dataclass(frozen=True)
class Limits:
    max_bytes: int  # on disk, and decompressed
    max_rows: int
    max_cells: int | None = None  # rows x columns


def fail(what: str, path: Path, problem: str) -> InvalidInputError:
    return InvalidInputError(f"{what} {str(path)!r}: {problem}")


def size_words(n: int) -> str:
    return f"{n / (1 << 30):g} GiB" if n >= 1 << 30 else f"{n / (1 << 20):g} MiB"


class _Bounded(io.RawIOBase):
    """A read-only stream that fails once more than ``limit`` bytes came through."""

    def __init__(self, inner: Any, limit: int, on_excess: InvalidInputError) -> None:
        self._inner, self._left, self._excess = inner, limit, on_excess

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(min(len(buffer), self._left + 1))
        self._left -= len(data)
        if self._left < 0:
            raise self._excess
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


def read_table_file(path: Path, what: str, limits: Limits) -> pd.DataFrame:
    """``path`` as a frame, or an error naming ``what`` (e.g. "bars file") and the path."""
    name = path.name.lower()
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise fail(
            what, path, f"is {size:,} bytes, larger than the {size_words(limits.max_bytes)} limit"
        )

    def too_many_rows(rows: str) -> InvalidInputError:
        return fail(what, path, f"has {rows} rows, more than the limit of {limits.max_rows:,}")

    def too_many_cells(cells: int) -> InvalidInputError:
        return fail(
            what, path, f"has {cells:,} values, more than the limit of {limits.max_cells:,}"
        )

    try:
        if name.endswith(PARQUET_SUFFIXES):
            meta = pq.ParquetFile(path).metadata
            if meta.num_rows > limits.max_rows:
                raise too_many_rows(f"{meta.num_rows:,}")
            cells = meta.num_rows * meta.num_columns
            if limits.max_cells is not None and cells > limits.max_cells:
                raise too_many_cells(cells)
            inflated = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            if inflated > limits.max_bytes:
                raise fail(
                    what,
                    path,
                    f"decompresses to {inflated:,} bytes, more than {size_words(limits.max_bytes)}",
                )
            return _to_pandas(pq.read_table(path))
        if name.endswith(CSV_SUFFIXES):
            frame = None if name.endswith(".gz") else _arrow_csv(path)
            counted = frame is not None  # pyarrow reads every row; pandas stops past the limit
            if frame is None:
                stream = gzip.open(path, "rb") if name.endswith(".gz") else open(path, "rb")  # noqa: SIM115
                excess = fail(
                    what, path, f"decompresses to more than {size_words(limits.max_bytes)}"
                )
                with io.BufferedReader(_Bounded(stream, limits.max_bytes, excess)) as fh:
                    frame = pd.read_csv(fh, nrows=limits.max_rows + 1)
            if len(frame) > limits.max_rows:
                raise too_many_rows(f"{len(frame):,}" if counted else "more")
            if limits.max_cells is not None and frame.size > limits.max_cells:
                raise too_many_cells(int(frame.size))
            return frame
    except InvalidInputError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # any parser failure (pyarrow, csv, gzip, ...) is a bad file
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise fail(what, path, f"cannot be read ({type(exc).__name__}: {detail})") from None
    raise fail(what, path, "unknown format: expected a .csv, .csv.gz, .txt, .parquet or .pq file")


def _arrow_csv(path: Path) -> pd.DataFrame | None:
    """A plain CSV file read by pyarrow (size already checked: on disk is inflated), or
    None when pandas' reader must decide (see the module doc)."""
    try:
        table = pa_csv.read_csv(path)
    except (pa.ArrowException, ValueError, OSError, UnicodeDecodeError):
        return None
    names = table.column_names
    if len(set(names)) != len(names) or any(not n.strip() for n in names):
        return None
    return _to_pandas(table)


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """The table as a frame without a consolidating copy: numeric columns without nulls
    are views of Arrow's memory (read-only; readers copy what they keep), and each
    column's Arrow memory is released as it is converted."""
    return table.to_pandas(split_blocks=True, self_destruct=True)
