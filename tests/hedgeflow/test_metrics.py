"""Metrics (DESIGN convention 6): hand cases, edge cases, and empyrical cross-checks."""

from __future__ import annotations

import json
import math

import empyrical  # the reference implementation, from the test extra
import numpy as np
import pandas as pd
import pytest

from hedgeflow.errors import InvalidInputError
from hedgeflow.market import bars_per_year
from hedgeflow.metrics import METRIC_KEYS, bar_spacing_seconds, compute_metrics, json_safe


def ts5m(n: int, start: str = "2024-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="5min", tz="UTC", unit="us")


def test_hand_case():
    equity = np.array([100.0, 110.0, 99.0, 108.9])  # r = +10 %, -10 %, +10 %
    trades = pd.DataFrame({"pnl": [10.0, -11.0, 9.9, 0.0]})
    pos = np.array([0.0, 1.0, 1.0, 0.0])
    m = compute_metrics(equity, ts5m(4), trades, "crypto", pos)
    assert list(m) == list(METRIC_KEYS)
    n = 365 * 288  # crypto, 5-minute bars
    r = np.array([0.1, -0.1, 0.1])
    assert m["total_return"] == pytest.approx(0.089)
    assert math.isinf(m["cagr"])  # 1.089 ** (105120 / 3) overflows: documented
    std = math.sqrt(((0.1 - 1 / 30) ** 2 * 2 + (-0.1 - 1 / 30) ** 2) / 2)
    assert m["ann_vol"] == pytest.approx(std * math.sqrt(n))
    assert m["sharpe"] == pytest.approx((1 / 30) / std * math.sqrt(n))
    assert m["sortino"] == pytest.approx(r.mean() / math.sqrt(0.01 / 3) * math.sqrt(n))
    assert m["max_drawdown"] == pytest.approx(-0.1)
    assert m["n_trades"] == 4 and isinstance(m["n_trades"], int)
    assert m["win_rate"] == pytest.approx(0.5)
    assert m["profit_factor"] == pytest.approx(19.9 / 11.0)
    assert m["exposure"] == pytest.approx(0.5)


def test_cagr_and_calmar_hand_case():
    # forex hourly bars: N = 260 x 24 = 6240; 6240 returns = exactly one year
    ts = pd.date_range("2024-01-01", periods=6241, freq="1h", tz="UTC", unit="us")
    equity = np.linspace(100.0, 121.0, 6241)
    equity[3000] = equity[2999] * 0.95  # one dip
    m = compute_metrics(equity, ts, None, "forex")
    assert m["cagr"] == pytest.approx(0.21)
    assert m["max_drawdown"] == pytest.approx(-0.05)
    assert m["calmar"] == pytest.approx(0.21 / 0.05)
    assert math.isnan(m["exposure"]) and math.isnan(m["win_rate"]) and m["n_trades"] == 0


def test_annualisation_per_asset_class_and_interval():
    assert bars_per_year("stock", 300) == 252 * 78
    assert bars_per_year("forex", 300) == 260 * 288
    assert bars_per_year("crypto", 3600) == 365 * 24
    rng = np.random.default_rng(1)
    equity = 100 * np.cumprod(1 + rng.normal(0, 0.001, 500))
    sharpes = {
        ac: compute_metrics(equity, ts5m(500), None, ac)["sharpe"]
        for ac in ("stock", "forex", "crypto")
    }
    r = equity[1:] / equity[:-1] - 1
    base = r.mean() / r.std(ddof=1)
    assert sharpes["stock"] == pytest.approx(base * math.sqrt(252 * 78))
    assert sharpes["forex"] == pytest.approx(base * math.sqrt(260 * 288))
    assert sharpes["crypto"] == pytest.approx(base * math.sqrt(365 * 288))


def test_bar_spacing_is_the_most_common_difference():
    # stock session: 5-minute bars with overnight gaps
    days = [pd.Timestamp("2024-01-02 14:30", tz="UTC") + pd.Timedelta(days=d) for d in range(3)]
    ts = [d + pd.Timedelta(minutes=5 * k) for d in days for k in range(78)]
    assert bar_spacing_seconds(ts) == 300.0
    with pytest.raises(InvalidInputError, match="increasing"):
        bar_spacing_seconds([ts[1], ts[0]])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("asset_class", "freq"), [("stock", "5min"), ("crypto", "1h")])
