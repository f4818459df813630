"""Hand-made cases for each rule; every expected number is worked out by hand.

Each case runs against every driver of the one rule set (tests.hedgeflow.
rule_drivers: the batch engine, the live paper broker bar by bar, the sweep
kernel), so a rule is checked wherever it is applied."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from hedgeflow.config import CostSettings, OrderMinimums, RiskSettings
from hedgeflow.engine import TRADE_COLUMNS, EngineConfig, backtest
from hedgeflow.errors import InvalidInputError
from tests.hedgeflow.rule_drivers import DRIVERS, Driver

FLAT = (100.0, 100.5, 99.5, 100.0)


def make_bars(rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    o, h, lo, c = (np.array(x, dtype=float) for x in zip(*rows, strict=True))
    ts = pd.date_range("2024-01-02 14:30", periods=len(rows), freq="5min", tz="UTC", unit="us")
    return pd.DataFrame({"ts": ts, "open": o, "high": h, "low": lo, "close": c, "volume": 1.0})


# risk 0.5 % with a 1 % stop: qty = equity * 0.005 / (fill * 0.01) = 50_000 / fill at 100k
BASE = EngineConfig(
    initial_equity=100_000.0,
    risk_per_trade=0.005,
    stop_pct=0.01,
    take_profit_pct=0.02,
    max_leverage=1.0,
    qty_step=1.0,
)


DRIVER: Driver = DRIVERS["engine"]


@pytest.fixture(autouse=True, params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every case below once per driver of the rules."""
    monkeypatch.setattr(sys.modules[__name__], "DRIVER", DRIVERS[request.param])
    return str(request.param)


def run(rows, signal, config=BASE):
    return DRIVER(make_bars(rows), np.array(signal, dtype=np.int8), config)


def only_trade(result):
    assert len(result.trades) == 1, result.trades
    return result.trades.iloc[0]


def test_entry_at_next_open_and_signal_exit_at_next_open():
    rows = [
        FLAT,  # 0 sig 0
        FLAT,  # 1 sig 0 -> 1: entry queued
        (100.0, 101.0, 99.5, 100.5),  # 2 fill at 100; stop 99, tp 102
        (100.5, 101.5, 99.5, 101.0),  # 3 sig 1 -> 0: exit queued
        (101.0, 101.5, 100.5, 101.0),  # 4 exit at open 101
        FLAT,  # 5
    ]
    res = run(rows, [0, 1, 1, 0, 0, 0])
    t = only_trade(res)
    bars = make_bars(rows)
    assert t.entry_ts == bars.ts[2] and t.exit_ts == bars.ts[4]
    assert t.qty == 500.0  # 50_000 / 100
    assert t.entry_price == 100.0 and t.exit_price == 101.0
    assert t.exit_reason == "signal"
    assert t.fees == 0.0
    assert t.pnl == pytest.approx(500.0, abs=1e-9)
    assert t.return_pct == pytest.approx(0.01, abs=1e-12)
    assert t.trade_id == 1 and t.side == "long"
    assert list(res.trades.columns) == list(TRADE_COLUMNS)
    # equity: flat, then 100_000 - 500*100 cash + 500 * close
    eq = res.equity.equity.to_numpy()
    np.testing.assert_allclose(eq, [1e5, 1e5, 100_250.0, 100_500.0, 100_500.0, 100_500.0])
    np.testing.assert_array_equal(res.equity.position.to_numpy(), [0, 0, 500, 500, 0, 0])
    assert str(res.equity.ts.dtype) == "datetime64[us, UTC]"
    assert str(res.trades.entry_ts.dtype) == "datetime64[us, UTC]"


def test_signal_on_last_bar_does_not_trade():
    res = run([FLAT, FLAT, FLAT], [0, 0, 1])
    assert len(res.trades) == 0
    assert (res.equity.equity == 100_000.0).all()


def test_signal_already_one_on_first_bar_counts_as_change():
    res = run([FLAT, FLAT, FLAT], [1, 1, 1])
    t = only_trade(res)
    assert t.entry_ts == make_bars([FLAT] * 3).ts[1]
    assert t.exit_reason == "end"


