"""``hedgeflow live`` for real, in subprocesses (Prefect ephemeral mode, local simulators):

* a short run (``live_cli_run`` in tests/flows/conftest.py, shared with the reconcile
  tests) fills live_bars / live_signals / live_positions for the three markets,
  prints the status line and the summary, and its output is clean;
* a run killed with SIGKILL mid-stream and restarted continues its record: the fills,
  orders, signals and positions equal those of an uninterrupted replay of the same
  bars, no bar is stored twice, and the fills are the trades of the batch backtest
  engine (the nightly's) run over the bars the live flow recorded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hedgeflow.config import load_settings
from hedgeflow.live.agent import LiveAgent
from hedgeflow.live.record import step_tables
from hedgeflow.research import AgentResult, run_agent
from hedgeflow.warehouse import Warehouse
from tests.e2e_helpers import (
    assert_clean,
    assert_live_bars_are_the_market,
    cli_env,
    query_frame,
    run_cli,
)

pytestmark = pytest.mark.flow

SYMBOLS = {"AAPL.US", "EURUSD.FOREX", "BTC-USD.CC"}
SPEED = "1500"
# The kill test trades often, so that there are fills to compare whatever day the
# simulated session is (the feed starts at the last session open; with the default
# agents some sessions give no fill at all in ~60 bars): faster strategy parameters,
# and tight stop / take-profit levels with an ATR trailing stop, so that stop and
# take-profit exits come up too. Over every third session of the 400 days before
# 2026-12-02, 45 bars per market gave at least 8 fills; a run stores about 60.
LIVELY = {
    "HEDGEFLOW_AGENTS__STOCKS__PARAMS__FAST": "3",
    "HEDGEFLOW_AGENTS__STOCKS__PARAMS__SLOW": "8",
    "HEDGEFLOW_AGENTS__FOREX__PARAMS__PERIOD": "5",
    "HEDGEFLOW_AGENTS__FOREX__PARAMS__ENTRY_RSI": "40",
    "HEDGEFLOW_AGENTS__FOREX__PARAMS__EXIT_RSI": "55",
    "HEDGEFLOW_AGENTS__CRYPTO__PARAMS__WINDOW": "6",
    "HEDGEFLOW_RISK__STOP_PCT": "0.002",
    "HEDGEFLOW_RISK__TAKE_PROFIT_PCT": "0.004",
    "HEDGEFLOW_RISK__RISK_PER_TRADE": "0.05",
    "HEDGEFLOW_RISK__MAX_LEVERAGE": "2",
    "HEDGEFLOW_RISK__USE_TRAILING_ATR": "true",
    "HEDGEFLOW_RISK__ATR_PERIOD": "10",
    "HEDGEFLOW_RISK__ATR_MULT": "2",
}
MIN_FILLS = 6


def assert_bars_are_synthetic(home: Path) -> pd.DataFrame:
    bars = query_frame(home, "SELECT * FROM live_bars ORDER BY symbol, ts")
    assert_live_bars_are_the_market(bars)
    return bars


def test_live_cli_streams_all_three_markets_cleanly(
    live_cli_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    home, proc = live_cli_run
    assert_clean(proc)
    out = proc.stdout
    # a status line every few seconds (not a TTY), then the summary table
    status_lines = [line for line in out.splitlines() if line.startswith("[") and "UTC" in line]
    assert len(status_lines) >= 3, out
    assert "forex EURUSD.FOREX" in status_lines[-1]
    for name in ("stocks", "forex", "crypto", "status: completed"):
        assert name in out
    # a fresh run says where its paper equity starts; open positions only when there are
    assert "paper equity: every agent started this run at 100,000" in out
    holding = query_frame(home, "SELECT agent FROM live_positions WHERE qty <> 0")
    if holding.empty:
        assert "open positions stay open" not in out
    else:
        assert f"open positions stay open ({', '.join(holding['agent'])})" in out
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
    settings = load_settings(env=LIVELY)
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


@dataclass
class EngineRun:
    """The batch path over one agent's bars: warm-up history + recorded live bars."""

    bars: pd.DataFrame
    live_start: pd.Timestamp
    agent: AgentResult
    fee_rate: float


