"""Short selling in the live record: a short position, a pending short entry and a
pending reversal (an exit and the opposite entry queued at one close) survive a
restart from a real warehouse, and the run goes on exactly as an uninterrupted one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from hedgeflow.config import AgentSettings, CostSettings, RiskSettings
from hedgeflow.live.agent import LiveAgent, LiveStep
from hedgeflow.live.broker import Fill
from hedgeflow.live.record import trades_frame
from hedgeflow.research import run_agent
from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.tasks.live import persist_step, restore_agent
from hedgeflow.warehouse import Warehouse
from tests.tasks.test_live_record import _tables

# a short channel and tight levels: shorts, short entries and reversals both ways
# within a few hours of the synthetic day
AGENT = AgentSettings(
    name="crypto",
    symbol="BTC-USD.CC",
    strategy="donchian_breakout",
    params={"window": 2, "exit_rule": "midline"},
    risk=RiskSettings(
        risk_per_trade=0.05,
        max_leverage=2.0,
        stop_pct=0.01,
        take_profit_pct=0.02,
        allow_short=True,
    ),
)
COSTS = CostSettings(fee_bps=5.0, slippage_bps=2.0)
EQUITY0 = 100_000.0
RUN = "live-run-short"
NOW = pd.Timestamp("2030-01-01", tz="UTC")
K = 55  # warm-up bars
N_LIVE = 25


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    start = pd.Timestamp("2024-03-04", tz="UTC")
    return SyntheticMarket(7).fetch_bars(AGENT.symbol, "5m", start, start + pd.Timedelta(days=1))


def fresh() -> LiveAgent:
    return LiveAgent.from_settings(AGENT, COSTS, EQUITY0)


def _run(
    wh: Warehouse | None, bars: pd.DataFrame, cuts: list[int]
) -> tuple[list[LiveStep], LiveStep]:
    """The live bars [K, K + N_LIVE), stored in ``wh`` (None: in memory only), the
    process killed after each of ``cuts`` stored bars (the bar in progress lost) and
    restored from ``wh``."""
    history = bars.iloc[:K]
    live = list(bars.iloc[K : K + N_LIVE].itertuples(index=False))
    agent = fresh()
    agent.warm_up(history)
    steps: list[LiveStep] = []
    i = 0
    for cut in [*cuts, len(live)]:
        while i < cut:
            step = agent.on_bar(live[i])
            assert step is not None
            if wh is not None:
                persist_step(wh, RUN, agent, step, updated_ts=NOW)
            steps.append(step)
            i += 1
        if i == len(live):
            break
        agent.on_bar(live[i])  # lost with the process
        assert wh is not None
        restored = restore_agent(wh, AGENT, COSTS, EQUITY0, "5m", history)
        assert restored is not None and restored.last_bar_ts == live[i - 1].ts
        agent = restored.agent
        assert agent.restore_warnings == []
        assert agent.broker.state == steps[-1].state
    final = agent.close_out()
    assert final is not None
    if wh is not None:
        persist_step(wh, RUN, agent, final, updated_ts=NOW)
    return steps, final


@pytest.mark.slow  # ~9 s on 2 busy cores: DuckDB writes per bar
def test_a_restart_with_shorts_and_reversals_equals_an_uninterrupted_run(
    bars: pd.DataFrame, tmp_path: Path
) -> None:
    whole, whole_final = _run(None, bars, [])
    # the cuts: after a bar that leaves a short open, a short entry pending, a reversal
    # pending in each direction
    found: dict[str, int] = {}
    for i, step in enumerate(whole[:-1]):
        st = step.state
        kinds = []
        if st.qty < 0 and st.pending is None:
            kinds.append("short held")
        if st.pending is not None and st.pending.kind == "short":
            kinds.append("short pending")
        if st.pending is not None and st.pending.then is not None:
            kinds.append(f"reversal to {st.pending.then.kind}")
        for kind in kinds:
            found.setdefault(kind, i + 1)
    assert set(found) == {"short held", "short pending", "reversal to entry", "reversal to short"}
    wh = Warehouse(tmp_path)
    steps, final = _run(wh, bars, sorted(set(found.values())))

    assert [s.state for s in steps] == [s.state for s in whole]
    assert [s.events for s in steps] == [s.events for s in whole]
    assert final.equity == whole_final.equity
    fills = [e for s in [*steps, final] for e in s.events if isinstance(e, Fill)]
    got = trades_frame(f for f in fills if f.trade)
    assert set(got["side"]) == {"long", "short"}
    # a short sells to open and buys to cover
    for f in fills:
        if f.trade is not None:
            assert f.side == ("buy" if f.trade.side == "short" else "sell")
    # the live trades are the engine's over history + live (those exiting live)
    window = bars.iloc[: K + N_LIVE].reset_index(drop=True)
    nightly = run_agent(window, AGENT, COSTS, EQUITY0).result.trades
    later = nightly[nightly["exit_ts"] >= bars["ts"].iat[K]].reset_index(drop=True)
    later["trade_id"] = range(1, len(later) + 1)
    pd.testing.assert_frame_equal(got, later.astype(got.dtypes.to_dict()), check_exact=True)
    # the record holds every fill once, as the events say
    stored = _tables(wh)["live_fills"].set_index("fill_id")
    assert len(stored) == len(fills)
    for f in fills:
        row = stored.loc[f.fill_id]
        assert (row.side, row.qty, row.price, row.fee) == (f.side, f.qty, f.price, f.fee)
    positions = _tables(wh)["live_positions"]
    assert len(positions) == 1 and positions["qty"].iat[0] == 0.0


def test_shorts_off_the_same_agent_never_sells_short(bars: pd.DataFrame) -> None:
    off = replace(AGENT, risk=replace(AGENT.risk, allow_short=False))
    agent = LiveAgent.from_settings(off, COSTS, EQUITY0)
    held = []
    for r in bars.iloc[: K + N_LIVE].itertuples(index=False):
        step = agent.on_bar(r)
        assert step is not None
        held.append(step.state.qty)
    assert min(held) == 0.0 and max(held) > 0.0
