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

The lake heals. Files are written with Parquet page checksums and read with
them verified, so a truncated file (it fails at the footer) and a garbled one
(it fails at a page) are both *unreadable*, never silently wrong. A partition
file that cannot be read is moved, under the symbol's lock and after a second
full read confirms it, to ``lake/quarantine/<its path under lake/>.<UTC stamp>``
(an atomic rename: data is never deleted) next to a JSON record of which
interval/symbol/month it was and why (the reader's error, one line); DuckDB
shows the records as the ``lake_quarantine`` view. What heals when:

- ``read_bars`` / ``bars_span`` (nightly, backtest, sweep, live warm-up): the
  broken month is moved away and the read goes on without it (those bars are
  missing, and a warning says so) instead of failing;
- ``write_bars`` (every ingest): a broken partition of the range is moved away
  and the new bars are written fresh, so re-ingesting the range rewrites it
  (the month's bars outside the range are then missing until ingested too);
- ``heal_lake`` (``Warehouse.heal_lake``): checks every partition's footer
  (``full=True``, or the ``suspects`` given: every page too) and moves the
  broken ones, e.g. after a query over ``bars`` failed (``lake_read_error``
  tells a DuckDB error that is a lake file's read error). DuckDB does not check
  page checksums, so a garbled page may reach SQL as wrong values until a full
  check (or a pyarrow read of that month) finds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hedgeflow.columns import BAR_COLUMNS, STORED_BAR_COLUMNS, TS
from hedgeflow.errors import HedgeflowError, InvalidInputError
from hedgeflow.market import normalize_symbol, validate_interval
from hedgeflow.schemas.bars import empty_bars, ensure_valid_bars
from hedgeflow.warehouse.paths import (
    QUARANTINE_RECORD_SUFFIX,
    QUARANTINE_STAMP,
    TEMP_SUFFIX,
    WarehousePaths,
    month_key,
)

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
# Partitions of one write are independent files: write a few at once (pyarrow and
# fsync release the GIL), two per CPU so that one's fsyncs wait while another encodes
# (a million bars, 24 months, 2 CPUs: 4 threads ~8% faster than 2).
_WRITE_THREADS = max(1, min(8, 2 * (os.cpu_count() or 1)))


log = logging.getLogger(__name__)


class LakeLockTimeout(HedgeflowError, TimeoutError):
    """Another writer held the symbol's lake lock for longer than the timeout."""


class CorruptPartitionError(HedgeflowError):
    """A lake partition file could not be read (truncated, garbled, not Parquet)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot read lake partition {path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class HealedPartition:
    """A partition file moved to the quarantine folder, and why."""

    interval: str
    symbol: str
    month: str
    file: Path  # where it was
    quarantined_as: Path  # where it is now
    bytes: int
    reason: str
    healed_at: pd.Timestamp

    def describe(self) -> str:
        return (
            f"{self.symbol} {self.interval} {self.month}: unreadable partition moved to "
            f"{self.quarantined_as} ({self.reason})"
        )


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
    # unreadable partitions of the range, moved to the quarantine folder before writing
    partitions_healed: tuple[HealedPartition, ...] = ()


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
    replace_durably(
        path,
        lambda fh: pq.write_table(
            table,
            fh,
            compression=PARQUET_COMPRESSION,
            use_dictionary=_DICTIONARY_COLUMNS,
            write_page_checksum=True,  # a garbled page fails its read (_read_partition)
        ),
    )


def replace_durably(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """``write`` a fsynced temp file beside ``path``, rename it over ``path``, fsync the
    folder: readers see the old file or the new one, and a crash leaves no half."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}"
    try:
        with open(tmp, "wb") as fh:
            write(fh)
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


_MAX_REASON = 300


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _read_partition(path: Path, columns: tuple[str, ...] | None = None) -> pa.Table | None:
    """The partition's rows (None when the file does not exist).

    Raises CorruptPartitionError when the file cannot be read: a bad footer, or a
    page whose checksum or decoding fails."""
    try:
        with open(path, "rb") as fh:  # open errors (permissions) are not corruption
            table = pq.ParquetFile(fh, page_checksum_verification=True).read(
                columns=list(columns) if columns else None
            )
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        raise HedgeflowError(f"cannot read lake partition {path}: {exc}") from exc
    except (OSError, pa.ArrowException) as exc:
        raise CorruptPartitionError(path, _one_line(exc)) from exc
    return table


def partition_problem(path: Path, *, full: bool) -> str | None:
    """Why the partition file ``path`` cannot be read, or None when it can (or is gone).

    Cheap by default: only the footer (metadata) is read, which catches truncated
    and non-Parquet files; ``full`` reads every page too (checksums verified)."""
    try:
        if full:
            _read_partition(path)
        else:
            with open(path, "rb") as fh:
                pq.read_metadata(fh)
    except FileNotFoundError:
        return None
    except CorruptPartitionError as exc:
        return exc.reason
    except PermissionError as exc:
        raise HedgeflowError(f"cannot read lake partition {path}: {exc}") from exc
    except (OSError, pa.ArrowException) as exc:
        return _one_line(exc)
    return None


def check_lake(
    paths: WarehousePaths, *, full: bool = False, suspects: Sequence[Path | str] = ()
) -> list[tuple[Path, str]]:
    """(file, reason) of every partition file that cannot be read, moving nothing.

    Footers only, but ``full`` (or a file in ``suspects``) reads every page too."""
    wanted = {Path(s).resolve() for s in suspects}
    found = []
    for path in paths.partition_files():
        if paths.partition_of(path) is None:
            continue
        problem = partition_problem(path, full=full or path in wanted)
        if problem is not None:
            found.append((path, problem))
    return found


def _make_dirs(directory: Path) -> None:
    """``mkdir -p`` that makes each new folder durable (its parent fsynced)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for new in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another writer made it meanwhile
            new.mkdir()
        _fsync_dir(new.parent)


def _quarantine_locked(paths: WarehousePaths, path: Path) -> HealedPartition | None:
    """Move the partition file ``path`` to the quarantine folder if a full read still
    fails (the caller holds the symbol lock, so no writer is replacing it). Returns
    what was moved, or None when the file is gone or reads fine now."""
    key = paths.partition_of(path)
    if key is None:
        raise HedgeflowError(f"not a partition file of the lake at {paths.lake}: {path}")
    reason = partition_problem(path, full=True)
    if reason is None:
        return None
    interval, symbol, month = key
    size = path.stat().st_size
    now = pd.Timestamp.now(tz="UTC").as_unit("us")
    while True:  # never overwrite an earlier quarantined copy
        target = paths.quarantine_file(path, now.strftime(QUARANTINE_STAMP))
        record = target.with_name(target.name + QUARANTINE_RECORD_SUFFIX)
        if not target.exists() and not record.exists():
            break
        now += pd.Timedelta(microseconds=1)
    _make_dirs(target.parent)
    os.rename(path, target)  # same file system (both under lake/): atomic, nothing copied
    _fsync_dir(target.parent)
    _fsync_dir(path.parent)
    healed = HealedPartition(
        interval=interval,
        symbol=symbol,
        month=month,
        file=path,
        quarantined_as=target,
        bytes=size,
        reason=reason,
        healed_at=now,
    )
    home = paths.home
    payload = {
        "healed_at": now.isoformat(),
        "interval": interval,
        "symbol": symbol,
        "month": month,
        "file": path.relative_to(home).as_posix(),
        "quarantined_as": target.relative_to(home).as_posix(),
        "bytes": size,
        "reason": reason,
    }
    replace_durably(record, lambda fh: fh.write((json.dumps(payload) + "\n").encode()))
    with contextlib.suppress(OSError):  # only when empty
        path.parent.rmdir()
    log.warning("lake healed: %s", healed.describe())
    return healed


def heal_partition(
    paths: WarehousePaths, path: Path, *, lock_timeout: float = 30.0
) -> HealedPartition | None:
    """Move one unreadable partition file to the quarantine folder (under its
    symbol's lock, after a full read confirms it); None when it reads fine or is gone."""
    path = Path(path).resolve()
    key = paths.partition_of(path)
    if key is None:
        raise HedgeflowError(f"not a partition file of the lake at {paths.lake}: {path}")
    with file_lock(paths.symbol_lock(key[1]), lock_timeout):
        return _quarantine_locked(paths, path)


def heal_lake(
    paths: WarehousePaths,
    *,
    full: bool = False,
    suspects: Sequence[Path | str] = (),
    lock_timeout: float = 30.0,
) -> list[HealedPartition]:
    """Check the lake (``check_lake``) and move every unreadable partition file to
    the quarantine folder; returns what was moved."""
    healed = []
    for path, _ in check_lake(paths, full=full, suspects=suspects):
        moved = heal_partition(paths, path, lock_timeout=lock_timeout)
        if moved is not None:
            healed.append(moved)
    return healed


def read_quarantine_records(paths: WarehousePaths) -> list[dict[str, object]]:
    """The records of every quarantined partition file, oldest first."""
    out = []
    for record in paths.quarantine_records():
        try:
            out.append(json.loads(record.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise HedgeflowError(f"cannot read quarantine record {record}: {exc}") from exc
    return sorted(out, key=lambda r: str(r.get("healed_at")))


# DuckDB's words for a Parquet file it could not decode (its messages name the file
# for footer errors, not always for page errors).
_PARQUET_ERROR_RE = re.compile(
    r"parquet|magic bytes|thrift|snappy|zstd|gzip|lz4|brotli|decompress|corrupt|"
    r"don't know what type|page header|invalid page|dictionary page|"
    r"unexpected end of (file|stream)|too small",
    re.IGNORECASE,
)
_QUOTED_RE = re.compile(r"['\"]([^'\"]+\.parquet)['\"]")


@dataclass(frozen=True)
class LakeReadError:
    """A DuckDB error that was a failed read of a lake Parquet file."""

    file: Path | None  # the lake file the message names, if it names one


def lake_read_error(paths: WarehousePaths, error: BaseException | str) -> LakeReadError | None:
    """Whether a DuckDB error (exception or its text) was a Parquet read error of a
    lake file, and which file when the text names one; None otherwise.

    A named file outside this lake's ``bars`` folder is not a lake error. Then
    ``heal_lake(suspects=[file])``, or ``heal_lake(full=True)`` when no file is
    named, and retry."""
    text = str(error)
    named = [Path(m) for m in _QUOTED_RE.findall(text)]
    for candidate in named:
        if paths.partition_of(candidate) is not None:
            return LakeReadError(candidate.resolve())
    if named:  # a Parquet file, but not one of the lake's
        return None
    if isinstance(error, BaseException):
        import duckdb  # the lake itself never needs DuckDB

        if isinstance(
            error,
            duckdb.ParserException
            | duckdb.BinderException
            | duckdb.CatalogException
            | duckdb.InterruptException,
        ):
            return None
    return LakeReadError(None) if _PARQUET_ERROR_RE.search(text) else None


OnHeal: TypeAlias = Callable[[HealedPartition], None]


def _read_or_heal(
    paths: WarehousePaths,
    path: Path,
    columns: tuple[str, ...] | None,
    heal: bool,
    lock_timeout: float,
    on_heal: OnHeal | None = None,
) -> pa.Table | None:
    """Read a partition; an unreadable one is moved to the quarantine folder and read
    again (gone: None; a writer may have written a fresh one meanwhile)."""
    try:
        return _read_partition(path, columns)
    except CorruptPartitionError:
        if not heal:
            raise
    moved = heal_partition(paths, path, lock_timeout=lock_timeout)
    if moved is not None:
        log.warning("%s: its bars are missing until that month is ingested again", moved.describe())
        if on_heal is not None:
            on_heal(moved)
    return _read_partition(path, columns)


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
    paths: WarehousePaths, path: Path, new_part: pa.Table, segments: Sequence[tuple[int, int]]
) -> tuple[str, int, HealedPartition | None]:
    """Replace the rows of one partition lying in the sorted, disjoint ``[lo, hi)``
    ``segments`` by ``new_part`` (whose rows all lie in them); rows outside stay.

    A stored partition that cannot be read is moved to the quarantine folder first
    and ``new_part`` is written fresh. Returns (action, rows replaced, healed) with
    action "written", "removed" or "unchanged". The caller holds the symbol lock.
    """
    _clean_stale_temps(path.parent)
    healed = None
    try:
        existing = _read_partition(path) if path.exists() else None
    except CorruptPartitionError:
        healed = _quarantine_locked(paths, path)
        existing = _read_partition(path) if path.exists() else None
    if existing is None:
        if new_part.num_rows == 0:
            return "unchanged", 0, healed
        _atomic_write(new_part, path)
        return "written", 0, healed
    existing = _conform(existing, path)
    ets = _ts_us(existing)
    if len(segments) == 1:  # the usual case: one contiguous range, spliced in place
        j0, j1 = (int(j) for j in np.searchsorted(ets, segments[0], side="left"))
        replaced = j1 - j0
        if replaced == 0 and new_part.num_rows == 0:
            return "unchanged", 0, healed
        combined = pa.concat_tables([existing.slice(0, j0), new_part, existing.slice(j1)])
    else:
        inside = _inside(ets, segments)
        replaced = int(inside.sum())
        if replaced == 0 and new_part.num_rows == 0:
            return "unchanged", 0, healed
        kept = existing.filter(pa.array(~inside))
        combined = pa.concat_tables([kept, new_part]).sort_by(TS)
    if combined.num_rows == 0:
        _remove_partition(path)
        return "removed", replaced, healed
    _atomic_write(combined.combine_chunks(), path)
    return "written", replaced, healed


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
    one_month = np.timedelta64(1, "M")  # a bare `+ 1` is deprecated from numpy 2.5
    months = np.arange(first_month, last_month + one_month)

    jobs = []
    for month in months:
        m_lo = int(month.astype("datetime64[us]").view(np.int64))
        m_hi = int((month + one_month).astype("datetime64[us]").view(np.int64))
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
                outcomes = list(pool.map(lambda job: _replace_partition(paths, *job[1:]), jobs))
        else:
            outcomes = [_replace_partition(paths, *job[1:]) for job in jobs]
    written = tuple(
        job[0] for job, (action, _, _) in zip(jobs, outcomes, strict=True) if action == "written"
    )
    removed = tuple(
        job[0] for job, (action, _, _) in zip(jobs, outcomes, strict=True) if action == "removed"
    )
    healed = tuple(h for _, _, h in outcomes if h is not None)
    replaced = sum(n for _, n, _ in outcomes)
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
        partitions_healed=healed,
    )


def read_bars(
    paths: WarehousePaths,
    symbol: str,
    interval: str,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    heal: bool = True,
    lock_timeout: float = 30.0,
    on_heal: OnHeal | None = None,
) -> pd.DataFrame:
    """Bars of ``symbol``/``interval`` with ``start <= ts < end`` (either bound optional).

    Reads only the month partitions the range needs. Returns a bars frame
    (ts ``datetime64[us, UTC]``, open, high, low, close, volume; RangeIndex).
    With ``heal`` a month that cannot be read is moved to the quarantine folder
    and left out (a warning names it, and ``on_heal`` is called with it) instead
    of failing the read.
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
        path = paths.partition_file(symbol, interval, month)
        table = _read_or_heal(paths, path, BAR_COLUMNS, heal, lock_timeout, on_heal)
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
    paths: WarehousePaths,
    symbol: str,
    interval: str,
    *,
    heal: bool = True,
    lock_timeout: float = 30.0,
) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """(first ts, last ts) stored for a series, or None when it has no bars
    (``heal`` as for ``read_bars``)."""
    months = paths.months_present(symbol, interval)
    first = last = None
    for month in months:
        path = paths.partition_file(symbol, interval, month)
        t = _read_or_heal(paths, path, (TS,), heal, lock_timeout)
        if t is not None and t.num_rows:
            first = _ts_us(t)[0]
            break
    for month in reversed(months):
        path = paths.partition_file(symbol, interval, month)
        t = _read_or_heal(paths, path, (TS,), heal, lock_timeout)
        if t is not None and t.num_rows:
            last = _ts_us(t)[-1]
            break
    if first is None or last is None:
        return None
    return (
        pd.Timestamp(int(first), unit="us", tz="UTC"),
        pd.Timestamp(int(last), unit="us", tz="UTC"),
    )
