"""LiveAgent: refused bars, warm-up checks, close-out, the aggregator's Bar."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from hedgeflow.config import AgentSettings, CostSettings
from hedgeflow.errors import InvalidInputError
from hedgeflow.live.agent import LiveAgent
from hedgeflow.live.aggregator import Bar
from hedgeflow.sources.synthetic import SyntheticMarket

AGENT = AgentSettings(
    name="crypto",
    symbol="BTC-USD.CC",
    strategy="donchian_breakout",
    params={"window": 20, "exit_rule": "midline"},
)
COSTS = CostSettings(fee_bps=5.0, slippage_bps=2.0)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    start = pd.Timestamp("2024-03-04", tz="UTC")
    return SyntheticMarket(7).fetch_bars(AGENT.symbol, "5m", start, start + pd.Timedelta(days=2))


def fresh() -> LiveAgent:
    return LiveAgent.from_settings(AGENT, COSTS, 100_000.0)


def _bar(row, **changes) -> SimpleNamespace:
    fields = {k: getattr(row, k) for k in ("ts", "open", "high", "low", "close", "volume")}
    return SimpleNamespace(**{**fields, **changes})


def test_duplicate_and_out_of_order_bars_are_refused_and_counted(bars: pd.DataFrame) -> None:
    agent = fresh()
    rows = list(bars.itertuples(index=False))
    for r in rows[:50]:
        assert agent.on_bar(r) is not None
    state = agent.broker.snapshot()
    signal, n = agent.last_signal, agent.n_bars
    assert agent.on_bar(rows[49]) is None  # the same bar again
    assert agent.on_bar(_bar(rows[49], close=rows[49].close * 1.001)) is None  # same ts
    assert agent.on_bar(rows[10]) is None  # older
    assert dict(agent.refused) == {"duplicate": 2, "out_of_order": 1}
    assert agent.broker.state == state and agent.last_signal == signal and agent.n_bars == n
    assert agent.on_bar(rows[50]) is not None  # the next bar is fine


def test_bad_bars_are_refused(bars: pd.DataFrame) -> None:
    agent = fresh()
    r = next(bars.itertuples(index=False))
    assert agent.on_bar(_bar(r, close=float("nan"))) is None
    assert agent.on_bar(_bar(r, low=r.high + 1.0)) is None
    assert agent.on_bar(_bar(r, low=0.0)) is None
    assert agent.on_bar(_bar(r, symbol="ETH-USD.CC")) is None
    assert dict(agent.refused) == {"bad_prices": 3, "other_symbol": 1}
    assert agent.last_ts is None and agent.n_bars == 0
    assert agent.on_bar(_bar(r, symbol="BTC-USD.CC")) is not None
    with pytest.raises(InvalidInputError, match="time zone"):
        agent.on_bar(_bar(r, ts=pd.Timestamp("2030-01-01")))


def test_accepts_the_aggregators_bar_and_datetimes(bars: pd.DataFrame) -> None:
    agent, other = fresh(), fresh()
    for r in bars.iloc[:30].itertuples(index=False):
        ms = r.ts.value // 1_000_000
        bar = Bar(AGENT.symbol, ms, 300_000, r.open, r.high, r.low, r.close, r.volume, 3, "tick")
        a = agent.on_bar(bar)
        b = other.on_bar(_bar(r, ts=r.ts.to_pydatetime()))
        assert a is not None and b is not None
        assert a.ts == b.ts == r.ts and a.equity == b.equity and a.signal == b.signal
        assert a.bar is bar


def test_warm_up_checks_and_report(bars: pd.DataFrame) -> None:
    agent = fresh()
    assert agent.warmup_bars == 20 and not agent.ready
    with pytest.raises(InvalidInputError, match="increasing"):
        agent.warm_up(bars.iloc[[1, 0, 2]])
    with pytest.raises(InvalidInputError, match="missing"):
        agent.warm_up(bars.drop(columns="high"))
    with pytest.raises(InvalidInputError, match="mode"):
        agent.warm_up(bars, mode="ghost")  # type: ignore[arg-type]
    report = agent.warm_up(bars.iloc[:19])
    assert (report.bars, report.ready, report.first_ts) == (19, False, bars["ts"].iat[0])
    with pytest.raises(InvalidInputError, match="before the first live bar"):
        agent.warm_up(bars.iloc[19:40])
    # the history's last bar and older ones are refused live
    assert agent.on_bar(next(bars.iloc[18:].itertuples(index=False))) is None
    step = agent.on_bar(next(bars.iloc[19:].itertuples(index=False)))
    # warmup(params) = 20 = index of the first bar with every indicator defined:
    # after 20 bars the agent is ready, i.e. the NEXT bar's indicators are defined
    assert step is not None and agent.ready and np.isnan(step.indicators["dc_upper"])
    step = agent.on_bar(next(bars.iloc[20:].itertuples(index=False)))
    assert step is not None and not np.isnan(step.indicators["dc_upper"])


def test_empty_warm_up_is_a_no_op(bars: pd.DataFrame) -> None:
    agent = fresh()
    report = agent.warm_up(bars.iloc[:0])
    assert report.bars == 0 and report.last_ts is None and agent.last_ts is None


def test_close_out_before_any_bar_and_twice(bars: pd.DataFrame) -> None:
    agent = fresh()
    assert agent.close_out() is None
    for r in bars.itertuples(index=False):
        agent.on_bar(r)
    first = agent.close_out()
    assert first is not None and first.bar is None and first.signal is None
    assert agent.broker.state.qty == 0.0 and first.equity == agent.broker.state.cash
    again = agent.close_out()
    assert again is not None and again.events == () and again.equity == first.equity


def test_step_state_is_a_copy(bars: pd.DataFrame) -> None:
    agent = fresh()
    rows = list(bars.itertuples(index=False))
    step = agent.on_bar(rows[0])
    assert step is not None
    cash = step.state.cash
    agent.broker.state.cash = -1.0
    assert step.state.cash == cash


def test_unknown_strategy_and_bad_interval() -> None:
    with pytest.raises(InvalidInputError, match="strategy"):
        LiveAgent.from_settings(
            AgentSettings(name="x", symbol="AAPL.US", strategy="nope"), COSTS, 1.0
        )
    with pytest.raises(InvalidInputError, match="interval"):
        LiveAgent.from_settings(AGENT, COSTS, 1.0, interval="7m")


def test_entries_below_the_order_minimums_are_rejected_with_their_reason(
    bars: pd.DataFrame,
) -> None:
    """5 of paper equity cannot place crypto's 10-unit minimum order: each live entry
    is recorded as a rejected order whose reason says why, at the opens where the
    batch engine skips them, and the router counts them."""
    from hedgeflow.config import OrderMinimums
    from hedgeflow.engine import backtest
    from hedgeflow.live.broker import OrderUpdated
    from hedgeflow.live.record import event_rows
    from hedgeflow.live.router import BarRouter
    from hedgeflow.live.status import AgentStatus
    from hedgeflow.research import compute_signals

    mins = OrderMinimums(qty_step=1e-5, min_notional=10.0)
    agent = LiveAgent.from_settings(AGENT, COSTS, 5.0, "5m", mins)
    assert agent.config.qty_step == 1e-5 and agent.config.min_notional == 10.0
    rejected, rows = [], []
    status = AgentStatus(AGENT.name, AGENT.symbol, AGENT.strategy)
    for r in bars.itertuples(index=False):
        step = agent.on_bar(r)
        assert step is not None
        BarRouter._count(status, step)
        orders, fills = event_rows("run-1", AGENT.name, AGENT.symbol, step.events)
        assert fills == []
        rows += [o for o in orders if o["status"] == "rejected"]
        rejected += [
            (r.ts, e.reason)
            for e in step.events
            if isinstance(e, OrderUpdated) and e.status == "rejected"
        ]
    assert len(rejected) > 3 and {reason for _, reason in rejected} == {"below_min_notional"}
    assert [o["reason"] for o in rows] == [reason for _, reason in rejected]
    signal = compute_signals(bars, AGENT.strategy, agent.params)["signal"].to_numpy()
    batch = backtest(bars, signal, agent.config)
    assert batch.trades.empty
    assert list(zip(batch.skipped["ts"], batch.skipped["reason"], strict=True)) == rejected
    assert status.skipped == len(rejected) and status.fills == 0  # the live status line
