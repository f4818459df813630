"""The live record in a real warehouse: rows per bar, idempotent writes, restart = no restart."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hedgeflow.config import AgentSettings, CostSettings, RiskSettings
from hedgeflow.live.agent import LiveAgent, LiveStep
from hedgeflow.live.broker import Fill
from hedgeflow.live.record import replay_bars, step_tables, trades_frame
from hedgeflow.schemas.columns import LIVE_TABLES
from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.tasks.live import persist_step, restore_agent
from hedgeflow.warehouse import Warehouse

AGENT = AgentSettings(
    name="crypto",
    symbol="BTC-USD.CC",
    strategy="donchian_breakout",
    params={"window": 10, "exit_rule": "midline"},
    # a short channel, tighter levels and a trailing stop: positions, pending orders
    # and stop exits are frequent on the synthetic day
    risk=RiskSettings(
        risk_per_trade=0.05,
        max_leverage=2.0,
        stop_pct=0.005,
        take_profit_pct=0.01,
        use_trailing_atr=True,
        atr_period=10,
        atr_mult=2.0,
    ),
)
COSTS = CostSettings(fee_bps=5.0, slippage_bps=2.0)
EQUITY0 = 100_000.0
RUN = "live-run-1"
NOW = pd.Timestamp("2030-01-01", tz="UTC")
N_LIVE = 45


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    start = pd.Timestamp("2024-03-04", tz="UTC")
    return SyntheticMarket(7).fetch_bars(AGENT.symbol, "5m", start, start + pd.Timedelta(days=1))


def fresh() -> LiveAgent:
    return LiveAgent.from_settings(AGENT, COSTS, EQUITY0)


def _history_len(bars: pd.DataFrame) -> int:
    """A warm-up length after which the (shadow) broker holds a position."""
    for k in range(100, 200):
        agent = fresh()
        agent.warm_up(bars.iloc[:k])
        if agent.broker.state.qty > 0:
            return k
    raise AssertionError("no open position at the end of any warm-up")


def _tables(wh: Warehouse) -> dict[str, pd.DataFrame]:
    out = {}
    for table in LIVE_TABLES:
        frame = wh.query(f"SELECT * FROM {table}")
        key = [c for c in ("run_id", "agent", "order_id", "fill_id", "ts") if c in frame.columns]
        out[table] = frame.sort_values(key).reset_index(drop=True)
    return out


@dataclass
class Uninterrupted:
    k: int
    steps: list[LiveStep]
    final: LiveStep
    tables: dict[str, pd.DataFrame]


@pytest.fixture(scope="module")
def uninterrupted(bars: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Uninterrupted:
    k = _history_len(bars)
    wh = Warehouse(tmp_path_factory.mktemp("uninterrupted"))
    agent = fresh()
    agent.warm_up(bars.iloc[:k])
    steps = []
    for r in bars.iloc[k : k + N_LIVE].itertuples(index=False):
        step = agent.on_bar(r)
        assert step is not None
        persist_step(wh, RUN, agent, step, updated_ts=NOW)
        steps.append(step)
    final = agent.close_out()
    assert final is not None
    persist_step(wh, RUN, agent, final, updated_ts=NOW)
    return Uninterrupted(k, steps, final, _tables(wh))


def test_rows_of_a_step(bars: pd.DataFrame, uninterrupted: Uninterrupted) -> None:
    t = uninterrupted.tables
    n = len(uninterrupted.steps)
    assert len(t["live_bars"]) == len(t["live_signals"]) == n
    assert len(t["live_positions"]) == 1  # one row per (agent, symbol), upserted
    live = bars.iloc[uninterrupted.k : uninterrupted.k + n].reset_index(drop=True)
    np.testing.assert_array_equal(t["live_bars"]["close"], live["close"])
    assert (t["live_bars"]["closed_by"] == "flush").all() and (t["live_bars"]["n_ticks"] == 0).all()
    assert list(t["live_signals"]["signal"]) == [s.signal for s in uninterrupted.steps]
    # every order is final at the end (the close-out cancels a pending one)
    assert set(t["live_orders"]["status"]) <= {"filled", "rejected", "cancelled"}
    # each fill row matches an event, bit for bit
    events = [e for s in [*uninterrupted.steps, uninterrupted.final] for e in s.events]
    fills = [e for e in events if isinstance(e, Fill)]
    stored = t["live_fills"].set_index("fill_id")
    assert len(stored) == len(fills) >= 6
    for f in fills:
        row = stored.loc[f.fill_id]
        assert (row.qty, row.price, row.fee, row.side, row.reason) == (
            f.qty,
            f.price,
            f.fee,
            f.side,
            f.reason,
        )
        assert row.ts == f.ts
    # the shadow warm-up's open position is in the record: its entry fill predates live
    first_live = bars["ts"].iat[uninterrupted.k]
    assert (stored["ts"] < first_live).sum() == 1
    pos = t["live_positions"].iloc[0]
    assert pos.qty == 0.0 and np.isnan(pos.entry_price) and pos.equity == uninterrupted.final.equity
    assert pos.last_bar_ts == uninterrupted.steps[-1].ts and pos.updated_ts == NOW


def test_rewriting_a_step_is_idempotent(bars: pd.DataFrame, tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    agent = fresh()
    for r in bars.iloc[:80].itertuples(index=False):
        step = agent.on_bar(r)
    assert step is not None
    first = persist_step(wh, RUN, agent, step, updated_ts=NOW)
    before = _tables(wh)
    again = persist_step(wh, RUN, agent, step, updated_ts=NOW)
    assert first == again
    after = _tables(wh)
    for table in LIVE_TABLES:
        pd.testing.assert_frame_equal(after[table], before[table])


def _cuts(bars: pd.DataFrame, k: int) -> list[int]:
    """Live-bar counts after which to kill the process: while long with nothing
    pending, with an entry pending, with an exit pending."""
    agent = fresh()
    agent.warm_up(bars.iloc[:k])
    found: dict[str, int] = {}
    for i, r in enumerate(bars.iloc[k : k + N_LIVE - 1].itertuples(index=False)):
        agent.on_bar(r)
        st = agent.broker.state
        kind = "long" if st.qty > 0 and st.pending is None else None
        if st.pending is not None:
            kind = "pending_" + st.pending.side
        if kind and kind not in found and i > 2:
            found[kind] = i + 1
    assert set(found) == {"long", "pending_buy", "pending_sell"}, found
    return sorted(found.values())


def test_restart_equals_an_uninterrupted_run(
    bars: pd.DataFrame, uninterrupted: Uninterrupted, tmp_path: Path
) -> None:
    """Kill the process at several points (one bar processed but not yet stored),
    restore from the warehouse, go on: same steps, same rows, nothing stored twice."""
    k = uninterrupted.k
    history = bars.iloc[:k]
    live = list(bars.iloc[k : k + N_LIVE].itertuples(index=False))
    cuts = _cuts(bars, k)
    wh = Warehouse(tmp_path)
    agent = fresh()
    agent.warm_up(history)
    steps: list[LiveStep] = []
    i = 0
    for cut in [*cuts, len(live)]:
        while i < cut:
            step = agent.on_bar(live[i])
            assert step is not None
            persist_step(wh, RUN, agent, step, updated_ts=NOW)
            steps.append(step)
            i += 1
        if i == len(live):
            break
        agent.on_bar(live[i])  # the bar in progress when the process dies: lost
        del agent
        restored = restore_agent(wh, AGENT, COSTS, EQUITY0, "5m", history)
        assert restored is not None and restored.run_id == RUN
        agent = restored.agent
        assert agent.restore_warnings == []
        assert restored.last_bar_ts == live[i - 1].ts
        assert restored.replayed_bars == k + i
        assert agent.broker.state == uninterrupted.steps[i - 1].state
        # replaying the last stored bar is a no-op
        assert agent.on_bar(live[i - 1]) is None and agent.refused["duplicate"] == 1
    final = agent.close_out()
    assert final is not None
    persist_step(wh, RUN, agent, final, updated_ts=NOW)

    assert [s.state for s in steps] == [s.state for s in uninterrupted.steps]
    assert [s.events for s in steps] == [s.events for s in uninterrupted.steps]
    assert [s.signal for s in steps] == [s.signal for s in uninterrupted.steps]
    assert final.equity == uninterrupted.final.equity
    got = trades_frame(
        e for s in [*steps, final] for e in s.events if isinstance(e, Fill) and e.trade
    )
    want = trades_frame(
        e
        for s in [*uninterrupted.steps, uninterrupted.final]
        for e in s.events
        if isinstance(e, Fill) and e.trade
    )
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    tables = _tables(wh)
    for table in LIVE_TABLES:
        pd.testing.assert_frame_equal(tables[table], uninterrupted.tables[table], obj=table)


def test_restore_without_a_record_is_none(tmp_path: Path) -> None:
    assert restore_agent(Warehouse(tmp_path), AGENT, COSTS, EQUITY0, "5m", None) is None


def test_resume_warns_when_the_replay_is_not_what_the_lost_process_saw(
    bars: pd.DataFrame,
) -> None:
    agent = fresh()
    steps = [agent.on_bar(r) for r in bars.iloc[:130].itertuples(index=False)]
    last = steps[-1]
    assert last is not None
    ok = LiveAgent.resume(AGENT, COSTS, EQUITY0, "5m", bars.iloc[:130], last.state)
    assert ok.restore_warnings == [] and ok.broker.state == last.state
    short = LiveAgent.resume(AGENT, COSTS, EQUITY0, "5m", bars.iloc[:129], last.state)
    assert "replayed bars end at" in short.restore_warnings[0]
    flipped = replace(last.state, prev_signal=1 - last.state.prev_signal)
    other = LiveAgent.resume(AGENT, COSTS, EQUITY0, "5m", bars.iloc[:130], flipped)
    assert "differs from the stored signal" in other.restore_warnings[0]


def test_replay_bars_takes_history_before_the_first_live_bar(bars: pd.DataFrame) -> None:
    live = bars.iloc[100:110][["ts", "open", "high", "low", "close"]]
    out = replay_bars(bars.iloc[:105], live)
    assert list(out["ts"]) == list(bars["ts"].iloc[:110])
    assert list(replay_bars(None, live)["ts"]) == list(live["ts"])


def test_step_tables_only_has_tables_with_rows(bars: pd.DataFrame) -> None:
    agent = fresh()
    step = agent.on_bar(next(bars.itertuples(index=False)))
    assert step is not None
    tables = step_tables(
        step, run_id=RUN, agent="crypto", symbol=AGENT.symbol, interval="5m", updated_ts=NOW
    )
    assert set(tables) == {"live_bars", "live_signals", "live_positions"}
    sig = tables["live_signals"]
    assert sig["signal"].dtype == np.int8 and str(sig["ts"].dtype) == "datetime64[us, UTC]"
    assert np.isnan(sig["rsi"].iat[0]) and np.isnan(sig["dc_upper"].iat[0])