def test_gap_through_stop_exits_at_open():
    rows = [FLAT, FLAT, (100.0, 100.5, 99.5, 100.0), (98.0, 98.5, 97.0, 98.0), FLAT]
    t = only_trade(run(rows, [0, 1, 1, 1, 1]))
    assert (t.qty, t.entry_price, t.exit_price, t.exit_reason) == (500.0, 100.0, 98.0, "stop")
    assert t.pnl == pytest.approx(-1000.0, abs=1e-9)  # 500 x (98 - 100), not at the 99 stop


def test_gap_above_take_profit_exits_at_open():
    rows = [FLAT, FLAT, (100.0, 100.5, 99.5, 100.0), (103.0, 104.0, 102.5, 103.5), FLAT]
    t = only_trade(run(rows, [0, 1, 1, 1, 1]))
    assert (t.exit_price, t.exit_reason) == (103.0, "take_profit")
    assert t.pnl == pytest.approx(1500.0, abs=1e-9)


def test_stop_and_take_profit_in_same_bar_stop_wins():
    rows = [FLAT, FLAT, (100.0, 100.5, 99.5, 100.0), (100.0, 103.0, 98.5, 101.0), FLAT]
    t = only_trade(run(rows, [0, 1, 1, 1, 1]))
    assert t.exit_reason == "stop"
    assert t.exit_price == pytest.approx(99.0, abs=1e-12)  # stop = 100 x 0.99
    assert t.pnl == pytest.approx(-500.0, abs=1e-9)


def test_take_profit_inside_bar():
    rows = [FLAT, FLAT, (100.0, 100.5, 99.5, 100.0), (100.0, 102.5, 99.5, 101.0), FLAT]
    t = only_trade(run(rows, [0, 1, 1, 1, 1]))
    assert t.exit_reason == "take_profit"
    assert t.exit_price == pytest.approx(102.0, abs=1e-12)
    assert t.pnl == pytest.approx(1000.0, abs=1e-9)


def test_stop_hit_within_fill_bar():
    rows = [FLAT, FLAT, (100.0, 100.2, 98.9, 99.5), FLAT]
    res = run(rows, [0, 1, 1, 1])
    t = only_trade(res)
    assert t.entry_ts == t.exit_ts == make_bars(rows).ts[2]
    assert (t.entry_price, t.exit_reason) == (100.0, "stop")
    assert t.exit_price == pytest.approx(99.0, abs=1e-12)
    assert res.equity.position.iat[2] == 0.0  # not held at the close of the fill bar
    assert res.equity.equity.iat[2] == pytest.approx(99_500.0, abs=1e-9)


def test_wait_for_fresh_entry_after_stop_and_size_from_new_equity():
    rows = [
        FLAT,  # 0
        FLAT,  # 1 sig 0 -> 1
        (100.0, 100.2, 98.9, 99.5),  # 2 fill 100, stopped at 99 (equity 99_500)
        FLAT,  # 3 sig still 1: no re-entry
        FLAT,  # 4 sig 0
        FLAT,  # 5 sig 0 -> 1: entry queued
        (100.0, 100.5, 99.5, 100.0),  # 6 fill 100: qty = floor(99_500 x 0.005 / 1) = 497
        FLAT,  # 7 end
    ]
    res = run(rows, [0, 1, 1, 1, 0, 1, 1, 1])
    bars = make_bars(rows)
    assert len(res.trades) == 2
    first, second = res.trades.iloc[0], res.trades.iloc[1]
    assert first.exit_reason == "stop" and first.pnl == pytest.approx(-500.0, abs=1e-9)
    assert second.entry_ts == bars.ts[6]
    assert second.qty == 497.0  # 497.5 floored
    assert second.exit_reason == "end" and second.exit_ts == bars.ts[7]
    assert second.pnl == pytest.approx(0.0, abs=1e-9)
    assert res.equity.equity.iat[-1] == pytest.approx(99_500.0, abs=1e-9)


def test_leverage_cap_binding():
    # risk 2 % with a 1 % stop wants 2x notional: capped at equity x max_leverage / fill
    rows = [FLAT, FLAT, (100.0, 100.5, 99.5, 100.0), FLAT]
    cfg = EngineConfig(risk_per_trade=0.02, stop_pct=0.01, max_leverage=1.0, qty_step=1.0)
    assert only_trade(run(rows, [0, 1, 1, 1], cfg)).qty == 1000.0  # not 2000
    cfg = EngineConfig(risk_per_trade=0.02, stop_pct=0.01, max_leverage=1.5, qty_step=1.0)
    assert only_trade(run(rows, [0, 1, 1, 1], cfg)).qty == 1500.0
    cfg = EngineConfig(risk_per_trade=0.02, stop_pct=0.01, max_leverage=3.0, qty_step=1.0)
    assert only_trade(run(rows, [0, 1, 1, 1], cfg)).qty == 2000.0  # risk binds


