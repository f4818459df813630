"""rsi_mean_revert: becomes long when rsi < entry_rsi, stays long until rsi >= exit_rsi.

The state machine starts flat; where rsi is undefined the signal is 0 (and flat).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from hedgeflow.errors import InvalidInputError
from hedgeflow.indicators import RSI_STATE_SIZE, rsi_step
from hedgeflow.strategies._common import check_float, check_int
from hedgeflow.strategies.base import Strategy

NAME = "rsi_mean_revert"


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
def update(
    st: np.ndarray, p: np.ndarray, o: float, h: float, lo: float, c: float, out: np.ndarray
) -> int:
    """p = (period, entry_rsi, exit_rsi); state = the RSI's, then the long flag."""
    r = rsi_step(st, 0, int(p[0]), c)
    out[0] = r
    long = st[RSI_STATE_SIZE] != 0.0
    if r != r:
        long = False
    elif not long:
        if r < p[1]:
            long = True
    elif r >= p[2]:
        long = False
    st[RSI_STATE_SIZE] = 1.0 if long else 0.0
    return 1 if long else 0


STRATEGY = Strategy(
    name=NAME,
    params=Params,
    update=update,
    indicators=("rsi",),
    state_size=lambda p: RSI_STATE_SIZE + 1,
    warmup=lambda p: p.period,
    grid={
        "period": [7, 14, 21],
        "entry_rsi": [20.0, 25.0, 30.0, 35.0],
        "exit_rsi": [50.0, 55.0, 60.0, 70.0],
    },
    description="long from rsi < entry_rsi until rsi >= exit_rsi",
)