def test_cross_check_with_empyrical(seed, asset_class, freq):
    rng = np.random.default_rng(seed)
    n = 400
    r = rng.normal(0.0002, 0.004, n - 1) + rng.standard_t(4, n - 1) * 0.001
    equity = 1e5 * np.r_[1.0, np.cumprod(1 + r)]
    ts = pd.date_range("2024-01-02", periods=n, freq=freq, tz="UTC", unit="us")
    m = compute_metrics(equity, ts, None, asset_class)
    ann = bars_per_year(asset_class, pd.Timedelta(freq).total_seconds())
    rets = pd.Series(equity).pct_change().dropna()
    assert m["sharpe"] == pytest.approx(empyrical.sharpe_ratio(rets, annualization=ann), rel=1e-9)
    # empyrical's sortino: mean(r) x N / (sqrt(mean(min(r, 0)^2)) x sqrt(N)) == ours
    assert m["sortino"] == pytest.approx(empyrical.sortino_ratio(rets, annualization=ann), rel=1e-9)
    assert m["max_drawdown"] == pytest.approx(empyrical.max_drawdown(rets), rel=1e-9)
    assert m["cagr"] == pytest.approx(empyrical.annual_return(rets, annualization=ann), rel=1e-9)
    assert m["ann_vol"] == pytest.approx(
        empyrical.annual_volatility(rets, annualization=ann), rel=1e-9
    )
    if m["max_drawdown"] < 0:
        assert m["calmar"] == pytest.approx(
            empyrical.calmar_ratio(rets, annualization=ann), rel=1e-9
        )


def test_edge_cases():
    # a flat curve: every ratio is 0, not NaN or inf
    m = compute_metrics(np.full(10, 100.0), ts5m(10), pd.DataFrame({"pnl": []}), "stock")
    keys = ("total_return", "cagr", "ann_vol", "sharpe", "sortino")
    assert [m[k] for k in keys] == [0, 0, 0, 0, 0]
    assert (m["max_drawdown"], m["calmar"], m["n_trades"]) == (0.0, 0.0, 0)
    assert math.isnan(m["win_rate"]) and math.isnan(m["profit_factor"])
    # only gains: sortino 0 (no downside), profit_factor NaN (no gross loss), calmar 0
    m = compute_metrics(
        np.array([100.0, 101.0, 102.0]), ts5m(3), pd.DataFrame({"pnl": [1.0, 1.0]}), "stock"
    )
    assert m["sortino"] == 0.0 and m["calmar"] == 0.0 and math.isnan(m["profit_factor"])
    assert m["win_rate"] == 1.0
    # single point
    m = compute_metrics(np.array([100.0]), ts5m(1), None, "stock", np.array([0.0]))
    assert m["total_return"] == 0.0 and m["sharpe"] == 0.0 and m["exposure"] == 0.0
    # total loss
    m = compute_metrics(np.array([100.0, 50.0, 0.0]), ts5m(3), None, "stock")
    assert m["cagr"] == -1.0 and m["max_drawdown"] == -1.0
    with pytest.raises(InvalidInputError):
        compute_metrics(np.array([]), ts5m(0), None, "stock")
    with pytest.raises(InvalidInputError, match="asset class"):
        compute_metrics(np.array([1.0, 2.0]), ts5m(2), None, "bonds")


def test_exposure_from_trades_matches_position():
    ts = ts5m(10)
    trades = pd.DataFrame(
        {
            "entry_ts": [ts[1], ts[5]],
            "exit_ts": [ts[3], ts[9]],
            "exit_reason": ["stop", "end"],
            "pnl": [1.0, -1.0],
        }
    )
    # held at the close of bars 1, 2 (exit inside bar 3) and 5..9 (end closes at bar 9)
    pos = np.array([0, 1, 1, 0, 0, 1, 1, 1, 1, 1], dtype=float)
    a = compute_metrics(np.full(10, 1.0), ts, trades, "crypto", pos)["exposure"]
    b = compute_metrics(np.full(10, 1.0), ts, trades, "crypto", None)["exposure"]
    assert a == b == 0.7


def test_json_safe():
    m = compute_metrics(np.full(3, 100.0), ts5m(3), None, "stock")
    text = json.dumps(json_safe(m), allow_nan=False)
    assert json.loads(text)["win_rate"] is None
    assert json_safe({"x": math.inf, "n": np.int64(3)}) == {"x": None, "n": 3}


def test_side_summary_splits_long_and_short_trades():
    import math

    import pandas as pd

    from hedgeflow.metrics import side_summary

    trades = pd.DataFrame(
        {"side": ["long", "short", "short", "long", "short"], "pnl": [5.0, -2.0, 6.0, -1.0, 3.0]}
    )
    got = side_summary(trades)
    assert got["long"] == {"n_trades": 2.0, "pnl": 4.0, "win_rate": 0.5, "profit_factor": 5.0}
    assert got["short"] == {
        "n_trades": 3.0, "pnl": 7.0, "win_rate": 2 / 3, "profit_factor": 4.5,
    }  # fmt: skip
    empty = side_summary(trades.iloc[:0])
    assert empty["short"]["n_trades"] == 0.0 and math.isnan(empty["short"]["win_rate"])
    only_wins = side_summary(trades[trades["pnl"] > 0])
    assert math.isnan(only_wins["long"]["profit_factor"])  # no loss: undefined
