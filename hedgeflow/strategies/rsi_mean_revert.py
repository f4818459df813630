"""rsi_mean_revert: becomes long when rsi < entry_rsi, stays long until rsi >= exit_rsi;
with shorts, becomes short when rsi > 100 - entry_rsi, stays short until
rsi <= 100 - exit_rsi.

One state machine per bar (DESIGN.md "Short selling"): first the exit of the held
state, then, when flat, the entry (long first). The signal is the state after both
steps. It starts flat; where rsi is undefined the signal is 0 (and flat). With
shorts off the short entry never fires: the long-only machine exactly.
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
    """p = (period, entry_rsi, exit_rsi, shorts); state = the RSI's, then the held
    state (1 long, -1 short, 0 flat)."""
    r = rsi_step(st, 0, int(p[0]), c)
    out[0] = r
    held = st[RSI_STATE_SIZE]
    if r != r:
        held = 0.0
    else:
        if (held > 0.0 and r >= p[2]) or (held < 0.0 and r <= 100.0 - p[2]):
            held = 0.0  # the exit of the held state
        if held == 0.0:
            if r < p[1]:
                held = 1.0
            elif p[3] != 0.0 and r > 100.0 - p[1]:
                held = -1.0
    st[RSI_STATE_SIZE] = held
    return int(held)


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
    shorts=True,
)
