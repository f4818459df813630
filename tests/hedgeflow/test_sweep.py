"""The sweep core: grids, the compiled batch (exactly the normal path), ranking."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from hedgeflow.engine import EngineConfig, run_arrays
from hedgeflow.errors import InvalidInputError
from hedgeflow.metrics import METRIC_KEYS, compute_metrics
from hedgeflow.strategies import get_strategy
from hedgeflow.sweep import (
    best_rows,
    expand_grid,
    grid_from_strings,
    rank_results,
    sweep_arrays,
    sweep_bars,
)
from hedgeflow.sweep.kernels import np_sum
from hedgeflow.sweep.report import best_markdown, heatmap_matrix, render_heatmaps


def _bars(n: int, seed: int = 11, start: str = "2026-01-05") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    open_ = np.r_[close[0], close[:-1]] * (1 + rng.normal(0, 0.001, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.002, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.002, n)))
    ts = pd.date_range(start, periods=n, freq="5min", tz="UTC").as_unit("us")
    return pd.DataFrame({"ts": ts, "open": open_, "high": high, "low": low, "close": close})


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b)


def _normal_path(bars: pd.DataFrame, strategy: str, params: object, cfg: EngineConfig) -> dict:
    arrays = [bars[c].to_numpy(np.float64) for c in ("open", "high", "low", "close")]
    signal, _ = get_strategy(strategy).signals(*arrays, params)
    out = run_arrays(*arrays, signal, cfg)
    trades = pd.DataFrame({"pnl": out["pnl"]})
    metrics = compute_metrics(out["equity"], bars["ts"], trades, "crypto", out["position"])
    return {**metrics, "orders_skipped": len(out["skip_idx"])}


GRIDS = {
    "sma_cross": {"fast": [3, 8, 20], "slow": [8, 30, 60], "confirm_above_fast": [True, False]},
    "rsi_mean_revert": {"period": [5, 14], "entry_rsi": [25, 35], "exit_rsi": [30, 55, 70]},
    "donchian_breakout": {"window": [5, 20, 55], "exit_rule": ["midline", "lower"]},
}
CONFIGS = {
    "costs": EngineConfig(fee_bps=5.0, slippage_bps=2.0),
    "whole_units_leverage": EngineConfig(
        risk_per_trade=0.02, stop_pct=0.005, max_leverage=2.0, qty_step=1.0, fee_bps=1.0
    ),
    "trailing_atr": EngineConfig(use_trailing_atr=True, atr_period=10, atr_mult=2.0),
    # 300 of equity with a 150 minimum and 0.01 steps: once losses bring the equity
    # under 150, entries are skipped (counted per combination)
    "minimums": EngineConfig(
        initial_equity=300.0,
        risk_per_trade=0.5,
        stop_pct=0.01,
        take_profit_pct=0.01,
        qty_step=0.01,
        min_notional=150.0,
        fee_bps=20.0,
    ),
}


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("strategy", sorted(GRIDS))
def test_batch_equals_the_normal_path_exactly(strategy: str, config_name: str) -> None:
    bars = _bars(6_000)
    cfg = CONFIGS[config_name]
    grid = expand_grid(strategy, GRIDS[strategy])
    frame = sweep_bars(bars, grid, cfg, "crypto")
    assert len(frame) == grid.size
    traded = skipped = 0
    for params, row in zip(grid.params, frame.to_dict("records"), strict=True):
        ref = _normal_path(bars, strategy, params, cfg)
        got = {k: row[k] for k in METRIC_KEYS}
        got["n_trades"] = int(got["n_trades"])
        for key in METRIC_KEYS:
            assert _same(float(ref[key]), float(got[key])), (params, key, ref[key], got[key])
        assert row["orders_skipped"] == ref["orders_skipped"], params
        traded += ref["n_trades"] > 0
        skipped += ref["orders_skipped"] > 0
    assert traded == grid.size  # every combination trades: the comparison is not vacuous
    assert (skipped > 0) == (config_name == "minimums"), skipped


def test_tiny_inputs_match_too() -> None:
    cfg = EngineConfig()
    for n in (1, 2, 3, 40):
        bars = _bars(n, seed=n)
        grid = expand_grid("sma_cross", {"fast": [1, 2], "slow": [3]})
        frame = sweep_bars(bars, grid, cfg, "crypto")
        for params, row in zip(grid.params, frame.to_dict("records"), strict=True):
            ref = _normal_path(bars, "sma_cross", params, cfg) if n >= 2 else None
            if ref is None:
                continue
            for key in METRIC_KEYS:
                assert _same(float(ref[key]), float(row[key])), (n, key)


def test_numpy_pairwise_sum_is_reproduced_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    for n in [*range(0, 300), 1_000, 4_097, 8_192, 65_537, 300_001]:
        a = rng.standard_normal(n) * 1e-3
        assert np_sum(a) == float(a.sum()), n


def test_invalid_combinations_are_skipped_and_counted() -> None:
    grid = expand_grid("sma_cross", {"fast": [5, 10, 50], "slow": [10, 50]})
    assert [(p.fast, p.slow) for p in grid.params] == [(5, 10), (5, 50), (10, 50)]
    assert grid.skipped == 3 and grid.total == 6
    assert "fast must be < slow" in grid.describe()
    rsi = expand_grid("rsi_mean_revert", {"entry_rsi": [30, 60], "exit_rsi": [50]})
    assert rsi.size == 1 and rsi.skipped == 1


def test_grid_values_are_converted_and_deduplicated() -> None:
    grid = expand_grid("sma_cross", grid_from_strings(["fast=5,5,10", "slow=50", "slow=100"]))
    assert grid.axes == {"fast": (5, 10), "slow": (50, 100)}
    assert grid.varying == ("fast", "slow")
    assert all(p.confirm_above_fast for p in grid.params)  # the default of a left-out key


@pytest.mark.parametrize(
    ("strategy", "grid", "message"),
    [
        ("sma_cross", {"fsat": [5]}, "not a parameter"),
        ("sma_cross", {"fast": ["x"]}, "fast must be int"),
        ("sma_cross", {"fast": []}, "no values"),
        ("sma_cross", {"fast": [60], "slow": [50]}, "no valid combination"),
        ("donchian_breakout", {"exit_rule": ["upper"]}, "exit_rule must be one of"),
        ("nope", {"fast": [5]}, "unknown strategy"),
        ("sma_cross", {"fast": list(range(1, 401)), "slow": list(range(1, 401))}, "at most"),
    ],
)
def test_bad_grids_are_refused(strategy: str, grid: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        expand_grid(strategy, grid)


@pytest.mark.parametrize("bad", ["fast", "fast=", "=1,2"])
def test_bad_grid_strings_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInputError, match="key=v1"):
        grid_from_strings([bad])


@pytest.mark.parametrize("bad", ["fast=5,,10", "fast=5,", "fast=,5", "fast=5, ,10"])
def test_grid_strings_with_an_empty_value_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInputError, match="has an empty value"):
        grid_from_strings([bad])


def test_default_grids_are_valid() -> None:
    for strategy in GRIDS:
        assert expand_grid(strategy).size >= 10


def test_rank_and_best() -> None:
    frame = pd.DataFrame(
        {
            "symbol": ["A"] * 5,
            "sharpe": [0.5, 2.0, np.nan, 2.0, -1.0],
            "ann_vol": [0.3, 0.1, 0.2, np.nan, 0.1],
        }
    )
    assert rank_results(frame, "sharpe")["rank"].tolist() == [3, 1, 5, 2, 4]
    assert rank_results(frame, "ann_vol")["rank"].tolist() == [4, 1, 3, 5, 2]
    with pytest.raises(InvalidInputError, match="cannot rank"):
        rank_results(frame, "n_trades")
    best = best_rows(rank_results(frame, "sharpe"))
    assert len(best) == 1 and best["sharpe"].iat[0] == 2.0


def test_sweep_bars_rank_follows_the_metric() -> None:
    bars = _bars(3_000)
    grid = expand_grid("donchian_breakout", GRIDS["donchian_breakout"])
    for metric in ("sharpe", "total_return", "max_drawdown"):
        frame = sweep_bars(bars, grid, EngineConfig(), "crypto", metric)
        assert sorted(frame["rank"]) == list(range(1, grid.size + 1))
        best = frame.loc[frame["rank"] == 1, metric].iat[0]
        assert best == frame[metric].max()
        assert frame["params"].is_unique
        assert json.loads(frame["params"].iat[0]) == {"window": 5, "exit_rule": "midline"}


def test_sweep_arrays_checks_its_inputs() -> None:
    bars = _bars(50)
    arrays = [bars[c].to_numpy() for c in ("open", "high", "low", "close")]
    grid = expand_grid("sma_cross", {"fast": [2], "slow": [5]})
    with pytest.raises(InvalidInputError, match="expected rsi_mean_revert"):
        sweep_arrays(*arrays, "rsi_mean_revert", grid.params, EngineConfig(), 1.0)
    with pytest.raises(InvalidInputError, match="open must be"):
        sweep_arrays(arrays[0][:-1], *arrays[1:], "sma_cross", grid.params, EngineConfig(), 1.0)
    # a short signal reads as 0 unless allowed: sma_cross with shorts trades more
    long_only = sweep_arrays(*arrays, "sma_cross", grid.params, EngineConfig(), 1.0)
    both = sweep_arrays(*arrays, "sma_cross", grid.params, EngineConfig(allow_short=True), 1.0)
    assert both[0]["n_trades"] > long_only[0]["n_trades"] > 0


def test_heatmap_and_summary(tmp_path) -> None:
    bars = _bars(2_000)
    grid = expand_grid("rsi_mean_revert", GRIDS["rsi_mean_revert"])
    frame = sweep_bars(bars, grid, EngineConfig(), "crypto")
    found = heatmap_matrix(frame, grid, "sharpe")
    assert found is not None
    y, x, table = found
    assert (y, x) == ("period", "entry_rsi") and table.shape == (2, 2)
    # with a third varying parameter each cell is the best over it
    cell = frame[(frame["period"] == 5) & (frame["entry_rsi"] == 25.0)]["sharpe"].max()
    assert table.loc[5, 25.0] == cell
    path = render_heatmaps({"X.CC": frame, "Y.CC": frame}, grid, "sharpe", tmp_path / "h.png")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    one_d = expand_grid("sma_cross", {"fast": [2, 3]})
    assert render_heatmaps({"X.CC": frame}, one_d, "sharpe", tmp_path / "n.png") is None
    best = best_rows(frame.assign(symbol="X.CC")).to_dict("records")
    text = best_markdown("r1", grid, "sharpe", best, {"Z.CC": "boom"}, "window")
    assert "| X.CC | period=" in text and "Z.CC failed" in text


@pytest.mark.slow
def test_benchmark_smoke() -> None:
    from benchmarks import sweep as bench

    res = bench.run(
        3, (2, 3), (20, 30), repeat=1, command="test", quick=True, measure_compile=False
    )
    assert res.exact and res.checked == 4 and res.n_combos == 4
    assert res.hf_rate > 0 and res.vbt_rate > 0
    assert "Reproduce: `test`" in bench.render(res)


def test_overfit_statistics_of_a_sweep_equal_those_of_its_returns_matrix() -> None:
    """The kernel's block moments give exactly what hedgeflow.overfit computes from the
    combinations' per-bar returns recomputed through signals -> engine (bit for bit),
    with combinations that never trade or sit flat for whole blocks among them."""
    from hedgeflow.overfit import overfit_stats
    from hedgeflow.sweep import sweep_returns, sweep_symbol_bars

    bars = _bars(3_000)
    grid = expand_grid("rsi_mean_revert", {"period": [5, 14], "entry_rsi": [5, 20, 30],
                                           "exit_rsi": [50, 70]})  # fmt: skip
    config = EngineConfig(stop_pct=0.01, take_profit_pct=0.02, fee_bps=2.0, slippage_bps=1.0)
    result = sweep_symbol_bars(bars, grid, config, "stock", blocks=10)
    pd.testing.assert_frame_equal(result.frame, sweep_bars(bars, grid, config, "stock"))
    returns = sweep_returns(bars, grid, config)
    assert returns.shape == (2_999, grid.size)
    flat_blocks = [int((np.ptp(b, axis=0) == 0).sum()) for b in np.array_split(returns, 10)]
    assert sum(flat_blocks) > 0  # some combination is flat for a whole block
    got, want = result.overfit, overfit_stats(returns, 10)
    assert got is not None and result.overfit_note is None
    assert got.summary() == want.summary()
    assert np.array_equal(got.logits, want.logits)
    assert np.array_equal(got.is_sharpe, want.is_sharpe)
    assert np.array_equal(got.oos_sharpe, want.oos_sharpe)
    # the best trial is the rank-1 row when ranking by Sharpe
    assert result.frame["rank"].iloc[got.best] == 1


def test_too_few_bars_or_one_combination_means_no_overfit_statistics() -> None:
    from hedgeflow.sweep import sweep_symbol_bars

    config = EngineConfig()
    grid = expand_grid("sma_cross", {"fast": [5, 10], "slow": [20]})
    short = sweep_symbol_bars(_bars(12), grid, config, "stock")
    assert short.overfit is None and "11 rows of returns, fewer than the 16 blocks" in str(
        short.overfit_note
    )
    one = sweep_symbol_bars(_bars(500), expand_grid("sma_cross", {"fast": [5]}), config, "stock")
    assert one.overfit is None and "1 trial" in str(one.overfit_note)
    assert len(one.frame) == 1
