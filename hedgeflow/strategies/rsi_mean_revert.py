"""rsi_mean_revert: becomes long when rsi < entry_rsi, stays long until rsi >= exit_rsi.

The state machine starts flat; where rsi is undefined the signal is 0 (and flat).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from hedgeflow.errors import InvalidInputError
from hedgeflow.indicators import RsiStream, rsi
from hedgeflow.strategies import StrategySpec, register
from hedgeflow.strategies._common import as_f64, check_float, check_int

NAME = "rsi_mean_revert"
INDICATOR_COLUMNS = ("rsi",)


@dataclass(frozen=True)
class Params:
    period: int = 14
    entry_rsi: float = 30.0
    exit_rsi: float = 50.0

    def __post_init__(self) -> None:
        check_int(NAME, "period", self.period)
        entry = check_float(NAME, "entry_rsi", self.entry_rsi)
        exit_ = check_float(NAME, "exit_rsi", self.exit_rsi)
        if not entry > 0.0:
            raise InvalidInputError(f"entry_rsi must be > 0, got {entry} ({NAME})")
        if not entry < exit_:
            raise InvalidInputError(
                f"entry_rsi must be < exit_rsi, got entry_rsi={entry} exit_rsi={exit_} ({NAME})"
            )
        if not exit_ <= 100.0:
            raise InvalidInputError(f"exit_rsi must be <= 100, got {exit_} ({NAME})")


@numba.njit(cache=True)
def signal_kernel(rsi_values: np.ndarray, entry: float, exit_: float) -> np.ndarray:
    n = rsi_values.shape[0]
    out = np.zeros(n, dtype=np.int8)
    long = False
    for i in range(n):
        r = rsi_values[i]
        if r != r:
            long = False
        elif not long:
            if r < entry:
                long = True
        elif r >= exit_:
            long = False
        if long:
            out[i] = 1
    return out


def signals(
    open: Any, high: Any, low: Any, close: Any, params: Params
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    r = rsi(as_f64(close), params.period)
    sig = signal_kernel(r, float(params.entry_rsi), float(params.exit_rsi))
    return sig, {"rsi": r}


class Streaming:
    """Bar-by-bar twin of :func:`signals` (O(1) per bar)."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self._rsi = RsiStream(params.period)
        self._long = False

    def update(
        self, open: float, high: float, low: float, close: float
    ) -> tuple[int, dict[str, float]]:
        r = self._rsi.update(close)
        if r != r:
            self._long = False
        elif not self._long:
            if r < self.params.entry_rsi:
                self._long = True
        elif r >= self.params.exit_rsi:
            self._long = False
        return int(self._long), {"rsi": r}


def warmup(params: Params) -> int:
    return params.period


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
