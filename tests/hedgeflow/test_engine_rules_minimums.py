"""Hand-made cases for the order minimums (the venue's quantity step and minimum
notional), each run against every driver of the one rule set (the batch engine,
the live paper broker bar by bar, the sweep kernel): quantities floor to whole
steps, an entry below one step or the minimum notional is skipped and counted with
its reason, the equity untouched, and exits are never held back."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pytest

from hedgeflow.config import DEFAULT_MINIMUMS, CostSettings, RiskSettings
from hedgeflow.engine import SKIPPED_COLUMNS, EngineConfig, backtest
from hedgeflow.errors import InvalidInputError
from hedgeflow.rules import floor_to_step
from tests.hedgeflow.rule_drivers import DRIVERS, Driver
from tests.hedgeflow.test_engine_rules import make_bars

DRIVER: Driver = DRIVERS["engine"]


@pytest.fixture(autouse=True, params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(sys.modules[__name__], "DRIVER", DRIVERS[request.param])
    return str(request.param)


def run(rows, signal, config):
    return DRIVER(make_bars(rows), np.array(signal, dtype=np.int8), config)


def bar(price: float) -> tuple[float, float, float, float]:
    return (price, price * 1.001, price * 0.999, price)


# risk 1 % over a 1 % stop wants the whole equity as notional; leverage 1 caps it there
CRYPTO = EngineConfig(
    initial_equity=1_000.0, risk_per_trade=0.01, stop_pct=0.01, take_profit_pct=0.5,
    qty_step=1e-5, min_notional=10.0,
)  # fmt: skip


def test_a_crypto_quantity_floors_to_whole_steps_of_1e_5():
    # 1000 / 30000.7 = 0.0333325...: 3,332 steps of 1e-5, not 0.03333255
    res = run([bar(30_000.7)] * 4, [0, 1, 1, 1], CRYPTO)
    t = res.trades.iloc[0]
    assert len(res.trades) == 1 and t.qty == 0.03333  # the float nearest 3333 / 1e5
    assert t.qty == 3333 / 100_000 and res.skipped.empty


def test_a_forex_quantity_floors_to_lots_of_1000():
    cfg = EngineConfig(initial_equity=100_000.0, qty_step=1000.0)
    # 100_000 x 0.01 / (1.1 x 0.01) = 90,909.09 units -> 90 lots of 1,000
    t = run([bar(1.1)] * 4, [0, 1, 1, 1], cfg).trades.iloc[0]
    assert t.qty == 90_000.0
    assert t.pnl == pytest.approx(90_000.0 * (1.1 - 1.1), abs=1e-9)


def test_an_entry_below_the_minimum_notional_is_skipped_and_counted():
    # equity 8: the most it can buy is 8 of notional, below the 10 minimum
    cfg = replace(CRYPTO, initial_equity=8.0)
    res = run([bar(100.0)] * 6, [0, 1, 1, 0, 1, 1], cfg)
    assert res.trades.empty
    assert (res.equity.equity == 8.0).all() and (res.equity.position == 0.0).all()
    bars = make_bars([bar(100.0)] * 6)
    # both entries (queued at the closes of bars 1 and 4) skipped at the next open
    assert list(res.skipped.columns) == list(SKIPPED_COLUMNS)
    assert res.skipped["ts"].tolist() == [bars.ts[2], bars.ts[5]]
    assert res.skipped["side"].tolist() == ["long", "long"]
    assert res.skipped["reason"].tolist() == ["below_min_notional"] * 2


def test_exactly_the_minimum_notional_is_placed():
    # equity 10 at 100, leverage 1: 0.1 units, notional exactly 10
    res = run([bar(100.0)] * 4, [0, 1, 1, 1], replace(CRYPTO, initial_equity=10.0))
    assert len(res.trades) == 1 and res.trades.qty.iat[0] == 0.1 and res.skipped.empty


def test_an_entry_below_one_step_is_skipped_with_its_reason():
    # 1,000 of equity buys 0.67 of a 1,500 share: below one whole share
    cfg = EngineConfig(initial_equity=1000.0, qty_step=1.0)
    res = run([bar(1500.0)] * 4, [0, 1, 1, 1], cfg)
    assert res.trades.empty and (res.equity.equity == 1000.0).all()
    assert res.skipped["reason"].tolist() == ["below_qty_step"]


def test_a_reversal_exits_and_skips_the_short_entry_below_the_minimum():
    # long 0.1 at 100 (all 10 of equity); the signal reverses at bar 2's close: the
    # long exits at bar 3's open at 95 (cash 9.5), the short of 9.5 is below 10
    cfg = replace(CRYPTO, initial_equity=10.0, allow_short=True)
    rows = [bar(100.0), bar(100.0), bar(100.0), bar(95.0), bar(95.0)]
    res = run(rows, [0, 1, -1, -1, -1], cfg)
    bars = make_bars(rows)
    t = res.trades.iloc[0]
    assert len(res.trades) == 1 and t.exit_reason == "signal" and t.exit_ts == bars.ts[3]
    assert t.exit_price == 95.0 and t.pnl == pytest.approx(-0.5, abs=1e-12)
    assert res.skipped["ts"].tolist() == [bars.ts[3]]
    assert res.skipped["side"].tolist() == ["short"]
    assert res.skipped["reason"].tolist() == ["below_min_notional"]
    assert res.equity.equity.iat[-1] == pytest.approx(9.5, abs=1e-12)


def test_an_exit_is_never_held_back_by_the_minimum():
    # a position worth less than the minimum notional at its exit still exits
    cfg = replace(CRYPTO, initial_equity=20.0, risk_per_trade=1.0, stop_pct=0.9)
    rows = [bar(100.0), bar(100.0), bar(100.0), bar(20.0), bar(20.0), bar(20.0)]
    res = run(rows, [0, 1, 1, 0, 0, 0], cfg)
    t = res.trades.iloc[0]
    assert len(res.trades) == 1 and t.qty == 0.2 and t.exit_price == 20.0  # notional 4
    assert res.equity.position.iat[-1] == 0.0 and res.skipped.empty


def test_a_long_losing_streak_stops_at_the_venue_minimum():
    """Must-show: 20 rounds, each entry stopped out at half its price. With the
    minimums off the engine keeps trading ever tinier quantities (the last at 100 x
    0.5^19 = 0.0002 of notional); with them on no order is below 10 of notional and
    the rest are skipped and counted, with their reason."""
    stopped = (100.0, 100.0, 50.0, 50.0)  # fills at 100, stopped at 50 (stop 50 %)
    rows = [bar(100.0), bar(100.0), stopped, bar(100.0)] * 20
    signal = [0, 1, 1, 0] * 20
    # risk 100 % over a 50 % stop wants 2x, capped at 1x: each entry is the whole equity
    cfg = replace(CRYPTO, initial_equity=100.0, risk_per_trade=1.0, stop_pct=0.5)
    off = backtest(
        make_bars(rows), np.array(signal, np.int8), replace(cfg, qty_step=0.0, min_notional=0.0)
    )
    notional_off = (off.trades.qty * off.trades.entry_price).to_numpy()
    assert len(off.trades) == 20 and off.skipped.empty
    np.testing.assert_allclose(notional_off, 100.0 * 0.5 ** np.arange(20), rtol=1e-12)
    res = run(rows, signal, cfg)
    notional = (res.trades.qty * res.trades.entry_price).to_numpy()
    # 100, 50, 25, 12.5; then 6.25 of equity is below the 10 minimum for good
    np.testing.assert_allclose(notional, [100.0, 50.0, 25.0, 12.5], rtol=1e-12)
    assert (res.trades.exit_reason == "stop").all()
    bars = make_bars(rows)
    assert res.skipped["ts"].tolist() == [bars.ts[4 * k + 2] for k in range(4, 20)]
    assert res.skipped["reason"].tolist() == ["below_min_notional"] * 16
    assert res.equity.equity.iat[-1] == pytest.approx(6.25, abs=1e-12)


def test_floor_to_step_keeps_exact_multiples_and_decimal_floats():
    assert floor_to_step(3.0, 1.0) == 3.0
    assert floor_to_step(2.9999999999999996, 1.0) == 3.0  # an exact 3 computed inexactly
    assert floor_to_step(0.123456789, 1e-5) == 0.12345
    assert floor_to_step(90_909.09, 1000.0) == 90_000.0
    assert floor_to_step(2.5, 0.0) == 2.5  # no step: any quantity
    assert floor_to_step(7.0, 2.5) == 5.0  # a step that is not a power of ten


def test_the_asset_class_defaults_and_a_per_agent_override():
    assert (DEFAULT_MINIMUMS["stock"].qty_step, DEFAULT_MINIMUMS["stock"].min_notional) == (1, 0)
    assert DEFAULT_MINIMUMS["forex"].qty_step == 1000.0
    assert (DEFAULT_MINIMUMS["crypto"].qty_step, DEFAULT_MINIMUMS["crypto"].min_notional) == (
        1e-5,
        10.0,
    )
    cfg = EngineConfig.from_settings(RiskSettings(), CostSettings(), "crypto", 1000.0)
    assert (cfg.qty_step, cfg.min_notional) == (1e-5, 10.0)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), True, "1"])
def test_bad_minimums_are_one_clear_error(bad):
    with pytest.raises(InvalidInputError, match="qty_step must be a number"):
        EngineConfig(qty_step=bad)
    with pytest.raises(InvalidInputError, match="min_notional must be a number"):
        EngineConfig(min_notional=bad)
