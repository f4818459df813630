"""sma_cross: long while sma(fast) > sma(slow) (and close > sma(fast) when confirming);
with shorts, short while sma(fast) < sma(slow) (and close < sma(fast)).

Signal at bar i is 1 iff both averages are defined, ``sma_fast > sma_slow`` and,
with ``confirm_above_fast``, ``close > sma_fast``; with shorts allowed it is -1
iff ``sma_fast < sma_slow`` and, confirming, ``close < sma_fast``; 0 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from hedgeflow.errors import InvalidInputError
from hedgeflow.indicators import sma_state_size, sma_step
from hedgeflow.strategies._common import check_int
from hedgeflow.strategies.base import Strategy

NAME = "sma_cross"


@dataclass(frozen=True)
class Params:
    fast: int = 20
    slow: int = 50
    confirm_above_fast: bool = True

    def __post_init__(self) -> None:
        check_int(NAME, "fast", self.fast)
        check_int(NAME, "slow", self.slow)
        if not self.fast < self.slow:
            raise InvalidInputError(
                f"fast must be < slow, got fast={self.fast} slow={self.slow} ({NAME})"
            )
        if not isinstance(self.confirm_above_fast, (bool, np.bool_)):
            raise InvalidInputError(
                f"confirm_above_fast must be true or false, got {self.confirm_above_fast!r}"
            )


@numba.njit(cache=True)
def update(
    st: np.ndarray, p: np.ndarray, o: float, h: float, lo: float, c: float, out: np.ndarray
) -> int:
    """p = (fast, slow, confirm, shorts); state = the fast SMA's, then the slow SMA's."""
    fast = int(p[0])
    slow = int(p[1])
    f = sma_step(st, 0, fast, c)
    s = sma_step(st, fast + 3, slow, c)
    out[0] = f
    out[1] = s
    # comparisons with NaN are False: undefined inputs give 0
    if f > s and (p[2] == 0.0 or c > f):
        return 1
    if p[3] != 0.0 and f < s and (p[2] == 0.0 or c < f):
        return -1
    return 0


STRATEGY = Strategy(
    name=NAME,
    params=Params,
    update=update,
    indicators=("sma_fast", "sma_slow"),
    state_size=lambda p: sma_state_size(p.fast) + sma_state_size(p.slow),
    warmup=lambda p: p.slow - 1,
    grid={"fast": [5, 10, 20, 30, 50], "slow": [50, 100, 150, 200]},
    description="long while sma(fast) > sma(slow) (and close > sma(fast) when confirming)",
    shorts=True,
)
