"""donchian_breakout: long when close > upper (previous ``window`` bars' max high),
stays long until close < mid (``midline``) or close < lower (``lower``).

The channel excludes the current bar (the article's bug: including it makes
``close > upper`` impossible). Signal 0 (and flat) where the channel is undefined.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np

from hedgeflow.errors import InvalidInputError
from hedgeflow.indicators import donchian_state_size, donchian_step
from hedgeflow.strategies._common import check_int
from hedgeflow.strategies.base import Strategy

NAME = "donchian_breakout"
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
def update(
    st: np.ndarray, p: np.ndarray, o: float, h: float, lo: float, c: float, out: np.ndarray
) -> int:
    """p = (window, exit_rule: 0 midline, 1 lower); state = the long flag, then the
    channel's."""
    u, low, mid = donchian_step(st, 1, int(p[0]), h, lo)
    out[0] = u
    out[1] = low
    out[2] = mid
    x = mid if p[1] == 0.0 else low
    long = st[0] != 0.0
    if u != u or x != x:
        long = False
    elif not long:
        if c > u:
            long = True
    elif c < x:
        long = False
    st[0] = 1.0 if long else 0.0
    return 1 if long else 0


STRATEGY = Strategy(
    name=NAME,
    params=Params,
    update=update,
    indicators=("dc_upper", "dc_lower", "dc_mid"),
    state_size=lambda p: 1 + donchian_state_size(p.window),
    warmup=lambda p: p.window,
    grid={"window": [10, 20, 40, 60, 80, 120], "exit_rule": ["midline", "lower"]},
    description="long above the previous window's high until below the mid (or low)",
)
