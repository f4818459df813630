"""Walk-forward and CPCV: pinned fold indices, the sweep kernel in sample, out-of-sample
runs that never read past their window, stitching, no edge on a random walk, bad input."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hedgeflow.engine import EngineConfig, run_arrays
from hedgeflow.errors import InvalidInputError
from hedgeflow.market import bars_per_year
from hedgeflow.metrics import METRIC_KEYS
from hedgeflow.strategies import get_strategy
from hedgeflow.sweep import expand_grid, params_json, sweep_bars
from hedgeflow.sweep import kernels as K
from hedgeflow.walkforward import (
    Fold,
    SegmentRun,
    Span,
    cpcv_folds,
    fold_spec,
    oos_run,
    parse_span,
    pool_stats,
    precheck,
    stitch,
    walk_folds,
    walkforward_bars,
)

GRID = {"fast": [3, 5, 8, 13, 21], "slow": [30, 55, 89], "confirm_above_fast": [True, False]}
CFG = EngineConfig(fee_bps=1.0, slippage_bps=1.0)


def _bars(n: int, seed: int = 3, freq: str = "5min") -> pd.DataFrame:
    """A random walk (no edge): log returns i.i.d. N(0, 0.3%)."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.001, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.001, n)))
    ts = pd.date_range("2026-01-05", periods=n, freq=freq, tz="UTC").as_unit("us")
    return pd.DataFrame({"ts": ts, "open": open_, "high": high, "low": low, "close": close})


