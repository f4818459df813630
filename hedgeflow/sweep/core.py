"""Run a grid on one symbol's bars in one compiled batch, then rank the combinations.

``sweep_arrays`` packs each combination's parameters and the engine settings and
calls the strategy's generated sweep kernel (:mod:`hedgeflow.strategies.compiled`):
for every combination in parallel, the strategy's own per-bar update, then the
engine's rules (``hedgeflow.sweep.kernels._combo``). Any strategy sweeps the same
way; there is no per-strategy code. The metrics equal, bit for bit, what the
normal path gives for each combination: ``strategy.signals`` ->
``engine.run_arrays`` -> ``metrics.compute_metrics`` (the tests check equality).

Parallel numba kernels may not be entered by two Python threads at once under
numba's ``workqueue`` threading layer, so calls are serialised by
``hedgeflow.parallel.KERNEL_LOCK`` (the kernel already uses every core).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from hedgeflow import columns as C
from hedgeflow.columns import ORDERS_SKIPPED
from hedgeflow.engine import EngineConfig, engine_settings, run_arrays
from hedgeflow.errors import InvalidInputError
from hedgeflow.indicators import atr
from hedgeflow.market import bars_per_year, validate_asset_class
from hedgeflow.metrics import METRIC_KEYS, bar_spacing_seconds, return_ratios
from hedgeflow.overfit import (
    DEFAULT_BLOCKS,
    OverfitStats,
    block_starts,
    check_dimensions,
    overfit_from_moments,
)
from hedgeflow.parallel import KERNEL_LOCK
from hedgeflow.rules import Settings
from hedgeflow.strategies import Strategy, get_strategy
from hedgeflow.sweep import kernels as K
from hedgeflow.sweep.grid import SweepGrid

__all__ = [
    "RANK_METRICS",
    "RankMetric",
    "SymbolResult",
    "best_rows",
    "engine_vector",
    "finish_metrics",
    "params_json",
    "rank_results",
    "sweep_arrays",
    "sweep_bars",
    "sweep_returns",
    "sweep_symbol_bars",
]

RankMetric = Literal[
    "sharpe",
    "sortino",
    "total_return",
    "cagr",
    "calmar",
    "max_drawdown",
    "profit_factor",
    "win_rate",
    "ann_vol",
]
# Metric -> True when larger is better (max_drawdown is <= 0: closer to 0 is better).
RANK_METRICS: dict[str, bool] = {
    "sharpe": True,
    "sortino": True,
    "total_return": True,
    "cagr": True,
    "calmar": True,
    "max_drawdown": True,
    "profit_factor": True,
    "win_rate": True,
    "ann_vol": False,
}

_KERNEL_LOCK = KERNEL_LOCK


def params_json(params: Any) -> str:
    """The canonical JSON text of a Params dataclass (sorted keys), as stored."""
    return json.dumps(dataclasses.asdict(params), sort_keys=True)


def engine_vector(config: EngineConfig) -> Settings:
    """The engine settings as the kernels take them (the same floats as run_arrays)."""
    return engine_settings(config)


def _f64(name: str, x: Any, n: int) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InvalidInputError(f"{name} must be a 1-D array of {n} values")
    return arr


def pack_grid(
    spec: Strategy, params: Sequence[Any], shorts: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The parameter vectors (one row per combination, then the shorts flag) and state
    sizes the kernel takes."""
    packed = np.ascontiguousarray(np.stack([spec.pack(p, shorts=shorts) for p in params]))
    sizes = np.array([spec.size(p) for p in params], dtype=np.int64)
    return packed, sizes


