"""Walk-forward and combinatorial purged cross-validation (CPCV) of a sweep grid.

Folds (pure index arithmetic on the bars' timestamps, pinned by the tests):

- ``rolling``: train ``[s, s + train)``, test ``[s + train, s + train + test)``, then
  ``s += step`` (default: the test length) while the test window fits in the bars;
- ``anchored``: the same test windows, the train window always starts at the first
  bar (expanding);
- ``cpcv`` (Lopez de Prado, AFML ch. 12): the bars split into ``groups`` contiguous
  groups as ``numpy.array_split`` does; every ``itertools.combinations(range(N), k)``
  is one split whose k groups are tested and whose other bars train, except the
  ``purge`` bars before each test group and the ``embargo`` bars after it. Each
  group is tested by C(N-1, k-1) splits; path j takes, for every group, the j-th
  split (in combinations order) that tests it: phi = k / N x C(N, k) paths.

Durations are ``<int><unit>`` with unit ``m`` (minutes), ``h``, ``d`` or ``w`` (a
window covers the bars whose timestamps lie in it), or a bare integer: a number
of bars.

For every fold the whole grid runs on the train bars in the sweep's compiled
kernel (:func:`hedgeflow.sweep.core.segment_stats`: every distinct train segment of
every fold, each as if it were the whole input, all in one parallel call; a CPCV
train set of several contiguous segments is pooled from its segments' statistics),
the best combination by the metric (first on ties, as ``rank_results``) is chosen,
and only it runs out of sample on each test segment: its signals are computed from
``warmup(params)`` bars before the segment (the strategy's declared warm-up) up to
the segment's last bar, never after; the engine starts flat at the segment's first
bar (signals before it place no order).

The test segments' equity curves are chained in time order (each starts where
the previous ended) into one stitched out-of-sample curve per path: rolling and
anchored have one path, CPCV phi paths.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from hedgeflow import columns as C
from hedgeflow.engine import EngineConfig, run_arrays
from hedgeflow.errors import InvalidInputError
from hedgeflow.market import bars_per_year, validate_asset_class
from hedgeflow.metrics import METRIC_KEYS, bar_spacing_seconds, compute_metrics
from hedgeflow.strategies import get_strategy
from hedgeflow.sweep import kernels as K
from hedgeflow.sweep.core import (
    RANK_METRICS,
    finish_metrics,
    pack_grid,
    params_json,
    segment_stats,
)
from hedgeflow.sweep.grid import SweepGrid

__all__ = [
    "MODES",
    "Fold",
    "FoldPlan",
    "FoldResult",
    "FoldSpec",
    "PathResult",
    "Span",
    "WalkForwardResult",
    "check_cpcv",
    "cpcv_folds",
    "embargo_bars",
    "fold_spec",
    "fold_summary",
    "oos_run",
    "parse_span",
    "pool_stats",
    "precheck",
    "run_folds",
    "stitch",
    "walk_folds",
    "walkforward_bars",
]

Mode = Literal["rolling", "anchored", "cpcv"]
MODES: tuple[str, ...] = ("rolling", "anchored", "cpcv")
_UNITS = {"m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_SPAN = re.compile(r"^\s*(\d+)\s*([mhdw]?)\s*$")
US = 1_000_000  # microseconds per second


@dataclass(frozen=True)
class Span:
    """A window length: ``bars`` bars, or ``seconds`` of time (exactly one is set)."""

    text: str
    bars: int | None = None
    seconds: int | None = None


def parse_span(text: str | int, name: str = "window") -> Span:
    """``"60d"``, ``"12h"``, ``"90m"``, ``"2w"`` (time) or ``"500"`` (bars)."""
    raw = str(text)
    found = _SPAN.match(raw) if not isinstance(text, bool) else None
    if found is None or int(found.group(1)) <= 0:
        raise InvalidInputError(
            f"--{name} {raw!r} is not a duration: expected a positive whole number of "
            "bars (500) or of minutes, hours, days or weeks (90m, 12h, 60d, 2w)"
        )
    value, unit = int(found.group(1)), found.group(2)
    if not unit:
        return Span(raw.strip(), bars=value)
    return Span(raw.strip(), seconds=value * _UNITS[unit])


@dataclass(frozen=True)
class Fold:
    """One split: contiguous ``[start, end)`` bar-index segments to train and test on."""

    index: int
    train: tuple[tuple[int, int], ...]
    test: tuple[tuple[int, int], ...]

    @property
    def n_train(self) -> int:
        return sum(b - a for a, b in self.train)

    @property
    def n_test(self) -> int:
        return sum(b - a for a, b in self.test)

    def train_indices(self) -> np.ndarray:
        return _indices(self.train)

    def test_indices(self) -> np.ndarray:
        return _indices(self.test)


def _indices(segments: Sequence[tuple[int, int]]) -> np.ndarray:
    if not segments:
        return np.empty(0, dtype=np.int64)
    return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in segments])


@dataclass(frozen=True)
class FoldPlan:
    """The folds of one mode and the paths that stitch their test segments: a path is
    ``(fold, test segment)`` pairs in time order."""

    mode: str
    folds: tuple[Fold, ...]
    paths: tuple[tuple[tuple[int, int], ...], ...]
    groups: tuple[tuple[int, int], ...] = ()  # CPCV groups [start, end)

    def describe(self) -> str:
        if self.mode == "cpcv":
            return (
                f"cpcv: {len(self.groups)} groups, {len(self.folds)} splits, "
                f"{len(self.paths)} paths"
            )
        return f"{self.mode}: {len(self.folds)} folds"


def _boundary(ts_us: np.ndarray, t: int) -> int:
    """The index of the first bar at or after time ``t`` (microseconds)."""
    return int(np.searchsorted(ts_us, t, side="left"))


def walk_folds(
    ts: Any,
    train: Span,
    test: Span,
    step: Span | None = None,
    anchored: bool = False,
) -> FoldPlan:
    """Rolling (or anchored) folds over the bars stamped ``ts`` (strictly increasing).

    Windows in bars count bars; windows in time start at the first bar's timestamp
    and cover the bars stamped inside them. A fold whose test window would pass the
    last bar (in time: the last bar's timestamp plus the bar spacing) is not made."""
    step = step or test
    t = _ts_us(ts)
    n = t.shape[0]
    kinds = {s.bars is None for s in (train, test, step)}
    if len(kinds) != 1:
        raise InvalidInputError(
            f"--train {train.text}, --test {test.text} and --step {step.text} must all be "
            "bar counts or all be durations"
        )
    if _length(step) < _length(test):
        raise InvalidInputError(
            f"--step {step.text} is shorter than --test {test.text}: the test windows would "
            "overlap and their out-of-sample returns could not be stitched"
        )
    folds: list[Fold] = []
    if train.bars is not None:
        assert test.bars is not None and step.bars is not None
        s = 0
        while s + train.bars + test.bars <= n:
            a = 0 if anchored else s
            folds.append(
                Fold(
                    len(folds),
                    ((a, s + train.bars),),
                    ((s + train.bars, s + train.bars + test.bars),),
                )
            )
            s += step.bars
    else:
        assert train.seconds is not None and test.seconds is not None and step.seconds
        if n < 2:
            raise InvalidInputError(f"{n} bar(s): too few to split into folds")
        spacing = int(bar_spacing_seconds(pd.to_datetime(t, unit="us", utc=True))) * US
        end = int(t[-1]) + spacing
        start = int(t[0])
        while start + (train.seconds + test.seconds) * US <= end:
            mid = start + train.seconds * US
            stop = mid + test.seconds * US
            a = 0 if anchored else _boundary(t, start)
            lo, hi = _boundary(t, mid), _boundary(t, stop)
            if hi > lo and lo > a:
                folds.append(Fold(len(folds), ((a, lo),), ((lo, hi),)))
            start += step.seconds * US
    if not folds:
        raise InvalidInputError(
            f"no fold fits: --train {train.text} plus --test {test.text} is longer than the "
            f"{n:,} bars{_span_text(t)}"
        )
    path = tuple((f.index, 0) for f in folds)
    return FoldPlan("anchored" if anchored else "rolling", tuple(folds), (path,))


def _length(span: Span) -> int:
    return span.bars if span.bars is not None else int(span.seconds or 0)


def _span_text(t: np.ndarray) -> str:
    if t.shape[0] < 2:
        return ""
    days = (int(t[-1]) - int(t[0])) / US / 86_400
    return f" ({days:.1f} days)"


def _ts_us(ts: Any) -> np.ndarray:
    idx = pd.DatetimeIndex(pd.to_datetime(pd.Series(ts), utc=True))
    t = idx.as_unit("us").asi8
    if t.shape[0] >= 2 and (np.diff(t) <= 0).any():
        raise InvalidInputError("bar timestamps are not strictly increasing")
    return np.asarray(t, dtype=np.int64)


def embargo_bars(embargo: float, n: int) -> int:
    """``embargo`` bars; a fraction in (0, 1) is that share of the ``n`` bars, rounded up."""
    if isinstance(embargo, bool) or not math.isfinite(float(embargo)) or embargo < 0:
        raise InvalidInputError(f"--embargo must be >= 0 (bars or a fraction), got {embargo!r}")
    if 0 < embargo < 1:
        return math.ceil(float(embargo) * n)
    if float(embargo) != int(embargo):
        raise InvalidInputError(
            f"--embargo {embargo!r}: a number of bars must be whole (or a fraction below 1)"
        )
    return int(embargo)


def check_cpcv(groups: int, test_groups: int, purge: int) -> None:
    """The CPCV settings alone: groups >= 2, 1 <= k < groups, purge >= 0 (whole bars)."""
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 2:
        raise InvalidInputError(f"--groups must be an integer >= 2, got {groups!r}")
    if (
        isinstance(test_groups, bool)
        or not isinstance(test_groups, int)
        or not (1 <= test_groups < groups)
    ):
        raise InvalidInputError(
            f"--test-groups must be an integer in [1, groups - 1] = [1, {groups - 1}], "
            f"got {test_groups!r}"
        )
    if isinstance(purge, bool) or not isinstance(purge, int) or purge < 0:
        raise InvalidInputError(f"--purge must be a whole number of bars >= 0, got {purge!r}")


def cpcv_folds(
    n: int, groups: int, test_groups: int, purge: int = 0, embargo: float = 0
) -> FoldPlan:
    """The CPCV splits of ``n`` bars (see the module docstring)."""
    check_cpcv(groups, test_groups, purge)
    emb = embargo_bars(embargo, n)
    if n < 2 * groups:
        raise InvalidInputError(
            f"{n:,} bars cannot be split into {groups} groups of at least 2 bars"
        )
    bounds = [(int(c[0]), int(c[-1]) + 1) for c in np.array_split(np.arange(n), groups)]
    folds = []
    for index, chosen in enumerate(itertools.combinations(range(groups), test_groups)):
        keep = np.ones(n, dtype=bool)
        for g in chosen:
            a, b = bounds[g]
            keep[a:b] = False
            keep[max(0, a - purge) : a] = False
            keep[b : min(n, b + emb)] = False
        train = _segments(keep)
        if not train:
            raise InvalidInputError(
                f"split {index} (test groups {list(chosen)}) has no train bars left after the "
                f"purge of {purge} and the embargo of {emb} bars"
            )
        folds.append(Fold(index, train, tuple(bounds[g] for g in chosen)))
    combos = list(itertools.combinations(range(groups), test_groups))
    n_paths = math.comb(groups - 1, test_groups - 1)
    paths = []
    for j in range(n_paths):
        path = []
        for g in range(groups):
            testing = [i for i, c in enumerate(combos) if g in c]
            split = testing[j]
            path.append((split, combos[split].index(g)))
        paths.append(tuple(path))
    return FoldPlan("cpcv", tuple(folds), tuple(paths), tuple(bounds))


def _segments(mask: np.ndarray) -> tuple[tuple[int, int], ...]:
    """The ``[start, end)`` runs of True in ``mask``."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(padded)
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return tuple((int(a), int(b)) for a, b in zip(starts, ends, strict=True))


# --------------------------------------------------------------------------- running


def pool_stats(parts: Sequence[np.ndarray], lengths: Sequence[int]) -> tuple[np.ndarray, int]:
    """The sweep statistics (one row per combination) of several train segments run
    separately, pooled as if their bar returns were one sample: returns counted
    within segments only (sum of ``n_s - 1``), mean and std(ddof=1) of the pooled
    returns, downside over them, growth the product, max drawdown the worst
    segment's, trades, wins, gross profit / loss and exposure summed. Returns the
    pooled statistics and the bar count ``m + 1`` to finish them with."""
    if len(parts) == 1:
        return parts[0], int(lengths[0])
    m_s = np.array([max(n - 1, 0) for n in lengths], dtype=np.float64)
    m = float(m_s.sum())
    stack = np.stack(parts)  # segments x combinations x stats
    means = stack[:, :, K.S_MEAN]
    mean = (m_s[:, None] * means).sum(axis=0) / m if m > 0 else np.zeros(stack.shape[1])
    m2 = (np.maximum(m_s - 1, 0)[:, None] * stack[:, :, K.S_STD] ** 2).sum(axis=0)
    m2 += (m_s[:, None] * (means - mean) ** 2).sum(axis=0)
    out = np.empty_like(stack[0])
    out[:, K.S_GROWTH] = np.prod(stack[:, :, K.S_GROWTH], axis=0)
    out[:, K.S_MEAN] = mean
    out[:, K.S_STD] = np.sqrt(m2 / (m - 1)) if m >= 2 else 0.0
    down2 = (m_s[:, None] * stack[:, :, K.S_DOWNSIDE] ** 2).sum(axis=0)
    out[:, K.S_DOWNSIDE] = np.sqrt(down2 / m) if m > 0 else 0.0
    out[:, K.S_MAX_DD] = stack[:, :, K.S_MAX_DD].min(axis=0)
    for col in (K.S_N_TRADES, K.S_WINS, K.S_GROSS_PROFIT, K.S_GROSS_LOSS, K.S_EXPOSED):
        out[:, col] = stack[:, :, col].sum(axis=0)
    out[:, K.S_FINITE] = stack[:, :, K.S_FINITE].min(axis=0)
    return out, int(m) + 1


@dataclass(frozen=True)
class SegmentRun:
    """One out-of-sample run: bars ``[start, end)``, the engine's equity and position
    per bar (starting flat at ``start``) and its closed trades' pnl."""

    start: int
    end: int
    equity: np.ndarray
    position: np.ndarray
    pnl: np.ndarray


@dataclass(frozen=True)
class FoldResult:
    fold: Fold
    best: int  # index of the chosen combination in the grid
    params: str  # its JSON
    is_metrics: dict[str, Any]  # its in-sample metrics
    oos_metrics: dict[str, Any]  # of its test segments chained
    segments: tuple[SegmentRun, ...]


@dataclass(frozen=True)
class PathResult:
    """A stitched out-of-sample curve: bar indices, equity, and its metrics."""

    index: int
    bars: np.ndarray
    equity: np.ndarray
    metrics: dict[str, Any]


@dataclass(frozen=True)
class WalkForwardResult:
    plan: FoldPlan
    metric: str
    folds: tuple[FoldResult, ...]
    paths: tuple[PathResult, ...]
    is_mean: dict[str, float]  # mean over folds of the chosen combinations' IS metrics
    combination_bars: int  # bars x combinations evaluated (train grid + OOS runs)

    @property
    def oos_sharpes(self) -> np.ndarray:
        return np.array([p.metrics["sharpe"] for p in self.paths], dtype=np.float64)


def stitch(
    segments: Sequence[SegmentRun], initial: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Chain segments' equity curves: each segment's curve (which starts from
    ``initial``) is scaled to start where the previous one ended. Returns bar
    indices, equity, position and trade pnl (in segment order)."""
    bars, equity, position, pnl = [], [], [], []
    level = 1.0
    for seg in segments:
        curve = seg.equity * level
        bars.append(np.arange(seg.start, seg.end, dtype=np.int64))
        equity.append(curve)
        position.append(seg.position)
        pnl.append(seg.pnl * level)
        level = float(curve[-1]) / initial
    return (
        np.concatenate(bars),
        np.concatenate(equity),
        np.concatenate(position),
        np.concatenate(pnl) if pnl else np.empty(0),
    )


def _metrics_of(
    segments: Sequence[SegmentRun], initial: float, bar_seconds: float, asset_class: str
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    bars, equity, position, pnl = stitch(segments, initial)
    trades = pd.DataFrame({"pnl": pnl})
    metrics = compute_metrics(equity, None, trades, asset_class, position, bar_seconds=bar_seconds)
    return bars, equity, metrics


def oos_run(
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    strategy: str,
    params: Any,
    start: int,
    end: int,
    config: EngineConfig,
) -> SegmentRun:
    """Run one combination out of sample on bars ``[start, end)``: its signals and the
    engine over the bars from ``warmup(params)`` before ``start`` (the warm-up is read,
    no order placed there), so it is flat at ``start``. Reads no bar at or after
    ``end``."""
    spec = get_strategy(strategy)
    lead = max(0, start - int(spec.warmup(params)))
    o, h, lo, c = (a[lead:end] for a in arrays)
    signal, _ = spec.signals(o, h, lo, c, params, shorts=config.allow_short)
    k = start - lead
    # the engine reads the warm-up bars too (its ATR for a trailing stop) but places
    # no order there: flat until ``start``, exactly as a run starting at ``start``
    signal = signal.copy()
    signal[:k] = 0
    out = run_arrays(o, h, lo, c, signal, config)
    return SegmentRun(start, end, out["equity"][k:], out["position"][k:], out["pnl"])


def _best(metrics: Sequence[dict[str, Any]], metric: str, larger_better: bool) -> int:
    """The rank-1 combination as ``rank_results`` ranks: best by ``metric``, NaN last,
    the first on ties."""
    values = np.array([float(m[metric]) for m in metrics], dtype=np.float64)
    key = -values if larger_better else values
    return int(np.argmin(np.where(np.isnan(key), np.inf, key)))


def _check_warmup(plan: FoldPlan, grid: SweepGrid) -> None:
    spec = get_strategy(grid.strategy)
    need = max(int(spec.warmup(p)) for p in grid.params)
    for fold in plan.folds:
        longest = max(b - a for a, b in fold.train)
        if longest <= need:
            raise InvalidInputError(
                f"fold {fold.index}: the train window holds {longest:,} consecutive bars, "
                f"not more than the {grid.strategy} grid's warm-up of {need:,} bars: "
                "use a longer --train or shorter indicator windows"
            )


def run_folds(
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    plan: FoldPlan,
    grid: SweepGrid,
    config: EngineConfig,
    n_per_year: float,
    bar_seconds: float,
    asset_class: str,
    metric: str = "sharpe",
) -> WalkForwardResult:
    """Every fold of ``plan`` on these bars (see the module docstring)."""
    if metric not in RANK_METRICS:
        raise InvalidInputError(
            f"cannot rank by {metric!r}: expected one of {', '.join(RANK_METRICS)}"
        )
    _check_warmup(plan, grid)
    spec = get_strategy(grid.strategy)
    initial = float(config.initial_equity)
    packed = pack_grid(spec, grid.params, config.allow_short)
    larger_better = RANK_METRICS[metric]
    # every distinct train segment once, all in one parallel kernel call
    segments = sorted({seg for fold in plan.folds for seg in fold.train})
    stats = segment_stats(spec, grid.params, arrays, segments, config, packed)
    at = {seg: i for i, seg in enumerate(segments)}
    evaluated = grid.size * sum(b - a for a, b in segments)
    results = []
    for fold in plan.folds:
        parts = [stats[at[seg]] for seg in fold.train]
        lengths = [b - a for a, b in fold.train]
        pooled, n_pooled = pool_stats(parts, lengths)
        metrics = [finish_metrics(pooled[j], n_pooled, n_per_year) for j in range(grid.size)]
        best = _best(metrics, metric, larger_better)
        chosen = grid.params[best]
        runs = []
        for a, b in fold.test:
            runs.append(oos_run(arrays, grid.strategy, chosen, a, b, config))
            evaluated += b - max(0, a - int(spec.warmup(chosen)))
        _, _, oos = _metrics_of(runs, initial, bar_seconds, asset_class)
        results.append(FoldResult(fold, best, params_json(chosen), metrics[best], oos, tuple(runs)))
    paths = []
    for index, path in enumerate(plan.paths):
        segs = [results[f].segments[s] for f, s in path]
        bars, equity, stitched = _metrics_of(segs, initial, bar_seconds, asset_class)
        paths.append(PathResult(index, bars, equity, stitched))
    is_mean = {
        key: float(np.nanmean([float(r.is_metrics[key]) for r in results]))
        if any(np.isfinite(float(r.is_metrics[key])) for r in results)
        else math.nan
        for key in METRIC_KEYS
    }
    return WalkForwardResult(plan, metric, tuple(results), tuple(paths), is_mean, evaluated)


@dataclass(frozen=True)
class FoldSpec:
    """How to cut the bars into folds (checked by :func:`fold_spec`)."""

    mode: str  # MODES
    train: Span | None = None
    test: Span | None = None
    step: Span | None = None
    groups: int = 6
    test_groups: int = 2
    purge: int = 0
    embargo: float = 0.0

    def describe(self) -> str:
        if self.mode == "cpcv":
            return (
                f"cpcv: {self.groups} groups, {self.test_groups} tested, purge {self.purge}, "
                f"embargo {self.embargo:g}"
            )
        assert self.train is not None and self.test is not None
        step = f", step {self.step.text}" if self.step is not None else ""
        return f"{self.mode}: train {self.train.text}, test {self.test.text}{step}"

    def plan(self, ts: Any) -> FoldPlan:
        """The folds over the bars stamped ``ts``."""
        if self.mode == "cpcv":
            return cpcv_folds(len(ts), self.groups, self.test_groups, self.purge, self.embargo)
        assert self.train is not None and self.test is not None
        return walk_folds(ts, self.train, self.test, self.step, self.mode == "anchored")


def fold_spec(
    train: str | int | None = None,
    test: str | int | None = None,
    step: str | int | None = None,
    anchored: bool = False,
    cpcv: bool = False,
    groups: int = 6,
    test_groups: int = 2,
    purge: int = 0,
    embargo: float = 0.0,
) -> FoldSpec:
    """The fold settings of a command line or flow run, checked before any data is read."""
    if cpcv:
        if anchored:
            raise InvalidInputError("--anchored and --cpcv exclude each other")
        check_cpcv(groups, test_groups, purge)
        embargo_bars(embargo, 1)
        return FoldSpec("cpcv", groups=groups, test_groups=test_groups, purge=purge,
                        embargo=float(embargo))  # fmt: skip
    if train is None or test is None:
        raise InvalidInputError("walk-forward needs --train and --test (or --cpcv)")
    tr, te = parse_span(train, "train"), parse_span(test, "test")
    st = parse_span(step, "step") if step is not None else None
    if {s.bars is None for s in (tr, te, st or te)} != {tr.bars is None}:
        raise InvalidInputError(
            f"--train {tr.text}, --test {te.text}" + (f" and --step {st.text}" if st else "")
            + " must all be bar counts or all be durations"
        )  # fmt: skip
    if st is not None and _length(st) < _length(te):
        raise InvalidInputError(
            f"--step {st.text} is shorter than --test {te.text}: the test windows would "
            "overlap and their out-of-sample returns could not be stitched"
        )
    return FoldSpec("anchored" if anchored else "rolling", tr, te, st)


def precheck(spec: FoldSpec, grid: SweepGrid, bar_seconds: float, window_seconds: float) -> None:
    """Refuse, before any data is read, folds that cannot fit a window of
    ``window_seconds`` of bars ``bar_seconds`` apart, or a train window shorter than the
    grid's warm-up (counting bars around the clock: an upper bound)."""
    if spec.mode == "cpcv":
        return
    assert spec.train is not None and spec.test is not None
    spec_grid = get_strategy(grid.strategy)
    need = max(int(spec_grid.warmup(p)) for p in grid.params)
    if spec.train.bars is not None:
        train_bars = spec.train.bars
        total = (spec.train.bars + (spec.test.bars or 0)) * bar_seconds
    else:
        train_bars = int((spec.train.seconds or 0) // bar_seconds)
        total = float((spec.train.seconds or 0) + (spec.test.seconds or 0))
    if train_bars <= need:
        raise InvalidInputError(
            f"--train {spec.train.text} holds at most {train_bars:,} bars, not more than the "
            f"{grid.strategy} grid's warm-up of {need:,} bars: use a longer --train or "
            "shorter indicator windows"
        )
    if total > window_seconds:
        raise InvalidInputError(
            f"no fold fits: --train {spec.train.text} plus --test {spec.test.text} is longer "
            f"than the window of {window_seconds / 86_400:g} days"
        )


def walkforward_bars(
    bars: pd.DataFrame,
    grid: SweepGrid,
    config: EngineConfig,
    asset_class: str,
    spec: FoldSpec,
    metric: str = "sharpe",
) -> WalkForwardResult:
    """The folds of ``spec`` over one symbol's bars, each run as the module says."""
    ac = validate_asset_class(asset_class)
    n = len(bars)
    if n < 2:
        raise InvalidInputError(f"{n} bar(s): too few for a walk-forward")
    plan = spec.plan(bars[C.TS])
    spacing = bar_spacing_seconds(bars[C.TS])
    o, h, lo, c = (np.ascontiguousarray(bars[col].to_numpy(np.float64)) for col in C.PRICE_COLUMNS)
    return run_folds(
        (o, h, lo, c), plan, grid, config, bars_per_year(ac, spacing), spacing, ac, metric
    )


def fold_summary(result: WalkForwardResult) -> dict[str, Any]:
    """Headline numbers: the stitched out-of-sample metrics (CPCV: the mean over its
    paths), the mean in-sample metrics of the folds' winners, and every path's
    out-of-sample Sharpe."""
    sharpes = result.oos_sharpes

    def oos(key: str) -> float:
        return float(np.mean([float(p.metrics[key]) for p in result.paths]))

    return {
        "mode": result.plan.mode,
        "folds": len(result.folds),
        "paths": len(result.paths),
        "metric": result.metric,
        "is_sharpe_mean": result.is_mean["sharpe"],
        "is_metric_mean": result.is_mean[result.metric],
        "oos_sharpe": oos("sharpe"),
        "oos_total_return": oos("total_return"),
        "oos_max_drawdown": oos("max_drawdown"),
        "oos_sharpe_paths": [float(x) for x in sharpes],
        "oos_sharpe_std": float(np.std(sharpes, ddof=1)) if len(sharpes) >= 2 else math.nan,
    }
