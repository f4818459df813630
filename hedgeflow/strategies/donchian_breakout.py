"""donchian_breakout: long when close > upper (previous ``window`` bars' max high),
stays long until close < mid (``midline``) or close < lower (``lower``).

The channel excludes the current bar (the article's bug: including it makes
``close > upper`` impossible). Signal 0 (and flat) where the channel is undefined.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numba
import numpy as np

from hedgeflow.errors import InvalidInputError
from hedgeflow.indicators import DonchianStream, donchian
from hedgeflow.strategies import StrategySpec, register
from hedgeflow.strategies._common import as_f64, check_int

NAME = "donchian_breakout"
INDICATOR_COLUMNS = ("dc_upper", "dc_lower", "dc_mid")
EXIT_RULES = ("midline", "lower")


@dataclass(frozen=True)
class Params:
    window: int = 20
    exit_rule: Literal["midline", "lower"] = "midline"

    def __post_init__(self) -> None:
        check_int(NAME, "window", self.window)
        if self.exit_rule not in EXIT_RULES:
            raise InvalidInputError(
                f"exit_rule must be one of midline, lower, got {self.exit_rule!r} ({NAME})"
            )


@numba.njit(cache=True)
def signal_kernel(close: np.ndarray, upper: np.ndarray, exit_level: np.ndarray) -> np.ndarray:
    n = close.shape[0]
    out = np.zeros(n, dtype=np.int8)
    long = False
    for i in range(n):
        u = upper[i]
        x = exit_level[i]
        c = close[i]
        if u != u or x != x:
            long = False
        elif not long:
            if c > u:
                long = True
        elif c < x:
            long = False
        if long:
            out[i] = 1
    return out


def signals(
    open: Any, high: Any, low: Any, close: Any, params: Params
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    upper, lower, mid = donchian(as_f64(high), as_f64(low), params.window)
    exit_level = mid if params.exit_rule == "midline" else lower
    sig = signal_kernel(as_f64(close), upper, exit_level)
    return sig, {"dc_upper": upper, "dc_lower": lower, "dc_mid": mid}


class Streaming:
    """Bar-by-bar twin of :func:`signals` (amortised O(1) per bar)."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self._dc = DonchianStream(params.window)
        self._midline = params.exit_rule == "midline"
        self._long = False

    def update(
        self, open: float, high: float, low: float, close: float
    ) -> tuple[int, dict[str, float]]:
        u, lo, m = self._dc.update(high, low)
        x = m if self._midline else lo
        c = float(close)
        if u != u or x != x:
            self._long = False
        elif not self._long:
            if c > u:
                self._long = True
        elif c < x:
            self._long = False
        return int(self._long), {"dc_upper": u, "dc_lower": lo, "dc_mid": m}


def warmup(params: Params) -> int:
    return params.window


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
