"""A lake that heals: one truncated or garbled partition file of a lake made by a real
ingest (the ingest flow against the local EODHD-compatible simulator, in process).

The contract: reads of other symbols and months keep working; the broken file is
moved to ``lake/quarantine/`` (never deleted) with a record saying which partition
and why; a nightly over the window completes; re-ingesting the range rewrites the
partition and the bars read back equal the originals exactly (ts to the microsecond,
prices bit for bit).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from hedgeflow.columns import BAR_COLUMNS
from hedgeflow.warehouse import Warehouse
from tests.reliability.conftest import Tally

pytestmark = pytest.mark.reliability

END = "2026-11-03"  # the window [2026-10-30, 2026-11-03): two months for every market
DAYS = 4
SYMBOLS = ("AAPL.US", "EURUSD.FOREX", "BTC-USD.CC")
INTERVAL = "5m"
BROKEN = ("BTC-USD.CC", "2026-11")


def _damage(path: Path, how: str) -> bytes:
    """Truncate the file to half, or garble 64 bytes in its middle (a data page; the
    footer stays valid). Returns the damaged bytes."""
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    else:
        mid = len(data) // 3
        for i in range(mid, mid + 64):
            data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    return bytes(data)


def _ts_us(frame: pd.DataFrame) -> np.ndarray:
    return frame["ts"].dt.tz_convert(None).to_numpy(dtype="datetime64[us]").view(np.int64)


def _same_bars(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Equal to the microsecond and bit for bit (no float tolerance)."""
    if list(a.columns) != list(BAR_COLUMNS) or list(b.columns) != list(BAR_COLUMNS):
        return False
    if len(a) != len(b) or str(a["ts"].dtype) != str(b["ts"].dtype):
        return False
    if not np.array_equal(_ts_us(a), _ts_us(b)):
        return False
    return all(
        a[c].to_numpy(dtype=np.float64).tobytes() == b[c].to_numpy(dtype=np.float64).tobytes()
        for c in BAR_COLUMNS[1:]
    )


