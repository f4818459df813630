"""The bars lake: one Parquet file per (interval, symbol, month) partition.

Writes replace a time range ``[start, end)``: for every month the range
touches, the partition's rows inside the range are dropped, the new rows are
put in their place, and the result is written to a temp file in the same
directory, fsynced and ``os.replace``d over the old file. So:

- re-ingesting a range replaces it (idempotent, never duplicates);
- each partition is atomic: a reader or a crash sees the old or the new file,
  never half of one (a range spanning several months may, after a crash, have
  some months new and some old; re-running the write repairs it);
- an empty frame clears the range (a source that legitimately has no bars
  there), and a partition left with no rows is deleted.

Writers of one symbol serialise on an ``fcntl.flock`` lock file. Reads use
pyarrow directly and never touch DuckDB (so they never wait for its lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hedgeflow.columns import BAR_COLUMNS, STORED_BAR_COLUMNS, TS
from hedgeflow.errors import HedgeflowError, InvalidInputError
from hedgeflow.market import normalize_symbol, validate_interval
from hedgeflow.schemas.bars import empty_bars, ensure_valid_bars
from hedgeflow.warehouse.paths import TEMP_SUFFIX, WarehousePaths, month_key

TimeLike: TypeAlias = pd.Timestamp | datetime | np.datetime64 | str

_TS_TYPE = pa.timestamp("us", tz="UTC")
# The stored form (hedgeflow.schemas.bars.StoredBars) as Parquet columns, in
# STORED_BAR_COLUMNS order.
BARS_ARROW_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("interval", pa.string(), nullable=False),
        pa.field("ts", _TS_TYPE, nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=True),
        pa.field("source", pa.string(), nullable=False),
        pa.field("ingested_at", _TS_TYPE, nullable=False),
    ]
)
assert tuple(BARS_ARROW_SCHEMA.names) == STORED_BAR_COLUMNS

PARQUET_COMPRESSION = "snappy"
# Dictionary-encode only the constant-ish columns: trying it on float columns
# costs more than half of the write time and gains nothing on prices.
_DICTIONARY_COLUMNS = ["symbol", "interval", "source", "ingested_at"]
# Partitions of one write are independent files: write a few at once
# (pyarrow and fsync release the GIL).
_WRITE_THREADS = max(1, min(4, os.cpu_count() or 1))


class LakeLockTimeout(HedgeflowError, TimeoutError):
    """Another writer held the symbol's lake lock for longer than the timeout."""


@dataclass(frozen=True)
class WriteReport:
    """What ``write_bars`` did."""

    symbol: str
    interval: str
    start: pd.Timestamp
    end: pd.Timestamp
    rows_written: int
    rows_replaced: int
    partitions_written: tuple[str, ...]
    partitions_removed: tuple[str, ...]
    seconds: float


