"""Overfitting statistics of a set of trials (DESIGN.md "Overfitting statistics").

Input: a T x N matrix of per-period returns (rows in time order, one column per
trial: a sweep's combinations, or any columns a user gives). Sharpe ratios are per
period: SR = mean(r) / std(r, ddof=1), 0 when std is 0.

- ``psr`` = PSR(0) of the best trial (highest SR, the first on ties); ``dsr`` =
  PSR(SR0) with SR0 the expected maximum SR of N unskilled trials (Bailey & Lopez
  de Prado 2012, 2014);
- ``pbo``, ``prob_oos_loss`` and the degradation line by CSCV (Bailey, Borwein,
  Lopez de Prado & Zhu 2017) over the C(S, S/2) splits of S contiguous blocks.

Everything is computed from per-block moments of each trial (:func:`block_moments`:
the sums of ``r - mean``, its square, cube and fourth power, and the block's min
and max), so the C(16, 8) = 12,870 splits cost O(splits x N x S) however long the
series are; one pass over the data computes the moments. A sweep computes the same
moments inside its compiled kernel (``hedgeflow.sweep.kernels._combo``), so its
statistics need no second pass and no returns matrix.

A series that is constant over a set of blocks (a strategy flat for that stretch:
returns exactly 0) has std 0 there and SR 0, exactly as the definition says: the
blocks' min and max decide it, not a rounded variance.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from hedgeflow.errors import InvalidInputError
from hedgeflow.parallel import KERNEL_LOCK

__all__ = [
    "DEFAULT_BLOCKS",
    "DSR_LIMIT",
    "EULER_GAMMA",
    "MAX_BLOCKS",
    "N_MOMENTS",
    "PBO_LIMIT",
    "OverfitStats",
    "block_moments",
    "block_starts",
    "check_blocks",
    "check_dimensions",
    "overfit_from_moments",
    "overfit_stats",
    "overfit_verdict",
    "split_blocks",
    "trial_moments",
]

DEFAULT_BLOCKS = 16
# C(24, 12) = 2,704,156 splits: more blocks would take hours and gigabytes of splits
MAX_BLOCKS = 24
EULER_GAMMA = 0.5772156649015329
# The winner is called probably overfit when PBO exceeds PBO_LIMIT or DSR is below
# DSR_LIMIT (the deflated Sharpe does not reject "no skill" at 95%).
PBO_LIMIT = 0.5
DSR_LIMIT = 0.95

# Columns of the per-block moments (about the trial's full-sample mean).
M_S1 = 0  # sum(r - mean)
M_S2 = 1  # sum((r - mean)^2)
M_S3 = 2  # sum((r - mean)^3)
M_S4 = 3  # sum((r - mean)^4)
M_MIN = 4  # min r
M_MAX = 5  # max r
N_MOMENTS = 6


def check_blocks(blocks: int) -> None:
    """S must be even, from 2 to MAX_BLOCKS."""
    if blocks < 2 or blocks % 2 or blocks > MAX_BLOCKS:
        raise InvalidInputError(
            f"--blocks must be an even number from 2 to {MAX_BLOCKS}, got {blocks}"
        )


def check_dimensions(n_obs: int, n_trials: int, blocks: int) -> None:
    """The matrix and S must allow CSCV: S even (2 to MAX_BLOCKS), at least S rows, two
    trials."""
    check_blocks(blocks)
    if n_trials < 2:
        raise InvalidInputError(
            f"{n_trials} trial{'s' if n_trials != 1 else ''}: overfitting statistics compare "
            "at least 2 trials (columns)"
        )
    if n_obs < blocks:
        raise InvalidInputError(
            f"{n_obs} rows of returns, fewer than the {blocks} blocks: CSCV needs at least "
            "one row per block"
        )


def block_starts(n_obs: int, blocks: int) -> np.ndarray:
    """Row boundaries of ``blocks`` contiguous blocks as ``numpy.array_split`` cuts them
    (the first ``n_obs % blocks`` blocks one row longer): ``blocks + 1`` values."""
    size, extra = divmod(n_obs, blocks)
    sizes = np.full(blocks, size, dtype=np.int64)
    sizes[:extra] += 1
    return np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(sizes)])


@functools.lru_cache(maxsize=4)
def split_blocks(blocks: int) -> np.ndarray:
    """The in-sample blocks of every CSCV split: ``itertools.combinations(range(S), S/2)``
    in that order, one row per split (read-only: cached)."""
    out = np.array(list(itertools.combinations(range(blocks), blocks // 2)), dtype=np.int64)
    out.flags.writeable = False
    return out


@numba.njit(cache=True)
def block_moments(r: np.ndarray, m: int, mean: float, starts: np.ndarray, out: np.ndarray) -> None:
    """Moments of ``r[:m]`` about ``mean`` per block ``starts[b]:starts[b + 1]``
    (the columns M_S1 ... M_MAX) into ``out`` (blocks x N_MOMENTS)."""
    nb = starts.shape[0] - 1
    for b in range(nb):
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        s4 = 0.0
        lo = np.inf
        hi = -np.inf
        for i in range(starts[b], min(starts[b + 1], m)):
            x = r[i]
            d = x - mean
            d2 = d * d
            s1 += d
            s2 += d2
            s3 += d2 * d
            s4 += d2 * d2
            if x < lo:
                lo = x
            if x > hi:
                hi = x
        out[b, M_S1] = s1
        out[b, M_S2] = s2
        out[b, M_S3] = s3
        out[b, M_S4] = s4
        out[b, M_MIN] = lo
        out[b, M_MAX] = hi


@numba.njit(cache=True)
def _moments_of_rows(x: np.ndarray, means: np.ndarray, starts: np.ndarray, out: np.ndarray) -> None:
    t = x.shape[1]
    for j in range(x.shape[0]):
        block_moments(x[j], t, means[j], starts, out[j])


@numba.njit(cache=True)
def _sharpes(s1: np.ndarray, s2: np.ndarray, n: int, means: np.ndarray, out: np.ndarray) -> None:
    """Per-period SR of every trial over a stretch of ``n`` rows from its sums about
    its full-sample mean (0 where the variance is not positive; constant stretches are
    set to 0 by the caller), branch-free so that it vectorises."""
    if n < 2:
        out[:] = 0.0
        return
    for j in range(s1.shape[0]):
        mu = s1[j] / n
        var = (s2[j] - s1[j] * mu) / (n - 1)
        ok = var > 0.0
        sr = (means[j] + mu) / np.sqrt(var if ok else 1.0)
        out[j] = sr if ok else 0.0


@numba.njit(cache=True)
def _cscv_range(
    s1_b: np.ndarray,
    s2_b: np.ndarray,
    lo_b: np.ndarray,
    hi_b: np.ndarray,
    tot1: np.ndarray,
    tot2: np.ndarray,
    any_const: bool,
    means: np.ndarray,
    starts: np.ndarray,
    splits: np.ndarray,
    first: int,
    last: int,
    is_sr: np.ndarray,
    oos_sr: np.ndarray,
    logit: np.ndarray,
) -> None:
    """Splits ``first:last`` of :func:`_cscv` (their own scratch arrays)."""
    nb, n_trials = s1_b.shape
    half = splits.shape[1]
    n_all = starts[nb] - starts[0]
    chosen = np.zeros(nb, dtype=np.bool_)
    s1 = np.empty(n_trials)
    s2 = np.empty(n_trials)
    lo_in = np.empty(n_trials)
    hi_in = np.empty(n_trials)
    lo_out = np.empty(n_trials)
    hi_out = np.empty(n_trials)
    sr_in = np.empty(n_trials)
    sr_out = np.empty(n_trials)
    for k in range(first, last):
        chosen[:] = False
        n_in = 0
        for q in range(half):
            b = splits[k, q]
            chosen[b] = True
            n_in += starts[b + 1] - starts[b]
        n_out = n_all - n_in
        s1[:] = 0.0
        s2[:] = 0.0
        for q in range(half):
            b = splits[k, q]
            for j in range(n_trials):
                s1[j] += s1_b[b, j]
                s2[j] += s2_b[b, j]
        if any_const:
            lo_in[:] = np.inf
            hi_in[:] = -np.inf
            lo_out[:] = np.inf
            hi_out[:] = -np.inf
            for b in range(nb):
                if chosen[b]:
                    for j in range(n_trials):
                        lo_in[j] = min(lo_in[j], lo_b[b, j])
                        hi_in[j] = max(hi_in[j], hi_b[b, j])
                else:
                    for j in range(n_trials):
                        lo_out[j] = min(lo_out[j], lo_b[b, j])
                        hi_out[j] = max(hi_out[j], hi_b[b, j])
        _sharpes(s1, s2, n_in, means, sr_in)
        for j in range(n_trials):
            s1[j] = tot1[j] - s1[j]
            s2[j] = tot2[j] - s2[j]
        _sharpes(s1, s2, n_out, means, sr_out)
        if any_const:
            for j in range(n_trials):
                if lo_in[j] == hi_in[j]:
                    sr_in[j] = 0.0
                if lo_out[j] == hi_out[j]:
                    sr_out[j] = 0.0
        best = 0
        for j in range(1, n_trials):
            if sr_in[j] > sr_in[best]:
                best = j
        target = sr_out[best]
        below = 0
        equal = 0
        for j in range(n_trials):
            if sr_out[j] < target:
                below += 1
            elif sr_out[j] == target:
                equal += 1
        rank = below + (equal + 1) / 2.0  # scipy.stats.rankdata(method="average")
        w = rank / (n_trials + 1)
        is_sr[k] = sr_in[best]
        oos_sr[k] = target
        logit[k] = np.log(w / (1.0 - w))


CSCV_CHUNKS = 64  # split ranges run in parallel


@numba.njit(cache=True, parallel=True)
def _cscv(
    moments: np.ndarray,
    means: np.ndarray,
    starts: np.ndarray,
    splits: np.ndarray,
    is_sr: np.ndarray,
    oos_sr: np.ndarray,
    logit: np.ndarray,
) -> None:
    """For every split: n* (the best in-sample SR, first on ties), its in- and
    out-of-sample SR and the logit of its out-of-sample relative rank.

    The moments are laid out block-major (each block's values of every trial
    contiguous), so each split is a few vector passes over the trials; ranges of
    splits run in parallel (each writes only its own splits)."""
    n_trials = moments.shape[0]
    nb = moments.shape[1]
    s1_b = np.ascontiguousarray(moments[:, :, M_S1].T)
    s2_b = np.ascontiguousarray(moments[:, :, M_S2].T)
    lo_b = np.ascontiguousarray(moments[:, :, M_MIN].T)
    hi_b = np.ascontiguousarray(moments[:, :, M_MAX].T)
    tot1 = np.zeros(n_trials)
    tot2 = np.zeros(n_trials)
    any_const = False
    for b in range(nb):
        for j in range(n_trials):
            tot1[j] += s1_b[b, j]
            tot2[j] += s2_b[b, j]
            if lo_b[b, j] == hi_b[b, j]:
                any_const = True
    n_splits = splits.shape[0]
    step = (n_splits + CSCV_CHUNKS - 1) // CSCV_CHUNKS
    for c in numba.prange(CSCV_CHUNKS):
        first = c * step
        last = min(n_splits, first + step)
        if first < last:
            _cscv_range(
                s1_b, s2_b, lo_b, hi_b, tot1, tot2, any_const, means, starts, splits,
                first, last, is_sr, oos_sr, logit,
            )  # fmt: skip


@dataclass(frozen=True)
class OverfitStats:
    """The statistics of DESIGN.md, and the per-split values the report draws."""

    n_trials: int
    n_obs: int
    n_blocks: int  # S
    best: int  # index of the best trial (highest full-sample SR, first on ties)
    sharpe_best: float
    psr: float  # NaN when the best trial's returns are constant
    sr0: float
    dsr: float
    pbo: float
    n_splits: int
    prob_oos_loss: float
    degradation_slope: float  # NaN when every split's in-sample SR is the same
    degradation_intercept: float
    logits: np.ndarray  # per split: ln(w / (1 - w)) of n*'s out-of-sample rank
    is_sharpe: np.ndarray  # per split: n*'s in-sample SR
    oos_sharpe: np.ndarray  # per split: n*'s out-of-sample SR

    def summary(self, names: Any = None) -> dict[str, Any]:
        """The ``overfit.json`` fields; ``best_trial`` is ``names[best]`` (or the index)."""
        return {
            "n_trials": self.n_trials,
            "n_obs": self.n_obs,
            "best_trial": str(names[self.best]) if names is not None else self.best,
            "sharpe_best": self.sharpe_best,
            "psr": self.psr,
            "sr0": self.sr0,
            "dsr": self.dsr,
            "pbo": self.pbo,
            "n_splits": self.n_splits,
            "prob_oos_loss": self.prob_oos_loss,
            "degradation_slope": self.degradation_slope,
            "degradation_intercept": self.degradation_intercept,
        }

    @property
    def overfit(self) -> bool:
        """PBO above PBO_LIMIT or DSR below DSR_LIMIT (an undefined DSR counts as low)."""
        return self.pbo > PBO_LIMIT or not self.dsr >= DSR_LIMIT


def overfit_verdict(pbo: float | None, dsr: float | None) -> tuple[bool, str]:
    """(probably overfit?, one plain sentence) from PBO and DSR."""
    reasons = []
    if pbo is None or not math.isfinite(pbo):
        reasons.append("PBO undefined")
    elif pbo > PBO_LIMIT:
        reasons.append(
            f"PBO {pbo:.2f} > {PBO_LIMIT:g}: the in-sample winner ranks in the bottom half "
            "out of sample in most splits"
        )
    if dsr is None or not math.isfinite(dsr):
        reasons.append("DSR undefined (the winner's returns are constant)")
    elif dsr < DSR_LIMIT:
        reasons.append(
            f"DSR {dsr:.2f} < {DSR_LIMIT:g}: its Sharpe is not distinguishable from the best "
            "of this many lucky trials"
        )
    if reasons:
        return True, "Probably overfit: " + "; ".join(reasons) + "."
    return False, (
        f"No sign of overfitting: PBO {pbo:.2f} <= {PBO_LIMIT:g} and DSR {dsr:.2f} >= "
        f"{DSR_LIMIT:g}."
    )


def _norm_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _norm_ppf(p: float) -> float:
    """Phi^-1(p) for 0 < p < 1 (Acklam's rational approximation refined by Newton
    steps on erfc: exact to the last bits)."""
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
         1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)  # fmt: skip
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
         6.680131188771972e01, -1.328068155288572e01)  # fmt: skip
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
         -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)  # fmt: skip
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
         3.754408661907416e00)  # fmt: skip
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1
        )
    elif p > 1 - 0.02425:
        q = math.sqrt(-2 * math.log(1 - p))
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1
        )
    else:
        q = p - 0.5
        r = q * q
        x = (
            (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
            * q
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
        )
    for _ in range(3):  # Newton on Phi(x) - p, with the upper tail for p > 0.5
        if p > 0.5:
            err = -(0.5 * math.erfc(x / math.sqrt(2.0)) - (1.0 - p))
        else:
            err = 0.5 * math.erfc(-x / math.sqrt(2.0)) - p
        pdf = math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        if pdf == 0.0:
            break
        x -= err / pdf
    return x


def _psr(sr: float, sr_star: float, n_obs: int, g3: float, g4: float) -> float:
    denom = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr
    if not denom > 0.0 or not math.isfinite(denom):
        return math.nan
    return _norm_cdf((sr - sr_star) * math.sqrt(n_obs - 1) / math.sqrt(denom))


def _full_sharpe(mean: np.ndarray, std: np.ndarray, moments: np.ndarray) -> np.ndarray:
    constant = moments[:, :, M_MIN].min(axis=1) == moments[:, :, M_MAX].max(axis=1)
    ok = (std > 0) & ~constant
    return np.where(ok, mean / np.where(ok, std, 1.0), 0.0)


def overfit_from_moments(
    mean: np.ndarray, std: np.ndarray, moments: np.ndarray, n_obs: int
) -> OverfitStats:
    """The statistics from each trial's full-sample mean and std (ddof=1) and its block
    moments about that mean (trials x blocks x N_MOMENTS, blocks cut by
    :func:`block_starts`)."""
    mean = np.ascontiguousarray(mean, dtype=np.float64)
    std = np.ascontiguousarray(std, dtype=np.float64)
    moments = np.ascontiguousarray(moments, dtype=np.float64)
    n_trials, blocks = moments.shape[0], moments.shape[1]
    check_dimensions(n_obs, n_trials, blocks)
    sharpe = _full_sharpe(mean, std, moments)
    best = int(np.argmax(sharpe))
    sr = float(sharpe[best])

    # g3, g4 of the best trial: population moments about its mean (ddof=0)
    tot = moments[best].sum(axis=0)
    e = tot[M_S1] / n_obs  # the stored mean's rounding error (about 1e-19)
    m2 = tot[M_S2] / n_obs - e * e
    m3 = tot[M_S3] / n_obs - 3 * e * tot[M_S2] / n_obs + 2 * e**3
    m4 = tot[M_S4] / n_obs - 4 * e * tot[M_S3] / n_obs + 6 * e * e * tot[M_S2] / n_obs - 3 * e**4
    constant = moments[best, :, M_MIN].min() == moments[best, :, M_MAX].max()
    if constant or not m2 > 0:
        psr = sr0 = dsr = math.nan
    else:
        sd = math.sqrt(m2)
        g3, g4 = m3 / sd**3, m4 / sd**4
        psr = _psr(sr, 0.0, n_obs, g3, g4)
        v = float(np.var(sharpe, ddof=1))
        sr0 = math.sqrt(v) * (
            (1 - EULER_GAMMA) * _norm_ppf(1 - 1 / n_trials)
            + EULER_GAMMA * _norm_ppf(1 - 1 / (n_trials * math.e))
        )
        dsr = _psr(sr, sr0, n_obs, g3, g4)

    starts = block_starts(n_obs, blocks)
    splits = split_blocks(blocks)
    k = splits.shape[0]
    is_sr, oos_sr, logit = np.empty(k), np.empty(k), np.empty(k)
    with KERNEL_LOCK:
        _cscv(moments, mean, starts, splits, is_sr, oos_sr, logit)
    dx = is_sr - is_sr.mean()
    sxx = float(dx @ dx)
    if sxx > 0:
        slope = float(dx @ (oos_sr - oos_sr.mean())) / sxx
        intercept = float(oos_sr.mean() - slope * is_sr.mean())
    else:
        slope = intercept = math.nan
    return OverfitStats(
        n_trials=n_trials,
        n_obs=n_obs,
        n_blocks=blocks,
        best=best,
        sharpe_best=sr,
        psr=psr,
        sr0=sr0,
        dsr=dsr,
        pbo=float(np.mean(logit <= 0)),
        n_splits=k,
        prob_oos_loss=float(np.mean(oos_sr < 0)),
        degradation_slope=slope,
        degradation_intercept=intercept,
        logits=logit,
        is_sharpe=is_sr,
        oos_sharpe=oos_sr,
    )


CHUNK_VALUES = 1 << 22  # values per chunk of the mean / std pass (32 MB of temporaries)


def trial_moments(
    returns: Any, blocks: int = DEFAULT_BLOCKS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, std with ddof=1, block moments) of every column of a T x N returns matrix,
    with numpy's own mean and std; every value must be finite."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2:
        raise InvalidInputError(f"returns must be a 2-D matrix (rows x trials), got {r.ndim}-D")
    n_obs, n_trials = r.shape
    check_dimensions(n_obs, n_trials, blocks)
    x = np.ascontiguousarray(r.T)  # one contiguous row per trial (no copy when F-ordered)
    mean = np.empty(n_trials)
    std = np.empty(n_trials)
    step = max(1, CHUNK_VALUES // n_obs)
    for lo in range(0, n_trials, step):
        part = x[lo : lo + step]
        if not np.isfinite(part).all():
            j, i = np.argwhere(~np.isfinite(part))[0]
            raise InvalidInputError(
                f"return {part[j, i]!r} in row {i + 1} of trial {lo + j + 1}: every return "
                "must be a finite number"
            )
        mean[lo : lo + step] = part.mean(axis=1)
        std[lo : lo + step] = part.std(axis=1, ddof=1)
    moments = np.empty((n_trials, blocks, N_MOMENTS))
    _moments_of_rows(x, mean, block_starts(n_obs, blocks), moments)
    return mean, std, moments


def overfit_stats(returns: Any, blocks: int = DEFAULT_BLOCKS) -> OverfitStats:
    """The statistics of a T x N matrix of per-period returns (rows in time order)."""
    mean, std, moments = trial_moments(returns, blocks)
    return overfit_from_moments(mean, std, moments, int(np.shape(returns)[0]))
