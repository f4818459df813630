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

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numba
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

__all__ = ["EXPORT_FORMATS", "ExportFormat", "iso_utc", "write_table"]

ExportFormat = Literal["csv", "parquet"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("csv", "parquet")

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
def _iso_kernel(us: np.ndarray, valid: np.ndarray, out: np.ndarray) -> None:
    """``out[32 * j:]`` gets the ISO text of the j-th valid time (``us`` microseconds
    since the epoch, UTC; years 1-9999). Days to a civil date: H. Hinnant's algorithm."""
    j = 0
    for i in range(us.shape[0]):
        if not valid[i]:
            continue
        t = us[i]
        days = t // 86_400_000_000
        rem = t - days * 86_400_000_000
        z = days + 719468
        era = (z if z >= 0 else z - 146096) // 146097
        doe = z - era * 146097
        yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
        doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
        mp = (5 * doy + 2) // 153
        day = doy - (153 * mp + 2) // 5 + 1
        month = mp + 3 if mp < 10 else mp - 9
        year = yoe + era * 400 + (1 if month <= 2 else 0)
        secs = rem // 1_000_000
        a = j * 32
        _put(out, a, year, 4)
        out[a + 4] = 45  # -
        _put(out, a + 5, month, 2)
        out[a + 7] = 45
        _put(out, a + 8, day, 2)
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


def _csv_table(frame: pd.DataFrame, time_columns: Iterable[str]) -> pa.Table:
    times = set(time_columns)
    arrays = []
    for name in frame.columns:
        col = frame[name]
        if name in times:
            arrays.append(iso_utc(col))
        else:  # from_pandas: NaN -> null, written as an empty field as pandas did
            arrays.append(pa.array(col.to_numpy(), from_pandas=True))
    return pa.Table.from_arrays(arrays, names=[str(c) for c in frame.columns])


def write_table(
    frame: pd.DataFrame, path: Path, fmt: ExportFormat, time_columns: Iterable[str] = ()
) -> None:
    """Write ``frame`` (no index) to ``path`` as CSV or Parquet; the file is created by
    an ordinary open, so it gets the user's umask."""
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
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