@pytest.fixture(scope="module")
def origin(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose lake one real ingest made (all three markets, two months each)."""
    from hedgeflow.flows.ingest import ingest

    home = tmp_path_factory.mktemp("lake-heals") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEDGEFLOW_HOME", str(home))
        results = ingest(days=DAYS, end=END, source="simulator")
    assert {r.symbol for r in results} == set(SYMBOLS)
    assert all(r.stored > 0 and not r.healed_months for r in results)
    wh = Warehouse(home)
    for symbol in SYMBOLS:
        assert wh.paths.months_present(symbol, INTERVAL) == ["2026-10", "2026-11"], symbol
    return home


@pytest.fixture
def lake_home(origin: Path, hedgeflow_home: Path) -> Path:
    shutil.copytree(origin, hedgeflow_home)
    return hedgeflow_home


def _originals(wh: Warehouse) -> dict[str, pd.DataFrame]:
    return {s: wh.read_bars(s, INTERVAL) for s in SYMBOLS}


@pytest.mark.parametrize("how", ["truncated", "garbled"])
def test_broken_partition_is_quarantined_and_reingest_rewrites_it(
    lake_home: Path, how: str, tally: Tally
) -> None:
    from hedgeflow.flows.ingest import ingest

    tally.describe("lake heals", f"one {how} partition file of an ingested lake")
    wh = Warehouse(lake_home, lock_timeout=20)
    before = _originals(wh)
    total = sum(len(f) for f in before.values())
    symbol, month = BROKEN
    path = wh.paths.partition_file(symbol, INTERVAL, month)
    damaged = _damage(path, how)
    tally.fault(how)
    tally.trial()

    # Found cheaply when the footer is broken; a garbled page needs the full read.
    assert [p for p, _ in wh.check_lake()] == ([path] if how == "truncated" else [])
    assert [p for p, _ in wh.check_lake(full=True)] == [path]
    if how == "truncated":
        # DuckDB's bars view over the whole lake fails, and the error names the file.
        with pytest.raises(duckdb.Error) as caught:
            wh.query("select count(*) from bars")
        err = wh.lake_read_error(caught.value)
        assert err is not None and err.file == path
        tally.outcome("SQL over bars failed, the error named the file")

    # Other symbols, and the other month of the same symbol, read as before.
    for other in SYMBOLS:
        if other != symbol:
            assert _same_bars(wh.read_bars(other, INTERVAL), before[other])
    october = wh.read_bars(symbol, INTERVAL, "2026-10-01", "2026-11-01")
    assert _same_bars(october, before[symbol][before[symbol]["ts"] < "2026-11-01"])
    assert path.exists()  # not read: not touched

    # Reading the broken month moves it away; its bars are missing, no crash.
    got = wh.read_bars(symbol, INTERVAL)
    assert _same_bars(got, october.reset_index(drop=True))
    assert not path.exists()
    tally.outcome("read went on without the broken month")

    records = wh.lake_quarantine()
    assert len(records) == 1
    row = records.iloc[0]
    assert (row["interval"], row["symbol"], row["month"]) == (INTERVAL, symbol, month)
    assert row["file"] == path.relative_to(lake_home).as_posix()
    expected_reason = "magic bytes" if how == "truncated" else "checksum"
    assert expected_reason in row["reason"] and "\n" not in row["reason"]
    moved = lake_home / row["quarantined_as"]
    assert moved.is_relative_to(wh.paths.quarantine_root)
    assert hashlib.sha256(moved.read_bytes()).digest() == hashlib.sha256(damaged).digest()
    assert row["bytes"] == len(damaged)
    # ... and SQL sees the record and the rest of the lake.
    view = wh.query("select symbol, month, reason from lake_quarantine")
    assert view.values.tolist() == [[symbol, month, row["reason"]]]
    n_broken = int((before[symbol]["ts"] >= "2026-11-01").sum())
    assert wh.query("select count(*) as n from bars")["n"].iloc[0] == total - n_broken

    # Re-ingesting the range rewrites the partition: the bars equal the originals.
    (result,) = ingest(symbols=[symbol], days=DAYS, end=END, source="simulator")
    assert result.healed_months == ()  # the file was already moved by the read
    assert _same_bars(wh.read_bars(symbol, INTERVAL), before[symbol])
    assert wh.check_lake(full=True) == []
    assert moved.read_bytes() == damaged  # never deleted
    assert wh.query("select count(*) as n from bars")["n"].iloc[0] == total
    tally.outcome("re-ingest rewrote the partition, bars equal the originals")


@pytest.mark.parametrize("how", ["truncated", "garbled"])
def test_reingest_over_a_broken_partition_rewrites_it(
    lake_home: Path, how: str, tally: Tally
) -> None:
    """No read comes first: the ingest's own merge read meets the broken file."""
    from hedgeflow.flows.ingest import ingest

    tally.describe("lake heals", f"re-ingest over a {how} partition file")
    wh = Warehouse(lake_home, lock_timeout=20)
    before = _originals(wh)
    symbol, month = BROKEN
    path = wh.paths.partition_file(symbol, INTERVAL, month)
    damaged = _damage(path, how)
    tally.fault(how)
    tally.trial()

    (result,) = ingest(symbols=[symbol], days=DAYS, end=END, source="simulator")
    assert result.healed_months == (month,)
    assert _same_bars(wh.read_bars(symbol, INTERVAL), before[symbol])
    ((moved_rel, reason),) = wh.lake_quarantine()[["quarantined_as", "reason"]].values.tolist()
    assert (lake_home / moved_rel).read_bytes() == damaged
    assert ("magic bytes" if how == "truncated" else "checksum") in reason
    tally.outcome("ingest healed and rewrote the partition")


def test_nightly_over_broken_partitions_completes(lake_home: Path, tally: Tally) -> None:
    """Two broken files in the window (one truncated, one garbled): the nightly's own
    ingest moves them away and rewrites them; every agent publishes."""
    from hedgeflow.flows.nightly import nightly

    tally.describe("lake heals", "nightly over a window with two broken partition files")
    wh = Warehouse(lake_home, lock_timeout=20)
    before = _originals(wh)
    broken = {
        wh.paths.partition_file("BTC-USD.CC", INTERVAL, "2026-11"): "truncated",
        wh.paths.partition_file("AAPL.US", INTERVAL, "2026-10"): "garbled",
    }
    for path, how in broken.items():
        _damage(path, how)
        tally.fault(how)
    tally.trial()

    summary = nightly(days=DAYS, end=END, source="simulator")
    assert summary.status == "completed", summary.failed_agents
    assert summary.failed_agents == {}
    assert sorted(name for name, _ in summary.agent_rows) == ["crypto", "forex", "stocks"]
    assert wh.query("select status from runs where flow = 'nightly'")["status"].tolist() == [
        "completed"
    ]
    agents = wh.query("select agent from agent_metrics order by agent")["agent"].tolist()
    assert agents == ["crypto", "forex", "stocks"]
    for symbol in SYMBOLS:
        assert _same_bars(wh.read_bars(symbol, INTERVAL), before[symbol]), symbol
    records = wh.lake_quarantine()
    assert sorted(zip(records["symbol"], records["month"], strict=True)) == [
        ("AAPL.US", "2026-10"),
        ("BTC-USD.CC", "2026-11"),
    ]
    assert all((lake_home / p).is_file() for p in records["quarantined_as"])
    tally.outcome("nightly completed, every agent published, bars equal the originals")


def test_backtest_over_a_broken_month_runs_and_reports_it_missing(
    lake_home: Path, tally: Tally, caplog: pytest.LogCaptureFixture
) -> None:
    """The partition breaks after the nightly's ingest, before its backtest: the agent's
    backtest runs on the bars that can be read and the run's log names the missing month."""
    from hedgeflow.config import load_settings
    from hedgeflow.tasks.research import backtest_agent
    from hedgeflow.windows import lookback_window

    tally.describe("lake heals", "backtest over a partition broken after the ingest")
    wh = Warehouse(lake_home, lock_timeout=20)
    settings = load_settings()
    assert settings.home == lake_home
    (agent,) = [a for a in settings.agents if a.symbol == BROKEN[0]]
    window = lookback_window(DAYS, pd.Timestamp(END, tz="UTC").to_pydatetime())
    clean, _ = backtest_agent(agent, settings, window, "lake-heals-clean")
    path = wh.paths.partition_file(BROKEN[0], INTERVAL, BROKEN[1])
    _damage(path, "truncated")
    tally.fault("truncated")
    tally.trial()

    with caplog.at_level("WARNING"):
        summary, rows = backtest_agent(agent, settings, window, "lake-heals-broken")
    october = wh.read_bars(BROKEN[0], INTERVAL, window.start, "2026-11-01")
    assert 0 < summary.n_bars == len(october) < clean.n_bars
    assert len(rows["equity"]) == len(october)
    missing = [r.getMessage() for r in caplog.records if "missing from this run" in r.getMessage()]
    assert len(missing) == 1 and f"{BROKEN[0]} {INTERVAL} {BROKEN[1]}" in missing[0]
    assert len(wh.lake_quarantine()) == 1 and not path.exists()
    tally.outcome("backtest ran without the broken month, the log named it")


def test_sql_over_a_truncated_partition_heals_and_answers(
    lake_home: Path, capsys: pytest.CaptureFixture[str], tally: Tally
) -> None:
    """`hedgeflow sql` over `bars` with a broken file: the file moves to the quarantine
    folder, the query answers from the rest of the lake (stderr says what moved), and
    the next query needs no healing."""
    from hedgeflow.cli import main

    tally.describe("lake heals", "`hedgeflow sql` over a truncated partition file")
    wh = Warehouse(lake_home)
    before = _originals(wh)
    symbol, month = BROKEN
    path = wh.paths.partition_file(symbol, INTERVAL, month)
    _damage(path, "truncated")
    tally.fault("truncated")
    query = "select symbol, count(*) as n from bars group by 1 order by 1"
    assert main(["--home", str(lake_home), "sql", query, "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("hedgeflow: moved unreadable lake file(s) to the quarantine folder: ")
    assert str(path) in err and err.count("\n") == 1
    n_november = int((before[symbol]["ts"] >= "2026-11-01").sum())
    expected = {s: len(f) - (n_november if s == symbol else 0) for s, f in before.items()}
    assert {
        line.split(",")[0]: int(line.split(",")[1]) for line in out.splitlines()[1:]
    } == expected
    assert not path.exists()
    assert wh.lake_quarantine()[["symbol", "month"]].values.tolist() == [[symbol, month]]
    assert main(["--home", str(lake_home), "sql", query, "--format", "csv"]) == 0
    again, err = capsys.readouterr()
    assert again == out and err == ""
    tally.trial()
    tally.outcome("healed, answered from the rest of the lake")
