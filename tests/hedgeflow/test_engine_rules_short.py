"""Hand-made cases for short selling and reversals (DESIGN.md "Short selling"); every
expected number is worked out by hand from the rules' text.

Each case runs against every driver of the one rule set (tests.hedgeflow.
rule_drivers: the batch engine, the live paper broker bar by bar, the sweep kernel).
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from hedgeflow.engine import EngineConfig
from hedgeflow.indicators import atr
from tests.hedgeflow.rule_drivers import DRIVERS, Driver

FLAT = (100.0, 100.5, 99.5, 100.0)

# risk 0.5 % with a 1 % stop: qty = cash * 0.005 / (fill * 0.01) = cash / (2 * fill)
SHORTS = EngineConfig(
    initial_equity=100_000.0,
    risk_per_trade=0.005,
    stop_pct=0.01,
    take_profit_pct=0.02,
    max_leverage=1.0,
    qty_step=1.0,
    allow_short=True,
)

DRIVER: Driver = DRIVERS["engine"]


@pytest.fixture(autouse=True, params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every case below once per driver of the rules."""
    monkeypatch.setattr(sys.modules[__name__], "DRIVER", DRIVERS[request.param])
    return str(request.param)


def make_bars(rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    o, h, lo, c = (np.array(x, dtype=float) for x in zip(*rows, strict=True))
    ts = pd.date_range("2024-01-02 14:30", periods=len(rows), freq="5min", tz="UTC", unit="us")
    return pd.DataFrame({"ts": ts, "open": o, "high": h, "low": lo, "close": c, "volume": 1.0})


def run(rows, signal, config=SHORTS):
    return DRIVER(make_bars(rows), np.array(signal, dtype=np.int8), config)


def trades(result) -> list[tuple]:
    """(side, qty, entry bar, exit bar, entry price, exit price, reason) per trade."""
    ts = list(result.equity["ts"])
    return [
        (t.side, t.qty, ts.index(t.entry_ts), ts.index(t.exit_ts), t.entry_price, t.exit_price,
         t.exit_reason)
        for t in result.trades.itertuples(index=False)
    ]  # fmt: skip


# A short entered at the open of bar 2: sold at 100, 500 units, stop 101, target 98.
ENTER = [FLAT, FLAT, (100.0, 100.5, 99.5, 99.5)]
ENTER_SIG = [0, -1, -1]


def test_short_entry_and_signal_cover_at_next_open():
    rows = [*ENTER, (99.5, 100.0, 99.0, 99.2), (99.0, 99.5, 98.5, 99.0), FLAT]
    res = run(rows, [*ENTER_SIG, 0, 0, 0])
    assert trades(res) == [("short", 500.0, 2, 4, 100.0, 99.0, "signal")]
    t = res.trades.iloc[0]
    assert t.pnl == pytest.approx(500.0, abs=1e-9)  # -1 x 500 x (99 - 100)
    assert t.return_pct == pytest.approx(0.01, abs=1e-12)  # 500 / (500 x 100)
    eq = res.equity
    # the sale adds 500 x 100 to the cash; equity = cash - 500 x close
    assert eq["equity"].iat[2] == pytest.approx(150_000.0 - 500 * 99.5)
    assert eq["position"].tolist() == [0.0, 0.0, -500.0, -500.0, 0.0, 0.0]
    assert eq["equity"].iat[-1] == pytest.approx(100_500.0)  # flat: the cash


def test_short_gap_through_the_stop_exits_at_the_open():
    rows = [*ENTER, (101.5, 102.0, 101.2, 101.8), FLAT]
    res = run(rows, [*ENTER_SIG, -1, -1])
    assert trades(res) == [("short", 500.0, 2, 3, 100.0, 101.5, "stop")]
    assert res.trades["pnl"].iat[0] == pytest.approx(-750.0)


def test_short_stop_first_when_both_levels_lie_inside_one_bar():
    rows = [*ENTER, (100.0, 101.2, 97.5, 99.0), FLAT]
    res = run(rows, [*ENTER_SIG, -1, -1])
    assert trades(res) == [("short", 500.0, 2, 3, 100.0, 101.0, "stop")]
    assert res.trades["pnl"].iat[0] == pytest.approx(-500.0)


def test_short_stop_inside_its_fill_bar():
    rows = [FLAT, FLAT, (100.0, 101.3, 99.8, 101.0), FLAT]
    res = run(rows, [0, -1, -1, -1])
    assert trades(res) == [("short", 500.0, 2, 2, 100.0, 101.0, "stop")]


def test_short_take_profit_inside_a_bar_and_on_a_gap():
    inside = run([*ENTER, (99.0, 99.6, 97.9, 98.5), FLAT], [*ENTER_SIG, -1, -1])
    assert trades(inside) == [("short", 500.0, 2, 3, 100.0, 98.0, "take_profit")]
    assert inside.trades["pnl"].iat[0] == pytest.approx(1000.0)
    gap = run([*ENTER, (97.5, 97.9, 97.0, 97.2), FLAT], [*ENTER_SIG, -1, -1])
    assert trades(gap) == [("short", 500.0, 2, 3, 100.0, 97.5, "take_profit")]


def test_after_a_short_stop_waits_for_the_next_change():
    rows = [*ENTER, (101.5, 102.0, 101.2, 101.8), FLAT, FLAT, FLAT, FLAT, FLAT]
    # still -1 after the stop: no entry; 0 then -1 again: a new short at bar 7
    res = run(rows, [*ENTER_SIG, -1, -1, 0, -1, -1, -1])
    got = trades(res)
    assert [g[2:4] for g in got] == [(2, 3), (7, 8)]
    assert got[1][6] == "end" and got[1][0] == "short"
    # sized on the cash after the loss: 99_250 / (2 x 100) = 496.25 -> 496
    assert got[1][1] == 496.0


def test_reversal_long_to_short_at_one_open():
    rows = [
        FLAT,  # 0
        FLAT,  # 1: 0 -> 1, a long queued
        (100.0, 100.5, 99.5, 100.0),  # 2: long 500 at 100; 1 -> -1 at the close
        (100.8, 101.0, 100.2, 100.5),  # 3: sell the long at 100.8, then short
        (100.5, 100.9, 100.1, 100.0),  # 4: the end close covers at 100
    ]
    res = run(rows, [0, 1, -1, -1, -1])
    got = trades(res)
    # the short is sized on the cash after the exit: 100_400 / (2 x 100.8) = 498.0 -> 498
    assert got == [
        ("long", 500.0, 2, 3, 100.0, 100.8, "signal"),
        ("short", 498.0, 3, 4, 100.8, 100.0, "end"),
    ]
    pnl = res.trades["pnl"].tolist()
    assert pnl[0] == pytest.approx(400.0)
    assert pnl[1] == pytest.approx(498 * 0.8)  # -1 x 498 x (100 - 100.8)
    assert res.equity["position"].tolist() == [0.0, 0.0, 500.0, -498.0, -498.0]
    assert res.final_equity == pytest.approx(100_000.0 + 400.0 + 498 * 0.8)


def test_reversal_short_to_long_whose_long_stops_in_the_fill_bar():
    rows = [
        *ENTER,  # 2: short 500 at 100
        (99.6, 99.9, 99.3, 99.5),  # 3: -1 -> 1 at the close
        (99.0, 99.2, 97.5, 98.0),  # 4: cover at 99; long at 99, stop 98.01 hit in the bar
        FLAT,
    ]
    res = run(rows, [0, -1, -1, 1, 1, 1])
    got = trades(res)
    # the long: 100_500 / (2 x 99) = 507.57 -> 507 units, stopped at 99 x 0.99
    assert got == [
        ("short", 500.0, 2, 4, 100.0, 99.0, "signal"),
        ("long", 507.0, 4, 4, 99.0, 99.0 * 0.99, "stop"),
    ]
    assert res.trades["pnl"].iat[1] == pytest.approx(507 * (99.0 * 0.99 - 99.0))
    assert res.equity["position"].iat[4] == 0.0


def test_short_costs_slippage_and_end_close():
    cfg = replace(SHORTS, fee_bps=10.0, slippage_bps=10.0, qty_step=0.0)
    rows = [*ENTER, (99.0, 99.5, 98.5, 99.0)]
    res = run(rows, [*ENTER_SIG, -1], cfg)
    t = res.trades.iloc[0]
    fill = 100.0 * (1 - 0.001)  # a sale: below the open
    qty = 100_000.0 * 0.005 / (fill * 0.01)
    cover = 99.0 * (1 + 0.001)  # a purchase: above the close
    fees = 0.001 * qty * fill + 0.001 * qty * cover
    assert (t.side, t.exit_reason) == ("short", "end")
    assert t.qty == pytest.approx(qty, rel=1e-12)
    assert t.entry_price == pytest.approx(fill, rel=1e-15)
    assert t.exit_price == pytest.approx(cover, rel=1e-15)
    assert t.fees == pytest.approx(fees, rel=1e-12)
    assert t.pnl == pytest.approx(-qty * (cover - fill) - fees, rel=1e-12)
    # cash: + qty x fill - fee at the sale, - qty x cover - fee at the cover
    assert res.final_equity == pytest.approx(100_000.0 + t.pnl, rel=1e-12)


def test_short_atr_trailing_stop_moves_down_only():
    cfg = replace(SHORTS, use_trailing_atr=True, atr_period=2, atr_mult=1.0, take_profit_pct=0.5)
    rows = [
        FLAT,
        FLAT,
        (100.0, 100.2, 99.0, 99.2),  # 2: short at 100 (stop 101); trail = c + ATR
        (99.2, 99.4, 98.0, 98.2),  # 3: trail lower again
        (98.2, 0.0, 97.9, 98.0),  # 4: high set below to reach the trailed stop
    ]
    bars = make_bars(rows)
    a = atr(bars.high.to_numpy(), bars.low.to_numpy(), bars.close.to_numpy(), 2)
    stop2 = min(101.0, 99.2 + a[2])
    stop3 = min(stop2, 98.2 + a[3])
    assert stop3 < stop2 < 101.0  # the trail moved twice
    hi = stop3 + 0.05
    rows[4] = (98.2, hi, 97.9, 98.0)
    bars = make_bars(rows)
    a = atr(bars.high.to_numpy(), bars.low.to_numpy(), bars.close.to_numpy(), 2)
    assert min(101.0, 99.2 + a[2], 98.2 + a[3]) == stop3
    res = DRIVER(bars, np.array([0, -1, -1, -1, -1], dtype=np.int8), cfg)
    assert trades(res) == [("short", 500.0, 2, 4, 100.0, stop3, "stop")]


def test_shorts_off_reads_minus_one_as_zero():
    off = replace(SHORTS, allow_short=False)
    rows = [FLAT, FLAT, (100.0, 100.5, 99.5, 100.0), (100.8, 101.0, 100.2, 100.5), FLAT]
    # 1 -> -1 is 1 -> 0: the long exits at the next open and nothing is shorted
    res = run(rows, [0, 1, -1, -1, -1], off)
    assert trades(res) == [("long", 500.0, 2, 3, 100.0, 100.8, "signal")]
    assert trades(run(rows, [0, -1, -1, 0, 0], off)) == []
