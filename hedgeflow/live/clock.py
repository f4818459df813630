"""Feed clocks: the wall clock, the simulator's clock, and waiting on either.

Every "has this bar ended" test of the live path reads a feed clock ``clock_ms()``
(epoch milliseconds): :func:`wall_clock_ms` for EODHD, :meth:`WsSimulator.now_ms` or a
:class:`SimulatedClock` against the simulator (market time running ``speed`` times
faster than the wall clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable

from hedgeflow.errors import InvalidInputError

__all__ = ["SimulatedClock", "sleep_until", "wall_clock_ms"]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class SimulatedClock:
    """``start_ms + wall elapsed x speed`` (the WsSimulator's clock, for poll mode)."""

    def __init__(self, start_ms: int, speed: float) -> None:
        if not (speed > 0 and math.isfinite(speed)):
            raise InvalidInputError(f"speed must be a finite number > 0, got {speed!r}")
        self.start_ms = int(start_ms)
        self.speed = float(speed)
        self._t0 = time.monotonic()

    def __call__(self) -> int:
        return self.start_ms + int((time.monotonic() - self._t0) * self.speed * 1000)

    now_ms = __call__


async def sleep_until(
    clock_ms: Callable[[], int],
    target_ms: int,
    stop: asyncio.Event,
    *,
    rate: float = 1.0,
    max_nap: float = 0.25,
) -> bool:
    """Wait until ``clock_ms() >= target_ms`` (feed time running ``rate`` x the wall
    clock); False when ``stop`` is set first."""
    while True:
        remaining = target_ms - clock_ms()
        if remaining <= 0:
            return True
        nap = min(max(remaining / 1000.0 / rate, 0.001), max_nap)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), nap)
        if stop.is_set():
            return False
