"""Writing backtest tables (trades, equity) as CSV through pyarrow's writer, or Parquet.

CSV (the default of ``hedgeflow backtest``): the frame's columns in order, an unquoted
header, times as ISO 8601 UTC text with microseconds (``2024-01-02T14:30:00.000000+00:00``,
what the pandas writer made before), NaN/NaT as empty fields, floats as the shortest
text that reads back to the same double (pyarrow's formatting: ``0.1``, ``1e-07``; the
pandas writer wrote ``%.17g``, e.g. ``0.10000000000000001`` - other text, same value).

Parquet: the same columns with their own types (times ``timestamp[us, tz=UTC]``).

The ISO text is made by a compiled loop into one fixed-width buffer (pandas'
``strftime`` formatted row by row: ~20 s of a 1M-bar backtest; Arrow's ``strftime``
takes ~1.2 s per million). Only the caller's path is written: atomic replacement is
the caller's (``backtest_io``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numba
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

__all__ = ["EXPORT_FORMATS", "ExportFormat", "iso_utc", "write_table"]

ExportFormat = Literal["csv", "parquet"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("csv", "parquet")

# Below this many rows a table's columns are formatted in the calling thread.
_THREADED_ROWS = 50_000
_ISO_WIDTH = len("2024-01-02T14:30:00.000000+00:00")
# Years the fixed four-digit text can show.
_MIN_US = int(np.datetime64("0001-01-01T00:00:00", "us").astype(np.int64))
_MAX_US = int(np.datetime64("9999-12-31T23:59:59.999999", "us").astype(np.int64))


@numba.njit(cache=True, nogil=True)
def _put(out: np.ndarray, at: int, value: int, width: int) -> None:
    for k in range(width - 1, -1, -1):
        out[at + k] = 48 + value % 10
        value //= 10


@numba.njit(cache=True, nogil=True)
def _civil(days: int) -> tuple[int, int, int]:
    """Days since 1970-01-01 -> (year, month, day): H. Hinnant's algorithm."""
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if month <= 2 else 0), month, day


