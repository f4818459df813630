"""A full disk at the warehouse's writes: one OutOfSpaceError naming the file system
being written, and the stored data as it was (atomic partitions, rolled-back
transactions). The real tmpfs version is in tests/reliability/test_hostile_bounds.py."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from hedgeflow.errors import HedgeflowError, OutOfSpaceError
from hedgeflow.warehouse import Warehouse
from hedgeflow.warehouse.db import WarehouseOpenError

from .conftest import bars

NO_SPACE = "No space left on device"


def _lake_bytes(wh: Warehouse) -> dict[str, str]:
    return {
        str(p.relative_to(wh.paths.lake)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(wh.paths.lake.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def _enospc(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.ENOSPC, NO_SPACE)


def test_lake_write_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wh = Warehouse(tmp_path / "home")
    first = bars("2026-10-30 14:30", 300)  # two month partitions
    span = (first.ts.iloc[0], first.ts.iloc[-1] + pd.Timedelta("5min"))
    wh.write_bars(first, "AAPL.US", "5m", *span, source="test")
    before = _lake_bytes(wh)
    stored = wh.read_bars("AAPL.US", "5m")
    monkeypatch.setattr(pq, "write_table", _enospc)
    with pytest.raises(OutOfSpaceError) as info:
        wh.write_bars(bars("2026-10-30 14:30", 300, close0=200.0), "AAPL.US", "5m", *span, "test")
    assert str(info.value) == f"no space left on {wh.paths.lake}"
    monkeypatch.undo()
    assert _lake_bytes(wh) == before  # no partition replaced, no temp file left
    pd.testing.assert_frame_equal(wh.read_bars("AAPL.US", "5m"), stored)


def test_duckdb_commit_on_a_full_disk_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wh = Warehouse(tmp_path / "home")
    wh.start_run("run-1", "ingest", {"a": 1}, "test")
    wh.finish_run("run-1", "completed", {})
    before = wh.list_runs()
    with pytest.raises(OutOfSpaceError) as info, wh.write() as con:
        con.execute("UPDATE store.runs SET status = 'failed'")
        raise duckdb.TransactionException(
            f'TransactionContext Error: Failed to commit: could not write to file "x.wal": '
            f"{NO_SPACE}"
        )
    assert str(info.value) == f"no space left on {wh.paths.db}"
    pd.testing.assert_frame_equal(wh.list_runs(), before)  # the update was rolled back


def test_report_dir_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wh = Warehouse(tmp_path / "home")
    monkeypatch.setattr(Path, "mkdir", _enospc)
    with pytest.raises(OutOfSpaceError) as info:
        wh.report_dir("run-1")
    assert str(info.value) == f"no space left on {wh.paths.reports_root}"


@pytest.mark.parametrize("home", ["/proc/self", "/dev/null"])
def test_a_home_that_cannot_hold_the_database(home: str) -> None:
    with pytest.raises(HedgeflowError) as info:
        Warehouse(home).start_run("run-1", "ingest", {}, "test")
    text = str(info.value)
    assert "\n" not in text
    if home == "/dev/null":
        assert text == "warehouse home /dev/null is a character device, not a directory"
    else:
        assert isinstance(info.value, WarehouseOpenError)
        assert text.startswith("cannot open warehouse database /proc/")