def test_whole_units_floor_and_zero_quantity():
    rows = [(300.0, 301.0, 299.0, 300.0)] * 4
    cfg = EngineConfig(initial_equity=1000.0, risk_per_trade=0.01, stop_pct=0.01)
    # 1000 x 0.01 / (300 x 0.01) = 3.33 -> 3 whole shares, 3.33.. fractional
    whole = only_trade(run(rows, [0, 1, 1, 1], replace(cfg, qty_step=1.0)))
    assert whole.qty == 3.0
    frac = only_trade(run(rows, [0, 1, 1, 1], cfg))
    assert frac.qty == pytest.approx(1000 / 300, rel=1e-15)
    # price 1500: 0.67 of a share -> 0 -> no trade at all, equity untouched
    rows = [(1500.0, 1501.0, 1499.0, 1500.0)] * 4
    res = run(rows, [0, 1, 1, 1], replace(cfg, qty_step=1.0))
    assert len(res.trades) == 0
    assert (res.equity.equity == 1000.0).all() and (res.equity.position == 0).all()


def test_fees_and_slippage_arithmetic():
    cfg = EngineConfig(
        risk_per_trade=0.005, stop_pct=0.01, take_profit_pct=0.02,
        fee_bps=10.0, slippage_bps=50.0, qty_step=1.0,
    )  # fmt: skip
    rows = [
        FLAT,
        FLAT,  # sig 0 -> 1
        (100.0, 100.6, 99.6, 100.0),  # buy 100 x 1.005 = 100.5; stop 99.495, tp 102.51
        FLAT,  # sig 1 -> 0
        (101.0, 101.5, 100.5, 101.0),  # sell 101 x 0.995 = 100.495
    ]
    t = only_trade(run(rows, [0, 1, 1, 0, 0], cfg))
    qty = 497.0  # floor(50_000 / 100.5) = floor(497.51)
    entry_fee = 0.001 * 497 * 100.5  # 49.9485
    exit_fee = 0.001 * 497 * 100.495  # 49.946015
    assert t.qty == qty
    assert t.entry_price == pytest.approx(100.5, abs=1e-12)
    assert t.exit_price == pytest.approx(100.495, abs=1e-12)
    assert t.fees == pytest.approx(99.894515, abs=1e-9)
    assert t.fees == pytest.approx(entry_fee + exit_fee, abs=1e-9)
    assert t.pnl == pytest.approx(-102.379515, abs=1e-9)  # 497 x -0.005 - 99.894515
    assert t.return_pct == pytest.approx(-102.379515 / (497 * 100.5), rel=1e-9)
    res = run(rows, [0, 1, 1, 0, 0], cfg)
    assert res.equity.equity.iat[-1] == pytest.approx(100_000 - 102.379515, abs=1e-9)
    # a stop exit pays slippage too: stop 99.495 x 0.995
    rows_stop = [FLAT, FLAT, (100.0, 100.6, 99.6, 100.0), (100.0, 100.2, 99.0, 99.5)]
    t = only_trade(run(rows_stop, [0, 1, 1, 1], cfg))
    assert t.exit_reason == "stop"
    assert t.exit_price == pytest.approx(100.5 * 0.99 * 0.995, abs=1e-12)


def test_end_of_data_close_with_reason_end():
    cfg = EngineConfig(risk_per_trade=0.005, take_profit_pct=0.5, qty_step=1.0, fee_bps=1.0)
    rows = [FLAT, FLAT, (100.0, 100.5, 99.5, 102.0), (102.0, 105.5, 101.5, 105.0)]
    res = run(rows, [0, 1, 1, 1], cfg)
    t = only_trade(res)
    assert t.exit_reason == "end" and t.exit_price == 105.0
    assert t.exit_ts == make_bars(rows).ts[3]
    fees = 0.0001 * 500 * 100 + 0.0001 * 500 * 105  # 5 + 5.25
    assert t.fees == pytest.approx(10.25, abs=1e-9) and t.fees == pytest.approx(fees)
    assert t.pnl == pytest.approx(500 * 5 - 10.25, abs=1e-9)
    # the last equity point is after the close; the position column shows what was held
    assert res.equity.equity.iat[-1] == pytest.approx(100_000 + 2500 - 10.25, abs=1e-9)
    assert res.equity.position.iat[-1] == 500.0


