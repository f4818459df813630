"""donchian_breakout: long when close > upper (previous ``window`` bars' max high),
stays long until close < mid (``midline``) or close < lower (``lower``); with
shorts, short when close < lower, stays short until close > mid (``midline``) or
close > upper (``lower``).

One state machine per bar (DESIGN.md "Short selling"): first the exit of the held
state, then, when flat, the entry (long first). With shorts off the short entry
never fires: the long-only machine exactly.

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
    """p = (window, exit_rule: 0 midline, 1 lower, shorts); state = the held state
    (1 long, -1 short, 0 flat), then the channel's."""
    u, low, mid = donchian_step(st, 1, int(p[0]), h, lo)
    out[0] = u
    out[1] = low
    out[2] = mid
    midline = p[1] == 0.0
    x = mid if midline else low  # a long's exit level
    xs = mid if midline else u  # a short's
    held = st[0]
    if u != u or x != x:
        held = 0.0
    else:
        if (held > 0.0 and c < x) or (held < 0.0 and c > xs):
            held = 0.0  # the exit of the held state
        if held == 0.0:
            if c > u:
                held = 1.0
            elif p[2] != 0.0 and c < low:
                held = -1.0
    st[0] = held
    return int(held)


STRATEGY = Strategy(
    name=NAME,
    params=Params,
    update=update,
    indicators=("dc_upper", "dc_lower", "dc_mid"),
    state_size=lambda p: 1 + donchian_state_size(p.window),
    warmup=lambda p: p.window,
    grid={"window": [10, 20, 40, 60, 80, 120], "exit_rule": ["midline", "lower"]},
    description="long above the previous window's high until below the mid (or low)",
    shorts=True,
)
