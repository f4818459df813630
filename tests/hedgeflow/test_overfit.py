"""Overfitting statistics (DESIGN.md "Overfitting statistics") against a plain reference.

The reference below is written straight from the definitions: every C(S, S/2)
split of the raw rows (numpy.array_split blocks, itertools.combinations order),
Sharpe ratios from numpy's mean and std, ranks from scipy.stats.rankdata, PSR and
SR0 from scipy.stats.norm, the degradation line from numpy.polyfit. It shares no
code with hedgeflow.overfit (which works from block moments).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import norm, rankdata

from hedgeflow.errors import InvalidInputError
from hedgeflow.overfit import (
    DSR_LIMIT,
    PBO_LIMIT,
    _norm_ppf,
    block_starts,
    overfit_stats,
    overfit_verdict,
    split_blocks,
)

GAMMA = 0.5772156649015329
FIELDS = (
    "sharpe_best", "psr", "sr0", "dsr", "pbo", "prob_oos_loss",
    "degradation_slope", "degradation_intercept",
)  # fmt: skip


def _srs(x: np.ndarray) -> np.ndarray:
    """SR of each column: mean / std(ddof=1), 0 where std is 0."""
    sd = x.std(axis=0, ddof=1)
    return np.where(sd == 0, 0.0, x.mean(axis=0) / np.where(sd == 0, 1.0, sd))


def reference(r: np.ndarray, blocks: int) -> dict[str, float]:
    t, n = r.shape
    srs = _srs(r)
    best = int(np.argmax(srs))
    sr = srs[best]
    x = r[:, best]
    mu, sd = x.mean(), x.std(ddof=0)
    g3 = np.mean((x - mu) ** 3) / sd**3
    g4 = np.mean((x - mu) ** 4) / sd**4

    def psr(star: float) -> float:
        return float(
            norm.cdf((sr - star) * math.sqrt(t - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))
        )

    sr0 = math.sqrt(np.var(srs, ddof=1)) * (
        (1 - GAMMA) * norm.ppf(1 - 1 / n) + GAMMA * norm.ppf(1 - 1 / (n * math.e))
    )
    parts = np.array_split(np.arange(t), blocks)
    logits, ins, outs = [], [], []
    for chosen in itertools.combinations(range(blocks), blocks // 2):
        rows_in = np.concatenate([parts[b] for b in chosen])
        rows_out = np.concatenate([parts[b] for b in range(blocks) if b not in chosen])
        sr_in = _srs(r[rows_in])
        sr_out = _srs(r[rows_out])
        star = int(np.argmax(sr_in))
        w = rankdata(sr_out, method="average")[star] / (n + 1)
        logits.append(math.log(w / (1 - w)))
        ins.append(sr_in[star])
        outs.append(sr_out[star])
    slope, intercept = np.polyfit(ins, outs, 1)
    return {
        "best": best,
        "sharpe_best": sr,
        "psr": psr(0.0),
        "sr0": sr0,
        "dsr": psr(sr0),
        "pbo": float(np.mean(np.array(logits) <= 0)),
        "n_splits": len(logits),
        "prob_oos_loss": float(np.mean(np.array(outs) < 0)),
        "degradation_slope": float(slope),
        "degradation_intercept": float(intercept),
        "logits": np.array(logits),
    }


def _fixed_matrix() -> np.ndarray:
    """Fat-tailed, skewed trials with the cases sweeps produce: a trial that never
    trades (all zero), trials flat for long stretches, two identical trials (ties)."""
    rng = np.random.default_rng(20261204)
    r = rng.standard_t(4, size=(437, 9)) * 0.01 + 0.0004
    r[:, 1] = np.abs(r[:, 1]) - 0.006  # skewed
    r[:, 4] = 0.0
    r[40:300, 5] = 0.0  # flat for blocks at a time
    r[:, 7] = r[:, 6]  # a tie
    r[:200, 8] = 0.0
    return r


@pytest.mark.parametrize("blocks", [2, 6, 10])
def test_matches_the_reference_to_1e9(blocks: int) -> None:
    r = _fixed_matrix()
    got = overfit_stats(r, blocks)
    want = reference(r, blocks)
    assert got.best == want["best"]
    assert got.n_splits == want["n_splits"] == math.comb(blocks, blocks // 2)
    assert (got.n_trials, got.n_obs) == (9, 437)
    for key in FIELDS:
        assert getattr(got, key) == pytest.approx(want[key], abs=1e-9, rel=0), key
    np.testing.assert_allclose(got.logits, want["logits"], rtol=0, atol=1e-9)


def test_matches_the_reference_with_16_blocks_and_uneven_blocks() -> None:
    # 16 blocks (12,870 splits) on 250 rows: blocks of 16 and 15 rows
    r = np.random.default_rng(5).normal(0.0002, 0.01, size=(250, 6))
    got, want = overfit_stats(r, 16), reference(r, 16)
    assert got.n_splits == 12_870
    for key in FIELDS:
        assert getattr(got, key) == pytest.approx(want[key], abs=1e-9, rel=0), key


def test_blocks_are_numpy_array_split_and_splits_itertools_order() -> None:
    for n, s in [(437, 10), (16, 16), (17, 16), (100_003, 16)]:
        sizes = np.diff(block_starts(n, s))
        assert sizes.tolist() == [len(p) for p in np.array_split(np.arange(n), s)]
    assert [tuple(x) for x in split_blocks(6)] == list(itertools.combinations(range(6), 3))


def test_normal_quantile_matches_scipy() -> None:
    for p in [1e-12, 1e-6, 0.01, 0.02425, 0.3, 0.5, 0.9, 1 - 1 / 1000, 1 - 1 / (1000 * math.e)]:
        assert _norm_ppf(p) == pytest.approx(norm.ppf(p), abs=1e-12, rel=1e-13)


# ------------------------------------------------------------------ calibration


def test_pure_noise_is_not_mistaken_for_skill() -> None:
    """25 trials of pure noise: PBO near 0.5 and DSR below 0.95. One draw's PBO varies a
    lot (its splits share their data): the seeded draw lies in [0.3, 0.7], and over 20
    draws the mean lies in [0.4, 0.6] and no DSR reaches 0.95."""
    pbos, dsrs = [], []
    for seed in range(20):
        r = np.random.default_rng(seed).normal(0.0, 0.01, size=(1000, 25))
        s = overfit_stats(r, 16)
        pbos.append(s.pbo)
        dsrs.append(s.dsr)
        if seed == 0:
            assert 0.3 <= s.pbo <= 0.7, s.pbo
            assert s.dsr < DSR_LIMIT
            assert overfit_verdict(s.pbo, s.dsr)[0]
    assert 0.4 <= float(np.mean(pbos)) <= 0.6, np.mean(pbos)
    assert max(dsrs) < DSR_LIMIT


def test_a_planted_edge_is_found() -> None:
    rng = np.random.default_rng(11)
    r = rng.normal(0.0, 0.01, size=(2000, 30))
    r[:, 17] += 0.0015  # SR about 0.15 per period
    s = overfit_stats(r, 16)
    assert s.best == 17
    assert s.pbo < 0.1
    assert s.dsr > 0.95
    assert s.prob_oos_loss < 0.05
    overfit, sentence = overfit_verdict(s.pbo, s.dsr)
    assert not overfit and sentence.startswith("No sign of overfitting")


def test_dsr_falls_as_the_number_of_trials_grows() -> None:
    """Other things equal: the same 20 trials (a modest edge and 19 noise trials) tried
    1, 2, 4 and 8 times over. The winner, its SR and the spread of the trials' SR stay
    the same; only N grows, and SR0 with it."""
    rng = np.random.default_rng(3)
    base = rng.normal(0.0, 0.01, size=(1500, 20))
    base[:, 0] += 0.0008
    dsrs, sr0s = [], []
    for copies in (1, 2, 4, 8):
        s = overfit_stats(np.tile(base, copies), 16)
        assert s.best == 0 and s.n_trials == 20 * copies
        dsrs.append(s.dsr)
        sr0s.append(s.sr0)
    assert dsrs == sorted(dsrs, reverse=True) and dsrs[0] > dsrs[-1] + 0.1, dsrs
    assert sr0s == sorted(sr0s), sr0s


def test_verdict_wording() -> None:
    assert overfit_verdict(0.62, 0.99) == (
        True,
        f"Probably overfit: PBO 0.62 > {PBO_LIMIT:g}: the in-sample winner ranks in the bottom "
        "half out of sample in most splits.",
    )
    overfit, sentence = overfit_verdict(0.2, 0.5)
    assert overfit and "DSR 0.50 < 0.95" in sentence
    assert overfit_verdict(0.2, None)[0]
    assert overfit_verdict(None, 0.99) == (True, "Probably overfit: PBO undefined.")


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("shape", "blocks", "problem"),
    [
        ((100, 1), 16, "1 trial: overfitting statistics compare at least 2 trials"),
        ((15, 4), 16, "15 rows of returns, fewer than the 16 blocks"),
        ((100, 4), 7, "--blocks must be an even number from 2 to 24, got 7"),
        ((100, 4), 0, "--blocks must be an even number from 2 to 24, got 0"),
        ((100, 4), 26, "--blocks must be an even number from 2 to 24, got 26"),
    ],
)
def test_bad_dimensions(shape: tuple[int, int], blocks: int, problem: str) -> None:
    with pytest.raises(InvalidInputError, match=problem.replace("(", r"\(")):
        overfit_stats(np.zeros(shape), blocks)


def test_nan_is_refused_naming_the_cell() -> None:
    r = np.random.default_rng(0).normal(size=(50, 3))
    r[31, 2] = np.nan
    with pytest.raises(InvalidInputError, match="row 32 of trial 3"):
        overfit_stats(r, 4)


def test_constant_winner_has_no_psr() -> None:
    r = np.zeros((64, 3))
    r[:, 1] = -np.abs(np.random.default_rng(1).normal(size=64))
    s = overfit_stats(r, 4)
    assert s.best == 0 and s.sharpe_best == 0.0
    assert math.isnan(s.psr) and math.isnan(s.dsr)
    assert overfit_verdict(s.pbo, None)[0]
