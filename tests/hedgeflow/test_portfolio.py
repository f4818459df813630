"""Portfolio combination: equal / inverse-vol / risk-parity, carry-forward, fees, no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hedgeflow.errors import InvalidInputError
from hedgeflow.portfolio import combine


def curve(ts, equity):
    return pd.DataFrame({"ts": pd.DatetimeIndex(ts).as_unit("us"), "equity": np.asarray(equity)})


def grid(n, freq="5min", start="2024-01-01"):
    return pd.date_range(start, periods=n, freq=freq, tz="UTC", unit="us")


def random_curves(seed, n=600, k=3):
    rng = np.random.default_rng(seed)
    ts = grid(n)
    vols = [0.001, 0.003, 0.01][:k]
    return {f"a{j}": curve(ts, 1e5 * np.cumprod(1 + rng.normal(0, vols[j], n))) for j in range(k)}


def test_equal_weight_every_bar_no_fees_is_average_return():
    curves = random_curves(0)
    res = combine(curves, "equal", "bar", 0.0, 1_000.0, 50)
    agent_r = np.column_stack([c.equity.pct_change().to_numpy() for c in curves.values()])
    port_r = res.equity.equity.pct_change().to_numpy()
    np.testing.assert_allclose(port_r[1:], agent_r[1:].mean(axis=1), rtol=1e-10, atol=1e-15)
    assert res.equity.equity.iat[0] == 1_000.0
    assert res.weights == pytest.approx({"a0": 1 / 3, "a1": 1 / 3, "a2": 1 / 3})
    assert res.fees == 0.0
    assert str(res.equity.ts.dtype) == "datetime64[us, UTC]"
    assert (res.equity.drawdown <= 0).all()


def test_fees_hand_case():
    ts = grid(2)
    curves = {"a": curve(ts, [100.0, 110.0]), "b": curve(ts, [100.0, 100.0])}
    res = combine(curves, "equal", "bar", fee_bps=10.0, initial_equity=100.0)
    # sleeves 50/50 -> 55/50 (105); drifted 55/105, 50/105; turnover |52.5-55|+|52.5-50| = 5
    assert res.turnover == pytest.approx(5.0)
    assert res.fees == pytest.approx(0.005)
    assert res.equity.equity.tolist() == pytest.approx([100.0, 104.995])


def test_weights_drift_between_rebalances():
    # daily rebalance, three bars inside one day: sleeves drift, no fee until the next day
    ts = pd.DatetimeIndex(
        ["2024-01-01 10:00", "2024-01-01 11:00", "2024-01-01 12:00", "2024-01-02 00:00"], tz="UTC"
    )
    curves = {"a": curve(ts, [100.0, 200.0, 200.0, 200.0]), "b": curve(ts, [100.0] * 4)}
    res = combine(curves, "equal", "daily", fee_bps=100.0, initial_equity=100.0)
    # bar 1: 100 + 50 (no rebalance: same day); bar 3 is a new day: rebalance 100/50 -> 75/75
    assert res.equity.equity.tolist()[:3] == pytest.approx([100.0, 150.0, 150.0])
    assert res.turnover == pytest.approx(50.0)
    assert res.equity.equity.iat[3] == pytest.approx(150.0 - 0.5)
    assert res.target_weights.ts.tolist() == [ts[0], ts[3]]


def test_carry_forward_and_initial_value_before_first_bar():
    ts = grid(6, "1h")
    a = curve(ts, [100.0, 110.0, 121.0, 121.0, 133.1, 133.1])
    # b trades only at hours 2 and 4 (closed otherwise); its first value is 50
    b = curve(ts[[2, 4]], [50.0, 55.0])
    res = combine({"a": a, "b": b}, "equal", "bar", 0.0, 200.0)
    # b's return on the union calendar: 0 before its first bar, 0 when carried, +10 % at hour 4
    ra = np.array([0.10, 0.10, 0.0, 0.10, 0.0])
    rb = np.array([0.0, 0.0, 0.0, 0.10, 0.0])
    expected = 200.0 * np.r_[1.0, np.cumprod(1 + (ra + rb) / 2)]
    np.testing.assert_allclose(res.equity.equity, expected, rtol=1e-12)
    assert res.equity.ts.tolist() == list(ts)


def test_union_calendar_of_different_sessions():
    stock = curve(pd.DatetimeIndex(["2024-01-02 14:30", "2024-01-02 14:35"], tz="UTC"), [1.0, 1.1])
    crypto = curve(grid(4, "5min", "2024-01-02 14:25"), [1.0, 1.0, 1.0, 1.2])
    res = combine({"s": stock, "c": crypto}, "equal", "bar")
    assert len(res.equity) == 4
    assert res.equity.equity.iat[-1] == pytest.approx(100_000 * 1.05 * 1.1)


def test_inverse_vol_uses_trailing_window():
    curves = random_curves(1, n=300)
    res = combine(curves, "inverse_vol", "bar", 0.0, 1e5, vol_lookback_bars=40)
    r = pd.DataFrame({k: c.equity.pct_change() for k, c in curves.items()})
    t = 200
    vol = r.iloc[t - 39 : t + 1].std(ddof=1)
    expected = (1 / vol) / (1 / vol).sum()
    got = res.target_weights.set_index("ts").loc[curves["a0"].ts.iat[t]]
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-10)
    assert got["a0"] > got["a1"] > got["a2"]
    # the first target (no history yet) is equal
    assert res.target_weights.iloc[0, 1:].tolist() == pytest.approx([1 / 3] * 3)


def test_risk_parity_equalises_risk_contributions():
    rng = np.random.default_rng(7)
    n = 400
    z = rng.normal(size=(n, 3))
    mix = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.2, 0.3, 0.9]]) * [[0.002], [0.004], [0.01]]
    r = z @ mix.T
    ts = grid(n)
    curves = {f"a{j}": curve(ts, 1e5 * np.cumprod(1 + r[:, j])) for j in range(3)}
    res = combine(curves, "risk_parity", "bar", 0.0, 1e5, vol_lookback_bars=100)
    rets = pd.DataFrame({k: c.equity.pct_change() for k, c in curves.items()})
    t = n - 1
    cov = rets.iloc[t - 99 : t + 1].cov().to_numpy()
    w = np.array(list(res.weights.values()))
    rc = w * (cov @ w)
    np.testing.assert_allclose(rc / rc.sum(), [1 / 3] * 3, rtol=1e-8)
    assert w.sum() == pytest.approx(1.0)


def test_risk_parity_singular_falls_back_to_inverse_vol():
    ts = grid(100)
    rng = np.random.default_rng(3)
    eq = 1e5 * np.cumprod(1 + rng.normal(0, 0.002, 100))
    flat = np.full(100, 1e5)
    curves = {"a": curve(ts, eq), "b": curve(ts, eq * 2), "c": curve(ts, flat)}  # a, b collinear
    rp = combine(curves, "risk_parity", "bar", 0.0, 1e5, 20)
    iv = combine(curves, "inverse_vol", "bar", 0.0, 1e5, 20)
    pd.testing.assert_frame_equal(rp.target_weights, iv.target_weights)
    # the flat agent gets the smallest positive volatility: same weight as a and b here
    assert rp.weights == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})


@pytest.mark.parametrize("method", ["equal", "inverse_vol", "risk_parity"])
@pytest.mark.parametrize("rebalance", ["bar", "daily", "weekly"])
def test_no_look_ahead(method, rebalance):
    curves = random_curves(11, n=3000)
    cut = 2000
    altered = {}
    rng = np.random.default_rng(99)
    for k, c in curves.items():
        e = c.equity.to_numpy().copy()
        e[cut + 1 :] = e[cut] * np.cumprod(1 + rng.normal(0, 0.05, len(e) - cut - 1))
        altered[k] = curve(c.ts, e)
    a = combine(curves, method, rebalance, 5.0, 1e5, 100)
    b = combine(altered, method, rebalance, 5.0, 1e5, 100)
    cut_ts = curves["a0"].ts.iat[cut]
    wa = a.target_weights[a.target_weights.ts <= cut_ts]
    wb = b.target_weights[b.target_weights.ts <= cut_ts]
    pd.testing.assert_frame_equal(wa, wb)
    np.testing.assert_array_equal(a.equity.equity[: cut + 1], b.equity.equity[: cut + 1])
    assert not np.array_equal(a.equity.equity, b.equity.equity)


def test_rebalance_points():
    ts = grid(3 * 288 * 7 + 1, "5min", "2024-01-01")  # Monday 00:00 for three weeks
    curves = random_curves(5, n=len(ts))
    curves = {k: curve(ts, c.equity) for k, c in curves.items()}
    daily = combine(curves, "equal", "daily", 1.0)
    weekly = combine(curves, "equal", "weekly", 1.0)
    bar = combine(curves, "equal", "bar", 1.0)
    assert len(daily.target_weights) == 1 + 21  # initial + each new day
    assert len(weekly.target_weights) == 1 + 3
    assert (weekly.target_weights.ts.iloc[1:].dt.day_of_week == 0).all()
    assert len(bar.target_weights) == len(ts)
    assert bar.fees > daily.fees > weekly.fees > 0


def test_bad_inputs():
    ts = grid(3)
    ok = {"a": curve(ts, [1.0, 2.0, 3.0])}
    with pytest.raises(InvalidInputError, match="method"):
        combine(ok, "max_sharpe")
    with pytest.raises(InvalidInputError, match="rebalance"):
        combine(ok, "equal", "monthly")
    with pytest.raises(InvalidInputError, match="no agent"):
        combine({})
    with pytest.raises(InvalidInputError, match="'a'"):
        combine({"a": curve(ts[::-1], [1.0, 2.0, 3.0])})
    with pytest.raises(InvalidInputError, match="positive"):
        combine({"a": curve(ts, [1.0, 0.0, 3.0])})