def test_trailing_atr_stop_raises_the_stop():
    # ATR(1) = true range of the bar; at bar 3's close: 110 - 1 x 2 = 108 > 99
    cfg = EngineConfig(
        risk_per_trade=0.005, take_profit_pct=0.5, qty_step=1.0,
        use_trailing_atr=True, atr_period=1, atr_mult=1.0,
    )  # fmt: skip
    rows = [
        FLAT,
        FLAT,
        (100.0, 101.0, 99.5, 100.0),  # fill 100, stop 99; TR 1.5 -> stop max(99, 98.5) = 99
        (109.0, 110.5, 108.5, 110.0),  # TR = max(2, 10.5, 8.5) = 10.5 -> 99.5: stop 99.5
        (110.0, 111.0, 109.0, 110.0),  # TR = 2 -> stop max(99.5, 108) = 108
        (109.0, 109.5, 107.0, 108.0),  # low 107 <= 108: stopped at 108
        FLAT,
    ]
    t = only_trade(run(rows, [0, 1, 1, 1, 1, 1, 1], cfg))
    assert t.exit_reason == "stop"
    assert t.exit_price == pytest.approx(108.0, abs=1e-12)
    assert t.exit_ts == make_bars(rows).ts[5]
    # without the trailing stop the position is held to the end
    plain = EngineConfig(risk_per_trade=0.005, take_profit_pct=0.5, qty_step=1.0)
    assert only_trade(run(rows, [0, 1, 1, 1, 1, 1, 1], plain)).exit_reason == "end"


def test_pending_exit_fills_before_protective_checks():
    # exit queued at bar 3's close; bar 4 gaps below the stop: the queued exit fills at
    # the open with reason signal (same price as the gap stop would give)
    rows = [FLAT, FLAT, (100.0, 100.5, 99.5, 100.0), FLAT, (97.0, 97.5, 96.0, 97.0)]
    t = only_trade(run(rows, [0, 1, 1, 0, 0]))
    assert (t.exit_reason, t.exit_price) == ("signal", 97.0)


def test_from_settings():
    cfg = EngineConfig.from_settings(
        RiskSettings(), CostSettings(fee_bps=0.5, slippage_bps=1.0), "stock", 50_000.0
    )
    assert cfg.qty_step == 1.0 and cfg.min_notional == 0.0
    assert cfg.fee_bps == 0.5 and cfg.slippage_bps == 1.0
    assert cfg.initial_equity == 50_000.0 and cfg.stop_pct == 0.01 and cfg.max_leverage == 1.0
    crypto = EngineConfig.from_settings(RiskSettings(), CostSettings(), "crypto", 1.0)
    assert (crypto.qty_step, crypto.min_notional) == (1e-5, 10.0)
    forex = EngineConfig.from_settings(RiskSettings(), CostSettings(), "forex", 1.0)
    assert (forex.qty_step, forex.min_notional) == (1000.0, 0.0)
    own = EngineConfig.from_settings(
        RiskSettings(), CostSettings(), "forex", 1.0, OrderMinimums(qty_step=1.0)
    )
    assert (own.qty_step, own.min_notional) == (1.0, 0.0)


def test_bad_inputs():
    with pytest.raises(InvalidInputError, match="stop_pct"):
        EngineConfig(stop_pct=0.0)
    with pytest.raises(InvalidInputError, match="signal"):
        run([FLAT, FLAT], [0, 2])
    with pytest.raises(InvalidInputError, match="signal"):
        run([FLAT, FLAT], [0])
    with pytest.raises(InvalidInputError, match="signal"):
        run([FLAT, FLAT], [0, -2])
    with pytest.raises(InvalidInputError, match="close"):
        backtest(make_bars([FLAT]).drop(columns="close"), np.zeros(1), BASE)
