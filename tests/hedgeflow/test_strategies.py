"""Strategies: parameters, signal rules against plain references, streaming == batch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgeflow.errors import InvalidInputError
from hedgeflow.strategies import donchian_breakout as dcb
from hedgeflow.strategies import get_strategy, params_from_strings, parse_params, strategy_names
from hedgeflow.strategies import rsi_mean_revert as rmr
from hedgeflow.strategies import sma_cross as smc


def walk(seed: int, n: int, vol: float = 0.01):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    open_ = np.r_[close[:1], close[:-1]]
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, vol / 2, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, vol / 2, n)))
    return open_, high, low, close


def test_registry_and_defaults():
    assert strategy_names() == ("donchian_breakout", "rsi_mean_revert", "sma_cross")
    assert dataclasses.asdict(smc.Params()) == {"fast": 20, "slow": 50, "confirm_above_fast": True}
    assert dataclasses.asdict(rmr.Params()) == {"period": 14, "entry_rsi": 30.0, "exit_rsi": 50.0}
    assert dataclasses.asdict(dcb.Params()) == {"window": 20, "exit_rule": "midline"}
    expected_columns = {
        "sma_cross": ("sma_fast", "sma_slow"),
        "rsi_mean_revert": ("rsi",),
        "donchian_breakout": ("dc_upper", "dc_lower", "dc_mid"),
    }
    o, h, lo, c = walk(0, 300)
    for name, columns in expected_columns.items():
        spec = get_strategy(name)
        assert spec.indicator_columns == columns
        sig, ind = spec.signals(o, h, lo, c, spec.params_type())
        assert sig.dtype == np.int8 and sig.shape == c.shape
        assert tuple(ind) == columns
        assert all(v.dtype == np.float64 and v.shape == c.shape for v in ind.values())
        assert spec.streaming is not None
        params = spec.params_type()
        assert (sig[: spec.warmup(params)] == 0).all()
        w = spec.warmup(params)
        assert all(not np.isnan(v[w]) for v in ind.values())  # all defined from bar w
        assert any(np.isnan(v[w - 1]) for v in ind.values())  # but not before


@pytest.mark.parametrize(
    ("strategy", "raw", "fragment"),
    [
        ("sma_cross", {"fast": 50, "slow": 20}, "fast must be < slow"),
        ("sma_cross", {"fast": 0}, "fast"),
        ("sma_cross", {"slow": -3}, "slow"),
        ("rsi_mean_revert", {"period": 0}, "period"),
        ("rsi_mean_revert", {"entry_rsi": 60.0}, "entry_rsi must be < exit_rsi"),
        ("rsi_mean_revert", {"entry_rsi": 0.0}, "entry_rsi"),
        ("rsi_mean_revert", {"exit_rsi": 101.0, "entry_rsi": 30.0}, "exit_rsi"),
        ("donchian_breakout", {"window": 0}, "window"),
        ("donchian_breakout", {"exit_rule": "upper"}, "exit_rule"),
        ("sma_cross", {"speed": 3}, "speed"),
    ],
)
def test_bad_params_name_the_parameter(strategy, raw, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        parse_params(strategy, raw)


def test_direct_construction_validates_too():
    with pytest.raises(InvalidInputError, match="fast"):
        smc.Params(fast=True)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="window"):
        dcb.Params(window=2.5)  # type: ignore[arg-type]
    assert params_from_strings("donchian_breakout", ["window=10", "exit_rule=lower"]) == dcb.Params(
        10, "lower"
    )


# --------------------------------------------------------- references (article, fixed)


def hysteresis(enter: pd.Series, leave: pd.Series) -> np.ndarray:
    out = np.zeros(len(enter), dtype=np.int8)
    long = False
    for i in range(len(enter)):
        if not long and enter.iat[i]:
            long = True
        elif long and leave.iat[i]:
            long = False
        out[i] = long
    return out


def ref_sma_cross(c, p: smc.Params):
    s = pd.Series(c)
    fast = s.rolling(p.fast).mean()
    slow = s.rolling(p.slow).mean()
    sig = fast > slow
    if p.confirm_above_fast:
        sig &= s > fast
    return sig.to_numpy().astype(np.int8)


def ref_rsi_mean_revert(c, p: rmr.Params):
    delta = pd.Series(c).diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / p.period, adjust=False).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / p.period, adjust=False).mean()
    r = 100 - 100 / (1 + gain / loss)
    r[loss == 0] = np.where(gain[loss == 0] > 0, 100.0, 50.0)
    r.iloc[: p.period] = np.nan
    return hysteresis(r < p.entry_rsi, r >= p.exit_rsi)


def ref_donchian(h, lo, c, p: dcb.Params):
    upper = pd.Series(h).rolling(p.window).max().shift(1)
    lower = pd.Series(lo).rolling(p.window).min().shift(1)
    mid = (upper + lower) / 2
    close = pd.Series(c)
    leave = close < (mid if p.exit_rule == "midline" else lower)
    return hysteresis(close > upper, leave)


@pytest.mark.parametrize("seed", range(5))
def test_signals_match_references(seed):
    o, h, lo, c = walk(seed, 3000, vol=0.003)
    for p in (smc.Params(), smc.Params(5, 13, False), smc.Params(1, 2)):
        np.testing.assert_array_equal(smc.STRATEGY.signals(o, h, lo, c, p)[0], ref_sma_cross(c, p))
    for p in (rmr.Params(), rmr.Params(3, 20.0, 80.0), rmr.Params(1, 50.0, 100.0)):
        sig = rmr.STRATEGY.signals(o, h, lo, c, p)[0]
        np.testing.assert_array_equal(sig, ref_rsi_mean_revert(c, p))
    for p in (dcb.Params(), dcb.Params(5, "lower"), dcb.Params(1)):
        sig = dcb.STRATEGY.signals(o, h, lo, c, p)[0]
        np.testing.assert_array_equal(sig, ref_donchian(h, lo, c, p))


def test_default_strategies_all_trade_on_a_random_walk():
    o, h, lo, c = walk(11, 2000, vol=0.003)
    for name in strategy_names():
        spec = get_strategy(name)
        sig, _ = spec.signals(o, h, lo, c, spec.params_type())
        assert (np.diff(sig.astype(int)) == 1).sum() > 3, name


def test_donchian_hand_case():
    # window 2: upper[i] = max(high[i-2], high[i-1])
    high = np.array([10.0, 11.0, 10.5, 12.0, 11.0, 10.0, 9.0])
    low = high - 1.0
    close = np.array([9.5, 10.5, 10.0, 11.5, 10.5, 9.6, 8.5])
    sig, ind = dcb.STRATEGY.signals(close, high, low, close, dcb.Params(2, "midline"))
    # bar 3: upper = 11, close 11.5 > 11 -> long; bar 4: mid = (12 + 9.5)/2 = 10.75, 10.5 < mid
    np.testing.assert_array_equal(sig, [0, 0, 0, 1, 0, 0, 0])
    assert ind["dc_upper"][3] == 11.0 and ind["dc_mid"][4] == 10.75
    sig, _ = dcb.STRATEGY.signals(close, high, low, close, dcb.Params(2, "lower"))
    # lower exit: bar 4 lower = min(9.5, 11) = 9.5 -> hold; bar 5 lower = min(11, 10) = 10 > 9.6
    np.testing.assert_array_equal(sig, [0, 0, 0, 1, 1, 0, 0])


def _stream(spec, params, o, h, lo, c):
    s = spec.streaming(params)
    sigs, inds = [], {k: [] for k in spec.indicator_columns}
    for i in range(len(c)):
        sig, ind = s.update(o[i], h[i], lo[i], c[i])
        assert isinstance(sig, int)
        sigs.append(sig)
        for k in spec.indicator_columns:
            inds[k].append(ind[k])
    return np.array(sigs, dtype=np.int8), {k: np.array(v, dtype=float) for k, v in inds.items()}


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_bars=st.integers(0, 300),
    fast=st.integers(1, 15),
    extra=st.integers(1, 30),
    confirm=st.booleans(),
    period=st.integers(1, 20),
    entry=st.floats(5, 49),
    gap=st.floats(0.5, 50),
    window=st.integers(1, 30),
    rule=st.sampled_from(["midline", "lower"]),
)
def test_streaming_equals_batch_every_bar(
    seed, n_bars, fast, extra, confirm, period, entry, gap, window, rule
):
    o, h, lo, c = walk(seed, n_bars, vol=0.004)
    cases = [
        ("sma_cross", smc.Params(fast, fast + extra, confirm)),
        ("rsi_mean_revert", rmr.Params(period, entry, min(entry + gap, 100.0))),
        ("donchian_breakout", dcb.Params(window, rule)),
    ]
    for name, params in cases:
        spec = get_strategy(name)
        batch_sig, batch_ind = spec.signals(o, h, lo, c, params)
        stream_sig, stream_ind = _stream(spec, params, o, h, lo, c)
        np.testing.assert_array_equal(batch_sig, stream_sig)
        for k in spec.indicator_columns:
            np.testing.assert_array_equal(batch_ind[k], stream_ind[k])
