"""sma_cross: long while sma(fast) > sma(slow) (and close > sma(fast) when confirming).

Signal at bar i is 1 iff both averages are defined, ``sma_fast > sma_slow`` and,
with ``confirm_above_fast``, ``close > sma_fast``; 0 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from hedgeflow.indicators import SmaStream, sma
from hedgeflow.strategies import StrategySpec, register
from hedgeflow.strategies._common import as_f64, check_int

NAME = "sma_cross"
INDICATOR_COLUMNS = ("sma_fast", "sma_slow")


@dataclass(frozen=True)
class Params:
    fast: int = 20
    slow: int = 50
    confirm_above_fast: bool = True

    def __post_init__(self) -> None:
        from hedgeflow.errors import InvalidInputError

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
def signal_kernel(
    close: np.ndarray, sma_fast: np.ndarray, sma_slow: np.ndarray, confirm: bool
) -> np.ndarray:
    n = close.shape[0]
    out = np.zeros(n, dtype=np.int8)
    for i in range(n):
        f = sma_fast[i]
        s = sma_slow[i]
        # comparisons with NaN are False: undefined inputs give 0
        if f > s and (not confirm or close[i] > f):
            out[i] = 1
    return out


def signals(
    open: Any, high: Any, low: Any, close: Any, params: Params
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    c = as_f64(close)
    fast = sma(c, params.fast)
    slow = sma(c, params.slow)
    sig = signal_kernel(c, fast, slow, bool(params.confirm_above_fast))
    return sig, {"sma_fast": fast, "sma_slow": slow}


class Streaming:
    """Bar-by-bar twin of :func:`signals` (O(1) per bar)."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self._fast = SmaStream(params.fast)
        self._slow = SmaStream(params.slow)

    def update(
        self, open: float, high: float, low: float, close: float
    ) -> tuple[int, dict[str, float]]:
        c = float(close)
        f = self._fast.update(c)
        s = self._slow.update(c)
        sig = 1 if (f > s and (not self.params.confirm_above_fast or c > f)) else 0
        return sig, {"sma_fast": f, "sma_slow": s}


def warmup(params: Params) -> int:
    return params.slow - 1


SPEC = register(
    StrategySpec(
        name=NAME,
        params_type=Params,
        signals=signals,
        indicator_columns=INDICATOR_COLUMNS,
        warmup=warmup,
        streaming=Streaming,
    )
)
