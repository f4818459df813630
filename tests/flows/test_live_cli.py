"""``hedgeflow live`` for real, in subprocesses (Prefect ephemeral mode, local simulators):

* a short run fills live_bars / live_signals / live_positions for the three markets,
  prints the status line and the summary, and its output is clean;
* a run killed with SIGKILL mid-stream and restarted continues its record: the fills,
  orders, signals and positions equal those of an uninterrupted replay of the same
  bars, and no bar is stored twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hedgeflow.config import load_settings
from hedgeflow.live.agent import LiveAgent
from hedgeflow.live.record import step_tables
from hedgeflow.sources.synthetic import SyntheticMarket
from tests.e2e_helpers import assert_clean, cli_env, query_frame, run_cli
from warehouse import Warehouse

pytestmark = pytest.mark.flow

SYMBOLS = {"AAPL.US", "EURUSD.FOREX", "BTC-USD.CC"}
SPEED = "1500"


def assert_bars_are_synthetic(home: Path) -> pd.DataFrame:
    bars = query_frame(home, "SELECT * FROM live_bars ORDER BY symbol, ts")
    assert not bars.duplicated(["symbol", "interval", "ts"]).any(), "a bar was stored twice"
    market = SyntheticMarket(7)
    for symbol, got in bars.groupby("symbol"):
        first, last = got["ts"].iloc[0], got["ts"].iloc[-1]
        ref = market.fetch_bars(str(symbol), "5m", first, last + pd.Timedelta(minutes=5))
        assert list(got["ts"]) == list(ref["ts"]), f"{symbol}: gaps or extra bars"
        for col in ("open", "high", "low", "close"):
            np.testing.assert_array_equal(got[col], ref[col], err_msg=f"{symbol} {col}")
    return bars


def test_live_cli_streams_all_three_markets_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = run_cli(home, "live", "--duration", "15", "--speed", SPEED, timeout=180)
    assert_clean(proc)
    out = proc.stdout
    # a status line every few seconds (not a TTY), then the summary table
    status_lines = [line for line in out.splitlines() if line.startswith("[") and "UTC" in line]
    assert len(status_lines) >= 3, out
    assert "forex EURUSD.FOREX" in status_lines[-1]
    for name in ("stocks", "forex", "crypto", "status: completed", "live_positions"):
        assert name in out
    bars = assert_bars_are_synthetic(home)
    assert set(bars["symbol"]) == SYMBOLS
    assert bars.groupby("symbol").size().min() >= 20
    signals = query_frame(
        home, "SELECT agent, symbol, count(*) AS n FROM live_signals GROUP BY ALL"
    )
    assert set(signals["symbol"]) == SYMBOLS and signals["n"].min() >= 20
    positions = query_frame(home, "SELECT * FROM live_positions")
    assert set(positions["symbol"]) == SYMBOLS
    runs = query_frame(home, "SELECT flow, status FROM runs WHERE flow = 'live'")
    assert list(runs["status"]) == ["completed"]


def _expected_record(home: Path, run_id: str) -> dict[str, pd.DataFrame]:
    """The live record of an uninterrupted run over the stored bars: each agent warmed
    up on the run's history, then fed every stored live bar once."""
    settings = load_settings(env={})
    wh = Warehouse(home)
    params = json.loads(
        query_frame(home, f"SELECT params FROM runs WHERE run_id = '{run_id}'")["params"][0]
    )
    live_bars = query_frame(home, "SELECT * FROM live_bars ORDER BY ts")
    tables: dict[str, list[pd.DataFrame]] = {}
    for a in settings.agents:
        window = params["agents"][a.name]
        agent = LiveAgent.from_settings(
            a, settings.costs_for(a), settings.portfolio.initial_equity, "5m"
        )
        agent.warm_up(
            wh.read_bars(
                a.symbol,
                "5m",
                pd.Timestamp(window["warmup_start"]),
                pd.Timestamp(window["live_start"]),
            )
        )
        for bar in live_bars[live_bars["symbol"] == a.symbol].itertuples(index=False):
            step = agent.on_bar(bar)
            assert step is not None
            now = pd.Timestamp("2030-01-01", tz="UTC")
            for table, rows in step_tables(
                step, run_id=run_id, agent=a.name, symbol=a.symbol, interval="5m", updated_ts=now
            ).items():
                tables.setdefault(table, []).append(rows)
    out = {}
    for table, parts in tables.items():
        whole = pd.concat(parts, ignore_index=True)
        key = {"live_orders": ["order_id"], "live_fills": ["fill_id"]}.get(table)
        if key:  # an order updated later keeps its last state, as the upsert does
            whole = whole.drop_duplicates(key, keep="last")
        out[table] = whole
    return out