@numba.njit(cache=True, nogil=True)
def _iso_kernel(us: np.ndarray, valid: np.ndarray, out: np.ndarray) -> None:
    """``out[32 * j:]`` gets the ISO text of the j-th valid time (``us`` microseconds
    since the epoch, UTC; years 1-9999). The date part is computed once per day and
    copied for the day's other times (bars come in time order)."""
    j = 0
    last_day = np.int64(-(1 << 62))
    date_at = 0  # where the last day's date text was written
    for i in range(us.shape[0]):
        if not valid[i]:
            continue
        t = us[i]
        days = t // 86_400_000_000
        rem = t - days * 86_400_000_000
        a = j * 32
        if days == last_day:
            for k in range(10):
                out[a + k] = out[date_at + k]
        else:
            year, month, day = _civil(days)
            _put(out, a, year, 4)
            out[a + 4] = 45  # -
            _put(out, a + 5, month, 2)
            out[a + 7] = 45
            _put(out, a + 8, day, 2)
            last_day = days
        date_at = a
        secs = rem // 1_000_000
        out[a + 10] = 84  # T
        _put(out, a + 11, secs // 3600, 2)
        out[a + 13] = 58  # :
        _put(out, a + 14, (secs // 60) % 60, 2)
        out[a + 16] = 58
        _put(out, a + 17, secs % 60, 2)
        out[a + 19] = 46  # .
        _put(out, a + 20, rem % 1_000_000, 6)
        out[a + 26] = 43  # +
        out[a + 27] = 48
        out[a + 28] = 48
        out[a + 29] = 58
        out[a + 30] = 48
        out[a + 31] = 48
        j += 1


def iso_utc(times: pd.Series | pd.DatetimeIndex) -> pa.StringArray:
    """Tz-aware times as ISO 8601 UTC text with microseconds; NaT -> null."""
    series = pd.Series(times)
    if not isinstance(series.dtype, pd.DatetimeTZDtype):
        raise TypeError(f"iso_utc needs tz-aware times, got {series.dtype}")
    ints = series.dt.tz_convert("UTC").dt.as_unit("us").array.asi8
    valid = ~series.isna().to_numpy()
    n, n_valid = len(ints), int(valid.sum())
    if n_valid and (ints[valid].min() < _MIN_US or ints[valid].max() > _MAX_US):
        raise ValueError("times outside the years 1-9999 have no four-digit ISO text")
    data = np.empty(n_valid * _ISO_WIDTH, dtype=np.uint8)
    _iso_kernel(ints, valid, data)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(valid.astype(np.int32) * _ISO_WIDTH, out=offsets[1:])
    bitmap = None if n_valid == n else pa.array(valid).buffers()[1]
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(data), bitmap, n - n_valid
    )


def _text_column(col: pd.Series, is_time: bool) -> pa.Array:
    """One column as the text the CSV holds: ISO times, floats as their shortest
    round-trip text (pyarrow's cast, the one its CSV writer uses), NaN/NaT as null (an
    empty field, as pandas wrote); other columns as they are."""
    if is_time:
        return iso_utc(col)
    array = pa.array(col.to_numpy(), from_pandas=True)  # NaN -> null
    if pa.types.is_floating(array.type):
        return pc.cast(array, pa.string())
    return array


def _csv_table(frame: pd.DataFrame, time_columns: Iterable[str]) -> pa.Table:
    """The frame as a table of text columns, formatted in threads: each column in row
    blocks, one per core (the time kernel and Arrow's casts release the GIL; equal
    blocks keep the cores equally busy). On a 1M-row equity table the formatting takes
    a little over half the single-threaded time on two cores."""
    times = set(time_columns)
    names = [str(c) for c in frame.columns]
    n = len(frame)
    workers = os.cpu_count() or 1
    blocks = workers if workers > 1 and n >= _THREADED_ROWS else 1
    bounds = [n * b // blocks for b in range(blocks + 1)]
    jobs = [
        (frame[name].iloc[bounds[b] : bounds[b + 1]], name in times)
        for name in frame.columns
        for b in range(blocks)
    ]
    if blocks == 1:
        pieces = [_text_column(col, is_time) for col, is_time in jobs]
    else:
        with ThreadPoolExecutor(workers) as pool:
            pieces = list(pool.map(lambda job: _text_column(*job), jobs))
    columns = [pa.chunked_array(pieces[j * blocks : (j + 1) * blocks]) for j in range(len(names))]
    return pa.Table.from_arrays(columns, names=names)


def write_table(
    frame: pd.DataFrame, path: Path, fmt: ExportFormat, time_columns: Iterable[str] = ()
) -> None:
    """Write ``frame`` (no index) to ``path`` as CSV or Parquet; the file is created by
    an ordinary open, so it gets the user's umask."""
    if fmt == "parquet":
        table = pa.Table.from_pandas(frame, preserve_index=False)
        # Dictionary pages only where values repeat (sides, exit reasons): on a column of
        # distinct floats the dictionary is built, found too large and dropped, which
        # doubled the time of writing an equity curve.
        dictionary = [f.name for f in table.schema if not pa.types.is_floating(f.type)]
        pq.write_table(table, path, use_dictionary=dictionary)
        return
    if fmt != "csv":
        raise ValueError(f"unknown export format {fmt!r}: expected one of {EXPORT_FORMATS}")
    table = _csv_table(frame, time_columns)
    header = ",".join(table.column_names) + "\n"
    # Unquoted (the values are numbers, ISO times and fixed words such as "long" or
    # "stop"; a value that needed quotes would make pyarrow raise, not write bad CSV).
    options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
    with open(path, "wb") as fh:
        fh.write(header.encode("utf-8"))
        pa_csv.write_csv(table, fh, options)
