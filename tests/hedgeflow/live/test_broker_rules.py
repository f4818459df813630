"""The paper broker on the engine's hand cases (tests/hedgeflow/test_engine_rules.py):
the same numbers, bit for bit equal to the engine, plus the events and the state."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from hedgeflow.engine import EngineConfig, backtest
from hedgeflow.errors import InvalidInputError
from hedgeflow.live.broker import (
    BrokerState,
    Fill,
    OrderCreated,
    OrderUpdated,
    PaperBroker,
)
from hedgeflow.live.record import trades_frame

FLAT = (100.0, 100.5, 99.5, 100.0)
BASE = EngineConfig(
    initial_equity=100_000.0,
    risk_per_trade=0.005,
    stop_pct=0.01,
    take_profit_pct=0.02,
    max_leverage=1.0,
    qty_step=1.0,
)


def make_bars(rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    o, h, lo, c = (np.array(x, dtype=float) for x in zip(*rows, strict=True))
    ts = pd.date_range("2024-01-02 14:30", periods=len(rows), freq="5min", tz="UTC", unit="us")
    return pd.DataFrame({"ts": ts, "open": o, "high": h, "low": lo, "close": c, "volume": 1.0})


class Run:
    def __init__(self, rows, signal, config=BASE) -> None:
        self.bars = make_bars(rows)
        self.broker = PaperBroker(config, "stocks", "AAPL.US")
        self.events: list[list] = []
        self.equity: list[float] = []
        for i, r in enumerate(self.bars.itertuples(index=False)):
            self.events.append(self.broker.on_bar(r.ts, r.open, r.high, r.low, r.close, signal[i]))
            self.equity.append(self.broker.state.equity)
        self.end = self.broker.close_out()
        self.equity[-1] = self.broker.state.equity
        self.fills = [e for ev in [*self.events, self.end] for e in ev if isinstance(e, Fill)]
        self.trades = trades_frame(self.fills)
        # the engine on the same input: identical, always
        expected = backtest(self.bars, np.array(signal, dtype=np.int8), config)
        pd.testing.assert_frame_equal(self.trades, expected.trades, check_exact=True)
        np.testing.assert_array_equal(self.equity, expected.equity["equity"].to_numpy())

    def only_trade(self):
        assert len(self.trades) == 1, self.trades
        return self.trades.iloc[0]


def test_entry_next_open_exit_next_open_and_events():
    rows = [
        FLAT,
        FLAT,
        (100.0, 101.0, 99.5, 100.5),
        (100.5, 101.5, 99.5, 101.0),
        (101.0, 101.5, 100.5, 101.0),
        FLAT,
    ]
    run = Run(rows, [0, 1, 1, 0, 0, 0])
    t = run.only_trade()
    assert (t.qty, t.entry_price, t.exit_price, t.exit_reason) == (500.0, 100.0, 101.0, "signal")
    ts = run.bars.ts
    # bar 1: entry queued for the next bar
    (created,) = run.events[1]
    assert isinstance(created, OrderCreated)
    assert created.order.order_id == "stocks-20240102T143500Z-entry"
    assert created.order.fill_after_ts == ts[2] and created.order.side == "buy"
    # bar 2: the order fills at the open
    done, fill = run.events[2]
    assert isinstance(done, OrderUpdated) and (done.status, done.qty) == ("filled", 500.0)
    assert isinstance(fill, Fill) and fill.fill_id == done.order_id + "-f"
    assert (fill.side, fill.price, fill.fee, fill.ts, fill.trade) == (
        "buy",
        100.0,
        0.0,
        ts[2],
        None,
    )
    # bar 3: exit queued; bar 4: filled, the fill carries the round trip
    assert [type(e) for e in run.events[3]] == [OrderCreated]
    done, fill = run.events[4]
    assert done.order_id.endswith("-exit") and fill.trade is not None
    assert fill.trade.entry_ts == ts[2] and fill.trade.exit_ts == ts[4]
    assert run.end == [] and run.events[5] == []
    np.testing.assert_allclose(run.equity, [1e5, 1e5, 100_250.0, 100_500.0, 100_500.0, 100_500.0])


def test_gap_through_stop_exits_at_open():
    rows = [FLAT, FLAT, (100.0, 100.5, 99.5, 100.0), (98.0, 98.5, 97.0, 98.0), FLAT]
    run = Run(rows, [0, 1, 1, 1, 1])
    t = run.only_trade()
    assert (t.qty, t.exit_price, t.exit_reason) == (500.0, 98.0, "stop")
    done, fill = run.events[3]
    assert done.order_id == "stocks-20240102T144500Z-stop"
    assert (done.status, done.reason, done.created_ts) == ("filled", "stop", run.bars.ts[3])
    assert fill.reason == "stop" and fill.trade is not None and fill.trade.pnl == -1000.0


def test_gap_above_take_profit_exits_at_open():
    rows = [FLAT, FLAT, (100.0, 100.5, 99.5, 100.0), (103.0, 104.0, 102.5, 103.5), FLAT]
    t = Run(rows, [0, 1, 1, 1, 1]).only_trade()
    assert (t.exit_price, t.exit_reason, t.pnl) == (103.0, "take_profit", 1500.0)


def test_stop_and_take_profit_in_one_bar_stop_wins():
    rows = [FLAT, FLAT, (100.0, 100.5, 99.5, 100.0), (100.0, 103.0, 98.5, 101.0), FLAT]
    t = Run(rows, [0, 1, 1, 1, 1]).only_trade()
    assert t.exit_reason == "stop" and t.exit_price == pytest.approx(99.0, abs=1e-12)


def test_take_profit_inside_bar():
    rows = [FLAT, FLAT, (100.0, 100.5, 99.5, 100.0), (100.0, 102.5, 99.5, 101.0), FLAT]
    t = Run(rows, [0, 1, 1, 1, 1]).only_trade()
    assert t.exit_reason == "take_profit" and t.exit_price == pytest.approx(102.0, abs=1e-12)


def test_stop_hit_in_the_fill_bar_and_wait_for_fresh_entry():
    rows = [FLAT, FLAT, (100.0, 100.2, 98.9, 99.5), FLAT, FLAT, FLAT, FLAT, FLAT]
    sig = [0, 1, 1, 1, 0, 1, 1, 1]
    run = Run(rows, sig)
    # bar 2: entry fill, then the stop inside the same bar
    kinds = [(type(e).__name__, getattr(e, "side", None)) for e in run.events[2]]
    assert kinds == [("OrderUpdated", "buy"), ("Fill", "buy"), ("OrderUpdated", "sell"),
                     ("Fill", "sell")]  # fmt: skip
    # the entry's order and fill carry the quantity bought (not the flat position after
    # the stop): a qty of 0 is refused by the live_orders / live_fills schemas
    first = run.trades.iloc[0]
    assert first.exit_reason == "stop" and first.qty > 0
    assert [e.qty for e in run.events[2]] == [first.qty] * 4
    assert run.events[3] == [] and run.events[4] == []  # signal still 1: no re-entry
    assert isinstance(run.events[5][0], OrderCreated)  # fresh 0 -> 1
    second = run.trades.iloc[1]
    assert second.qty == 497.0 and second.exit_reason == "end"


def test_waiting_for_fresh_entry_flag():
    broker = PaperBroker(BASE, "a", "AAPL.US")
    bars = make_bars([FLAT, FLAT, (100.0, 100.2, 98.9, 99.5), FLAT, FLAT])
    flags = []
    for i, r in enumerate(bars.itertuples(index=False)):
        broker.on_bar(r.ts, r.open, r.high, r.low, r.close, [0, 1, 1, 1, 0][i])
        flags.append(broker.waiting_for_fresh_entry)
    assert flags == [False, False, True, True, False]


def test_leverage_cap():
    rows = [FLAT, FLAT, (100.0, 100.5, 99.5, 100.0), FLAT]
    for lev, qty in ((1.0, 1000.0), (1.5, 1500.0), (3.0, 2000.0)):
        cfg = EngineConfig(risk_per_trade=0.02, stop_pct=0.01, max_leverage=lev, qty_step=1.0)
        assert Run(rows, [0, 1, 1, 1], cfg).only_trade().qty == qty


def test_whole_shares_floor_and_rejected_entry():
    rows = [(300.0, 301.0, 299.0, 300.0)] * 4
    cfg = EngineConfig(initial_equity=1000.0, risk_per_trade=0.01, stop_pct=0.01)
    assert Run(rows, [0, 1, 1, 1], replace(cfg, qty_step=1.0)).only_trade().qty == 3.0
    assert Run(rows, [0, 1, 1, 1], cfg).only_trade().qty == 1000 / 300
    # 0.67 of a share -> 0: the order is rejected, nothing traded
    run = Run([(1500.0, 1501.0, 1499.0, 1500.0)] * 4, [0, 1, 1, 1], replace(cfg, qty_step=1.0))
    assert len(run.trades) == 0
    (rejected,) = run.events[2]
    assert isinstance(rejected, OrderUpdated)
    assert (rejected.status, rejected.qty) == ("rejected", None)
    assert run.equity == [1000.0] * 4


def test_whole_units_epsilon_keeps_an_exact_integer():
    # 100_000 x 0.01 / (100 x 0.01) computes to exactly 1000 here; the engine's
    # floor(q + 1e-9) also keeps 999.9999999999 as 1000, the broker too.
    cfg = EngineConfig(risk_per_trade=0.01, stop_pct=0.01, qty_step=1.0)
    rows = [FLAT, FLAT, (100.0, 100.5, 99.5, 100.0), FLAT]
    assert Run(rows, [0, 1, 1, 1], cfg).only_trade().qty == 1000.0
    cfg = EngineConfig(initial_equity=0.3, risk_per_trade=1.0, stop_pct=0.1, qty_step=1.0)
    rows = [(0.1, 0.11, 0.095, 0.1)] * 4  # 0.3 / 0.1 / ... = 2.9999999999999996 -> 3
    assert Run(rows, [0, 1, 1, 1], cfg).only_trade().qty == 3.0


def test_fees_and_slippage():
    cfg = replace(BASE, fee_bps=10.0, slippage_bps=50.0)
    rows = [FLAT, FLAT, (100.0, 100.6, 99.6, 100.0), FLAT, (101.0, 101.5, 100.5, 101.0)]
    run = Run(rows, [0, 1, 1, 0, 0], cfg)
    t = run.only_trade()
    assert t.qty == 497.0
    assert t.fees == pytest.approx(99.894515, abs=1e-9)
    assert t.pnl == pytest.approx(-102.379515, abs=1e-9)
    entry, exit_ = run.fills
    assert entry.fee == pytest.approx(0.001 * 497 * 100.5, abs=1e-12)
    assert exit_.fee == pytest.approx(0.001 * 497 * 100.495, abs=1e-12)
    assert entry.fee + exit_.fee == t.fees


def test_end_close_out_and_cancelled_pending_order():
    cfg = EngineConfig(risk_per_trade=0.005, take_profit_pct=0.5, qty_step=1.0, fee_bps=1.0)
    rows = [FLAT, FLAT, (100.0, 100.5, 99.5, 102.0), (102.0, 105.5, 101.5, 105.0)]
    run = Run(rows, [0, 1, 1, 0], cfg)  # an exit is queued on the last bar
    cancelled, done, fill = run.end
    assert isinstance(cancelled, OrderUpdated) and cancelled.status == "cancelled"
    assert isinstance(done, OrderUpdated) and isinstance(fill, Fill)
    assert done.order_id == "stocks-20240102T144500Z-end" and done.reason == "end"
    assert fill.trade is not None and fill.trade.exit_reason == "end" and fill.price == 105.0
    assert run.broker.state.equity == run.broker.state.cash == 100_000 + 2500 - 10.25
    assert run.broker.close_out() == []  # idempotent


def test_trailing_atr_stop():
    cfg = EngineConfig(
        risk_per_trade=0.005, take_profit_pct=0.5, qty_step=1.0,
        use_trailing_atr=True, atr_period=1, atr_mult=1.0,
    )  # fmt: skip
    rows = [
        FLAT,
        FLAT,
        (100.0, 101.0, 99.5, 100.0),
        (109.0, 110.5, 108.5, 110.0),
        (110.0, 111.0, 109.0, 110.0),
        (109.0, 109.5, 107.0, 108.0),
        FLAT,
    ]
    t = Run(rows, [0, 1, 1, 1, 1, 1, 1], cfg).only_trade()
    assert (t.exit_reason, t.exit_price) == ("stop", 108.0)


def test_pending_exit_fills_before_protective_checks():
    rows = [FLAT, FLAT, (100.0, 100.5, 99.5, 100.0), FLAT, (97.0, 97.5, 96.0, 97.0)]
    t = Run(rows, [0, 1, 1, 0, 0]).only_trade()
    assert (t.exit_reason, t.exit_price) == ("signal", 97.0)


def test_state_row_round_trip_resumes_identically():
    """to_row + the entry fill + the pending order rebuild a state that continues
    exactly like the uninterrupted broker."""
    cfg = replace(BASE, fee_bps=3.0, slippage_bps=2.0, use_trailing_atr=True, atr_period=2)
    rows = [FLAT, FLAT, (100.0, 100.9, 99.6, 100.4), (100.4, 101.2, 100.1, 100.9)] + [
        (100.9 + i * 0.1, 101.5 + i * 0.1, 100.5 + i * 0.1, 101.0 + i * 0.1) for i in range(6)
    ]
    sig = [0, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    bars = make_bars(rows)
    whole = Run(rows, sig, cfg)
    for cut in range(1, len(rows)):
        b = PaperBroker(cfg, "stocks", "AAPL.US")
        fills = []
        for i, r in enumerate(bars.iloc[:cut].itertuples(index=False)):
            fills += [
                e for e in b.on_bar(r.ts, r.open, r.high, r.low, r.close, sig[i])
                if isinstance(e, Fill)
            ]  # fmt: skip
        row = b.state.to_row("stocks", "AAPL.US", pd.Timestamp("2030-01-01", tz="UTC"))
        entry = fills[-1] if fills and fills[-1].side == "buy" else None
        state = BrokerState.from_row(
            row,
            prev_signal=sig[cut - 1],
            pending=b.state.pending,
            entry_fill=None
            if entry is None
            else {"qty": entry.qty, "fee": entry.fee, "ts": entry.ts, "order_id": entry.order_id},
            last_close=rows[cut - 1][3],
        )
        assert state == b.state
        resumed = PaperBroker(cfg, "stocks", "AAPL.US")
        for r in bars.iloc[:cut].itertuples(index=False):
            resumed.observe(r.high, r.low, r.close)  # the ATR is rebuilt by replay
        resumed.restore_state(state)
        equity = []
        for i, r in enumerate(bars.iloc[cut:].itertuples(index=False)):
            resumed.on_bar(r.ts, r.open, r.high, r.low, r.close, sig[cut + i])
            equity.append(resumed.state.equity)
        resumed.close_out()
        equity[-1] = resumed.state.equity
        assert equity == whole.equity[cut:]


def test_flat_row_has_null_levels_and_bad_signal_is_refused():
    b = PaperBroker(BASE, "a", "AAPL.US")
    row = b.state.to_row("a", "AAPL.US", pd.Timestamp("2030-01-01", tz="UTC"))
    assert row["qty"] == 0.0 and row["entry_price"] is None and row["stop"] is None
    assert row["cash"] == row["equity"] == 100_000.0 and row["last_bar_ts"] is None
    with pytest.raises(InvalidInputError, match="signal"):
        b.on_bar(pd.Timestamp("2024-01-02", tz="UTC"), 1.0, 1.0, 1.0, 1.0, 2)
    with pytest.raises(InvalidInputError, match="signal"):
        b.on_bar(pd.Timestamp("2024-01-02", tz="UTC"), 1.0, 1.0, 1.0, 1.0, -2)
    with pytest.raises(InvalidInputError, match="entry fill"):
        BrokerState.from_row({**row, "qty": 3.0}, prev_signal=1)