def to_utc(value: TimeLike, name: str) -> pd.Timestamp:
    """A UTC, microsecond Timestamp; naive values are taken as UTC."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"{name}: not a timestamp: {value!r}") from exc
    if ts is pd.NaT or pd.isna(ts):
        raise InvalidInputError(f"{name}: missing timestamp")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.as_unit("us")


def _us(ts: pd.Timestamp) -> int:
    return int(ts.as_unit("us").asm8.astype(np.int64))


@contextlib.contextmanager
def file_lock(path: Path, timeout: float) -> Iterator[None]:
    """Exclusive ``flock`` on ``path`` (created if needed), waiting up to ``timeout`` s."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LakeLockTimeout(
                        f"lake lock {path} still held by another writer after {timeout:.0f} s"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` via a fsynced temp file in the same directory + rename."""
    created = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    if created:
        _fsync_dir(path.parent.parent)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}"
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(
                table, fh, compression=PARQUET_COMPRESSION, use_dictionary=_DICTIONARY_COLUMNS
            )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _remove_partition(path: Path) -> None:
    path.unlink()
    _fsync_dir(path.parent)
    with contextlib.suppress(OSError):  # only when empty
        path.parent.rmdir()


def _clean_stale_temps(directory: Path) -> None:
    """Temp files left by a crashed writer (we hold the symbol lock: none is live)."""
    if directory.is_dir():
        for stale in directory.glob(f".*{TEMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                stale.unlink()


def _read_partition(path: Path, columns: tuple[str, ...] | None = None) -> pa.Table | None:
    try:
        table = pq.ParquetFile(path).read(columns=list(columns) if columns else None)
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowException) as exc:
        raise HedgeflowError(f"cannot read lake partition {path}: {exc}") from exc
    return table


def _ts_us(table: pa.Table) -> np.ndarray:
    col = table.column(TS)
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return np.asarray(arr.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _to_stored(bars: pd.DataFrame, symbol: str, interval: str, source: str) -> pa.Table:
    n = len(bars)
    ingested_at = pd.Timestamp.now(tz="UTC").as_unit("us")
    arrays = [
        pa.repeat(symbol, n).cast(pa.string()),
        pa.repeat(interval, n).cast(pa.string()),
        pa.array(bars[TS].to_numpy(dtype="datetime64[us]"), type=pa.timestamp("us")).cast(_TS_TYPE),
        *(pa.array(bars[c].to_numpy(), type=pa.float64()) for c in BAR_COLUMNS[1:5]),
        pa.array(bars[BAR_COLUMNS[5]].to_numpy(), type=pa.float64(), from_pandas=True),
        pa.repeat(source, n).cast(pa.string()),
        pa.repeat(pa.scalar(ingested_at.to_pydatetime(), type=_TS_TYPE), n),
    ]
    return pa.Table.from_arrays(arrays, schema=BARS_ARROW_SCHEMA)


def _conform(table: pa.Table, path: Path) -> pa.Table:
    if table.schema.equals(BARS_ARROW_SCHEMA):
        return table
    try:
        return table.select(list(STORED_BAR_COLUMNS)).cast(BARS_ARROW_SCHEMA)
    except (KeyError, pa.ArrowException) as exc:
        raise HedgeflowError(f"lake partition {path} has an unexpected schema: {exc}") from exc


def _inside(ts: np.ndarray, segments: Sequence[tuple[int, int]]) -> np.ndarray:
    """Mask of ``ts`` lying in any of the sorted, disjoint ``[lo, hi)`` segments."""
    edges = np.asarray(segments, dtype=np.int64).ravel()
    return np.searchsorted(edges, ts, side="right") % 2 == 1


def _replace_partition(
    path: Path, new_part: pa.Table, segments: Sequence[tuple[int, int]]
) -> tuple[str, int]:
    """Replace the rows of one partition lying in the sorted, disjoint ``[lo, hi)``
    ``segments`` by ``new_part`` (whose rows all lie in them); rows outside stay.

    Returns (action, rows replaced) with action "written", "removed" or "unchanged".
    The caller holds the symbol lock.
    """
    _clean_stale_temps(path.parent)
    existing = _read_partition(path) if path.exists() else None
    if existing is None:
        if new_part.num_rows == 0:
            return "unchanged", 0
        _atomic_write(new_part, path)
        return "written", 0
    existing = _conform(existing, path)
    ets = _ts_us(existing)
    if len(segments) == 1:  # the usual case: one contiguous range, spliced in place
        j0, j1 = (int(j) for j in np.searchsorted(ets, segments[0], side="left"))
        replaced = j1 - j0
        if replaced == 0 and new_part.num_rows == 0:
            return "unchanged", 0
        combined = pa.concat_tables([existing.slice(0, j0), new_part, existing.slice(j1)])
    else:
        inside = _inside(ets, segments)
        replaced = int(inside.sum())
        if replaced == 0 and new_part.num_rows == 0:
            return "unchanged", 0
        kept = existing.filter(pa.array(~inside))
        combined = pa.concat_tables([kept, new_part]).sort_by(TS)
    if combined.num_rows == 0:
        _remove_partition(path)
        return "removed", replaced
    _atomic_write(combined.combine_chunks(), path)
    return "written", replaced


def _segments(lo: int, hi: int, keep: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``[lo, hi)`` less the ``keep`` ranges, as sorted disjoint segments."""
    out, cursor = [], lo
    for k_lo, k_hi in sorted(keep):
        if k_hi <= cursor or k_lo >= hi:
            continue
        if k_lo > cursor:
            out.append((cursor, k_lo))
        cursor = max(cursor, k_hi)
    if cursor < hi:
        out.append((cursor, hi))
    return out


def write_bars(
    paths: WarehousePaths,
    frame: pd.DataFrame,
    symbol: str,
    interval: str,
    start: TimeLike,
    end: TimeLike,
    source: str,
    *,
    keep: Sequence[tuple[TimeLike, TimeLike]] = (),
    lock_timeout: float = 30.0,
) -> WriteReport:
    """Replace the bars of ``symbol``/``interval`` in ``[start, end)`` with ``frame``.

    ``frame`` is a valid bars frame (ts, open, high, low, close, volume; see
    ``hedgeflow.schemas.bars.split_valid_bars``); every ts must lie in ``[start, end)``.
    An empty frame clears the range, except the ``keep`` ranges (``[lo, hi)`` each):
    their stored bars stay as they are and ``frame`` must have none there (a vendor's
    empty answer is never stored as "no bars", DESIGN.md convention 8).
    """
    t0 = time.perf_counter()
    symbol = normalize_symbol(symbol)
    validate_interval(interval)
    start_ts, end_ts = to_utc(start, "start"), to_utc(end, "end")
    if not start_ts < end_ts:
        raise InvalidInputError(f"empty range: start {start_ts} is not before end {end_ts}")
    if not isinstance(source, str) or not source.strip() or len(source) > 64:
        raise InvalidInputError(f"invalid source name {source!r}")

    bars = ensure_valid_bars(frame)
    ts = bars[TS].to_numpy(dtype="datetime64[us]").view(np.int64)
    lo_us, hi_us = _us(start_ts), _us(end_ts)
    if len(ts) and (ts[0] < lo_us or ts[-1] >= hi_us):
        raise InvalidInputError(
            f"bars from {bars[TS].iloc[0]} to {bars[TS].iloc[-1]} fall outside the "
            f"range [{start_ts}, {end_ts}) being written"
        )
    keep_us = [
        (_us(to_utc(k_lo, "keep start")), _us(to_utc(k_hi, "keep end"))) for k_lo, k_hi in keep
    ]
    segments = _segments(lo_us, hi_us, keep_us)
    if len(ts) and not _inside(ts, segments).all():
        raise InvalidInputError(
            "bars fall inside a range whose stored bars are kept (keep=...): "
            "a kept range must have no new bars"
        )
    new = _to_stored(bars, symbol, interval, source)

    first_month = np.datetime64(start_ts.tz_convert(None), "M")
    last_month = np.datetime64((end_ts - pd.Timedelta(microseconds=1)).tz_convert(None), "M")
    months = np.arange(first_month, last_month + 1)

    jobs = []
    for month in months:
        m_lo = int(month.astype("datetime64[us]").view(np.int64))
        m_hi = int((month + 1).astype("datetime64[us]").view(np.int64))
        lo, hi = max(lo_us, m_lo), min(hi_us, m_hi)
        month_segments = [(max(a, lo), min(b, hi)) for a, b in segments if a < hi and b > lo]
        if not month_segments:  # the whole month's part of the range is kept
            continue
        i0, i1 = (int(i) for i in np.searchsorted(ts, [lo, hi], side="left"))
        path = paths.partition_file(symbol, interval, month_key(month))
        jobs.append((month_key(month), path, new.slice(i0, i1 - i0), month_segments))

    with file_lock(paths.symbol_lock(symbol), lock_timeout):
        if len(jobs) > 1 and _WRITE_THREADS > 1:
            with ThreadPoolExecutor(_WRITE_THREADS, thread_name_prefix="lake-write") as pool:
                outcomes = list(pool.map(lambda job: _replace_partition(*job[1:]), jobs))
        else:
            outcomes = [_replace_partition(*job[1:]) for job in jobs]
    written = tuple(
        job[0] for job, (action, _) in zip(jobs, outcomes, strict=True) if action == "written"
    )
    removed = tuple(
        job[0] for job, (action, _) in zip(jobs, outcomes, strict=True) if action == "removed"
    )
    replaced = sum(n for _, n in outcomes)
    return WriteReport(
        symbol=symbol,
        interval=interval,
        start=start_ts,
        end=end_ts,
        rows_written=new.num_rows,
        rows_replaced=replaced,
        partitions_written=written,
        partitions_removed=removed,
        seconds=time.perf_counter() - t0,
    )


def read_bars(
    paths: WarehousePaths,
    symbol: str,
    interval: str,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
) -> pd.DataFrame:
    """Bars of ``symbol``/``interval`` with ``start <= ts < end`` (either bound optional).

    Reads only the month partitions the range needs. Returns a bars frame
    (ts ``datetime64[us, UTC]``, open, high, low, close, volume; RangeIndex).
    """
    symbol = normalize_symbol(symbol)
    validate_interval(interval)
    lo_us = _us(to_utc(start, "start")) if start is not None else None
    hi_us = _us(to_utc(end, "end")) if end is not None else None
    months = paths.months_present(symbol, interval)
    if lo_us is not None:
        first = month_key(np.datetime64(lo_us, "us"))
        months = [m for m in months if m >= first]
    if hi_us is not None:
        last = month_key(np.datetime64(hi_us - 1, "us"))
        months = [m for m in months if m <= last]
    tables = []
    for month in months:
        table = _read_partition(paths.partition_file(symbol, interval, month), BAR_COLUMNS)
        if table is not None and table.num_rows:
            tables.append(table)
    if not tables:
        return empty_bars()
    table = pa.concat_tables(tables)
    ts = _ts_us(table)
    i0 = int(np.searchsorted(ts, lo_us, side="left")) if lo_us is not None else 0
    i1 = int(np.searchsorted(ts, hi_us, side="left")) if hi_us is not None else len(ts)
    out = table.slice(i0, i1 - i0).to_pandas()
    out = out[list(BAR_COLUMNS)]
    if str(out[TS].dtype) != "datetime64[us, UTC]":  # pragma: no cover - pyarrow default
        out[TS] = out[TS].dt.tz_convert("UTC").dt.as_unit("us")
    return out.reset_index(drop=True)


def bars_span(
    paths: WarehousePaths, symbol: str, interval: str
) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """(first ts, last ts) stored for a series, or None when it has no bars."""
    months = paths.months_present(symbol, interval)
    first = last = None
    for month in months:
        t = _read_partition(paths.partition_file(symbol, interval, month), (TS,))
        if t is not None and t.num_rows:
            first = _ts_us(t)[0]
            break
    for month in reversed(months):
        t = _read_partition(paths.partition_file(symbol, interval, month), (TS,))
        if t is not None and t.num_rows:
            last = _ts_us(t)[-1]
            break
    if first is None or last is None:
        return None
    return (
        pd.Timestamp(int(first), unit="us", tz="UTC"),
        pd.Timestamp(int(last), unit="us", tz="UTC"),
    )
