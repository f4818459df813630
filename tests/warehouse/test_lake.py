"""The bars lake: round trip, idempotent range replace, atomicity, path safety."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import hedgeflow.warehouse.lake as lake
from hedgeflow.columns import STORED_BAR_COLUMNS, TS_DTYPE
from hedgeflow.errors import DataValidationError, InvalidInputError
from hedgeflow.warehouse import Warehouse
from hedgeflow.warehouse.paths import TEMP_SUFFIX

from .conftest import bars

DAY = ("AAPL.US", "5m", "2026-11-02", "2026-11-03", "s")


def files_under(path: Path) -> list[str]:
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def test_round_trip_keeps_us_utc(wh: Warehouse) -> None:
    frame = bars("2026-11-02 14:30", 50).assign(volume=np.nan)
    report = wh.write_bars(frame, "EURUSD.FOREX", "5m", "2026-11-02", "2026-11-03", "synthetic")
    assert report.rows_written == 50 and report.partitions_written == ("2026-11",)
    back = wh.read_bars("EURUSD.FOREX", "5m")
    assert str(back["ts"].dtype) == TS_DTYPE
    pd.testing.assert_frame_equal(back, frame)
    stored = pq.read_table(
        wh.home / "lake/bars/interval=5m/symbol=EURUSD.FOREX/month=2026-11/part.parquet"
    )
    assert tuple(stored.schema.names) == STORED_BAR_COLUMNS
    assert str(stored.schema.field("ts").type) == "timestamp[us, tz=UTC]"
    assert set(stored.column("source").to_pylist()) == {"synthetic"}


def test_lowercase_symbol_is_normalised(wh: Warehouse) -> None:
    wh.write_bars(bars("2026-11-02", 3), "aapl.us", "5m", "2026-11-02", "2026-11-03", "s")
    assert len(wh.read_bars("AAPL.US", "5m")) == 3


def test_reingesting_a_range_twice_gives_the_same_rows(wh: Warehouse) -> None:
    frame = bars("2026-11-02", 100)
    args = ("AAPL.US", "5m", "2026-11-02", "2026-11-03", "synthetic")
    first = wh.write_bars(frame, *args)
    second = wh.write_bars(frame, *args)
    assert first.rows_replaced == 0 and second.rows_replaced == 100
    pd.testing.assert_frame_equal(wh.read_bars("AAPL.US", "5m"), frame)


def test_overlapping_range_replaces_only_that_range(wh: Warehouse) -> None:
    old = bars("2026-11-02", 288, close0=100.0)  # one day
    wh.write_bars(old, "AAPL.US", "5m", "2026-11-02", "2026-11-03", "a")
    new = bars("2026-11-02 12:00", 288, close0=500.0)  # noon to noon
    report = wh.write_bars(new, "AAPL.US", "5m", "2026-11-02 12:00", "2026-11-03 12:00", "b")
    assert report.rows_replaced == 144
    back = wh.read_bars("AAPL.US", "5m")
    assert back["ts"].is_unique and back["ts"].is_monotonic_increasing
    assert len(back) == 144 + 288
    assert (back["close"].iloc[:144] < 500).all() and (back["close"].iloc[144:] >= 500).all()


def test_range_spanning_two_months(wh: Warehouse) -> None:
    frame = bars("2026-10-31 20:00", 120)  # 10 hours across the month boundary
    report = wh.write_bars(frame, "BTC-USD.CC", "5m", "2026-10-31", "2026-11-02", "synthetic")
    assert report.partitions_written == ("2026-10", "2026-11")
    series = wh.home / "lake/bars/interval=5m/symbol=BTC-USD.CC"
    assert files_under(series) == ["month=2026-10/part.parquet", "month=2026-11/part.parquet"]
    pd.testing.assert_frame_equal(wh.read_bars("BTC-USD.CC", "5m"), frame)
    part = wh.read_bars("BTC-USD.CC", "5m", "2026-10-31 23:00", "2026-11-01 01:00")
    assert len(part) == 24
    assert part["ts"].iloc[0] == pd.Timestamp("2026-10-31 23:00", tz="UTC")
    assert part["ts"].iloc[-1] == pd.Timestamp("2026-11-01 00:55", tz="UTC")


def test_read_touches_only_needed_partitions(wh: Warehouse, monkeypatch) -> None:
    frame = bars("2026-09-01", 3 * 30 * 288)  # ~3 months
    wh.write_bars(frame, "AAPL.US", "5m", "2026-09-01", "2026-12-01", "s")
    seen: list[str] = []
    real = lake._read_partition

    def spy(path: Path, columns=None):
        seen.append(path.parent.name)
        return real(path, columns)

    monkeypatch.setattr(lake, "_read_partition", spy)
    out = wh.read_bars("AAPL.US", "5m", "2026-10-03", "2026-10-04")
    assert seen == ["month=2026-10"]
    assert len(out) == 288


def test_empty_frame_clears_the_range_and_empty_partitions_go(wh: Warehouse) -> None:
    wh.write_bars(bars("2026-10-31 22:00", 48), "AAPL.US", "5m", "2026-10-31", "2026-11-02", "s")
    report = wh.write_bars(bars("2026-11-01", 0), "AAPL.US", "5m", "2026-11-01", "2026-11-02", "s")
    assert report.partitions_removed == ("2026-11",)
    back = wh.read_bars("AAPL.US", "5m")
    assert len(back) == 24 and back["ts"].max() < pd.Timestamp("2026-11-01", tz="UTC")
    assert not (wh.home / "lake/bars/interval=5m/symbol=AAPL.US/month=2026-11").exists()
    assert wh.read_bars("AAPL.US", "1h").empty
    assert str(wh.read_bars("MSFT.US", "5m")["ts"].dtype) == TS_DTYPE


def test_kept_ranges_keep_their_stored_bars(wh: Warehouse) -> None:
    """Convention 8: a range the vendor answered empty is kept, the rest replaced."""
    old = bars("2026-11-02", 3 * 288, close0=100.0)  # three days
    wh.write_bars(old, "BTC-USD.CC", "5m", "2026-11-02", "2026-11-05", "old")
    day2 = (pd.Timestamp("2026-11-03", tz="UTC"), pd.Timestamp("2026-11-04", tz="UTC"))
    new = bars("2026-11-02", 3 * 288, close0=500.0)
    new = new[(new["ts"] < day2[0]) | (new["ts"] >= day2[1])].reset_index(drop=True)
    # unsorted, overlapping and out-of-range keep ranges are normalised
    keep = [(day2[0] + pd.Timedelta(hours=12), day2[1]), day2, ("2026-12-01", "2026-12-02")]
    report = wh.write_bars(new, "BTC-USD.CC", "5m", "2026-11-02", "2026-11-05", "new", keep=keep)
    assert report.rows_replaced == 2 * 288 and report.rows_written == 2 * 288
    back = wh.read_bars("BTC-USD.CC", "5m")
    assert back["ts"].is_unique and back["ts"].is_monotonic_increasing and len(back) == 3 * 288
    in_day2 = (back["ts"] >= day2[0]) & (back["ts"] < day2[1])
    pd.testing.assert_frame_equal(
        back[in_day2].reset_index(drop=True),
        old[(old["ts"] >= day2[0]) & (old["ts"] < day2[1])].reset_index(drop=True),
    )
    assert (back.loc[~in_day2, "close"] >= 500).all()


def test_a_wholly_kept_month_partition_is_not_rewritten(wh: Warehouse) -> None:
    wh.write_bars(bars("2026-10-31", 2 * 288), "BTC-USD.CC", "5m", "2026-10-31", "2026-11-02", "a")
    october = wh.home / "lake/bars/interval=5m/symbol=BTC-USD.CC/month=2026-10/part.parquet"
    before = (october.read_bytes(), october.stat().st_mtime_ns)
    report = wh.write_bars(
        bars("2026-11-01", 288, close0=500.0), "BTC-USD.CC", "5m", "2026-10-31", "2026-11-02",
        "b", keep=[("2026-10-31", "2026-11-01")],
    )  # fmt: skip
    assert report.partitions_written == ("2026-11",)
    assert (october.read_bytes(), october.stat().st_mtime_ns) == before


def test_new_bars_inside_a_kept_range_are_refused(wh: Warehouse) -> None:
    wh.write_bars(bars("2026-11-02", 10), *DAY)
    with pytest.raises(InvalidInputError, match="kept"):
        wh.write_bars(bars("2026-11-02", 10, close0=7.0), *DAY, keep=[("2026-11-02", "2026-11-03")])
    assert wh.read_bars("AAPL.US", "5m")["close"].iloc[0] == 100.0


def test_bars_outside_the_range_or_invalid_are_refused(wh: Warehouse) -> None:
    frame = bars("2026-11-02", 10)
    with pytest.raises(InvalidInputError, match="outside"):
        wh.write_bars(frame, "AAPL.US", "5m", "2026-11-02 00:10", "2026-11-03", "s")
    with pytest.raises(InvalidInputError, match="empty range"):
        wh.write_bars(frame, "AAPL.US", "5m", "2026-11-03", "2026-11-02", "s")
    bad = frame.copy()
    bad.loc[4, "high"] = 1.0
    with pytest.raises(DataValidationError, match="high"):
        wh.write_bars(bad, "AAPL.US", "5m", "2026-11-02", "2026-11-03", "s")
    assert files_under(wh.home / "lake" / "bars") == []


def test_split_bars_are_written_and_checked_again_once_changed(wh: Warehouse) -> None:
    """split_valid_bars's valid frame is not checked again by the writer; changed after
    the split (here in place, through pandas), it is, and refused."""
    from hedgeflow.schemas.bars import split_valid_bars

    valid, _ = split_valid_bars(bars("2026-11-02", 10), "AAPL.US", "5m", "run-1")
    assert wh.write_bars(valid, *DAY).rows_written == 10
    pd.testing.assert_frame_equal(wh.read_bars("AAPL.US", "5m"), valid)
    valid.loc[4, "high"] = 1.0
    with pytest.raises(DataValidationError, match="high"):
        wh.write_bars(valid, *DAY)
    assert wh.read_bars("AAPL.US", "5m")["high"].iloc[4] != 1.0


@pytest.mark.parametrize("symbol", ["../x", "A;DROP TABLE bars", "../../etc/passwd", "A/B.US", ""])
def test_hostile_symbols_are_refused_before_any_file_is_touched(
    tmp_path: Path, symbol: str
) -> None:
    home = tmp_path / "home"
    wh = Warehouse(home)
    with pytest.raises(InvalidInputError):
        wh.write_bars(bars("2026-11-02", 3), symbol, "5m", "2026-11-02", "2026-11-03", "s")
    with pytest.raises(InvalidInputError):
        wh.read_bars(symbol, "5m")
    with pytest.raises(InvalidInputError):
        wh.write_bars(bars("2026-11-02", 3), "AAPL.US", "../5m", "2026-11-02", "2026-11-03", "s")
    with pytest.raises(InvalidInputError):
        wh.report_dir("../" + symbol)
    assert not home.exists() or files_under(home) == []
    assert files_under(tmp_path) == []


def test_crash_during_write_leaves_old_partition_and_no_temp(wh: Warehouse, monkeypatch) -> None:
    old = bars("2026-11-02", 50, close0=100.0)
    wh.write_bars(old, "AAPL.US", "5m", "2026-11-02", "2026-11-03", "s")
    part_dir = wh.home / "lake/bars/interval=5m/symbol=AAPL.US/month=2026-11"
    before = (part_dir / "part.parquet").read_bytes()

    def half_write_then_die(table, where, **kwargs):
        where.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(lake.pq, "write_table", half_write_then_die)
    with pytest.raises(OSError, match="disk full"):
        wh.write_bars(bars("2026-11-02", 50, close0=900.0), *DAY)
    assert (part_dir / "part.parquet").read_bytes() == before
    assert files_under(part_dir) == ["part.parquet"]
    pd.testing.assert_frame_equal(wh.read_bars("AAPL.US", "5m"), old)


def test_crash_before_rename_keeps_old_partition(wh: Warehouse, monkeypatch) -> None:
    old = bars("2026-11-02", 20)
    wh.write_bars(old, "AAPL.US", "5m", "2026-11-02", "2026-11-03", "s")

    def die(src, dst):
        raise KeyboardInterrupt  # the process is killed between fsync and rename

    monkeypatch.setattr(lake.os, "replace", die)
    with pytest.raises(KeyboardInterrupt):
        wh.write_bars(bars("2026-11-02", 20, close0=7.0), *DAY)
    monkeypatch.undo()
    pd.testing.assert_frame_equal(wh.read_bars("AAPL.US", "5m"), old)


def test_stale_temp_file_from_killed_writer_is_ignored_then_cleaned(wh: Warehouse) -> None:
    frame = bars("2026-11-02", 20)
    wh.write_bars(frame, "AAPL.US", "5m", "2026-11-02", "2026-11-03", "s")
    part_dir = wh.home / "lake/bars/interval=5m/symbol=AAPL.US/month=2026-11"
    stale = part_dir / f".part.parquet.99999.deadbeef{TEMP_SUFFIX}"
    stale.write_bytes(b"PAR1 truncated")
    pd.testing.assert_frame_equal(wh.read_bars("AAPL.US", "5m"), frame)
    assert wh.query("SELECT count(*) AS n FROM bars")["n"].iloc[0] == 20
    wh.write_bars(frame, "AAPL.US", "5m", "2026-11-02", "2026-11-03", "s")
    assert not stale.exists()


def test_concurrent_writers_of_one_symbol_serialise(wh: Warehouse) -> None:
    # Two writers of different days of the same month partition: without the
    # symbol lock one read-modify-write would lose the other's rows.
    days = [f"2026-11-{d:02d}" for d in range(2, 12)]
    errors: list[BaseException] = []

    def writer(day: str) -> None:
        try:
            end = str(pd.Timestamp(day) + pd.Timedelta(days=1))
            for _ in range(3):
                wh.write_bars(bars(day, 288), "AAPL.US", "5m", day, end, "s")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(d,)) for d in days]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    back = wh.read_bars("AAPL.US", "5m")
    assert len(back) == 288 * len(days) and back["ts"].is_unique


def test_bars_span(wh: Warehouse) -> None:
    assert wh.bars_span("AAPL.US", "5m") is None
    wh.write_bars(bars("2026-10-30", 1000), "AAPL.US", "5m", "2026-10-30", "2026-11-30", "s")
    first, last = wh.bars_span("AAPL.US", "5m")
    assert first == pd.Timestamp("2026-10-30", tz="UTC")
    assert last == pd.Timestamp("2026-10-30", tz="UTC") + pd.Timedelta(minutes=5 * 999)


def test_report_dir(wh: Warehouse) -> None:
    path = wh.report_dir("run-1")
    assert path == wh.home / "reports" / "run-1" and path.is_dir()
    assert os.path.commonpath([path, wh.home]) == str(wh.home)


@pytest.mark.slow
def test_write_bars_throughput_1m_rows(wh: Warehouse) -> None:
    import time

    frame = bars("2015-01-01", 1_000_000)
    end = frame["ts"].iloc[-1] + pd.Timedelta("5min")
    wh.write_bars(frame.iloc[:10], "AAPL.US", "5m", "2015-01-01", end, "s")  # warm up
    t0 = time.perf_counter()
    wh.write_bars(frame, "AAPL.US", "5m", "2015-01-01", end, "s")
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, f"write_bars of 1M rows took {elapsed:.3f} s"
