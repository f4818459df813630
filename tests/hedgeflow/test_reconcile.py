"""The reconciliation core (``hedgeflow.reconcile``), without Prefect or DuckDB.

* hand-made fill lists: one case per class (missed signal, extra signal, fill price,
  quantity, costs), equal lists give nothing, tiny float noise is no difference;
* the live path itself (``LiveAgent``: shadow warm-up, then bar by bar) against the
  engine re-run: zero differences, an open position at the end included; a fill price
  changed by hand is ``fill_price``; a bar the vendor revised is ``vendor_revision``
  (explained); a missing or an extra live fill is a missed / extra signal;
* the live run's recorded settings are read back, and bad ones named.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from hedgeflow.config import AgentSettings, CostSettings, RiskSettings
from hedgeflow.errors import InvalidInputError
from hedgeflow.live.agent import LiveAgent
from hedgeflow.live.broker import Fill
from hedgeflow.reconcile import (
    DRIFT_COLUMNS,
    FILL_COLUMNS,
    LiveAgentSpec,
    ReconcileResult,
    compare_fills,
    live_agent_specs,
    reconcile_agent,
    revised_bars,
    threshold_exceeded,
)
from hedgeflow.schemas import LiveDrift, validate_frame
from hedgeflow.sources.synthetic import SyntheticMarket

T0 = pd.Timestamp("2026-11-02 14:30", tz="UTC")
STEP = pd.Timedelta(minutes=5)


def fills(*rows: tuple[int, str, float, float, float, str]) -> pd.DataFrame:
    """(bar number, side, qty, price, fee, reason) -> a fills frame."""
    frame = pd.DataFrame(
        [(T0 + i * STEP, side, q, p, f, r) for i, side, q, p, f, r in rows],
        columns=list(FILL_COLUMNS),
    )
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.as_unit("us")
    return frame


BASE = fills(
    (1, "buy", 10.0, 100.0, 0.05, "signal"),
    (4, "sell", 10.0, 101.0, 0.0505, "signal"),
    (7, "buy", 9.0, 102.0, 0.0459, "signal"),
    (9, "sell", 9.0, 100.9, 0.0454, "stop"),
)


def compare(live: pd.DataFrame, engine: pd.DataFrame) -> list[tuple[str, str, str, object, object]]:
    out = compare_fills(live, engine, agent="stocks", symbol="AAPL.US")
    assert all(not d.explained for d in out)
    return [(d.kind, d.side, d.trade_key, d.live_value, d.engine_value) for d in out]


def test_equal_fill_lists_give_no_difference() -> None:
    assert compare(BASE, BASE.copy()) == []
    # float noise of a storage round trip is no difference
    noisy = BASE.assign(price=BASE["price"] * (1 + 1e-13), fee=BASE["fee"] * (1 - 1e-13))
    assert compare(noisy, BASE) == []


def test_a_fill_live_did_not_make_is_a_missed_signal() -> None:
    live = BASE.drop(index=[2, 3])  # live never took the second round trip
    assert compare(live, BASE) == [
        ("missed_signal", "buy", "stocks-20261102T150500Z-buy", None, 102.0),
        ("missed_signal", "sell", "stocks-20261102T151500Z-sell", None, 100.9),
    ]


def test_a_fill_the_engine_did_not_make_is_an_extra_signal() -> None:
    live = pd.concat([BASE, fills((12, "buy", 5.0, 99.0, 0.02, "signal"))], ignore_index=True)
    assert compare(live, BASE) == [
        ("extra_signal", "buy", "stocks-20261102T153000Z-buy", 99.0, None),
    ]


def test_price_then_quantity_then_fee_differences() -> None:
    live = BASE.copy()
    live.loc[1, "price"] = 101.25  # another price (its fee differs too: one difference)
    live.loc[1, "fee"] = 0.0506
    live.loc[2, "qty"] = 8.0  # same price, another size
    live.loc[3, "fee"] = 0.09  # same price and size, another fee
    assert compare(live, BASE) == [
        ("fill_price", "sell", "stocks-20261102T145000Z-sell", 101.25, 101.0),
        ("qty", "buy", "stocks-20261102T150500Z-buy", 8.0, 9.0),
        ("costs", "sell", "stocks-20261102T151500Z-sell", 0.09, 0.0454),
    ]
    # an exit for another reason at the same price is a fill difference too
    other = BASE.copy()
    other.loc[3, "reason"] = "take_profit"
    assert [k for k, *_ in compare(other, BASE)] == ["fill_price"]


def test_two_fills_of_one_side_in_one_bar_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="two buy fills"):
        compare(pd.concat([BASE, BASE.iloc[:1]]), BASE)


# --------------------------------------------------------------------------- the live path


def spec_for(window: int = 6) -> LiveAgentSpec:
    risk = RiskSettings(stop_pct=0.004, take_profit_pct=0.008, risk_per_trade=0.05)
    return LiveAgentSpec(
        name="crypto",
        symbol="BTC-USD.CC",
        strategy="donchian_breakout",
        params={"window": window, "exit_rule": "midline"},
        risk=risk,
        costs=CostSettings(fee_bps=5.0, slippage_bps=2.0),
        interval="5m",
        initial_equity=100_000.0,
        warmup_start=T0,
        live_start=T0 + 200 * STEP,
    )


def market_bars(n: int = 400) -> pd.DataFrame:
    bars = SyntheticMarket(seed=11).fetch_bars("BTC-USD.CC", "5m", T0, T0 + n * STEP)
    return bars[["ts", "open", "high", "low", "close"]].reset_index(drop=True)


def live_fills_of(spec: LiveAgentSpec, history: pd.DataFrame, live: pd.DataFrame) -> pd.DataFrame:
    """What the live agent records: shadow warm-up on the history, then bar by bar."""
    return live_record_of(spec, history, live)[0]


def live_record_of(
    spec: LiveAgentSpec, history: pd.DataFrame, live: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fills, signals) the live agent records."""
    agent = LiveAgent.from_settings(
        AgentSettings(spec.name, spec.symbol, spec.strategy, spec.params, spec.risk, spec.costs),
        spec.costs,
        spec.initial_equity,
        spec.interval,
    )
    agent.warm_up(history, "shadow")
    rows = []
    signals = []
    for bar in live.itertuples(index=False):
        step = agent.on_bar(bar)
        assert step is not None
        signals.append((step.ts, int(step.signal or 0)))
        rows += [
            (e.ts, e.side, e.qty, e.price, e.fee, e.reason)
            for e in step.events
            if isinstance(e, Fill)
        ]
    frame = pd.DataFrame(rows, columns=list(FILL_COLUMNS))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.as_unit("us")
    return frame, pd.DataFrame(signals, columns=["ts", "signal"])