def _sorted(df: pd.DataFrame, key: list[str], cols: list[str]) -> pd.DataFrame:
    return df.sort_values(key)[cols].reset_index(drop=True)


def test_a_killed_live_run_continues_where_it_stopped(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hedgeflow.cli", "live", "--speed", SPEED],
        env=cli_env(home),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the kill takes its children too
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.5)
            n = query_frame(home, "SELECT count(*) AS n FROM live_bars") if home.exists() else None
            if n is not None and not n.empty and int(n["n"][0]) >= 60:
                break
        else:
            raise AssertionError("the live run stored too few bars")
        # the whole group, like a machine losing the process tree; killing only the
        # CLI would orphan Prefect's temporary server (it would outlive the tests)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = {
        t: query_frame(home, f"SELECT * FROM {t}")
        for t in ("live_bars", "live_fills", "live_orders", "live_positions", "runs")
    }
    assert list(before["runs"]["status"]) == ["running"]  # killed: never finished
    run_id = str(before["runs"]["run_id"][0])

    again = run_cli(home, "live", "--duration", "8", "--speed", SPEED, timeout=180)
    assert_clean(again)
    assert "continued from the record" in again.stdout

    runs = query_frame(home, "SELECT run_id, status FROM runs")
    assert list(runs["run_id"]) == [run_id] and list(runs["status"]) == ["completed"]
    bars = assert_bars_are_synthetic(home)
    assert len(bars) > len(before["live_bars"])
    # every fill stored before the kill is still there, unchanged
    fills = query_frame(home, "SELECT * FROM live_fills")
    fill_cols = ["fill_id", "order_id", "side", "qty", "price", "fee", "ts", "reason"]
    kept = fills[fills["fill_id"].isin(before["live_fills"]["fill_id"])]
    pd.testing.assert_frame_equal(
        _sorted(kept, ["fill_id"], fill_cols),
        _sorted(before["live_fills"], ["fill_id"], fill_cols),
    )
    # and the whole record equals an uninterrupted run over the same bars
    expected = _expected_record(home, run_id)
    for table, key, cols in (
        ("live_signals", ["agent", "ts"], ["agent", "symbol", "ts", "close", "signal"]),
        ("live_fills", ["fill_id"], fill_cols),
        ("live_orders", ["order_id"], ["order_id", "side", "qty", "status", "reason"]),
    ):
        got = query_frame(home, f"SELECT * FROM {table}")
        exp = expected.get(table, pd.DataFrame(columns=got.columns))
        pd.testing.assert_frame_equal(
            _sorted(got, key, cols), _sorted(exp.astype(got.dtypes.to_dict()), key, cols),
            check_dtype=False, obj=table,
        )  # fmt: skip
    positions = query_frame(home, "SELECT * FROM live_positions ORDER BY agent")
    exp_pos = expected["live_positions"].groupby("agent").tail(1).sort_values("agent")
    for col in ("qty", "cash", "equity", "entry_price", "stop", "take_profit"):
        np.testing.assert_array_equal(
            positions[col].to_numpy(float), exp_pos[col].to_numpy(float), err_msg=col
        )
