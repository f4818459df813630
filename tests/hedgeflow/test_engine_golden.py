"""Golden test: fixed deterministic data per agent, whole trade list and metrics pinned.

The data are seeded random walks (stock-like trend regimes in US session hours,
mean-reverting forex 24x5, fat-tailed crypto 24x7), each agent with its default
strategy, risk settings and asset-class costs. The pinned numbers were computed
once by the engine and are cross-checked here against an independent, plain
Python implementation of DESIGN.md's "Order of events" and by invariants. The
forex and crypto quantities were re-pinned when the order minimums arrived (forex
in steps of 1,000 units, crypto of 1e-5): the same trades at the same bars, each
quantity floored to its step.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pytest

from hedgeflow.config import DEFAULT_COSTS, RiskSettings
from hedgeflow.engine import EngineConfig, backtest
from hedgeflow.metrics import compute_metrics
from hedgeflow.strategies import get_strategy

N_BARS = 2000
AGENTS = {
    "stocks": ("stock", "sma_cross"),
    "forex": ("forex", "rsi_mean_revert"),
    "crypto": ("crypto", "donchian_breakout"),
}
TOL = 1e-8


def _timestamps(asset_class: str, n: int) -> pd.DatetimeIndex:
    if asset_class == "crypto":
        return pd.date_range("2024-03-01", periods=n, freq="5min", tz="UTC", unit="us")
    if asset_class == "forex":
        grid = pd.date_range("2024-03-04", periods=n * 2, freq="5min", tz="UTC", unit="us")
        return grid[grid.day_of_week < 5][:n]
    days = pd.bdate_range("2024-03-04", periods=n // 78 + 2, tz="UTC")
    stamps = [
        d + pd.Timedelta(hours=14, minutes=30) + pd.Timedelta(minutes=5 * k)
        for d in days
        for k in range(78)
    ]
    return pd.DatetimeIndex(stamps[:n]).as_unit("us")


def make_bars(asset_class: str, seed: int = 20240301, n: int = N_BARS) -> pd.DataFrame:
    rng = np.random.default_rng([seed, ("stock", "forex", "crypto").index(asset_class)])
    if asset_class == "stock":
        drift = np.repeat(rng.choice([-4e-4, 0.0, 4e-4], size=n // 250 + 1), 250)[:n]
        ret = drift + rng.normal(0.0, 0.0015, n)
        close = 180.0 * np.exp(np.cumsum(ret))
    elif asset_class == "forex":
        x = np.empty(n)
        level = np.log(1.10)
        x[0] = level
        shocks = rng.normal(0.0, 0.0004, n)
        for i in range(1, n):
            x[i] = x[i - 1] + 0.02 * (level - x[i - 1]) + shocks[i]
        close = np.exp(x)
    else:
        ret = rng.standard_t(3, n) * 0.002 + 5e-5
        close = 60_000.0 * np.exp(np.cumsum(ret))
    scale = {"stock": 0.0008, "forex": 0.0002, "crypto": 0.0015}[asset_class]
    open_ = np.empty(n)
    open_[0] = close[0]
    open_[1:] = close[:-1] * np.exp(rng.normal(0.0, scale / 4, n - 1))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, scale, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, scale, n)))
    volume = rng.integers(1, 1000, n).astype(float)
    return pd.DataFrame(
        {
            "ts": _timestamps(asset_class, n),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
        }
    )


def run_agent(agent: str):
    asset_class, strategy = AGENTS[agent]
    bars = make_bars(asset_class)
    spec = get_strategy(strategy)
    sig, _ = spec.signals(bars.open, bars.high, bars.low, bars.close, spec.params_type())
    cfg = EngineConfig.from_settings(
        RiskSettings(), DEFAULT_COSTS[asset_class], asset_class, 100_000.0
    )
    res = backtest(bars, sig, cfg)
    metrics = compute_metrics(
        res.equity.equity.to_numpy(),
        res.equity.ts,
        res.trades,
        asset_class,
        res.equity.position.to_numpy(),
    )
    return bars, sig, cfg, res, metrics


def trade_fingerprint(trades: pd.DataFrame, ts: pd.Series) -> str:
    """Hash of the (entry bar, exit bar, reason) sequence of the whole trade list."""
    t = ts.to_numpy()
    ei = np.searchsorted(t, trades.entry_ts.to_numpy())
    xi = np.searchsorted(t, trades.exit_ts.to_numpy())
    text = ";".join(f"{a},{b},{r}" for a, b, r in zip(ei, xi, trades.exit_reason, strict=True))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def reference_engine(bars: pd.DataFrame, signal: np.ndarray, cfg: EngineConfig):
    """Straight transcription of DESIGN.md "Order of events in bar i" (no trailing ATR)."""
    fee, slip = cfg.fee_bps / 1e4, cfg.slippage_bps / 1e4
    cash, qty, pending, prev = cfg.initial_equity, 0.0, None, 0
    trades, equity = [], []
    entry = {}
    o_, h_, l_, c_ = (bars[k].tolist() for k in ("open", "high", "low", "close"))
    n = len(bars)

    def close_position(i, px, reason):
        nonlocal cash, qty
        exit_fee = fee * qty * px
        cash += qty * px - exit_fee
        pnl = qty * (px - entry["px"]) - entry["fee"] - exit_fee
        trades.append((entry["i"], i, qty, entry["px"], px, reason, entry["fee"] + exit_fee, pnl))
        qty = 0.0

    for i in range(n):
        o, h, lo, c = o_[i], h_[i], l_[i], c_[i]
        if pending == "buy":
            fill = o * (1 + slip)
            size = min(
                cash * cfg.risk_per_trade / (fill * cfg.stop_pct),
                cash * cfg.max_leverage / fill,
            )
            if cfg.qty_step > 0:  # whole multiples of the venue's step
                size = math.floor(size / cfg.qty_step + 1e-9) * cfg.qty_step
            if size > 0 and size * fill >= cfg.min_notional:
                entry_fee = fee * size * fill
                cash -= size * fill + entry_fee
                qty = size
                entry = {"i": i, "px": fill, "fee": entry_fee}
                stop, tp = fill * (1 - cfg.stop_pct), fill * (1 + cfg.take_profit_pct)
        elif pending == "sell" and qty > 0:
            close_position(i, o * (1 - slip), "signal")
        pending = None
        if qty > 0:
            if o <= stop:
                close_position(i, o * (1 - slip), "stop")
            elif o >= tp:
                close_position(i, o * (1 - slip), "take_profit")
            elif lo <= stop:
                close_position(i, stop * (1 - slip), "stop")
            elif h >= tp:
                close_position(i, tp * (1 - slip), "take_profit")
        s = int(signal[i])
        if prev == 0 and s == 1 and qty == 0:
            pending = "buy"
        elif prev == 1 and s == 0 and qty > 0:
            pending = "sell"
        prev = s
        if i == n - 1 and qty > 0:
            close_position(i, c * (1 - slip), "end")
        equity.append(cash + qty * c)
    return trades, np.array(equity)


GOLDEN = {
    "stocks": {
        "n_trades": 57,
        "fingerprint": "94256fac7d134927",
        "reasons": {"end": 1, "signal": 49, "take_profit": 7},
        "first": {
            "trade_id": 1,
            "side": "long",
            "qty": 596.0,
            "entry_ts": "2024-03-06 20:05:00+00:00",
            "entry_price": 167.7691732404773,
            "exit_ts": "2024-03-06 20:30:00+00:00",
            "exit_price": 166.98978711804955,
            "exit_reason": "signal",
            "fees": 9.9758170186841,
            "pnl": -474.48994598562433,
            "return_pct": -0.004745353720641685,
        },
        "last": {
            "trade_id": 57,
            "side": "long",
            "qty": 577.0,
            "entry_ts": "2024-04-08 15:25:00+00:00",
            "entry_price": 194.34180011703097,
            "exit_ts": "2024-04-08 18:35:00+00:00",
            "exit_price": 197.28791030014997,
            "exit_reason": "end",
            "fees": 11.298517145535671,
            "pnl": 1688.6070585141292,
            "return_pct": 0.015058668263007821,
        },
        "sum_pnl": 13941.041804315677,
        "sum_qty": 36162.0,
        "sum_fees": 601.4390416303977,
        "final_equity": 113941.04180431558,
        "metrics": {
            "total_return": 0.1394104180431559,
            "cagr": 2.6085400875865483,
            "ann_vol": 0.11314996036622174,
            "sharpe": 11.398493891317049,
            "sortino": 19.552572861677813,
            "max_drawdown": -0.034443638312908975,
            "calmar": 75.73358144946336,
            "n_trades": 57,
            "win_rate": 0.3333333333333333,
            "profit_factor": 3.0162400484386644,
            "exposure": 0.279,
        },
    },
    "forex": {
        "n_trades": 12,
        "fingerprint": "bfe5f02ca7da1a05",
        "reasons": {"signal": 12},
        "first": {
            "trade_id": 1,
            "side": "long",
            "qty": 91000.0,
            "entry_ts": "2024-03-04 09:55:00+00:00",
            "entry_price": 1.0972332809716792,
            "exit_ts": "2024-03-04 12:45:00+00:00",
            "exit_price": 1.0962916361273451,
            "exit_reason": "signal",
            "fees": 3.992215349120224,
            "pnl": -89.6818961835152,
            "return_pct": -0.0008981821457359063,
        },
        "last": {
            "trade_id": 12,
            "side": "long",
            "qty": 91000.0,
            "entry_ts": "2024-03-12 18:40:00+00:00",
            "entry_price": 1.0992654011422387,
            "exit_ts": "2024-03-12 20:10:00+00:00",
            "exit_price": 1.09998721881699,
            "exit_reason": "signal",
            "fees": 4.002639768325796,
            "pnl": 61.682768634034566,
            "return_pct": 0.0006166232664538493,
        },
        "sum_pnl": 836.0394901943401,
        "sum_qty": 1088000.0,
        "sum_fees": 47.87125104539611,
        "final_equity": 100836.03949019438,
        "metrics": {
            "total_return": 0.008360394901943735,
            "cagr": 0.3659742489612674,
            "ann_vol": 0.02930023971192318,
            "sharpe": 10.658532964706026,
            "sortino": 16.58174669880907,
            "max_drawdown": -0.0022240881274582236,
            "calmar": 164.55024620787725,
            "n_trades": 12,
            "win_rate": 0.9166666666666666,
            "profit_factor": 10.322277134769324,
            "exposure": 0.0895,
        },
    },
    "crypto": {
        "n_trades": 36,
        "fingerprint": "2f4e0703485ea10b",
        "reasons": {"signal": 20, "stop": 8, "take_profit": 8},
        "first": {
            "trade_id": 1,
            "side": "long",
            "qty": 1.65105,
            "entry_ts": "2024-03-01 01:45:00+00:00",
            "entry_price": 60567.19525972538,
            "exit_ts": "2024-03-01 03:20:00+00:00",
            "exit_price": 59949.5310024667,
            "exit_reason": "stop",
            "fees": 99.48957044759612,
            "pnl": -1119.2841423945376,
            "return_pct": -0.01119290099999999,
        },
        "last": {
            "trade_id": 36,
            "side": "long",
            "qty": 1.36325,
            "entry_ts": "2024-03-07 21:00:00+00:00",
            "entry_price": 73879.62338341509,
            "exit_ts": "2024-03-07 22:30:00+00:00",
            "exit_price": 73509.81335766357,
            "exit_reason": "signal",
            "fees": 100.46432481863775,
            "pnl": -604.6078424243947,
            "return_pct": -0.006003072617471108,
        },
        "sum_pnl": 112.14261823679931,
        "sum_qty": 53.370720000000006,
        "sum_fees": 3563.0980761860146,
        "final_equity": 100112.14261823682,
        "metrics": {
            "total_return": 0.0011214261823682126,
            "cagr": 0.06071011590716391,
            "ann_vol": 0.5128692753886118,
            "sharpe": 0.3714125480172071,
            "sortino": 0.5088458094756438,
            "max_drawdown": -0.05281466241134791,
            "calmar": 1.149493590138324,
            "n_trades": 36,
            "win_rate": 0.2777777777777778,
            "profit_factor": 1.007468352363566,
            "exposure": 0.277,
        },
    },
}


@pytest.fixture(scope="module", params=list(AGENTS))
def agent_run(request):
    return request.param, *run_agent(request.param)


def _check_trade(actual: pd.Series, expected: dict) -> None:
    for key, value in expected.items():
        got = actual[key]
        if key.endswith("_ts"):
            assert got == pd.Timestamp(value), key
        elif isinstance(value, float):
            assert got == pytest.approx(value, rel=TOL, abs=TOL), key
        else:
            assert got == value, key


def test_golden_trades(agent_run):
    agent, bars, _sig, _cfg, res, _m = agent_run
    gold = GOLDEN[agent]
    trades = res.trades
    assert len(trades) == gold["n_trades"]
    assert trade_fingerprint(trades, bars.ts) == gold["fingerprint"]
    assert trades.exit_reason.value_counts().sort_index().to_dict() == gold["reasons"]
    _check_trade(trades.iloc[0], gold["first"])
    _check_trade(trades.iloc[-1], gold["last"])
    assert trades.pnl.sum() == pytest.approx(gold["sum_pnl"], rel=TOL, abs=TOL)
    assert trades.qty.sum() == pytest.approx(gold["sum_qty"], rel=TOL, abs=TOL)
    assert trades.fees.sum() == pytest.approx(gold["sum_fees"], rel=TOL, abs=TOL)
    assert res.final_equity == pytest.approx(gold["final_equity"], rel=TOL, abs=TOL)


def test_golden_metrics(agent_run):
    agent, *_, metrics = agent_run
    expected = GOLDEN[agent]["metrics"]
    assert list(metrics) == list(expected)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=TOL, abs=TOL), key


def test_golden_matches_reference_implementation(agent_run):
    _agent, bars, sig, cfg, res, _m = agent_run
    ref_trades, ref_equity = reference_engine(bars, sig, cfg)
    trades = res.trades
    assert len(trades) == len(ref_trades)
    t = bars.ts.to_numpy()
    ei = np.searchsorted(t, trades.entry_ts.to_numpy())
    xi = np.searchsorted(t, trades.exit_ts.to_numpy())
    for k, (e_i, x_i, qty, epx, xpx, reason, fees, pnl) in enumerate(ref_trades):
        assert (ei[k], xi[k], trades.exit_reason.iat[k]) == (e_i, x_i, reason)
        np.testing.assert_allclose(
            [trades.qty.iat[k], trades.entry_price.iat[k], trades.exit_price.iat[k]],
            [qty, epx, xpx],
            rtol=1e-12,
        )
        assert trades.fees.iat[k] == pytest.approx(fees, rel=1e-10)
        assert trades.pnl.iat[k] == pytest.approx(pnl, rel=1e-9, abs=1e-7)
    np.testing.assert_allclose(res.equity.equity.to_numpy(), ref_equity, rtol=1e-12)


def test_golden_invariants(agent_run):
    agent, bars, _sig, cfg, res, metrics = agent_run
    trades = res.trades
    eq = res.equity
    # accounting identity
    assert res.final_equity == pytest.approx(cfg.initial_equity + trades.pnl.sum(), rel=1e-12)
    # trades are ordered, non-overlapping, never exit before entry
    assert (trades.exit_ts >= trades.entry_ts).all()
    assert (trades.entry_ts.iloc[1:].to_numpy() > trades.exit_ts.iloc[:-1].to_numpy()).all()
    # entries fill at a bar's open plus slippage
    slip = cfg.slippage_bps / 1e4
    opens = bars.set_index("ts").open
    np.testing.assert_allclose(
        trades.entry_price.to_numpy(), opens.loc[trades.entry_ts].to_numpy() * (1 + slip)
    )
    # leverage cap and stock whole units
    equity_before = cfg.initial_equity + np.r_[0.0, np.cumsum(trades.pnl.to_numpy())[:-1]]
    notional = trades.qty.to_numpy() * trades.entry_price.to_numpy()
    assert (notional <= equity_before * cfg.max_leverage * (1 + 1e-12)).all()
    if agent == "stocks":
        assert (trades.qty == np.floor(trades.qty)).all()
    # every quantity a whole multiple of the asset class's step (forex 1,000 units,
    # crypto 1e-5: the float nearest k x step), every notional above its minimum
    steps = np.round(trades.qty.to_numpy() / cfg.qty_step)
    assert (trades.qty.to_numpy() == steps / round(1 / cfg.qty_step) if cfg.qty_step < 1
            else trades.qty.to_numpy() == steps * cfg.qty_step).all()  # fmt: skip
    assert (notional >= cfg.min_notional).all() and res.skipped.empty
    # fees are fee_bps of both legs' notional
    fee_rate = cfg.fee_bps / 1e4
    np.testing.assert_allclose(
        trades.fees.to_numpy(),
        fee_rate * trades.qty.to_numpy() * (trades.entry_price + trades.exit_price).to_numpy(),
    )
    # metrics consistent with the frames
    assert metrics["n_trades"] == len(trades)
    assert metrics["total_return"] == pytest.approx(res.final_equity / 1e5 - 1, rel=1e-12)
    assert metrics["max_drawdown"] == pytest.approx(eq.drawdown.min(), rel=1e-12)
    assert metrics["exposure"] == pytest.approx((eq.position != 0).mean())
    assert metrics["win_rate"] == pytest.approx((trades.pnl > 0).mean())
    assert str(eq.ts.dtype) == "datetime64[us, UTC]"
    assert len(trades) > 0  # every agent trades, the crypto one included
