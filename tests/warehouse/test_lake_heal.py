"""The lake heals: unreadable partition files are found, moved to the quarantine
folder with a record, and the reads and writes over them go on."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from hedgeflow.errors import HedgeflowError
from hedgeflow.warehouse import CorruptPartitionError, LakeLockTimeout, Warehouse, lake
from hedgeflow.warehouse.paths import QUARANTINE_RECORD_SUFFIX
from tests.warehouse.conftest import bars

SEP_NOV = ("2026-09-01", "2026-12-01")


def _truncate(path: Path) -> bytes:
    data = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(data)
    return data


def _garble(path: Path) -> bytes:
    data = bytearray(path.read_bytes())
    mid = len(data) // 3
    for i in range(mid, mid + 64):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    return bytes(data)


@pytest.fixture
def stored(wh: Warehouse) -> pd.DataFrame:
    frame = bars("2026-09-01", 91 * 288)  # 2026-09-01 .. 2026-11-30, three partitions
    for symbol in ("AAPL.US", "MSFT.US"):
        wh.write_bars(frame, symbol, "5m", *SEP_NOV, "s")
    return frame


def test_check_finds_truncated_by_footer_and_garbled_by_full_read(
    wh: Warehouse, stored: pd.DataFrame
) -> None:
    truncated = wh.paths.partition_file("AAPL.US", "5m", "2026-10")
    garbled = wh.paths.partition_file("MSFT.US", "5m", "2026-11")
    _truncate(truncated)
    _garble(garbled)
    footer = wh.check_lake()
    assert [p for p, _ in footer] == [truncated]
    assert "magic bytes" in footer[0][1]
    full = dict(wh.check_lake(full=True))
    assert list(full) == [truncated, garbled]
    assert "checksum" in full[garbled]
    assert [p for p, _ in wh.check_lake(suspects=[str(garbled)])] == [truncated, garbled]
    # checking moves nothing
    assert truncated.exists() and garbled.exists() and wh.lake_quarantine().empty


def test_heal_lake_moves_broken_files_with_a_record_and_sql_works_again(
    wh: Warehouse, stored: pd.DataFrame
) -> None:
    path = wh.paths.partition_file("AAPL.US", "5m", "2026-10")
    damaged = _truncate(path)
    with pytest.raises(duckdb.Error) as caught:
        wh.query("select count(*) from bars")
    err = wh.lake_read_error(caught.value)
    assert err is not None and err.file == path

    healed = wh.heal_lake(suspects=[err.file])
    assert [(h.symbol, h.interval, h.month, h.file) for h in healed] == [
        ("AAPL.US", "5m", "2026-10", path)
    ]
    moved = healed[0].quarantined_as
    assert moved.parent == wh.paths.quarantine_root / path.parent.relative_to(wh.paths.lake)
    assert moved.name.startswith("part.parquet.") and moved.read_bytes() == damaged
    record = json.loads(moved.with_name(moved.name + QUARANTINE_RECORD_SUFFIX).read_text())
    assert record["file"] == "lake/bars/interval=5m/symbol=AAPL.US/month=2026-10/part.parquet"
    assert record["bytes"] == len(damaged) and "magic bytes" in record["reason"]
    assert not path.exists() and not path.parent.exists()  # the empty month folder goes

    n_oct = int(((stored["ts"] >= "2026-10-01") & (stored["ts"] < "2026-11-01")).sum())
    assert wh.query("select count(*) as n from bars")["n"].iloc[0] == 2 * len(stored) - n_oct
    view = wh.query("select * from lake_quarantine")
    assert view[["symbol", "month", "bytes"]].values.tolist() == [
        ["AAPL.US", "2026-10", len(damaged)]
    ]
    assert str(view["healed_at"].dtype) == "datetime64[us, UTC]"
    assert wh.heal_lake(full=True) == []  # nothing left to heal


def test_read_bars_and_bars_span_leave_the_broken_month_out(
    wh: Warehouse, stored: pd.DataFrame
) -> None:
    nov = wh.paths.partition_file("AAPL.US", "5m", "2026-11")
    sep = wh.paths.partition_file("MSFT.US", "5m", "2026-09")
    _garble(nov)
    _truncate(sep)
    # another symbol's other months, and the other months of the broken symbol
    other = wh.read_bars("MSFT.US", "5m", "2026-10-01")
    assert other.equals(stored[stored["ts"] >= "2026-10-01"].reset_index(drop=True))
    assert sep.exists()  # not needed by that read: untouched
    got = wh.read_bars("AAPL.US", "5m")
    assert got.equals(stored[stored["ts"] < "2026-11-01"].reset_index(drop=True))
    span = wh.bars_span("MSFT.US", "5m")
    assert span == (pd.Timestamp("2026-10-01", tz="UTC"), stored["ts"].iloc[-1])
    assert not nov.exists() and not sep.exists()
    records = wh.lake_quarantine()
    assert sorted(zip(records["symbol"], records["month"], strict=True)) == [
        ("AAPL.US", "2026-11"),
        ("MSFT.US", "2026-09"),
    ]
    # without healing the read fails with a one-line error and moves nothing
    _truncate(wh.paths.partition_file("AAPL.US", "5m", "2026-10"))
    with pytest.raises(CorruptPartitionError) as caught:
        lake.read_bars(wh.paths, "AAPL.US", "5m", heal=False)
    assert "\n" not in str(caught.value) and "month=2026-10" in str(caught.value)
    assert wh.paths.partition_file("AAPL.US", "5m", "2026-10").exists()


@pytest.mark.parametrize("damage", [_truncate, _garble])
def test_write_over_a_broken_partition_moves_it_and_writes_fresh(
    wh: Warehouse, stored: pd.DataFrame, damage
) -> None:
    path = wh.paths.partition_file("AAPL.US", "5m", "2026-10")
    damaged = damage(path)
    part = stored[(stored["ts"] >= "2026-10-10") & (stored["ts"] < "2026-10-12")]
    report = wh.write_bars(part, "AAPL.US", "5m", "2026-10-10", "2026-10-12", "s")
    assert [h.month for h in report.partitions_healed] == ["2026-10"]
    assert report.partitions_written == ("2026-10",) and report.rows_replaced == 0
    assert report.partitions_healed[0].quarantined_as.read_bytes() == damaged
    october = wh.read_bars("AAPL.US", "5m", "2026-10-01", "2026-11-01")
    assert october.equals(part.reset_index(drop=True))  # the rest of October is missing
    # a full re-ingest of the month restores it exactly
    month = stored[(stored["ts"] >= "2026-10-01") & (stored["ts"] < "2026-11-01")]
    report = wh.write_bars(month, "AAPL.US", "5m", "2026-10-01", "2026-11-01", "s")
    assert report.partitions_healed == ()
    assert wh.read_bars("AAPL.US", "5m").equals(stored)


def test_quarantine_never_overwrites_an_earlier_copy(wh: Warehouse, stored: pd.DataFrame) -> None:
    path = wh.paths.partition_file("AAPL.US", "5m", "2026-09")
    first = _truncate(path)
    (h1,) = wh.heal_lake()
    wh.write_bars(stored, "AAPL.US", "5m", *SEP_NOV, "s")
    second = _garble(path)
    (h2,) = wh.heal_lake(full=True)
    assert h1.quarantined_as != h2.quarantined_as
    assert h1.quarantined_as.read_bytes() == first and h2.quarantined_as.read_bytes() == second
    assert len(wh.lake_quarantine()) == 2


def test_a_readable_file_is_never_moved(wh: Warehouse, stored: pd.DataFrame) -> None:
    path = wh.paths.partition_file("AAPL.US", "5m", "2026-09")
    assert lake.heal_partition(wh.paths, path) is None
    assert path.exists() and wh.lake_quarantine().empty
    outside = wh.home / "elsewhere.parquet"
    outside.write_bytes(b"x")
    with pytest.raises(HedgeflowError, match="not a partition file"):
        lake.heal_partition(wh.paths, outside)
    assert outside.exists()


def test_heal_waits_for_the_symbol_lock(wh: Warehouse, stored: pd.DataFrame) -> None:
    path = wh.paths.partition_file("AAPL.US", "5m", "2026-09")
    _truncate(path)
    held, release = threading.Event(), threading.Event()

    def writer() -> None:
        with lake.file_lock(wh.paths.symbol_lock("AAPL.US"), 5):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert held.wait(5)
        with pytest.raises(LakeLockTimeout):
            lake.heal_partition(wh.paths, path, lock_timeout=0.2)
        assert path.exists()
    finally:
        release.set()
        thread.join()
    assert lake.heal_partition(wh.paths, path, lock_timeout=5) is not None


def test_lake_read_error_tells_lake_parquet_errors(wh: Warehouse, tmp_path: Path) -> None:
    part = wh.paths.partition_file("AAPL.US", "5m", "2026-10")
    named = f"Invalid Input Error: No magic bytes found at end of file '{part}'"
    assert wh.lake_read_error(named) == lake.LakeReadError(part)
    assert wh.lake_read_error("Error: don't know what type: \x0f") == lake.LakeReadError(None)
    # a Parquet file that is not the lake's, and errors that are not reads
    assert wh.lake_read_error(f"No magic bytes found at end of file '{tmp_path}/x.parquet'") is None
    assert wh.lake_read_error('Catalog Error: Table with name "barz" does not exist!') is None
    with duckdb.connect() as con, pytest.raises(duckdb.Error) as caught:
        con.execute("select * from read_parquet_typo('x')")
    assert wh.lake_read_error(caught.value) is None


def test_hedgeflow_sql_shows_the_quarantine(
    wh: Warehouse, stored: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sandboxed ``hedgeflow sql`` session (file access limited to the lake) reads
    the records."""
    from hedgeflow.cli import main

    _truncate(wh.paths.partition_file("MSFT.US", "5m", "2026-10"))
    assert [h.month for h in wh.heal_lake()] == ["2026-10"]
    capsys.readouterr()
    sql = "select symbol || '/' || month as m, bytes > 0 as b from lake_quarantine"
    assert main(["--home", str(wh.home), "sql", "--format", "csv", sql]) == 0
    out = capsys.readouterr().out
    assert "MSFT.US/2026-10" in out and "true" in out.lower()


def test_partition_of_knows_only_the_lakes_own_names(wh: Warehouse) -> None:
    root = wh.paths.bars_root
    part = wh.paths.partition_file("AAPL.US", "5m", "2026-10")
    assert wh.paths.partition_of(part) == ("5m", "AAPL.US", "2026-10")
    for bad in (
        root / "interval=5m/symbol=AAPL.US/month=2026-1/part.parquet",
        root / "interval=7m/symbol=AAPL.US/month=2026-10/part.parquet",
        root / "interval=5m/symbol=../month=2026-10/part.parquet",
        root / "interval=5m/symbol=aapl us/month=2026-10/part.parquet",
        root / "interval=5m/symbol=AAPL.US/month=2026-10/part.csv",
        root / "interval=5m/symbol=AAPL.US/part.parquet",
        wh.paths.quarantine_root / "bars/interval=5m/symbol=AAPL.US/month=2026-10/part.parquet",
    ):
        assert wh.paths.partition_of(bad) is None, bad