def _raw_stats(
    spec: Strategy,
    params: Sequence[Any],
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    config: EngineConfig,
    starts: np.ndarray | None = None,
    packed_sizes: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Statistics of every combination and the block moments of its bar returns over
    the blocks ``starts`` (none by default): the strategy's generated sweep kernel
    (its update per combination, then the engine's rules), in parallel.
    ``packed_sizes``: ``pack_grid(spec, params)`` when the caller runs the same grid
    many times (walk-forward folds)."""
    eng = engine_vector(config)
    atr_values = (
        atr(h, lo, c, config.atr_period)
        if config.use_trailing_atr
        else np.empty(0, dtype=np.float64)
    )
    packed, sizes = (
        packed_sizes if packed_sizes is not None else pack_grid(spec, params, config.allow_short)
    )
    kernels = spec.kernels()
    cuts = np.zeros(1, dtype=np.int64) if starts is None else np.ascontiguousarray(starts)
    with _KERNEL_LOCK:
        try:
            out, moments = kernels.sweep(
                o, h, lo, c, atr_values, eng, packed, sizes, len(spec.indicators), cuts
            )
        except Exception as exc:
            raise InvalidInputError(
                f"strategy {spec.ref}: update failed in the sweep: {type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            ) from None
    return np.asarray(out), np.asarray(moments)


def segment_stats(
    spec: Strategy,
    params: Sequence[Any],
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    segments: Sequence[tuple[int, int]],
    config: EngineConfig,
    packed_sizes: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """``_raw_stats`` of every combination on each bar segment ``[a, b)`` of the arrays
    (each as if it were the whole input: the same floats as ``_raw_stats`` on the
    slice), all (segment, combination) pairs in one parallel kernel call: a segments x
    combinations x statistics array."""
    o, h, lo, c = arrays
    eng = engine_vector(config)
    bounds = np.array(segments, dtype=np.int64).reshape(-1, 2)
    if config.use_trailing_atr:  # each segment's own ATR, as the sweep of the slice has
        parts = [atr(h[a:b], lo[a:b], c[a:b], config.atr_period) for a, b in segments]
        atr_values = np.ascontiguousarray(np.concatenate(parts))
        atr_at = np.concatenate([[0], np.cumsum([len(x) for x in parts])[:-1]]).astype(np.int64)
    else:
        atr_values = np.empty(0, dtype=np.float64)
        atr_at = np.zeros(len(segments), dtype=np.int64)
    packed, sizes = (
        packed_sizes if packed_sizes is not None else pack_grid(spec, params, config.allow_short)
    )
    kernels = spec.kernels()
    lo_at = np.ascontiguousarray(bounds[:, 0])
    hi_at = np.ascontiguousarray(bounds[:, 1])
    with _KERNEL_LOCK:
        try:
            out = kernels.sweep_segments(
                o, h, lo, c, atr_values, atr_at, eng, packed, sizes, len(spec.indicators),
                lo_at, hi_at,
            )  # fmt: skip
        except Exception as exc:
            raise InvalidInputError(
                f"strategy {spec.ref}: update failed in the sweep: {type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            ) from None
    return np.asarray(out)


def finish_metrics(stats: np.ndarray, n_bars: int, n_per_year: float) -> dict[str, Any]:
    """The metrics of one combination from its raw statistics, with the expressions
    of ``compute_metrics`` (so the floats are the same)."""
    if stats[K.S_FINITE] != 1.0:
        raise InvalidInputError("equity is not finite")
    ratios = return_ratios(
        float(stats[K.S_GROWTH]),
        n_bars - 1,
        n_per_year,
        float(stats[K.S_MEAN]),
        float(stats[K.S_STD]),
        float(stats[K.S_DOWNSIDE]),
        float(stats[K.S_MAX_DD]),
    )
    n_trades = int(stats[K.S_N_TRADES])
    win_rate = math.nan
    profit_factor = math.nan
    if n_trades > 0:
        win_rate = float(stats[K.S_WINS]) / n_trades
        gross_profit = float(stats[K.S_GROSS_PROFIT])
        gross_loss = float(stats[K.S_GROSS_LOSS])
        profit_factor = gross_profit / gross_loss if gross_loss > 0 else math.nan
    return {
        **ratios,
        "n_trades": n_trades,
        "win_rate": win_rate,
        "profit_factor": profit_factor,
        "exposure": float(stats[K.S_EXPOSED]) / n_bars,
    }


def sweep_arrays(
    open_: Any,
    high: Any,
    low: Any,
    close: Any,
    strategy: str,
    params: Sequence[Any],
    config: EngineConfig,
    n_per_year: float,
) -> list[dict[str, Any]]:
    """Metrics (``METRIC_KEYS``) of every Params in ``params`` on these bars.

    ``n_per_year`` is the annualisation factor (``market.bars_per_year``); it is
    only used when there are at least two bars."""
    spec = get_strategy(strategy)
    if not params:
        raise InvalidInputError("no parameter combinations to sweep")
    for p in params:
        if not isinstance(p, spec.params_type):
            raise InvalidInputError(f"expected {spec.name} parameters, got {p!r}")
    c = _f64("close", close, np.asarray(close).shape[0])
    n = c.shape[0]
    if n == 0:
        raise InvalidInputError("no bars to sweep")
    o, h, lo = _f64("open", open_, n), _f64("high", high, n), _f64("low", low, n)
    stats, _ = _raw_stats(spec, params, o, h, lo, c, config)
    return [finish_metrics(stats[j], n, n_per_year) for j in range(len(params))]


@dataclasses.dataclass(frozen=True)
class SymbolResult:
    """A grid on one symbol: the ranked frame and the overfitting statistics of its
    combinations (None, with the reason in ``overfit_note``, when they cannot be
    computed: fewer bar returns than blocks, or a single combination)."""

    frame: pd.DataFrame
    overfit: OverfitStats | None
    overfit_note: str | None = None


def sweep_symbol_bars(
    bars: pd.DataFrame,
    grid: SweepGrid,
    config: EngineConfig,
    asset_class: str,
    metric: str = "sharpe",
    blocks: int | None = DEFAULT_BLOCKS,
) -> SymbolResult:
    """Sweep ``grid`` on one symbol's bars: one row per combination with the grid
    parameters, ``params`` (JSON), the metrics and ``rank`` (1 = best by ``metric``),
    and the overfitting statistics of the combinations' bar returns over ``blocks``
    CSCV blocks (trials in grid order; ``None``: none), from block moments the sweep
    kernel computes as it goes."""
    ac = validate_asset_class(asset_class)
    if bars.empty:
        raise InvalidInputError("no bars to sweep")
    n = len(bars)
    n_per_year = bars_per_year(ac, bar_spacing_seconds(bars[C.TS])) if n >= 2 else math.nan
    o, h, lo, c = (bars[col].to_numpy(np.float64) for col in C.PRICE_COLUMNS)
    spec = get_strategy(grid.strategy)
    c = _f64("close", c, n)
    o, h, lo = _f64("open", o, n), _f64("high", h, n), _f64("low", lo, n)
    note = None if blocks is not None else "no overfitting statistics asked for"
    if blocks is not None:
        try:
            check_dimensions(n - 1, grid.size, blocks)
        except InvalidInputError as exc:
            note = f"no overfitting statistics: {exc}"
    starts = block_starts(n - 1, blocks) if note is None and blocks is not None else None
    stats, moments = _raw_stats(spec, grid.params, o, h, lo, c, config, starts)
    metrics = [finish_metrics(stats[j], n, n_per_year) for j in range(grid.size)]
    frame = pd.DataFrame([dataclasses.asdict(p) for p in grid.params])[list(grid.axes)]
    frame["params"] = [params_json(p) for p in grid.params]
    metric_frame = pd.DataFrame(metrics, columns=list(METRIC_KEYS))
    metric_frame["n_trades"] = metric_frame["n_trades"].astype(np.int64)
    # entries the order minimums skipped (engine.BacktestResult.skipped, counted)
    metric_frame[ORDERS_SKIPPED] = stats[:, K.S_SKIPPED].astype(np.int64)
    out = pd.concat([frame.reset_index(drop=True), metric_frame], axis=1)
    overfit = None
    if starts is not None:
        overfit = overfit_from_moments(stats[:, K.S_MEAN], stats[:, K.S_STD], moments, n - 1)
    return SymbolResult(rank_results(out, metric), overfit, note)


def sweep_bars(
    bars: pd.DataFrame,
    grid: SweepGrid,
    config: EngineConfig,
    asset_class: str,
    metric: str = "sharpe",
) -> pd.DataFrame:
    """Sweep ``grid`` on one symbol's bars: one row per combination with the grid
    parameters, ``params`` (JSON), the metrics and ``rank`` (1 = best by ``metric``)."""
    return sweep_symbol_bars(bars, grid, config, asset_class, metric, blocks=None).frame


def sweep_returns(bars: pd.DataFrame, grid: SweepGrid, config: EngineConfig) -> np.ndarray:
    """Every combination's per-bar returns, recomputed on demand through the normal
    path (``strategy.signals`` -> ``engine.run_arrays``): a (bars - 1) x combinations
    matrix, columns in grid order, ``equity[i + 1] / equity[i] - 1``. The sweep's
    overfitting statistics are ``overfit_stats`` of this matrix."""
    spec = get_strategy(grid.strategy)
    o, h, lo, c = (bars[col].to_numpy(np.float64) for col in C.PRICE_COLUMNS)
    out = np.empty((len(bars) - 1, grid.size), dtype=np.float64, order="F")
    for j, p in enumerate(grid.params):
        signal, _ = spec.signals(o, h, lo, c, p, shorts=config.allow_short)
        equity = run_arrays(o, h, lo, c, signal, config)["equity"]
        out[:, j] = equity[1:] / equity[:-1] - 1.0
    return out


def rank_results(frame: pd.DataFrame, metric: str = "sharpe") -> pd.DataFrame:
    """Add ``rank``: 1 = best by ``metric``; NaN ranks last; ties keep grid order."""
    if metric not in RANK_METRICS:
        raise InvalidInputError(
            f"cannot rank by {metric!r}: expected one of {', '.join(RANK_METRICS)}"
        )
    values = pd.to_numeric(frame[metric], errors="coerce").to_numpy(np.float64)
    key = -values if RANK_METRICS[metric] else values
    key = np.where(np.isnan(key), np.inf, key)
    order = np.argsort(key, kind="stable")
    rank = np.empty(len(frame), dtype=np.int64)
    rank[order] = np.arange(1, len(frame) + 1)
    return frame.assign(rank=rank)


def best_rows(frame: pd.DataFrame, by: str = "symbol") -> pd.DataFrame:
    """The rank-1 row of each ``by`` group (or of the frame when it has no ``by``)."""
    best = frame[frame["rank"] == 1]
    return best.sort_values(by).reset_index(drop=True) if by in best else best