def _engine_runs(home: Path, run_id: str) -> dict[str, EngineRun]:
    """``research.run_agent`` (batch signals + ``engine.backtest``, what the nightly
    runs) per agent, over the history bars the run warmed up on (the lake, from
    ``warmup_start`` to ``live_start`` as recorded in its ``runs`` row) followed by the
    bars it recorded in ``live_bars``. The live agent warms up in "shadow" mode
    (hedgeflow/live/agent.py): it is the continuation of a backtest that starts at the
    first history bar, so its fills must be exactly that backtest's trades."""
    settings = load_settings(env=LIVELY)
    params = json.loads(
        query_frame(home, f"SELECT params FROM runs WHERE run_id = '{run_id}'")["params"][0]
    )
    live_bars = query_frame(home, "SELECT * FROM live_bars ORDER BY ts")
    wh = Warehouse(home)
    out = {}
    for a in settings.agents:
        window = params["agents"][a.name]
        start, live_start = pd.Timestamp(window["warmup_start"]), pd.Timestamp(window["live_start"])
        history = wh.read_bars(a.symbol, "5m", start, live_start)
        live = live_bars[live_bars["symbol"] == a.symbol]
        assert len(history) >= 100 and len(live) >= 20, (a.name, len(history), len(live))
        assert live["ts"].min() >= live_start > history["ts"].max()
        cols = ["ts", "open", "high", "low", "close", "volume"]
        bars = pd.concat([history[cols], live[cols]], ignore_index=True)
        costs = settings.costs_for(a)
        result = run_agent(bars, a, costs, settings.portfolio.initial_equity)
        out[a.name] = EngineRun(bars, live_start, result, costs.fee_bps / 1e4)
    return out


def _fills_from_trades(name: str, run: EngineRun) -> pd.DataFrame:
    """The live fills the engine's trades imply. A trade closed before ``live_start``
    belongs to the warm-up and is not in the live record; a trade open at
    ``live_start`` is (the live record carries its entry fill). The one documented
    difference: a position still open after the last bar is closed by the engine at
    that close (reason ``end``) while live keeps holding it, so such a trade gives its
    entry fill only (its holding is checked against live_positions)."""
    rows = []
    for t in run.agent.result.trades.itertuples(index=False):
        if t.exit_ts < run.live_start:
            continue
        rows.append((name, "buy", t.qty, t.entry_price, t.entry_ts, "signal", t.trade_id))
        if t.exit_reason != "end":
            rows.append((name, "sell", t.qty, t.exit_price, t.exit_ts, t.exit_reason, t.trade_id))
    return pd.DataFrame(rows, columns=["agent", "side", "qty", "price", "ts", "reason", "trade"])


def assert_fills_are_engine_trades(home: Path, run_id: str) -> int:
    """live_fills == the engine's trades over the recorded bars, fill by fill (exact
    floats); live signals == the batch signals; returns the number of fills."""
    runs = _engine_runs(home, run_id)
    # a stop or take-profit can close a position in its fill bar: buy and sell share a ts
    fills = query_frame(home, "SELECT * FROM live_fills ORDER BY agent, ts, side")
    positions = query_frame(home, "SELECT * FROM live_positions").set_index("agent")
    signals = query_frame(home, "SELECT agent, ts, signal FROM live_signals ORDER BY agent, ts")
    for name, run in runs.items():
        got = fills[fills["agent"] == name].reset_index(drop=True)
        exp = _fills_from_trades(name, run)
        cols = ["agent", "side", "qty", "price", "ts", "reason"]
        pd.testing.assert_frame_equal(
            got[cols], exp[cols], check_dtype=False, check_exact=True, obj=f"{name} fills"
        )
        # fees: an entry and its exit pay the engine's trade fees between them
        trades = run.agent.result.trades.set_index("trade_id")
        for trade_id, pair in got.groupby(exp["trade"]):
            t = trades.loc[trade_id]
            if t["exit_reason"] == "end":  # only the entry happened live
                assert pair["fee"].tolist() == [run.fee_rate * t["qty"] * t["entry_price"]]
            else:
                assert pair["fee"].iloc[0] + pair["fee"].iloc[1] == t["fees"], (name, trade_id)
        # the position at the end: what the engine closed with reason "end", if anything
        held = trades[trades["exit_reason"] == "end"]
        pos = positions.loc[name]
        if len(held):
            open_trade = (held["qty"].iat[0], held["entry_price"].iat[0])
            assert (pos["qty"], pos["entry_price"]) == open_trade, name
        else:
            assert pos["qty"] == 0.0
            assert pos["equity"] == run.agent.result.final_equity, name
        # every live bar's signal is the batch signal of that bar
        batch = run.agent.signals[run.agent.signals["ts"] >= run.live_start]
        live = signals[signals["agent"] == name]
        assert list(live["ts"]) == list(batch["ts"]), name
        np.testing.assert_array_equal(live["signal"].to_numpy(int), batch["signal"].to_numpy(int))
    return len(fills)


def _sorted(df: pd.DataFrame, key: list[str], cols: list[str]) -> pd.DataFrame:
    return df.sort_values(key)[cols].reset_index(drop=True)


@pytest.mark.slow  # ~29 s; .ci/run runs it in step 3
def test_a_killed_live_run_continues_where_it_stopped(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hedgeflow.cli", "live", "--speed", SPEED],
        env=cli_env(home, **LIVELY),
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

    again = run_cli(home, "live", "--duration", "8", "--speed", SPEED, timeout=180, **LIVELY)
    assert_clean(again)
    assert f"continue live run {run_id} (cash and positions carried over" in again.stdout

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
    # the independent check: the fills are the batch engine's trades on the same bars
    n_fills = assert_fills_are_engine_trades(home, run_id)
    assert n_fills >= MIN_FILLS, n_fills
