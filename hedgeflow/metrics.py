"""Returns-based metrics with per-asset-class annualisation (DESIGN.md convention 6).

``r`` = bar-to-bar returns of the equity at each bar's close (one fewer than
bars); ``N`` = ``market.bars_per_year(asset_class, spacing)`` where the spacing
is the most common difference between consecutive timestamps (ties: the
smaller one), unless ``bar_seconds`` is given.

- total_return = last / first - 1
- cagr = (last / first) ** (N / len(r)) - 1
- ann_vol = std(r, ddof=1) * sqrt(N)
- sharpe = mean(r) / std(r, ddof=1) * sqrt(N)  (risk-free 0)
- sortino = mean(r) / sqrt(mean(min(r, 0) ** 2)) * sqrt(N)
- max_drawdown = min(equity / running max - 1)  (a fraction <= 0)
- calmar = cagr / |max_drawdown|
- n_trades, win_rate = share of trades with pnl > 0,
  profit_factor = gross profit / gross loss
- exposure = share of bars with a position open at the close

Edge cases (chosen so that a value is either a finite number or NaN, never
``inf`` except for an astronomically large cagr, which overflows to ``inf``):

- fewer than 2 equity points: total_return, cagr, ann_vol, sharpe, sortino are 0
  (ann_vol/sharpe also 0 with a single return, where std(ddof=1) is undefined);
- sharpe = 0 when std(r) == 0 (DESIGN); likewise sortino = 0 when the downside
  deviation is 0 (no losing bar) and calmar = 0 when max_drawdown == 0;
- cagr = -1 when the last equity is <= 0 (total loss);
- win_rate = NaN when there are no trades; profit_factor = NaN when there are
  no trades or no losing trade (gross loss 0): undefined, not infinite;
- exposure: from ``position`` when given; else from the trades (bars from the
  entry bar up to, not including, the exit bar, plus the exit bar for reason
  ``end``); NaN when neither is given.

``json_safe`` maps NaN / inf to ``None`` so the result can be written as strict
JSON (``null``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from hedgeflow.errors import InvalidInputError
from hedgeflow.market import bars_per_year, validate_asset_class

__all__ = [
    "METRIC_KEYS",
    "SIDES",
    "bar_spacing_seconds",
    "compute_metrics",
    "json_safe",
    "side_summary",
]

SIDES: tuple[str, ...] = ("long", "short")

METRIC_KEYS: tuple[str, ...] = (
    "total_return",
    "cagr",
    "ann_vol",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "n_trades",
    "win_rate",
    "profit_factor",
    "exposure",
)


def _ts_int64_us(ts: Any) -> np.ndarray:
    """Timestamps -> int64 microseconds since the epoch (UTC; naive taken as UTC)."""
    if not isinstance(ts, (pd.Series, pd.Index)):
        ts = pd.Series(ts)
    idx = pd.DatetimeIndex(pd.to_datetime(ts, utc=True))
    return idx.as_unit("us").asi8


def bar_spacing_seconds(ts: Any) -> float:
    """Most common spacing (seconds) between consecutive timestamps; ties -> smaller."""
    t = _ts_int64_us(ts)
    if t.shape[0] < 2:
        raise InvalidInputError("need at least two timestamps to infer the bar interval")
    d = np.diff(t)
    if (d <= 0).any():
        bad = int(np.flatnonzero(d <= 0)[0]) + 1
        raise InvalidInputError(f"timestamps are not strictly increasing at position {bad}")
    values, counts = np.unique(d, return_counts=True)
    return float(values[int(np.argmax(counts))]) / 1e6


def return_ratios(
    growth: float,
    m: int,
    n_per_year: float,
    mean_r: float,
    std_r: float,
    downside: float,
    max_drawdown: float,
) -> dict[str, float]:
    """Convention 6's return metrics from the statistics of ``m`` bar returns: the
    one place their formulas live (``compute_metrics`` and the sweep both use it).

    ``growth`` = last / first equity, ``mean_r`` and ``std_r`` (ddof=1) of the returns,
    ``downside`` = sqrt(mean(min(r, 0)^2)), ``max_drawdown`` <= 0.
    """
    total_return = float(growth - 1.0)
    if m == 0:
        cagr = 0.0
    elif growth <= 0:
        cagr = -1.0
    else:
        try:
            cagr = math.exp(math.log(growth) * n_per_year / m) - 1.0
        except OverflowError:
            cagr = math.inf
    sqrt_n = math.sqrt(n_per_year) if m >= 1 else 0.0
    return {
        "total_return": total_return,
        "cagr": float(cagr),
        "ann_vol": float(std_r * sqrt_n),
        "sharpe": float(mean_r / std_r * sqrt_n if std_r > 0 else 0.0),
        "sortino": float(mean_r / downside * sqrt_n if downside > 0 else 0.0),
        "max_drawdown": float(max_drawdown),
        "calmar": float(cagr / abs(max_drawdown) if max_drawdown < 0 else 0.0),
    }


def compute_metrics(
    equity: Any,
    ts: Any,
    trades: pd.DataFrame | None = None,
    asset_class: str = "stock",
    position: Any | None = None,
    *,
    bar_seconds: float | None = None,
) -> dict[str, Any]:
    """The 11 metrics of DESIGN convention 6 (``METRIC_KEYS`` order); see the module doc."""
    ac = validate_asset_class(asset_class)
    e = np.asarray(equity, dtype=np.float64)
    if e.ndim != 1 or e.shape[0] == 0:
        raise InvalidInputError("equity must be a non-empty 1-D array")
    if not np.isfinite(e).all():
        bad = int(np.flatnonzero(~np.isfinite(e))[0])
        raise InvalidInputError(f"equity is not finite at position {bad}")
    if e[0] <= 0:
        raise InvalidInputError(f"the first equity value must be positive, got {e[0]}")
    if ts is not None and len(ts) != e.shape[0]:
        raise InvalidInputError(f"ts has {len(ts)} values, equity has {e.shape[0]}")

    r = e[1:] / e[:-1] - 1.0
    m = r.shape[0]
    if m >= 1:
        spacing = bar_seconds if bar_seconds is not None else bar_spacing_seconds(ts)
        n_per_year = bars_per_year(ac, spacing)
    else:
        n_per_year = math.nan

    mean_r = float(r.mean()) if m else 0.0
    std_r = float(r.std(ddof=1)) if m >= 2 else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))) if m else 0.0
    peak = np.maximum.accumulate(e)
    max_drawdown = float(np.min(e / peak - 1.0))
    ratios = return_ratios(e[-1] / e[0], m, n_per_year, mean_r, std_r, downside, max_drawdown)

    n_trades = 0
    win_rate = math.nan
    profit_factor = math.nan
    if trades is not None and len(trades) > 0:
        pnl = trades["pnl"].to_numpy(np.float64)
        n_trades = int(pnl.shape[0])
        win_rate = float(np.mean(pnl > 0))
        gross_profit = float(pnl[pnl > 0].sum())
        gross_loss = float(-pnl[pnl < 0].sum())
        profit_factor = gross_profit / gross_loss if gross_loss > 0 else math.nan

    if position is not None:
        pos = np.asarray(position, dtype=np.float64)
        if pos.shape[0] != e.shape[0]:
            raise InvalidInputError(f"position has {pos.shape[0]} values, equity has {e.shape[0]}")
        exposure = float(np.mean(pos != 0))
    elif trades is not None and ts is not None:
        exposure = _exposure_from_trades(trades, ts, e.shape[0])
    else:
        exposure = math.nan

    return {
        **ratios,
        "n_trades": n_trades,
        "win_rate": win_rate,
        "profit_factor": profit_factor,
        "exposure": exposure,
    }


def _exposure_from_trades(trades: pd.DataFrame, ts: Any, n: int) -> float:
    if len(trades) == 0:
        return 0.0
    if "entry_ts" not in trades.columns or "exit_ts" not in trades.columns:
        return math.nan
    t = _ts_int64_us(ts)
    entry = np.searchsorted(t, _ts_int64_us(trades["entry_ts"]), side="left")
    exit_ = np.searchsorted(t, _ts_int64_us(trades["exit_ts"]), side="left")
    if "exit_reason" in trades.columns:
        exit_ = exit_ + (trades["exit_reason"].to_numpy() == "end").astype(np.int64)
    held = np.zeros(n + 1, dtype=np.int64)
    np.add.at(held, entry, 1)
    np.add.at(held, np.minimum(exit_, n), -1)
    return float(np.mean(np.cumsum(held)[:n] > 0))


def side_summary(trades: pd.DataFrame | None) -> dict[str, dict[str, float]]:
    """Per side (``long``, ``short``): n_trades, pnl (sum), win_rate and profit_factor
    (convention 6's definitions over that side's trades; NaN without trades or losses)."""
    out: dict[str, dict[str, float]] = {}
    for side in SIDES:
        if trades is None or not len(trades):
            pnl = np.empty(0)
        else:
            pnl = trades.loc[trades["side"] == side, "pnl"].to_numpy(np.float64)
        gross_loss = -pnl[pnl < 0].sum()
        out[side] = {
            "n_trades": float(len(pnl)),
            "pnl": float(pnl.sum()),
            "win_rate": float(np.mean(pnl > 0)) if len(pnl) else math.nan,
            "profit_factor": float(pnl[pnl > 0].sum() / gross_loss) if gross_loss > 0 else math.nan,
        }
    return out


def json_safe(metrics: dict[str, Any]) -> dict[str, Any]:
    """Copy with NaN / +-inf replaced by None and numpy scalars made plain Python."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, (np.integer,)):
            value = int(value)
        elif isinstance(value, (np.floating, float)):
            value = float(value)
            if not math.isfinite(value):
                value = None
        out[key] = value
    return out
