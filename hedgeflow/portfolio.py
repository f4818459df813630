"""Combine agent equity curves into one portfolio (DESIGN.md convention 7).

1. Calendar: the sorted union of every agent's timestamps. Each agent's equity
   is carried forward where its market has no bar; before an agent's first bar
   its first (initial) equity value is used. Agent returns on that calendar are
   ``E[t] / E[t-1] - 1`` (0 where carried forward).
2. Path (one numba kernel): at the first timestamp the portfolio's
   ``initial_equity`` is split by the target weights (no fee for the initial
   funding). At every later timestamp each sleeve grows with its agent's return
   (weights drift), then, if it is a rebalance point, the sleeves are reset to the
   target weights and ``fee_bps`` is paid on the turnover
   ``sum_j |w_target_j - w_drifted_j| x equity`` (equity before the fee):
   ``equity -= fee_bps / 1e4 x turnover``.
3. Rebalance points: ``bar`` every timestamp; ``daily`` the first timestamp of
   each UTC day; ``weekly`` the first timestamp of each ISO week (Monday, UTC).
4. Target weights at a rebalance point ``t`` use only agent returns up to and
   including ``t`` (known at that close; the weights apply from ``t`` on):

   - ``equal``: ``1 / k``;
   - ``inverse_vol``: ``w_j ∝ 1 / std_j`` of the last ``vol_lookback_bars``
     calendar returns (ddof=1). Fewer than 2 returns in the window (so always
     with ``vol_lookback_bars == 1``) -> equal. An agent with zero
     volatility in the window (no position) is given the smallest positive
     volatility of the others; all zero -> equal;
   - ``risk_parity``: equal risk contributions ``w_i (Σ w)_i`` with the trailing
     covariance ``Σ`` of the same window, solved by cyclical coordinate descent;
     falls back to ``inverse_vol`` if ``Σ`` is singular (a zero variance or a
     non-positive-definite matrix) or the solver does not converge.

``PortfolioResult.weights`` holds the final target weights;
``PortfolioResult.target_weights`` the target weights at every rebalance point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd

from hedgeflow.columns import TS_DTYPE
from hedgeflow.errors import InvalidInputError

__all__ = ["METHODS", "REBALANCES", "PortfolioResult", "combine"]

METHODS = ("equal", "inverse_vol", "risk_parity")
REBALANCES = ("bar", "daily", "weekly")
_US_PER_DAY = 86_400 * 1_000_000


@dataclass(frozen=True)
class PortfolioResult:
    equity: pd.DataFrame  # ts, equity, drawdown
    weights: dict[str, float]  # final target weights
    turnover: float  # sum over rebalances of sum |w_new - w_drifted| x equity (currency)
    fees: float  # total rebalance fees paid (currency)
    target_weights: pd.DataFrame  # ts + one column per agent, one row per rebalance point


# --------------------------------------------------------------------------- kernels


@numba.njit(cache=True)
def _inverse_vol(rets: np.ndarray, t: int, lookback: int) -> np.ndarray:
    k = rets.shape[1]
    w = np.full(k, 1.0 / k)
    start = max(1, t - lookback + 1)
    m = t - start + 1
    if m < 2:
        return w
    vol = np.zeros(k)
    for j in range(k):
        mean = 0.0
        for s in range(start, t + 1):
            mean += rets[s, j]
        mean /= m
        ss = 0.0
        for s in range(start, t + 1):
            d = rets[s, j] - mean
            ss += d * d
        vol[j] = math.sqrt(ss / (m - 1))
    smallest = np.inf
    for j in range(k):
        if vol[j] > 1e-15 and vol[j] < smallest:
            smallest = vol[j]
    if smallest == np.inf:
        return w
    total = 0.0
    for j in range(k):
        v = vol[j] if vol[j] > 1e-15 else smallest
        w[j] = 1.0 / v
        total += w[j]
    for j in range(k):
        w[j] /= total
    return w


@numba.njit(cache=True)
def _risk_parity(rets: np.ndarray, t: int, lookback: int) -> np.ndarray:
    k = rets.shape[1]
    start = max(1, t - lookback + 1)
    m = t - start + 1
    if m < 2:
        return np.full(k, 1.0 / k)
    mean = np.zeros(k)
    for j in range(k):
        for s in range(start, t + 1):
            mean[j] += rets[s, j]
        mean[j] /= m
    cov = np.zeros((k, k))
    for a in range(k):
        for b in range(a, k):
            acc = 0.0
            for s in range(start, t + 1):
                acc += (rets[s, a] - mean[a]) * (rets[s, b] - mean[b])
            cov[a, b] = acc / (m - 1)
            cov[b, a] = cov[a, b]
    singular = False
    for j in range(k):
        if not cov[j, j] > 1e-30:
            singular = True
    if not singular:
        # positive definiteness by Cholesky
        low = np.zeros((k, k))
        for i in range(k):
            for j in range(i + 1):
                acc = cov[i, j]
                for p in range(j):
                    acc -= low[i, p] * low[j, p]
                if i == j:
                    if acc <= 1e-14 * cov[i, i]:
                        singular = True
                        break
                    low[i, i] = math.sqrt(acc)
                else:
                    low[i, j] = acc / low[j, j]
            if singular:
                break
    if singular:
        return _inverse_vol(rets, t, lookback)
    # cyclical coordinate descent for w_i (Σw)_i = 1/k (then normalise)
    w = np.empty(k)
    for j in range(k):
        w[j] = 1.0 / math.sqrt(cov[j, j])
    w /= w.sum()
    b = 1.0 / k
    converged = False
    for _ in range(1000):
        max_change = 0.0
        for i in range(k):
            c = 0.0
            for j in range(k):
                if j != i:
                    c += cov[i, j] * w[j]
            new = (-c + math.sqrt(c * c + 4.0 * cov[i, i] * b)) / (2.0 * cov[i, i])
            change = abs(new - w[i]) / max(abs(new), 1e-300)
            if change > max_change:
                max_change = change
            w[i] = new
        if max_change < 1e-12:
            converged = True
            break
    total = w.sum()
    if not converged or not (total > 0.0) or not np.isfinite(total):
        return _inverse_vol(rets, t, lookback)
    return w / total


@numba.njit(cache=True)
def _target(method: int, rets: np.ndarray, t: int, lookback: int) -> np.ndarray:
    k = rets.shape[1]
    if method == 1:
        return _inverse_vol(rets, t, lookback)
    if method == 2:
        return _risk_parity(rets, t, lookback)
    return np.full(k, 1.0 / k)


@numba.njit(cache=True)
def _portfolio_path(
    rets: np.ndarray,
    rebalance: np.ndarray,
    method: int,
    fee_rate: float,
    initial_equity: float,
    lookback: int,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    n, k = rets.shape
    equity = np.empty(n)
    targets = np.full((n, k), np.nan)  # target weights at rebalance points (and at t = 0)
    held = np.empty(k)
    w0 = _target(method, rets, 0, lookback)
    for j in range(k):
        held[j] = w0[j] * initial_equity
        targets[0, j] = w0[j]
    equity[0] = initial_equity
    turnover_total = 0.0
    fees_total = 0.0
    for t in range(1, n):
        total = 0.0
        for j in range(k):
            held[j] *= 1.0 + rets[t, j]
            total += held[j]
        if rebalance[t] and total > 0.0:
            w = _target(method, rets, t, lookback)
            turn = 0.0
            for j in range(k):
                turn += abs(w[j] - held[j] / total)
                targets[t, j] = w[j]
            turn *= total
            fee = fee_rate * turn
            turnover_total += turn
            fees_total += fee
            total -= fee
            for j in range(k):
                held[j] = w[j] * total
        equity[t] = total
    return equity, targets, turnover_total, fees_total


# --------------------------------------------------------------------------- wrapper


def _rebalance_mask(ts_us: np.ndarray, rebalance: str) -> np.ndarray:
    n = ts_us.shape[0]
    mask = np.zeros(n, dtype=np.bool_)
    if n == 0:
        return mask
    if rebalance == "bar":
        mask[1:] = True
        return mask
    day = np.floor_divide(ts_us, _US_PER_DAY)
    key = day if rebalance == "daily" else np.floor_divide(day + 3, 7)  # Monday-based week
    mask[1:] = key[1:] != key[:-1]
    return mask


def _agent_equity(name: str, frame: pd.DataFrame) -> pd.Series:
    if not isinstance(frame, pd.DataFrame) or not {"ts", "equity"} <= set(frame.columns):
        raise InvalidInputError(f"curve of agent {name!r} must be a frame with ts and equity")
    if len(frame) == 0:
        raise InvalidInputError(f"curve of agent {name!r} is empty")
    ts = pd.DatetimeIndex(pd.to_datetime(frame["ts"], utc=True)).as_unit("us")
    if not ts.is_monotonic_increasing or ts.has_duplicates:
        raise InvalidInputError(f"curve of agent {name!r}: ts must be strictly increasing")
    eq = frame["equity"].to_numpy(dtype=np.float64)
    if not (np.isfinite(eq).all() and (eq > 0).all()):
        raise InvalidInputError(f"curve of agent {name!r}: equity must be finite and positive")
    return pd.Series(eq, index=ts, name=name)


def combine(
    curves: Mapping[str, pd.DataFrame],
    method: str = "equal",
    rebalance: str = "daily",
    fee_bps: float = 0.0,
    initial_equity: float = 100_000.0,
    vol_lookback_bars: int = 288,
) -> PortfolioResult:
    """Combine agent equity curves (``{agent: frame(ts, equity)}``); see the module doc."""
    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if rebalance not in REBALANCES:
        raise InvalidInputError(
            f"rebalance must be one of {', '.join(REBALANCES)}, got {rebalance!r}"
        )
    if not 0.0 <= fee_bps < 10_000.0:
        raise InvalidInputError(f"fee_bps must be in [0, 10000), got {fee_bps}")
    if not initial_equity > 0 or not math.isfinite(initial_equity):
        raise InvalidInputError(f"initial_equity must be positive, got {initial_equity}")
    if isinstance(vol_lookback_bars, bool) or int(vol_lookback_bars) != vol_lookback_bars:
        raise InvalidInputError(f"vol_lookback_bars must be an integer, got {vol_lookback_bars!r}")
    if vol_lookback_bars < 1:
        raise InvalidInputError(f"vol_lookback_bars must be >= 1, got {vol_lookback_bars}")
    if not curves:
        raise InvalidInputError("no agent curves to combine")

    names = list(curves)
    series = [_agent_equity(name, curves[name]) for name in names]
    calendar = series[0].index
    for s in series[1:]:
        calendar = calendar.union(s.index)
    levels = np.empty((len(calendar), len(names)))
    for j, s in enumerate(series):
        aligned = s.reindex(calendar).ffill()
        levels[:, j] = aligned.fillna(s.iloc[0]).to_numpy()
    rets = np.zeros_like(levels)
    rets[1:] = levels[1:] / levels[:-1] - 1.0

    ts_us = calendar.asi8
    mask = _rebalance_mask(ts_us, rebalance)
    code = METHODS.index(method)
    equity, targets, turnover, fees = _portfolio_path(
        np.ascontiguousarray(rets),
        mask,
        code,
        float(fee_bps) / 1e4,
        float(initial_equity),
        int(vol_lookback_bars),
    )
    ts = pd.Series(calendar, name="ts").astype(TS_DTYPE).reset_index(drop=True)
    peak = np.maximum.accumulate(equity)
    frame = pd.DataFrame({"ts": ts, "equity": equity, "drawdown": equity / peak - 1.0})
    rows = ~np.isnan(targets[:, 0])
    history = pd.DataFrame(targets[rows], columns=names)
    history.insert(0, "ts", ts[rows].reset_index(drop=True))
    final = {name: float(history[name].iat[-1]) for name in names}
    return PortfolioResult(
        equity=frame,
        weights=final,
        turnover=float(turnover),
        fees=float(fees),
        target_weights=history,
    )
