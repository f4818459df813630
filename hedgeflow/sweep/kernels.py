"""The sweep's per-combination reduction: the engine's own ``_event_loop`` on one
signal, reduced to the raw statistics ``hedgeflow.metrics.compute_metrics`` derives
the metrics from (``_combo``). The one generic sweep kernel that calls it for
every combination, after the strategy's own compiled update, is generated per
strategy from one template (:mod:`hedgeflow.strategies.compiled`). Nothing is
re-implemented: the rules are the engine's, the signals the strategies'.

Exactness: numpy sums float64 arrays pairwise (``add.reduce``: blocks of 8
accumulators up to 128 values, halving above). ``_pairwise_sum`` performs the
same additions in the same order, so means, standard deviations and gross
profit / loss are bit-identical to ``compute_metrics``; the remaining metrics are
derived from these statistics in Python with the same expressions
(``hedgeflow.sweep.core.finish_metrics``).

Combinations run in parallel (``prange``, in the generated kernel); every
combination allocates its own buffers, so iterations share nothing but read-only
inputs.
"""

from __future__ import annotations

import numba
import numpy as np

from hedgeflow.engine import _event_loop
from hedgeflow.overfit import N_MOMENTS, block_moments
from hedgeflow.rules import T_PNL, Settings

# Columns of the statistics matrix (one row per combination).
S_GROWTH = 0  # last equity / first equity
S_MEAN = 1  # mean of the bar returns (0 when there are none)
S_STD = 2  # std(ddof=1) of the bar returns (0 with fewer than 2)
S_DOWNSIDE = 3  # sqrt(mean(min(r, 0) ** 2)) (0 when there are no returns)
S_MAX_DD = 4  # min(equity / running max - 1)
S_N_TRADES = 5
S_WINS = 6  # trades with pnl > 0
S_GROSS_PROFIT = 7  # sum of positive pnl (pairwise, over the positive trades in order)
S_GROSS_LOSS = 8  # -(sum of negative pnl)
S_EXPOSED = 9  # bars with a position open at the close
S_FINITE = 10  # 1 when every equity value is finite
S_SKIPPED = 11  # entries the order minimums skipped
N_STATS = 12


PW_BLOCK = 128  # numpy's PW_BLOCKSIZE


@numba.njit(cache=True)
def _block_sum(a: np.ndarray, lo: int, n: int) -> float:
    """numpy's pairwise-sum leaf (``n <= 128``): 8 accumulators, then the rest."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0 = a[lo]
    r1 = a[lo + 1]
    r2 = a[lo + 2]
    r3 = a[lo + 3]
    r4 = a[lo + 4]
    r5 = a[lo + 5]
    r6 = a[lo + 6]
    r7 = a[lo + 7]
    i = 8
    lim = n - (n % 8)
    while i < lim:
        j = lo + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@numba.njit(cache=True)
def _pairwise_sum(a: np.ndarray, lo: int, n: int) -> float:
    """``a[lo:lo + n].sum()`` exactly as numpy's float64 pairwise summation:
    halve (at a multiple of 8) down to blocks of <= 128, sum left + right.

    Iterative (an explicit post-order stack): numba cannot cache recursive functions.
    """
    if n <= PW_BLOCK:
        return _block_sum(a, lo, n)
    cap = 256  # depth <= 64 levels (n < 2**63), at most 3 entries per level
    s_lo = np.empty(cap, dtype=np.int64)
    s_n = np.empty(cap, dtype=np.int64)
    s_join = np.empty(cap, dtype=np.bool_)
    vals = np.empty(cap, dtype=np.float64)
    top = 0
    nv = 0
    s_lo[0] = lo
    s_n[0] = n
    s_join[0] = False
    top = 1
    while top > 0:
        top -= 1
        if s_join[top]:
            nv -= 1
            vals[nv - 1] = vals[nv - 1] + vals[nv]
            continue
        b = s_lo[top]
        k = s_n[top]
        if k <= PW_BLOCK:
            vals[nv] = _block_sum(a, b, k)
            nv += 1
            continue
        k2 = k // 2
        k2 -= k2 % 8
        s_join[top] = True  # combine after both halves
        top += 1
        s_lo[top] = b + k2  # right half, evaluated second
        s_n[top] = k - k2
        s_join[top] = False
        top += 1
        s_lo[top] = b  # left half, evaluated first
        s_n[top] = k2
        s_join[top] = False
        top += 1
    return vals[0]


@numba.njit(cache=True)
def np_sum(a: np.ndarray) -> float:
    """numpy's ``a.sum()`` for a 1-D float64 array (exposed for the tests)."""
    return 0.0 + _pairwise_sum(a, 0, a.shape[0])