@pytest.fixture(scope="module")
def paper() -> tuple[LiveAgentSpec, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(spec, history, live bars, live fills) of a paper run that ends holding a position."""
    bars = market_bars()
    for n in range(len(bars), 300, -1):  # cut the live bars where a position is open
        spec = spec_for()
        history, live = bars[:200], bars[200:n].reset_index(drop=True)
        got = live_fills_of(spec, history, live)
        if len(got) >= 6 and got["side"].iloc[-1] == "buy":
            return spec, history, live, got
    raise AssertionError("no cut of the synthetic market ends with an open position")


def test_paper_trading_reconciles_with_no_difference(paper) -> None:
    spec, history, live, got = paper
    result = reconcile_agent(spec, history, live, got, lake_bars=live.copy())
    assert result.drifts == [] and result.unexplained == 0
    # the engine's fills are the live ones, the entry of the open position included
    # (the engine's end-of-data close of it is not a difference)
    assert result.engine_fills == result.live_fills == result.matched == len(got) >= 6
    assert (result.bars, result.history_bars, result.revised_bars) == (len(live), 200, 0)


def test_live_signals_the_engine_does_not_give_are_counted_and_said(paper) -> None:
    spec, history, live, got = paper
    _, signals = live_record_of(spec, history, live)
    clean = reconcile_agent(spec, history, live, got, live_signals=signals)
    assert clean.signal_mismatches == 0 and clean.drifts == []
    assert signals["signal"].nunique() == 2  # the strategy traded: a real comparison
    flipped = signals.copy()
    flipped.loc[3, "signal"] = 1 - flipped.loc[3, "signal"]
    edited = got.copy()
    edited.loc[0, "fee"] += 1.0
    result = reconcile_agent(spec, history, live, edited, live_signals=flipped)
    assert result.signal_mismatches == 1
    (drift,) = result.drifts
    assert drift.kind == "costs"
    assert drift.detail.endswith(
        "; 1 live signal(s) differ from the engine's on the same bars (the warm-up history "
        "may have been revised since the live run)"
    )
    assert ReconcileResult("live-1", [result]).agent_rows()[0]["signal_mismatches"] == 1


def test_a_fill_price_changed_by_hand_is_unexplained(paper) -> None:
    spec, history, live, got = paper
    edited = got.copy()
    edited.loc[1, "price"] *= 1.001
    result = reconcile_agent(spec, history, live, edited, lake_bars=live)
    (drift,) = result.drifts
    assert (drift.kind, drift.explained, drift.ts) == ("fill_price", False, got["ts"][1])
    assert drift.live_value == edited["price"][1] and drift.engine_value == got["price"][1]
    assert result.unexplained == 1 and result.matched == len(got) - 1


def test_missing_and_extra_live_fills_are_missed_and_extra_signals(paper) -> None:
    spec, history, live, got = paper
    result = reconcile_agent(spec, history, live, got.drop(index=[0]), lake_bars=None)
    assert [(d.kind, d.ts) for d in result.drifts] == [("missed_signal", got["ts"][0])]
    late = int((live["ts"].iloc[-1] - T0) / STEP) + 3  # no live bar there: no fill either
    extra = fills((late, "buy", 1.0, 50_000.0, 25.0, "signal"))
    result = reconcile_agent(spec, history, live, pd.concat([got, extra]), lake_bars=None)
    assert [(d.kind, d.ts) for d in result.drifts] == [("extra_signal", extra["ts"][0])]


def test_a_bar_the_vendor_revised_explains_the_difference(paper) -> None:
    spec, history, live, got = paper
    # the vendor's bar of the first live entry's fill opens higher than the live bar did
    at = got["ts"][0]
    lake = live.copy()
    i = int(np.flatnonzero(lake["ts"] == at)[0])
    lake.loc[i, "open"] *= 1.002
    lake.loc[i, "high"] = max(lake.loc[i, "high"], lake.loc[i, "open"])
    revised = revised_bars(live, lake)
    assert list(revised["ts"]) == [at]
    result = reconcile_agent(spec, history, live, got, lake_bars=lake)
    assert result.unexplained == 0 and result.revised_bars == 1
    kinds = {d.kind for d in result.drifts}
    assert kinds == {"vendor_revision"} and all(d.explained for d in result.drifts)
    first = result.drifts[0]
    assert (first.ts, first.side, first.live_value) == (at, "buy", got["price"][0])
    assert first.engine_value == pytest.approx(got["price"][0] * 1.002)
    assert f"bar {at.isoformat()} revised by the vendor (open" in first.detail
    # a revision plus a hand-edited fill elsewhere: the edit stays unexplained
    edited = got.copy()
    edited.loc[len(got) - 1, "fee"] += 1.0
    mixed = reconcile_agent(spec, history, live, edited, lake_bars=lake)
    unexplained = [d for d in mixed.drifts if not d.explained]
    assert [(d.kind, d.ts) for d in unexplained] == [("costs", got["ts"].iloc[-1])]


def test_an_agent_without_live_bars_has_only_extra_fills() -> None:
    spec = spec_for()
    result = reconcile_agent(spec, market_bars(50), market_bars(0), BASE, lake_bars=None)
    assert [d.kind for d in result.drifts] == ["extra_signal"] * len(BASE)
    assert result.engine_fills == 0


def test_the_result_as_live_drift_rows_and_counts(paper) -> None:
    spec, history, live, got = paper
    agent = reconcile_agent(spec, history, live, got.drop(index=[0]), lake_bars=None)
    result = ReconcileResult("live-run-1", [agent], skipped=["stocks"])
    assert result.counts() == {
        "missed_signal": 1,
        "extra_signal": 0,
        "fill_price": 0,
        "qty": 0,
        "costs": 0,
        "vendor_revision": 0,
    }
    frame = validate_frame(LiveDrift, result.frame("rec-1"), "live_drift")
    assert list(frame.columns) == list(DRIFT_COLUMNS)
    row = frame.iloc[0]
    assert (row["run_id"], row["live_run_id"], row["kind"], bool(row["explained"])) == (
        "rec-1",
        "live-run-1",
        "missed_signal",
        False,
    )
    assert np.isnan(row["live_value"]) and row["engine_value"] == got["price"][0]
    assert validate_frame(LiveDrift, ReconcileResult("x").frame("rec-2"), "live_drift").empty


def test_threshold() -> None:
    assert not threshold_exceeded(0, 0)
    assert threshold_exceeded(1, 0)
    assert not threshold_exceeded(3, 3)


def test_live_agent_specs_read_the_live_runs_params() -> None:
    spec = spec_for()
    config = {
        "symbol": spec.symbol,
        "strategy": spec.strategy,
        "params": dict(spec.params),
        "risk": dataclasses.asdict(spec.risk),
        "costs": dataclasses.asdict(spec.costs),
        "interval": "5m",
        "initial_equity": 100_000.0,
    }
    params = {
        "interval": "5m",
        "agents": {
            "crypto": {
                "config": config,
                "warmup_start": spec.warmup_start.isoformat(),
                "live_start": spec.live_start.isoformat(),
            },
            "stocks": {"config": {**config, "symbol": "AAPL.US"}},  # killed before warm-up
        },
    }
    specs, skipped = live_agent_specs(params)
    assert specs == [spec] and skipped == ["stocks"]
    assert specs[0].config.fee_bps == 5.0 and specs[0].config.qty_step == 1e-5
    assert specs[0].config.min_notional == 10.0
    bad = {"agents": {"crypto": {**params["agents"]["crypto"], "config": {**config, "risk": {
        "stop_pct": 2.0}}}}}  # fmt: skip
    with pytest.raises(InvalidInputError, match="agent crypto: the live run's recorded settings"):
        live_agent_specs(bad)
    with pytest.raises(InvalidInputError, match="no agents"):
        live_agent_specs({})
