"""Property tests of the engine on random bars, random signals and random settings."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgeflow.engine import EngineConfig, backtest


def random_bars(seed: int, n: int, vol: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    open_ = np.r_[close[:1], close[:-1]] * np.exp(rng.normal(0, vol / 2, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, vol, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, vol, n)))
    ts = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC", unit="us")
    return pd.DataFrame({"ts": ts, "open": open_, "high": high, "low": low, "close": close})


configs = st.builds(
    EngineConfig,
    initial_equity=st.sampled_from([1_000.0, 100_000.0]),
    risk_per_trade=st.floats(0.001, 1.0),
    stop_pct=st.floats(0.001, 0.2),
    take_profit_pct=st.floats(0.001, 0.5),
    max_leverage=st.floats(0.1, 5.0),
    fee_bps=st.floats(0.0, 50.0),
    slippage_bps=st.floats(0.0, 50.0),
    qty_step=st.sampled_from([0.0, 1.0, 1e-5, 1000.0]),
    min_notional=st.sampled_from([0.0, 10.0, 5_000.0]),
    use_trailing_atr=st.booleans(),
    atr_period=st.integers(1, 20),
    atr_mult=st.floats(0.5, 5.0),
)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    vol=st.sampled_from([0.001, 0.01, 0.05]),
    p_flip=st.floats(0.02, 0.9),
    cfg=configs,
)
def test_engine_invariants(seed, n, vol, p_flip, cfg):
    bars = random_bars(seed, n, vol)
    rng = np.random.default_rng(seed + 1)
    signal = (np.cumsum(rng.random(n) < p_flip) % 2).astype(np.int8)
    res = backtest(bars, signal, cfg)
    trades, eq = res.trades, res.equity
    idx = pd.Index(bars.ts)
    ei = idx.get_indexer(trades.entry_ts)
    xi = idx.get_indexer(trades.exit_ts)

    # accounting identity: final equity = initial + sum of trade pnl
    assert abs(res.final_equity - (cfg.initial_equity + trades.pnl.sum())) <= 1e-9 * max(
        cfg.initial_equity, float(np.abs(trades.pnl).sum())
    )
    # exits never before entries; trades never overlap; entries never on bar 0
    assert (xi >= ei).all()
    assert (ei[1:] > xi[:-1]).all()
    assert (ei >= 1).all()
    # every entry follows a 0 -> 1 change of the signal at the previous close
    prev = np.r_[0, signal[:-1]]
    assert (signal[ei - 1] == 1).all() and (prev[ei - 1] == 0).all()
    # notional at entry never above equity x max_leverage (equity = cash when flat)
    equity_before = cfg.initial_equity + np.r_[0.0, np.cumsum(trades.pnl.to_numpy())[:-1]]
    notional = trades.qty.to_numpy() * trades.entry_price.to_numpy()
    assert (notional <= equity_before * cfg.max_leverage * (1 + 1e-9)).all()
    assert (trades.qty > 0).all()
    if cfg.qty_step > 0:  # whole multiples of the step (to the float nearest k x step)
        k = np.round(trades.qty.to_numpy() / cfg.qty_step)
        np.testing.assert_allclose(trades.qty, k * cfg.qty_step, rtol=1e-12, atol=0)
    # no entry below the minimum notional; every skipped entry counted once
    assert (notional >= cfg.min_notional).all()
    assert len(res.skipped) == len(set(res.skipped["ts"]))
    # per-trade arithmetic
    np.testing.assert_allclose(
        trades.pnl,
        trades.qty * (trades.exit_price - trades.entry_price) - trades.fees,
        rtol=1e-9,
        atol=1e-9,
    )
    np.testing.assert_allclose(
        trades.return_pct, trades.pnl / (trades.qty * trades.entry_price), rtol=1e-12
    )
    # exit prices stay within the bar's range (after slippage)
    slip = cfg.slippage_bps / 1e4
    lo = bars.low.to_numpy()[xi] * (1 - slip)
    hi = bars.high.to_numpy()[xi] * (1 - slip)
    assert ((trades.exit_price >= lo * (1 - 1e-12)) & (trades.exit_price <= hi * (1 + 1e-12))).all()
    # reasons; `end` only on the last bar; equity frame shape and drawdown
    assert set(trades.exit_reason) <= {"signal", "stop", "take_profit", "end"}
    assert (xi[trades.exit_reason.to_numpy() == "end"] == n - 1).all()
    assert len(eq) == n and (eq.drawdown <= 0).all()
    # position is held exactly over the trades' bars
    held = np.zeros(n, dtype=bool)
    for a, b, r in zip(ei, xi, trades.exit_reason, strict=True):
        held[a : b + (1 if r == "end" else 0)] = True
    np.testing.assert_array_equal(eq.position.to_numpy() != 0, held)


def test_trade_buffers_are_bounded_by_the_signals_changes_and_hold_every_trade() -> None:
    """The loop sizes its trade and skipped buffers by the signal's changes (each
    trade and each skipped entry begins with an entry a change queued). Signals that
    change on every bar fill them as far as the rules can: a reversal at every open
    with shorts, an entry or exit at every open without; every trade is kept."""
    import hedgeflow.engine as engine

    n = 2_000
    bars = random_bars(11, n, 0.001)
    flip = np.where(np.arange(n) % 2 == 0, 1, -1).astype(np.int8)
    on_off = np.where(np.arange(n) % 2 == 0, 1, 0).astype(np.int8)
    assert engine._signal_changes(flip) == n and engine._signal_changes(on_off) == n
    assert engine._signal_changes(np.zeros(5, dtype=np.int8)) == 0
    wide = {"stop_pct": 0.5, "take_profit_pct": 5.0, "risk_per_trade": 0.1}
    reversals = backtest(bars, flip, EngineConfig(allow_short=True, **wide))
    # the orders queued at closes 0..n-2 fill: n - 1 entries, each closed by the next
    # reversal or the end close
    assert len(reversals.trades) == n - 1
    assert (reversals.trades["side"].iloc[::2] == "long").all()
    assert (reversals.trades["side"].iloc[1::2] == "short").all()
    entries_exits = backtest(bars, on_off, EngineConfig(**wide))
    assert len(entries_exits.trades) == n // 2
    # every entry skipped: as many skipped rows as entries queued
    tiny = backtest(bars, flip, EngineConfig(allow_short=True, min_notional=1e9, **wide))
    assert len(tiny.trades) == 0 and len(tiny.skipped) == n - 1