def _arrays(bars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    o, h, lo, c = (bars[k].to_numpy(np.float64).copy() for k in ("open", "high", "low", "close"))
    return o, h, lo, c


def _pairs(plan: object) -> list[tuple[tuple, tuple]]:
    return [(f.train, f.test) for f in plan.folds]  # type: ignore[attr-defined]


# ------------------------------------------------------------------ spans and folds


def test_parse_span() -> None:
    assert parse_span("60d") == Span("60d", seconds=60 * 86_400)
    assert parse_span("12h").seconds == 43_200
    assert parse_span("90m").seconds == 5_400
    assert parse_span("2w").seconds == 14 * 86_400
    assert parse_span("500") == Span("500", bars=500)
    assert parse_span(250).bars == 250
    for bad in ("60x", "0d", "-5", "d", "", "1.5d", "10 days"):
        with pytest.raises(InvalidInputError, match="is not a duration"):
            parse_span(bad, "train")


def test_rolling_folds_in_bars_are_pinned() -> None:
    ts = pd.date_range("2026-01-05", periods=10, freq="1h", tz="UTC")
    plan = walk_folds(ts, Span("4", bars=4), Span("2", bars=2))
    assert plan.mode == "rolling"
    assert _pairs(plan) == [
        (((0, 4),), ((4, 6),)),
        (((2, 6),), ((6, 8),)),
        (((4, 8),), ((8, 10),)),
    ]
    assert plan.paths == (((0, 0), (1, 0), (2, 0)),)
    stepped = walk_folds(ts, Span("4", bars=4), Span("2", bars=2), Span("3", bars=3))
    assert _pairs(stepped) == [(((0, 4),), ((4, 6),)), (((3, 7),), ((7, 9),))]


def test_anchored_folds_grow_from_the_first_bar() -> None:
    ts = pd.date_range("2026-01-05", periods=10, freq="1h", tz="UTC")
    plan = walk_folds(ts, Span("4", bars=4), Span("2", bars=2), anchored=True)
    assert plan.mode == "anchored"
    assert _pairs(plan) == [
        (((0, 4),), ((4, 6),)),
        (((0, 6),), ((6, 8),)),
        (((0, 8),), ((8, 10),)),
    ]


def test_time_windows_cover_the_bars_stamped_inside_them() -> None:
    """Hourly bars with hours 5 and 6 missing (a closed market): a 4 h train window
    from 00:00 holds bars 00..03, the 2 h test window 04:00-06:00 only bar 04."""
    hours = [0, 1, 2, 3, 4, 7, 8, 9, 10, 11]
    ts = pd.DatetimeIndex([pd.Timestamp("2026-01-05", tz="UTC") + pd.Timedelta(hours=h)
                           for h in hours])  # fmt: skip
    plan = walk_folds(ts, parse_span("4h"), parse_span("2h"))
    # windows start at 00, 02, 04 and 06 h; the last test window ends at 12:00, the
    # last bar (11:00) plus the bar spacing
    assert _pairs(plan) == [
        (((0, 4),), ((4, 5),)),  # train 00-04: bars 00..03; test 04-06: bar 04
        (((2, 5),), ((5, 6),)),  # train 02-06: 02, 03, 04; test 06-08: 07
        (((4, 6),), ((6, 8),)),  # train 04-08: 04, 07; test 08-10: 08, 09
        (((5, 8),), ((8, 10),)),  # train 06-10: 07, 08, 09; test 10-12: 10, 11
    ]


def test_cpcv_folds_with_purge_and_embargo_are_pinned() -> None:
    """12 bars, 4 groups of 3, k = 2, purge 1 (the bar before each test group) and
    embargo 1 (the bar after it) leave these train segments, in combinations order."""
    plan = cpcv_folds(12, 4, 2, purge=1, embargo=1)
    assert plan.groups == ((0, 3), (3, 6), (6, 9), (9, 12))
    assert _pairs(plan) == [
        (((7, 12),), ((0, 3), (3, 6))),  # test 0,1; embargo 6
        (((4, 5), (10, 12)), ((0, 3), (6, 9))),  # test 0,2; embargo 3, 9; purge 5
        (((4, 8),), ((0, 3), (9, 12))),  # test 0,3; embargo 3; purge 8
        (((0, 2), (10, 12)), ((3, 6), (6, 9))),  # test 1,2; purge 2; embargo 9
        (((0, 2), (7, 8)), ((3, 6), (9, 12))),  # test 1,3; purge 2, 8; embargo 6
        (((0, 5),), ((6, 9), (9, 12))),  # test 2,3; purge 5
    ]
    # phi = k / N x C(N, k) = 2 / 4 x 6 = 3 paths; path j takes, for each group, the
    # j-th split (in combinations order) testing it
    assert len(plan.paths) == 2 * math.comb(4, 2) // 4 == 3
    assert plan.paths == (
        ((0, 0), (0, 1), (1, 1), (2, 1)),
        ((1, 0), (3, 0), (3, 1), (4, 1)),
        ((2, 0), (4, 0), (5, 0), (5, 1)),
    )


def test_cpcv_every_path_covers_every_bar_once_and_train_never_touches_test() -> None:
    n, groups, k, purge, embargo = 103, 6, 2, 3, 0.05  # embargo: ceil(0.05 x 103) = 6 bars
    plan = cpcv_folds(n, groups, k, purge, embargo)
    assert len(plan.folds) == math.comb(6, 2) and len(plan.paths) == math.comb(5, 1)
    for fold in plan.folds:
        train, test = set(fold.train_indices()), set(fold.test_indices())
        assert not train & test
        for a, b in fold.test:
            assert not train & set(range(a - purge, a))  # purged
            assert not train & set(range(b, b + 6))  # embargoed
            assert (b + 6 >= n) or (b + 6 in train) or (b + 6 in test)  # not more
    for path in plan.paths:
        bars = np.concatenate([np.arange(*plan.folds[f].test[s]) for f, s in path])
        assert bars.tolist() == list(range(n))


# ------------------------------------------------------------------ running


def test_rolling_in_sample_choice_is_the_sweeps_rank_1_on_the_train_bars() -> None:
    bars = _bars(3_000)
    grid = expand_grid("sma_cross", GRID)
    trailing = EngineConfig(use_trailing_atr=True, atr_period=10, atr_mult=2.0)
    for metric, cfg in (("sharpe", CFG), ("max_drawdown", CFG), ("win_rate", trailing)):
        result = walkforward_bars(bars, grid, cfg, "crypto", fold_spec("1000", "500"), metric)
        assert len(result.folds) == 4
        for fr in result.folds:
            ((a, b),) = fr.fold.train
            frame = sweep_bars(bars.iloc[a:b].reset_index(drop=True), grid, cfg, "crypto", metric)
            best = frame[frame["rank"] == 1].iloc[0]
            assert fr.params == best["params"] == params_json(grid.params[fr.best])
            for key in METRIC_KEYS:
                got, want = float(fr.is_metrics[key]), float(best[key])
                assert got == want or (math.isnan(got) and math.isnan(want)), (metric, key)


def test_out_of_sample_never_reads_a_bar_after_its_window() -> None:
    """Every bar after a fold's test window is changed wildly: that fold (its in-sample
    choice and its out-of-sample run) is bit for bit the same; bars before the
    warm-up are changed too for the out-of-sample run alone."""
    bars = _bars(4_000, seed=5)
    grid = expand_grid("sma_cross", GRID)
    spec = fold_spec("1000", "500")
    base = walkforward_bars(bars, grid, CFG, "crypto", spec)
    rng = np.random.default_rng(0)
    for fr in base.folds[:-1]:
        end = fr.fold.test[-1][1]
        poisoned = bars.copy()
        scale = rng.uniform(0.3, 3.0, len(bars) - end)
        for col in ("open", "high", "low", "close"):
            poisoned.loc[end:, col] = poisoned.loc[end:, col].to_numpy() * scale
        again = walkforward_bars(poisoned, grid, CFG, "crypto", spec)
        other = again.folds[fr.fold.index]
        assert other.params == fr.params and other.is_metrics == fr.is_metrics
        for s1, s2 in zip(fr.segments, other.segments, strict=True):
            assert np.array_equal(s1.equity, s2.equity)
            assert np.array_equal(s1.pnl, s2.pnl)
        # the later folds saw the new bars: the change did reach the run
        assert not np.array_equal(again.paths[0].equity, base.paths[0].equity)
    # the run itself: NaN after the window and before its warm-up change nothing
    params = grid.params[base.folds[1].best]
    a, b = base.folds[1].fold.test[0]
    lead = a - get_strategy("sma_cross").warmup(params)
    arrays = _arrays(bars)
    clean = oos_run(arrays, "sma_cross", params, a, b, CFG)
    for x in arrays:
        x[b:] = np.nan
        x[:lead] = np.nan
    dirty = oos_run(arrays, "sma_cross", params, a, b, CFG)
    assert np.array_equal(clean.equity, dirty.equity)
    # with a trailing ATR stop too (the engine's ATR warms up on the same bars)
    trailing = EngineConfig(use_trailing_atr=True, atr_period=10, atr_mult=2.0)
    fresh = _arrays(bars)
    assert np.array_equal(
        oos_run(fresh, "sma_cross", params, a, b, trailing).equity,
        oos_run(arrays, "sma_cross", params, a, b, trailing).equity,
    )
    assert clean.equity.shape == (b - a,) and clean.position[0] == 0.0  # flat at the start


def test_out_of_sample_run_starts_flat_and_uses_the_warm_up() -> None:
    """The run equals the engine on the test bars alone fed the signals the strategy
    computes from ``warmup`` bars earlier: with the warm-up it can trade from the
    first test bar; a cold start (no bars before) could not signal for ``slow`` bars."""
    bars = _bars(2_000, seed=8)
    params = expand_grid("sma_cross", {"fast": [5], "slow": [40]}).params[0]
    arrays = _arrays(bars)
    a, b = 1_000, 1_300
    run = oos_run(arrays, "sma_cross", params, a, b, CFG)
    w = get_strategy("sma_cross").warmup(params)
    sig, _ = get_strategy("sma_cross").signals(*(x[a - w : b] for x in arrays), params)
    ref = run_arrays(*(x[a:b] for x in arrays), sig[w:], CFG)
    assert np.array_equal(run.equity, ref["equity"])
    assert np.array_equal(run.position, ref["position"])
    assert sig[w:].any() and sig[w : w + 5].tolist() == sig[w : w + 5].tolist()
    assert run.equity[0] == CFG.initial_equity or run.position[0] == 0.0


def test_pool_stats_equal_the_pooled_returns_of_the_segments() -> None:
    bars = _bars(1_500, seed=2)
    grid = expand_grid("sma_cross", {"fast": [5, 8], "slow": [30]})
    arrays = _arrays(bars)
    from hedgeflow.sweep.core import _raw_stats

    spec = get_strategy("sma_cross")
    segs = [(0, 500), (620, 1_100), (1_180, 1_500)]
    parts = [_raw_stats(spec, grid.params, *(x[a:b] for x in arrays), CFG)[0] for a, b in segs]
    pooled, n = pool_stats(parts, [b - a for a, b in segs])
    assert n == sum(b - a - 1 for a, b in segs) + 1
    for j, p in enumerate(grid.params):
        rets, pnl = [], []
        growth = 1.0
        for a, b in segs:
            sig, _ = spec.signals(*(x[a:b] for x in arrays), p)
            out = run_arrays(*(x[a:b] for x in arrays), sig, CFG)
            e = out["equity"]
            rets.append(e[1:] / e[:-1] - 1)
            pnl.append(out["pnl"])
            growth *= e[-1] / e[0]
        r = np.concatenate(rets)
        all_pnl = np.concatenate(pnl)
        assert pooled[j, K.S_MEAN] == pytest.approx(r.mean(), rel=1e-12, abs=1e-18)
        assert pooled[j, K.S_STD] == pytest.approx(r.std(ddof=1), rel=1e-10)
        down = np.sqrt(np.mean(np.minimum(r, 0) ** 2))
        assert pooled[j, K.S_DOWNSIDE] == pytest.approx(down, rel=1e-10)
        assert pooled[j, K.S_GROWTH] == pytest.approx(growth, rel=1e-12)
        assert pooled[j, K.S_N_TRADES] == len(all_pnl)
        assert pooled[j, K.S_GROSS_PROFIT] == pytest.approx(all_pnl[all_pnl > 0].sum())
    one, n1 = pool_stats(parts[:1], [500])
    assert one is parts[0] and n1 == 500


def test_stitch_chains_each_segment_from_where_the_last_ended() -> None:
    a = SegmentRun(0, 3, np.array([100.0, 110.0, 121.0]), np.zeros(3), np.array([21.0]))
    b = SegmentRun(5, 7, np.array([100.0, 90.0]), np.zeros(2), np.array([-10.0]))
    bars, equity, _, pnl = stitch([a, b], 100.0)
    assert bars.tolist() == [0, 1, 2, 5, 6]
    assert equity == pytest.approx([100, 110, 121, 121, 108.9])
    assert pnl == pytest.approx([21.0, -12.1])


def test_no_edge_stitched_out_of_sample_sharpe_is_near_zero() -> None:
    """12 random walks, 30 sma_cross combinations, 10 folds of 1000 train / 500 test bars.

    No costs, so that only the choice matters. In sample the fold's winner is the best
    of 30 noise Sharpes: every seed's mean annualised in-sample Sharpe is above 5 and the
    mean in-sample z (= per-bar Sharpe x sqrt(bars)) above 1. Out of sample the
    winner has no edge: z = per-bar Sharpe x sqrt(5000 OOS bars)
    is about N(0, 1) under the null (a Sharpe estimate's standard error is
    1 / sqrt(bars)), so the mean over 12 seeds must lie within 3 standard errors
    (3 / sqrt(12) = 0.87) of 0 and no seed beyond 3.5."""
    grid = expand_grid("sma_cross", GRID)
    per_year = bars_per_year("crypto", 300)
    z_oos, z_is = [], []
    for seed in range(12):
        bars = _bars(6_000, seed)
        result = walkforward_bars(bars, grid, EngineConfig(), "crypto", fold_spec("1000", "500"))
        path = result.paths[0]
        z_oos.append(path.metrics["sharpe"] / math.sqrt(per_year) * math.sqrt(len(path.bars)))
        z_is.append(np.mean([fr.is_metrics["sharpe"] / math.sqrt(per_year)
                             * math.sqrt(fr.fold.n_train) for fr in result.folds]))  # fmt: skip
        assert result.is_mean["sharpe"] > 5  # annualised: the winners look good
    assert np.mean(z_is) > 1.0, z_is
    assert np.mean(z_oos) < np.mean(z_is) - 0.5
    assert abs(float(np.mean(z_oos))) < 3 / math.sqrt(12), z_oos
    assert max(abs(z) for z in z_oos) < 3.5, z_oos


def test_cpcv_paths_give_a_distribution_of_out_of_sample_sharpe() -> None:
    bars = _bars(3_000, seed=4)
    grid = expand_grid("sma_cross", GRID)
    spec = fold_spec(cpcv=True, groups=6, test_groups=2, purge=20, embargo=0.01)
    result = walkforward_bars(bars, grid, CFG, "crypto", spec)
    assert len(result.folds) == 15 and len(result.paths) == 5
    sharpes = result.oos_sharpes
    assert sharpes.shape == (5,) and np.isfinite(sharpes).all() and np.ptp(sharpes) > 0
    for path in result.paths:
        assert path.bars.tolist() == list(range(3_000))
    # a split's out-of-sample metrics chain its two test groups, each run from flat
    fr = result.folds[0]
    assert [s.start for s in fr.segments] == [g[0] for g in fr.fold.test]
    assert fr.oos_metrics["n_trades"] == sum(len(s.pnl) for s in fr.segments)


# ------------------------------------------------------------------ bad input


def test_bad_fold_settings_are_one_clear_error() -> None:
    cases = [
        (lambda: fold_spec("60x", "10d"), "--train '60x' is not a duration"),
        (lambda: fold_spec("60d", "0d"), "--test '0d' is not a duration"),
        (lambda: fold_spec("60d", "10d", "5d"), "--step 5d is shorter than --test 10d"),
        (lambda: fold_spec("600", "10d"), "must all be bar counts or all be durations"),
        (lambda: fold_spec(cpcv=True, groups=1), "--groups must be an integer >= 2"),
        (lambda: fold_spec(cpcv=True, groups=4, test_groups=4), r"--test-groups must be"),
        (lambda: fold_spec(cpcv=True, groups=4, test_groups=0), r"--test-groups must be"),
        (lambda: fold_spec(cpcv=True, purge=-1), "--purge must be a whole number"),
        (lambda: fold_spec(cpcv=True, embargo=-0.5), "--embargo must be >= 0"),
        (lambda: fold_spec(cpcv=True, embargo=2.5), "must be whole"),
        (lambda: fold_spec("60d", "10d", anchored=True, cpcv=True), "exclude each other"),
        (lambda: fold_spec(None, "10d"), "needs --train and --test"),
    ]
    for call, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            call()


def test_folds_that_do_not_fit_and_a_train_window_below_the_warm_up() -> None:
    bars = _bars(800)
    grid = expand_grid("sma_cross", {"fast": [5], "slow": [100, 200]})
    with pytest.raises(InvalidInputError, match="no fold fits: --train 600 plus --test 300"):
        walkforward_bars(bars, grid, CFG, "crypto", fold_spec("600", "300"))
    with pytest.raises(InvalidInputError, match="no fold fits: --train 3d plus --test 1d"):
        walkforward_bars(bars, grid, CFG, "crypto", fold_spec("3d", "1d"))  # 800 bars < 3 d
    with pytest.raises(
        InvalidInputError, match="not more than the sma_cross grid's warm-up of 199"
    ):
        walkforward_bars(bars, grid, CFG, "crypto", fold_spec("150", "100"))
    with pytest.raises(InvalidInputError, match="cannot be split into 500 groups"):
        walkforward_bars(bars, grid, CFG, "crypto", fold_spec(cpcv=True, groups=500))
    with pytest.raises(InvalidInputError, match="no train bars left"):
        cpcv_folds(20, 2, 1, purge=10, embargo=10)
    # the same refusals before any data is read (5-minute bars, a 2-day window)
    with pytest.raises(InvalidInputError, match="warm-up of 199 bars"):
        precheck(fold_spec("10h", "1h"), grid, 300.0, 2 * 86_400)  # 120 bars
    with pytest.raises(InvalidInputError, match="no fold fits"):
        precheck(fold_spec("2d", "1d"), grid, 300.0, 2 * 86_400)
    precheck(fold_spec("1d", "12h"), grid, 300.0, 2 * 86_400)  # fits
    assert Fold(0, ((0, 4),), ((4, 6),)).n_test == 2
