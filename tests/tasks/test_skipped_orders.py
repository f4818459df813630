"""The nightly's agent task stores the entries the order minimums skipped: one
``skipped_orders`` row each, with the reason, for every asset class's minimum, and
the tearsheet's and log's counts come from the same frame."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from hedgeflow.config import PortfolioSettings, load_settings
from hedgeflow.research import run_agent
from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.tasks.research import AgentSummary, agent_backtests_body
from hedgeflow.warehouse import Warehouse
from hedgeflow.windows import Window

START = datetime(2026, 11, 16, tzinfo=UTC)
END = datetime(2026, 11, 21, tzinfo=UTC)


def test_skipped_entries_are_stored_with_their_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 5 of equity: below one AAPL share, one 1,000-unit EURUSD lot and the 10-unit
    # crypto minimum, so every agent's every entry is skipped
    settings = dataclasses.replace(
        load_settings(env={}, config_file=None),
        home=tmp_path / "home",
        portfolio=PortfolioSettings(initial_equity=5.0),
    )
    wh = Warehouse(settings.home)
    market = SyntheticMarket(settings.seed)
    for symbol in settings.symbols:
        bars = market.fetch_bars(symbol, "5m", START, END)
        wh.write_bars(bars, symbol, "5m", START, END, "synthetic")
    wh.start_run("r1", "nightly", {}, "v1")
    with caplog.at_level(logging.INFO, logger="hedgeflow"):
        out = agent_backtests_body("all", list(settings.agents), settings, Window(START, END), "r1")
    wh.finish_run("r1", "completed")
    assert all(isinstance(s, AgentSummary) for s in out)
    stored = wh.query(
        "select agent, count(*) as n, min(reason) as reason, max(reason) as r2 "
        "from skipped_orders group by agent order by agent"
    )
    expected = {"crypto": "below_min_notional", "forex": "below_qty_step",
                "stocks": "below_qty_step"}  # fmt: skip
    assert stored["agent"].tolist() == sorted(expected)
    for row in stored.itertuples():
        assert row.reason == row.r2 == expected[row.agent] and row.n > 0
    assert wh.query("select count(*) from trades").iloc[0, 0] == 0
    # each agent's rows are its engine run's skipped entries, as the summary carries them
    for summary in out:
        assert isinstance(summary, AgentSummary)
        agent = next(a for a in settings.agents if a.name == summary.agent)
        rows = wh.query(
            f"select ts, side, reason from skipped_orders where agent = '{agent.name}' order by ts"
        )
        pd.testing.assert_frame_equal(
            rows, summary.skipped.reset_index(drop=True), check_dtype=False
        )
        bars = wh.read_bars(agent.symbol, "5m", START, END)
        direct = run_agent(bars, agent, settings.costs_for(agent), 5.0).result.skipped
        pd.testing.assert_frame_equal(rows, direct, check_dtype=False)
        assert f"{len(rows)} entries skipped by the order minimums" in caplog.text
