"""Indicators: batch == streaming on every bar, batch == plain pandas references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgeflow.errors import InvalidInputError
from hedgeflow.indicators import (
    AtrStream,
    DonchianStream,
    RsiStream,
    SmaStream,
    atr,
    donchian,
    rsi,
    sma,
)


def walk(seed: int, n: int, start: float = 100.0, vol: float = 0.01):
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0, vol, n)))
    open_ = np.r_[close[:1], close[:-1]]
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, vol / 2, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, vol / 2, n)))
    return open_, high, low, close


# ----------------------------------------------------------------- pandas references


def ref_sma(close, n):
    return pd.Series(close).rolling(n, min_periods=n).mean().to_numpy()


def ref_rsi(close, n):
    delta = pd.Series(close).diff()
    gain = delta.clip(lower=0.0).ewm(alpha=1 / n, adjust=False).mean()
    loss = (-delta.clip(upper=0.0)).ewm(alpha=1 / n, adjust=False).mean()
    out = 100 - 100 / (1 + gain / loss)
    out[(loss == 0) & (gain > 0)] = 100.0
    out[(loss == 0) & (gain == 0)] = 50.0
    out.iloc[:n] = np.nan
    return out.to_numpy()


def ref_donchian(high, low, n):
    upper = pd.Series(high).rolling(n, min_periods=n).max().shift(1)
    lower = pd.Series(low).rolling(n, min_periods=n).min().shift(1)
    return upper.to_numpy(), lower.to_numpy(), ((upper + lower) / 2).to_numpy()


def ref_atr(high, low, close, n):
    prev = pd.Series(close).shift(1)
    tr = pd.concat(
        [pd.Series(high - low), (pd.Series(high) - prev).abs(), (pd.Series(low) - prev).abs()],
        axis=1,
    ).max(axis=1, skipna=False)
    out = np.full(len(close), np.nan)
    if len(close) > n:
        out[n] = tr.iloc[1 : n + 1].mean()
        for i in range(n + 1, len(close)):
            out[i] = (out[i - 1] * (n - 1) + tr.iloc[i]) / n
    return out


@pytest.mark.parametrize("n", [1, 2, 5, 20, 50])
def test_batch_matches_pandas(n):
    _o, h, lo, c = walk(n, 1500)
    np.testing.assert_allclose(sma(c, n), ref_sma(c, n), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(rsi(c, n), ref_rsi(c, n), rtol=1e-10, equal_nan=True)
    for got, want in zip(donchian(h, lo, n), ref_donchian(h, lo, n), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(atr(h, lo, c, n), ref_atr(h, lo, c, n), rtol=1e-12, equal_nan=True)


def test_undefined_prefixes():
    _o, h, lo, c = walk(1, 60)
    assert np.isnan(sma(c, 20)[:19]).all() and not np.isnan(sma(c, 20)[19:]).any()
    assert np.isnan(rsi(c, 14)[:14]).all() and not np.isnan(rsi(c, 14)[14:]).any()
    upper, lower, mid = donchian(h, lo, 20)
    assert np.isnan(upper[:20]).all() and not np.isnan(upper[20:]).any()
    assert upper[20] == h[:20].max() and lower[20] == lo[:20].min()
    assert mid[20] == (h[:20].max() + lo[:20].min()) / 2
    assert np.isnan(atr(h, lo, c, 14)[:14]).all() and not np.isnan(atr(h, lo, c, 14)[14:]).any()


def test_rsi_edge_values():
    up = np.arange(1.0, 31.0)
    assert (rsi(up, 14)[14:] == 100.0).all()  # avg_loss 0 -> 100
    flat = np.full(30, 5.0)
    assert (rsi(flat, 14)[14:] == 50.0).all()  # both 0 -> 50
    down = up[::-1].copy()
    assert (rsi(down, 14)[14:] == 0.0).all()


def test_rsi_hand_case():
    # n = 2, alpha 1/2; changes +1, -1, +2 -> gains 1, 0, 2; losses 0, 1, 0
    # avg_gain: 1, 0.5, 1.25; avg_loss: 0, 0.5, 0.25 -> rsi[2] = 50, rsi[3] = 100 - 100/6
    r = rsi(np.array([10.0, 11.0, 10.0, 12.0]), 2)
    assert np.isnan(r[:2]).all()
    assert r[2] == pytest.approx(50.0)
    assert r[3] == pytest.approx(100 - 100 / 6)


def test_donchian_uses_previous_bars_so_breakouts_happen():
    _o, h, lo, c = walk(3, 2000)
    upper, _, _ = donchian(h, lo, 20)
    assert (c[20:] > upper[20:]).sum() > 10
    # including the current bar (the article's bug) makes it impossible
    upper_incl = pd.Series(h).rolling(20).max().to_numpy()
    assert not (c > upper_incl).any()


def test_bad_windows():
    with pytest.raises(InvalidInputError, match="window"):
        sma(np.ones(3), 0)
    with pytest.raises(InvalidInputError, match="window"):
        SmaStream(-1)
    with pytest.raises(InvalidInputError):
        rsi(np.ones(3), 2.5)  # type: ignore[arg-type]


def _stream_all(o, h, lo, c, n):
    s, r, d, a = SmaStream(n), RsiStream(n), DonchianStream(n), AtrStream(n)
    out = np.array(
        [
            (s.update(c[i]), r.update(c[i]), *d.update(h[i], lo[i]), a.update(h[i], lo[i], c[i]))
            for i in range(len(c))
        ]
    )
    return out.T if len(c) else np.empty((6, 0))


def _assert_same(batch, stream):
    # identical arithmetic: equal bit for bit (NaN where undefined)
    np.testing.assert_array_equal(batch, stream)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_bars=st.integers(0, 400),
    window=st.integers(1, 40),
    vol=st.sampled_from([1e-4, 0.01, 0.05]),
    start=st.sampled_from([1.1, 100.0, 60_000.0]),
)
def test_streaming_equals_batch_every_bar(seed, n_bars, window, vol, start):
    o, h, lo, c = walk(seed, n_bars, start, vol)
    if n_bars:
        # repeated values and flat stretches exercise ties in the deques and RSI's 50
        c[n_bars // 3 : n_bars // 2] = c[n_bars // 3]
        h[n_bars // 3 : n_bars // 2] = h[n_bars // 3]
    sm, rs, up, lw, md, at = _stream_all(o, h, lo, c, window)
    _assert_same(sma(c, window), sm)
    _assert_same(rsi(c, window), rs)
    bu, bl, bm = donchian(h, lo, window)
    _assert_same(bu, up)
    _assert_same(bl, lw)
    _assert_same(bm, md)
    _assert_same(atr(h, lo, c, window), at)


def test_sma_no_drift_over_long_series():
    # a million-bar random walk around a big level: running sums would drift
    rng = np.random.default_rng(5)
    c = 50_000 + np.cumsum(rng.normal(0, 50, 1_000_000))
    got = sma(c, 20)
    want = np.lib.stride_tricks.sliding_window_view(c, 20).mean(axis=1)
    np.testing.assert_allclose(got[19:], want, rtol=1e-12)
