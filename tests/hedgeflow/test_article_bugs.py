"""One test per bug of the seed article (DESIGN.md, "What the article gets wrong")
that concerns the research core. Each would fail on the article's code."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hedgeflow import indicators
from hedgeflow.config import DEFAULT_COSTS, RiskSettings
from hedgeflow.engine import EngineConfig, backtest
from hedgeflow.metrics import compute_metrics
from hedgeflow.strategies import get_strategy


def crypto_bars(n: int = 2000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 60_000 * np.exp(np.cumsum(rng.standard_t(3, n) * 0.002))
    open_ = np.r_[close[:1], close[:-1]]
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.001, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.001, n)))
    ts = pd.date_range("2024-01-01", periods=n, freq="5min", tz="UTC", unit="us")
    return pd.DataFrame({"ts": ts, "open": open_, "high": high, "low": low, "close": close})


def test_rsi_is_defined_and_used_by_the_forex_strategy():
    # the article calls rsi_wilder, which it never defines (NameError)
    bars = crypto_bars()
    r = indicators.rsi(bars.close.to_numpy(), 14)
    assert np.isfinite(r[14:]).all() and ((r[14:] >= 0) & (r[14:] <= 100)).all()
    spec = get_strategy("rsi_mean_revert")
    sig, ind = spec.signals(bars.open, bars.high, bars.low, bars.close, spec.params_type())
    np.testing.assert_array_equal(ind["rsi"], r)
    assert sig.sum() > 0


def test_donchian_uses_previous_bars_so_the_crypto_agent_trades():
    bars = crypto_bars()
    upper, _, _ = indicators.donchian(bars.high, bars.low, 20)
    assert (bars.close.to_numpy()[20:] > upper[20:]).any()
    spec = get_strategy("donchian_breakout")
    sig, _ = spec.signals(bars.open, bars.high, bars.low, bars.close, spec.params_type())
    cfg = EngineConfig.from_settings(RiskSettings(), DEFAULT_COSTS["crypto"], "crypto", 1e5)
    assert len(backtest(bars, sig, cfg).trades) > 0
    # the article's channel includes the current bar: close > upper never happens
    article_upper = bars.high.rolling(20, min_periods=20).max()
    assert not (bars.close > article_upper).any()


def test_sharpe_is_mean_over_std_times_sqrt_n():
    rng = np.random.default_rng(0)
    r = rng.normal(1e-4, 1e-3, 999)
    equity = 1e5 * np.r_[1.0, np.cumprod(1 + r)]
    ts = pd.date_range("2024-01-01", periods=1000, freq="5min", tz="UTC", unit="us")
    n = 365 * 288
    got = compute_metrics(equity, ts, None, "crypto")["sharpe"]
    assert got == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(n), rel=1e-9)
    article = r.mean() * n / r.std(ddof=0)
    assert got != pytest.approx(article, rel=0.01)


def test_annualisation_is_per_asset_class():
    # the article annualises everything with the 6.5-hour stock session (252 x 78 for 5m)
    rng = np.random.default_rng(1)
    equity = 1e5 * np.r_[1.0, np.cumprod(1 + rng.normal(1e-4, 1e-3, 999))]
    ts = pd.date_range("2024-01-01", periods=1000, freq="5min", tz="UTC", unit="us")
    vol = {
        ac: compute_metrics(equity, ts, None, ac)["ann_vol"] for ac in ("stock", "forex", "crypto")
    }
    r = equity[1:] / equity[:-1] - 1
    assert vol["stock"] == pytest.approx(r.std(ddof=1) * math.sqrt(252 * 78))
    assert vol["forex"] == pytest.approx(r.std(ddof=1) * math.sqrt(260 * 288))
    assert vol["crypto"] == pytest.approx(r.std(ddof=1) * math.sqrt(365 * 288))


def _article_backtest(bars: pd.DataFrame, signal: np.ndarray, initial: float) -> float:
    pos = pd.Series(signal).shift(1).fillna(0).astype(float)
    ret = bars.close.pct_change().fillna(0.0)
    return float(((1 + pos * ret).cumprod() * initial).iloc[-1])


def test_backtest_applies_next_open_fills_stops_sizing_and_costs():
    flat = (100.0, 100.5, 99.5, 100.0)
    rows = [flat, flat, (101.0, 101.2, 98.0, 98.5), (98.5, 99.0, 98.0, 98.5), flat]
    o, h, lo, c = (np.array(x) for x in zip(*rows, strict=True))
    ts = pd.date_range("2024-01-02", periods=5, freq="5min", tz="UTC", unit="us")
    bars = pd.DataFrame({"ts": ts, "open": o, "high": h, "low": lo, "close": c})
    signal = np.array([0, 1, 1, 1, 1], dtype=np.int8)
    cfg = EngineConfig(
        initial_equity=100_000.0, risk_per_trade=0.005, stop_pct=0.01, take_profit_pct=0.02,
        fee_bps=10.0, slippage_bps=10.0, qty_step=1.0,
    )  # fmt: skip
    res = backtest(bars, signal, cfg)
    t = res.trades.iloc[0]
    # enters at the NEXT bar's open (101) plus slippage, not at the signal bar's close (100)
    assert t.entry_ts == ts[2] and t.entry_price == pytest.approx(101.0 * 1.001)
    # risk sizing: 100_000 x 0.005 / (101.101 x 0.01) = 494.55 -> 494 shares
    assert t.qty == 494.0
    # the stop (1 % below the fill) is hit inside the fill bar; the article rides to 98.5
    assert t.exit_reason == "stop" and t.exit_ts == ts[2]
    assert t.exit_price == pytest.approx(101.101 * 0.99 * 0.999)
    assert t.fees == pytest.approx(0.001 * 494 * (101.101 + t.exit_price))
    assert res.final_equity == pytest.approx(100_000 + t.pnl)
    assert res.final_equity != pytest.approx(_article_backtest(bars, signal, 100_000.0))