@numba.njit(cache=True)
def _combo(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    signal: np.ndarray,
    atr: np.ndarray,
    eng: Settings,
    out: np.ndarray,
) -> None:
    """Run the engine on one signal and write its statistics into ``out``."""
    _combo_blocks(
        open_, high, low, close, signal, atr, eng, out,
        np.zeros(1, dtype=np.int64), np.empty((0, N_MOMENTS)),
    )  # fmt: skip


@numba.njit(cache=True)
def _combo_blocks(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    signal: np.ndarray,
    atr: np.ndarray,
    eng: Settings,
    out: np.ndarray,
    starts: np.ndarray,
    blocks: np.ndarray,
) -> None:
    """``_combo``, and the overfitting statistics' block moments of the bar returns
    (``hedgeflow.overfit.block_moments`` about their mean, blocks ``starts``) into
    ``blocks`` (no blocks: ``starts`` of one value)."""
    equity, position, trades, nt, skipped = _event_loop(open_, high, low, close, signal, atr, eng)
    pnl = trades[:, T_PNL]
    n = equity.shape[0]

    finite = True
    peak = equity[0]
    max_dd = 0.0
    exposed = 0
    for i in range(n):
        e = equity[i]
        if not np.isfinite(e):
            finite = False
        if e > peak:
            peak = e
        dd = e / peak - 1.0
        if i == 0 or dd < max_dd:
            max_dd = dd
        if position[i] != 0.0:
            exposed += 1

    growth = equity[n - 1] / equity[0]
    # The bar returns overwrite the equity curve in place (r[i] needs equity[i] and
    # equity[i + 1], read before either is overwritten) and the squares reuse the
    # position array: no per-combination allocation (fresh pages fault).
    m = n - 1
    mean_r = 0.0
    std_r = 0.0
    downside = 0.0
    if m >= 1:
        r = equity
        for i in range(m):
            r[i] = equity[i + 1] / equity[i] - 1.0
        mean_r = (0.0 + _pairwise_sum(r, 0, m)) / m
        w = position
        for i in range(m):
            x = r[i]
            w[i] = (x * x) if x < 0.0 else 0.0
        downside = np.sqrt((0.0 + _pairwise_sum(w, 0, m)) / m)
        if m >= 2:
            for i in range(m):
                d = r[i] - mean_r
                w[i] = d * d
            std_r = np.sqrt((0.0 + _pairwise_sum(w, 0, m)) / (m - 1))
        block_moments(r, m, mean_r, starts, blocks)

    wins = 0
    n_pos = 0
    n_neg = 0
    pos_buf = np.empty(nt, dtype=np.float64)
    neg_buf = np.empty(nt, dtype=np.float64)
    for k in range(nt):
        p = pnl[k]
        if p > 0.0:
            wins += 1
            pos_buf[n_pos] = p
            n_pos += 1
        elif p < 0.0:
            neg_buf[n_neg] = p
            n_neg += 1

    out[S_GROWTH] = growth
    out[S_MEAN] = mean_r
    out[S_STD] = std_r
    out[S_DOWNSIDE] = downside
    out[S_MAX_DD] = max_dd
    out[S_N_TRADES] = nt
    out[S_WINS] = wins
    out[S_GROSS_PROFIT] = 0.0 + _pairwise_sum(pos_buf, 0, n_pos)
    out[S_GROSS_LOSS] = -(0.0 + _pairwise_sum(neg_buf, 0, n_neg))
    out[S_EXPOSED] = exposed
    out[S_FINITE] = 1.0 if finite else 0.0
    out[S_SKIPPED] = skipped.shape[0]
