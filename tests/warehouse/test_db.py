"""DuckDB side: DDL from the models, views, runs, results, quarantine, live tables."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import duckdb
import numpy as np
import pandas as pd
import pytest

from hedgeflow.columns import TS_DTYPE
from hedgeflow.errors import DataValidationError, InvalidInputError
from hedgeflow.schemas import split_valid_bars, table_columns
from hedgeflow.warehouse import SCHEMA_VERSION, Warehouse, code_version, data_fingerprint, db, runs
from hedgeflow.warehouse.db import STORED_TABLES

from .conftest import bars

T0 = pd.Timestamp("2026-11-02 14:30", tz="UTC")


def equity(agent: str, n: int = 5) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "agent": agent,
            "ts": pd.date_range(T0, periods=n, freq="5min"),
            "equity": 100.0 + np.arange(n),
            "drawdown": 0.0,
        }
    )


def trades(agent: str, n: int = 2) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "agent": agent,
            "trade_id": np.arange(n),
            "symbol": "AAPL.US",
            "side": "long",
            "qty": 10.0,
            "entry_ts": T0,
            "entry_price": 100.0,
            "exit_ts": T0 + pd.Timedelta("1h"),
            "exit_price": 101.0,
            "exit_reason": "signal",
            "fees": 0.1,
            "pnl": 9.9,
            "return_pct": 0.0099,
        }
    )


def count(wh: Warehouse, sql: str) -> int:
    return int(wh.query(sql).iloc[0, 0])


def test_schema_is_created_lazily_and_idempotently(tmp_path: Path) -> None:
    home = tmp_path / "home"
    wh = Warehouse(home)
    assert not home.exists()
    assert wh.list_runs().empty
    Warehouse(home).list_runs()
    with db.read_write(wh.db_path, 5) as con:
        db.ensure_schema(con, wh.paths)
        db.ensure_schema(con, wh.paths)
        versions = con.execute("SELECT version FROM store.schema_version ORDER BY 1").fetchall()
    assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]


def test_migrations_2_and_3_add_their_columns_and_keep_rows(tmp_path: Path) -> None:
    """A version-1 warehouse (signals without ``indicators``, runs without ``reason`` and
    ``process``) with rows in it."""
    wh = Warehouse(tmp_path / "home")
    wh.list_runs()
    with db.read_write(wh.db_path, 5) as con:
        for table in ("signals", "live_signals"):
            con.execute(f"ALTER TABLE store.{table} DROP COLUMN indicators")
        for column in ("reason", "process"):
            con.execute(f"ALTER TABLE store.runs DROP COLUMN {column}")
        con.execute("DELETE FROM store.schema_version WHERE version > 1")
        con.execute("DROP VIEW live_notifications")
        for table in ("live_outbox", "live_deliveries"):  # migration 5's
            con.execute(f"DROP VIEW {table}")
            con.execute(f"DROP TABLE store.{table}")
        con.execute("DELETE FROM store.meta")  # the views are recreated
        con.execute(
            "INSERT INTO store.signals (run_id, agent, symbol, ts, close, signal) "
            "VALUES ('r1', 'a', 'AAPL.US', '2026-01-02 15:00+00', 100.0, 1)"
        )
        con.execute(
            "INSERT INTO store.runs (run_id, flow, started_at, status, params, code_version) "
            "VALUES ('r1', 'nightly', '2026-01-02 15:00+00', 'running', '{}', 'v')"
        )
        assert db.installed_version(con) == 1
        db.ensure_schema(con, wh.paths)
        assert db.installed_version(con) == SCHEMA_VERSION
        # migration 3: runs gain reason and process, at the end, rows kept
        runs_cols = [r[0] for r in con.execute("DESCRIBE store.runs").fetchall()]
        assert runs_cols[-2:] == ["reason", "process"]
        assert con.execute("SELECT run_id, reason, process FROM store.runs").fetchall() == [
            ("r1", None, None)
        ]
        outbox = [r[0] for r in con.execute("DESCRIBE store.live_outbox").fetchall()]
        assert tuple(outbox) == table_columns("live_outbox")
        assert con.execute("SELECT count(*) FROM live_notifications").fetchall() == [(0,)]
        cols = [r[0] for r in con.execute("DESCRIBE store.signals").fetchall()]
        assert cols[-1] == "indicators"
        assert con.execute("SELECT close, indicators FROM store.signals").fetchall() == [
            (100.0, None)
        ]
        live = [r[0] for r in con.execute("DESCRIBE store.live_signals").fetchall()]
        assert live[-1] == "indicators"


def test_migration_4_adds_live_drift_and_keeps_rows(tmp_path: Path) -> None:
    """A version-3 warehouse (no ``live_drift``) gains the table and its view."""
    wh = Warehouse(tmp_path / "home")
    wh.start_run("r1", "nightly", {}, "v")
    with db.read_write(wh.db_path, 5) as con:
        con.execute("DROP VIEW main.live_drift")
        con.execute("DELETE FROM store.meta WHERE key = 'view:live_drift'")
        con.execute("DROP TABLE store.live_drift")
        con.execute("DELETE FROM store.schema_version WHERE version >= 4")
        assert db.installed_version(con) == 3
    again = Warehouse(wh.home)
    assert again.query("SELECT count(*) AS n FROM live_drift")["n"][0] == 0
    assert list(again.list_runs()["run_id"]) == ["r1"]
    with db.read_write(wh.db_path, 5) as con:
        # 5: the notify outbox, 6: sweep_overfit, 7: walkforward_folds / _equity
        assert db.installed_version(con) == SCHEMA_VERSION == 8


def test_migration_6_adds_sweep_overfit_and_keeps_rows(tmp_path: Path) -> None:
    """A version-5 warehouse (no ``sweep_overfit``) with a sweep in it."""
    wh = Warehouse(tmp_path / "home")
    wh.list_runs()
    with db.read_write(wh.db_path, 5) as con:
        con.execute("DROP VIEW main.sweep_overfit")
        con.execute("DROP TABLE store.sweep_overfit")
        con.execute("DELETE FROM store.meta WHERE key = 'view:sweep_overfit'")
        con.execute("DELETE FROM store.schema_version WHERE version >= 6")
        con.execute(
            "INSERT INTO store.sweep_results "
            "(run_id, symbol, strategy, params, n_trades, rank, orders_skipped) "
            "VALUES ('r1', 'AAPL.US', 'sma_cross', '{}', 3, 1, 0)"
        )
        assert db.installed_version(con) == 5
    # the next reader migrates: the table and its finished-runs-only view appear
    assert Warehouse(wh.home).query("SELECT count(*) FROM sweep_overfit").iloc[0, 0] == 0
    with db.read_write(wh.db_path, 5) as con:
        assert db.installed_version(con) == SCHEMA_VERSION == 8
        cols = [r[0] for r in con.execute("DESCRIBE store.sweep_overfit").fetchall()]
        assert tuple(cols) == table_columns("sweep_overfit")
        assert con.execute("SELECT n_trades FROM store.sweep_results").fetchall() == [(3,)]


def test_migration_7_adds_the_walkforward_tables_and_keeps_rows(tmp_path: Path) -> None:
    """A version-6 warehouse (no walk-forward tables) with a sweep in it."""
    wh = Warehouse(tmp_path / "home")
    wh.list_runs()
    tables = ("walkforward_folds", "walkforward_equity")
    with db.read_write(wh.db_path, 5) as con:
        for table in tables:
            con.execute(f"DROP VIEW main.{table}")
            con.execute(f"DROP TABLE store.{table}")
            con.execute(f"DELETE FROM store.meta WHERE key = 'view:{table}'")
        con.execute("DELETE FROM store.schema_version WHERE version >= 7")
        con.execute(
            "INSERT INTO store.sweep_results "
            "(run_id, symbol, strategy, params, n_trades, rank, orders_skipped) "
            "VALUES ('r1', 'AAPL.US', 'sma_cross', '{}', 3, 1, 0)"
        )
        assert db.installed_version(con) == 6
    # the next reader migrates: the tables and their finished-runs-only views appear
    for table in tables:
        assert Warehouse(wh.home).query(f"SELECT count(*) FROM {table}").iloc[0, 0] == 0
    with db.read_write(wh.db_path, 5) as con:
        assert db.installed_version(con) == SCHEMA_VERSION == 8
        for table in tables:
            cols = [r[0] for r in con.execute(f"DESCRIBE store.{table}").fetchall()]
            assert tuple(cols) == table_columns(table)
        assert con.execute("SELECT n_trades FROM store.sweep_results").fetchall() == [(3,)]


def test_migration_8_adds_the_order_minimums_and_keeps_rows(tmp_path: Path) -> None:
    """A version-7 warehouse (no skipped_orders, sweep_results without
    orders_skipped) with a sweep in it: the sweep keeps its row, counted 0."""
    wh = Warehouse(tmp_path / "home")
    wh.list_runs()
    with db.read_write(wh.db_path, 5) as con:
        con.execute("DROP VIEW main.skipped_orders")
        con.execute("DROP TABLE store.skipped_orders")
        con.execute("DELETE FROM store.meta WHERE key = 'view:skipped_orders'")
        con.execute("DROP VIEW main.sweep_results")
        con.execute("ALTER TABLE store.sweep_results DROP COLUMN orders_skipped")
        con.execute("DELETE FROM store.meta WHERE key = 'view:sweep_results'")
        con.execute("DELETE FROM store.schema_version WHERE version = 8")
        con.execute(
            "INSERT INTO store.sweep_results (run_id, symbol, strategy, params, n_trades, rank) "
            "VALUES ('r1', 'AAPL.US', 'sma_cross', '{}', 3, 1)"
        )
        assert db.installed_version(con) == 7
    assert Warehouse(wh.home).query("SELECT count(*) FROM skipped_orders").iloc[0, 0] == 0
    with db.read_write(wh.db_path, 5) as con:
        assert db.installed_version(con) == SCHEMA_VERSION == 8
        cols = [r[0] for r in con.execute("DESCRIBE store.skipped_orders").fetchall()]
        assert tuple(cols) == table_columns("skipped_orders")
        cols = [r[0] for r in con.execute("DESCRIBE store.sweep_results").fetchall()]
        assert tuple(cols) == table_columns("sweep_results")
        got = con.execute("SELECT n_trades, orders_skipped FROM store.sweep_results").fetchall()
        assert got == [(3, 0)]


def test_store_tables_follow_the_models(wh: Warehouse) -> None:
    for table in STORED_TABLES:
        cols = wh.query(f"SELECT * FROM store.{table} LIMIT 0").columns
        assert tuple(cols) == table_columns(table)
    described = wh.query("DESCRIBE store.trades").set_index("column_name")
    assert described.loc["entry_ts", "column_type"] == "TIMESTAMP WITH TIME ZONE"
    assert described.loc["trade_id", "null"] == "NO"
    views = set(wh.query("SELECT view_name FROM duckdb_views() WHERE NOT internal")["view_name"])
    assert {"bars", "runs", "trades", "equity", "live_orders", "quarantine"} <= views


def test_bars_view_empty_lake_then_files(wh: Warehouse) -> None:
    assert count(wh, "SELECT count(*) FROM bars") == 0
    cols = wh.query("SELECT * FROM bars").dtypes
    assert str(cols["ts"]) == TS_DTYPE
    wh.write_bars(bars("2026-11-02", 30), "AAPL.US", "5m", "2026-11-02", "2026-11-03", "s")
    wh.write_bars(bars("2026-10-31 22:00", 48), "MSFT.US", "5m", "2026-10-31", "2026-11-02", "s")
    wh.write_bars(bars("2026-11-02", 10, "1h"), "AAPL.US", "1h", "2026-11-02", "2026-11-03", "s")
    # Read-only connection: the stored view is stale, a temp view shadows it.
    got = wh.query('SELECT symbol, "interval", count(*) AS n FROM bars GROUP BY ALL ORDER BY ALL')
    assert got.values.tolist() == [
        ["AAPL.US", "1h", 10],
        ["AAPL.US", "5m", 30],
        ["MSFT.US", "5m", 48],
    ]
    # A write connection refreshes the stored view for other tools.
    with wh.write():
        pass
    con = duckdb.connect(str(wh.db_path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM bars").fetchall() == [(88,)]
        assert "month" not in [d[0] for d in con.execute("SELECT * FROM bars").description]
    finally:
        con.close()
    typed = wh.query("SELECT * FROM bars WHERE symbol = 'AAPL.US' ORDER BY ts LIMIT 3")
    assert str(typed["ts"].dtype) == TS_DTYPE and str(typed["ingested_at"].dtype) == TS_DTYPE


def test_unfinished_runs_are_hidden_from_result_views(wh: Warehouse) -> None:
    wh.start_run("r1", "nightly", {"agents": ["stocks"]}, "v1")
    wh.write_results("r1", {"equity": equity("stocks"), "trades": trades("stocks")})
    assert count(wh, "SELECT count(*) FROM equity") == 0
    assert count(wh, "SELECT count(*) FROM trades") == 0
    assert count(wh, "SELECT count(*) FROM store.equity") == 5
    assert wh.query("SELECT status FROM runs")["status"].tolist() == ["running"]
    wh.finish_run("r1", "completed", {"sharpe": 1.5, "bad": float("nan")})
    assert count(wh, "SELECT count(*) FROM equity") == 5
    assert count(wh, "SELECT count(*) FROM trades") == 2
    run = wh.get_run("r1")
    assert run is not None and run["status"] == "completed"
    assert json.loads(run["summary"]) == {"bad": None, "sharpe": 1.5}
    assert run["finished_at"] >= run["started_at"]

    wh.start_run("r2", "nightly", {}, "v1")
    wh.write_results("r2", {"equity": equity("stocks")})
    wh.finish_run("r2", "failed")
    wh.start_run("r3", "nightly", {}, "v1")
    wh.write_results("r3", {"equity": equity("forex")})
    wh.finish_run("r3", "partial")
    assert wh.query("SELECT DISTINCT run_id FROM equity ORDER BY 1")["run_id"].tolist() == [
        "r1",
        "r3",
    ]
    # Restarting a run (a retried flow) hides it again until it finishes.
    wh.start_run("r1", "nightly", {}, "v2")
    assert count(wh, "SELECT count(*) FROM equity WHERE run_id = 'r1'") == 0


def test_write_results_is_idempotent_per_run_and_agent(wh: Warehouse) -> None:
    wh.start_run("r1", "nightly", {}, "v1")
    wh.write_results("r1", {"equity": equity("stocks"), "trades": trades("stocks", 3)})
    wh.write_results("r1", {"equity": equity("stocks"), "trades": trades("stocks", 3)})
    wh.write_results("r1", {"equity": equity("forex", 7)})
    wh.finish_run("r1", "completed")
    got = wh.query("SELECT agent, count(*) AS n FROM equity GROUP BY 1 ORDER BY 1")
    assert got.values.tolist() == [["forex", 7], ["stocks", 5]]
    assert count(wh, "SELECT count(*) FROM trades") == 3
    eq = wh.query("SELECT * FROM equity ORDER BY agent, ts")
    assert str(eq["ts"].dtype) == TS_DTYPE


def test_write_results_validates_everything_before_writing(wh: Warehouse) -> None:
    wh.start_run("r1", "nightly", {}, "v1")
    bad = trades("stocks").assign(exit_reason="timeout")
    with pytest.raises(DataValidationError, match="trades"):
        wh.write_results("r1", {"equity": equity("stocks"), "trades": bad})
    assert count(wh, "SELECT count(*) FROM store.equity") == 0
    with pytest.raises(InvalidInputError, match="unknown run"):
        wh.write_results("nope", {"equity": equity("stocks")})
    with pytest.raises(InvalidInputError, match="not result tables"):
        wh.write_results("r1", {"bars": equity("stocks")})
    with pytest.raises(InvalidInputError, match="written for run"):
        wh.write_results("r1", {"equity": equity("stocks").assign(run_id="r2")})
    assert count(wh, "SELECT count(*) FROM store.equity") == 0


def test_a_failing_insert_rolls_back_the_whole_write(wh: Warehouse, monkeypatch) -> None:
    import hedgeflow.warehouse.results as results

    wh.start_run("r1", "nightly", {}, "v1")
    wh.write_results("r1", {"equity": equity("stocks")})
    real = results.replace_rows
    calls = {"n": 0}

    def fail_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(results, "replace_rows", fail_second)
    with pytest.raises(RuntimeError):
        wh.write_results("r1", {"equity": equity("stocks", 9), "trades": trades("stocks")})
    assert count(wh, "SELECT count(*) FROM store.equity") == 5
    assert count(wh, "SELECT count(*) FROM store.trades") == 0


def test_run_lifecycle_errors_and_listing(wh: Warehouse) -> None:
    with pytest.raises(InvalidInputError):
        wh.start_run("../evil", "nightly", {}, "v1")
    with pytest.raises(InvalidInputError, match="unknown run"):
        wh.finish_run("r9", "completed")
    wh.start_run(
        "r1", "nightly", {"when": pd.Timestamp("2026-11-02", tz="UTC"), "n": np.int64(3)}, "v1"
    )
    with pytest.raises(InvalidInputError, match="final status"):
        wh.finish_run("r1", "running")
    with pytest.raises(InvalidInputError, match="belongs to flow"):
        wh.start_run("r1", "ingest", {}, "v1")
    wh.start_run("r2", "ingest", {}, "v1", "sha256:abc")
    runs = wh.list_runs(limit=1)
    assert runs["run_id"].tolist() == ["r2"]
    assert len(wh.list_runs()) == 2
    stored = json.loads(wh.get_run("r1")["params"])
    assert stored == {"n": 3, "when": "2026-11-02T00:00:00+00:00"}
    assert wh.get_run("zzz") is None


def test_quarantine_round_trip(wh: Warehouse) -> None:
    raw = bars("2026-11-02", 10)
    raw.loc[3, "open"] = -1.0
    raw.loc[5, "volume"] = -2.0
    wh.start_run("ing-1", "ingest", {}, "v1")
    _, quarantine = split_valid_bars(raw, "AAPL.US", "5m", "ing-1")
    assert wh.write_quarantine(quarantine) == 2
    assert wh.write_quarantine(quarantine) == 2  # retried: replaced, not duplicated
    assert count(wh, "SELECT count(*) FROM quarantine") == 0  # run not finished
    wh.finish_run("ing-1", "completed", {"quarantined": 2})
    got = wh.query("SELECT reason FROM quarantine ORDER BY ts")["reason"].tolist()
    assert got == ["open is NaN, infinite or <= 0", "volume negative or infinite"]
    assert wh.write_quarantine(quarantine.iloc[0:0]) == 0


def test_live_tables_upsert_and_show_at_once(wh: Warehouse) -> None:
    order = pd.DataFrame(
        {
            "run_id": "live-1",
            "agent": "crypto",
            "order_id": ["o1"],
            "symbol": "BTC-USD.CC",
            "side": "buy",
            "qty": [np.nan],
            "created_ts": [T0],
            "fill_after_ts": [T0 + pd.Timedelta("1min")],
            "status": ["pending"],
            "reason": ["signal"],
        }
    )
    wh.write_live("live_orders", order)
    assert wh.query("SELECT status FROM live_orders")["status"].tolist() == ["pending"]
    wh.write_live("live_orders", order.assign(status="filled", qty=0.5))
    got = wh.query("SELECT status, qty FROM live_orders")
    assert got.values.tolist() == [["filled", 0.5]]
    position = pd.DataFrame(
        {
            "agent": ["crypto"],
            "symbol": ["BTC-USD.CC"],
            "qty": [0.5],
            "entry_price": [60000.0],
            "stop": [59400.0],
            "take_profit": [61200.0],
            "cash": [70000.0],
            "equity": [100000.0],
            "updated_ts": [T0],
            "last_bar_ts": [T0],
        }
    )
    wh.write_live("live_positions", position)
    wh.write_live("live_positions", position.assign(qty=0.0, entry_price=np.nan))
    assert wh.query("SELECT qty FROM live_positions")["qty"].tolist() == [0.0]
    with pytest.raises(InvalidInputError, match="not a live table"):
        wh.write_live("trades", order)


def test_data_fingerprint() -> None:
    a = bars("2026-11-02", 100)
    fp = data_fingerprint({"AAPL.US": a, "MSFT.US": a})
    assert fp == data_fingerprint({"MSFT.US": a.copy(), "AAPL.US": a.copy()})
    assert fp.startswith("sha256:")
    changed = a.copy()
    changed.loc[50, "close"] += 1e-9
    assert fp != data_fingerprint({"AAPL.US": changed, "MSFT.US": a})
    assert fp != data_fingerprint({"AAPL.US": a, "MSFT.US": a.iloc[:-1]})


def _git_describe(root: Path) -> str:
    out = subprocess.run(
        ["git", "describe", "--always", "--dirty", "--tags"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout.strip()


@pytest.fixture
def fresh_code_version() -> Iterator[None]:
    """code_version is cached per process: compute it anew here, and again after."""
    code_version.cache_clear()
    yield
    code_version.cache_clear()


def test_code_version_is_git_describe_of_the_checkout(fresh_code_version: None) -> None:
    root = Path(__file__).resolve().parents[2]
    # the package under test runs from this checkout (editable install), so its code
    # version is this checkout's ``git describe``
    assert Path(runs.__file__).resolve().is_relative_to(root), runs.__file__
    # the checkout may turn dirty or clean while the test runs: look before and after
    before = _git_describe(root)
    got = code_version()
    after = _git_describe(root)
    assert before and after
    assert got in {f"git:{before}", f"git:{after}"}, (got, before, after)


@pytest.mark.parametrize("failure", ["no git", "git fails", "git hangs"])
def test_code_version_falls_back_to_the_package_version(
    failure: str, fresh_code_version: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert argv[0] == "git"
        if failure == "no git":
            raise FileNotFoundError(2, "No such file or directory", "git")
        if failure == "git hangs":
            raise subprocess.TimeoutExpired(argv, 5)
        return subprocess.CompletedProcess(argv, 128, "", "fatal: not a git repository")

    # only hedgeflow.warehouse.runs sees the fakes (other threads keep the real modules)
    fake_subprocess = SimpleNamespace(run=fake_run, SubprocessError=subprocess.SubprocessError)
    monkeypatch.setattr(runs, "subprocess", fake_subprocess)
    assert code_version() == f"hedgeflow {metadata.version('hedgeflow')}"
    code_version.cache_clear()

    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    fake_metadata = SimpleNamespace(
        version=not_installed, PackageNotFoundError=metadata.PackageNotFoundError
    )
    monkeypatch.setattr(runs, "metadata", fake_metadata)
    assert code_version() == "unknown"
