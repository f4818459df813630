"""REST polling mode (the article's ``live_poll_rest``): closed bars from REST, no ticks.

:class:`PollRuntime` wakes up once per bar interval of the feed clock (``clock_ms``:
a :class:`~hedgeflow.live.clock.SimulatedClock` against the simulator, so polling
speeds up with it; the wall clock for EODHD), ``poll_delay_seconds`` after each bar
boundary, and fetches per symbol the closed bars from the first bar its agents still
need up to the boundary. New bars go to the agents in order and their steps to the
same ``sink`` as the WebSocket runtime. The first poll is the startup catch-up: from
each symbol's last processed bar (warm-up or restore), or only the last closed bar
for an agent without any history.

A bar REST does not have yet (a vendor publishing late) is simply fetched by a later
poll: the range always starts at the first bar still needed. A failing poll is logged
and retried at the next boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from hedgeflow.errors import InvalidInputError, PermanentSourceError
from hedgeflow.live.agent import LiveAgent
from hedgeflow.live.clock import sleep_until, wall_clock_ms
from hedgeflow.live.rest import BarFetcher
from hedgeflow.live.router import BarRouter
from hedgeflow.live.sink import Sink
from hedgeflow.live.status import RuntimeStatus

log = logging.getLogger(__name__)

__all__ = ["PollRuntime"]


class PollRuntime:
    """Poll REST for closed bars every bar interval; see the module doc."""

    mode = "poll"

    def __init__(
        self,
        agents: Sequence[LiveAgent],
        *,
        interval: str,
        sink: Sink,
        fetch_bars: BarFetcher,
        clock_ms: Callable[[], int] | None = None,
        clock_rate: float = 1.0,
        poll_delay_seconds: float = 2.0,
        on_status: Callable[[RuntimeStatus], Any] | None = None,
        status_every: float = 1.0,
    ) -> None:
        if not 0 <= poll_delay_seconds < 86_400:
            raise InvalidInputError(
                f"poll_delay_seconds must be in [0, 86400), got {poll_delay_seconds}"
            )
        self.router = BarRouter(agents, sink, interval)
        self.interval_ms = self.router.interval_ms
        self.fetch_bars = fetch_bars
        self.clock_ms = clock_ms or wall_clock_ms
        self.clock_rate = float(clock_rate)
        self.delay_ms = round(poll_delay_seconds * 1000)
        self.on_status = on_status
        self.status_every = float(status_every)
        self.polls = 0
        self.poll_failures = 0
        self.running = False
        self._t0 = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def status(self) -> RuntimeStatus:
        return RuntimeStatus(
            mode=self.mode,
            clock_ms=self.clock_ms(),
            elapsed=time.monotonic() - self._t0,
            agents=self.router.agent_status(),
            bars=self.router.bars,
            rest_bars=self.router.rest_bars,
            repairs=self.polls,
            repair_failures=self.poll_failures,
            running=self.running,
        )

    def stop(self) -> None:
        """Ask :meth:`run` to return (safe from any thread)."""
        loop, event = self._loop, self._stop
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    async def poll_once(self) -> int:
        """Fetch and dispatch every closed bar still needed; returns bars dispatched."""
        now = self.clock_ms()
        boundary = now - now % self.interval_ms  # bars before it are closed
        before = self.router.bars
        self.polls += 1
        for symbol in self.router.symbols:
            needed = self.router.next_needed_ms(symbol)
            start = boundary - self.interval_ms if needed is None else needed
            if start >= boundary:
                continue
            try:
                bars = await asyncio.to_thread(self.fetch_bars, symbol, start, boundary)
            except PermanentSourceError:
                raise
            except Exception as exc:
                self.poll_failures += 1
                log.warning("live poll: bars of %s failed: %s: %s", symbol, type(exc).__name__, exc)
                continue
            for bar in bars:
                if start <= bar.ts_ms < boundary:
                    self.router.dispatch(bar)
        return self.router.bars - before

    async def run(
        self, duration: float | None = None, stop: threading.Event | None = None
    ) -> RuntimeStatus:
        """Poll until ``duration`` wall seconds pass, :meth:`stop` is called or
        ``stop`` is set; returns the final status."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._t0 = time.monotonic()
        self.running = True
        deadline = None if duration is None else self._t0 + float(duration)
        watcher = asyncio.create_task(self._watch(deadline, stop))
        try:
            while not self._stop.is_set():
                await self.poll_once()
                now = self.clock_ms()
                target = now - now % self.interval_ms + self.interval_ms + self.delay_ms
                await sleep_until(self.clock_ms, target, self._stop, rate=self.clock_rate)
        finally:
            self._stop.set()
            await asyncio.gather(watcher, return_exceptions=True)
            self.running = False
        final = self.status()
        if self.on_status is not None:
            self.on_status(final)
        return final

    async def _watch(self, deadline: float | None, stop: threading.Event | None) -> None:
        assert self._stop is not None
        next_status = time.monotonic() + self.status_every
        while not self._stop.is_set():
            now = time.monotonic()
            if self.on_status is not None and now >= next_status:
                next_status = now + self.status_every
                self.on_status(self.status())
            if (deadline is not None and now >= deadline) or (stop is not None and stop.is_set()):
                self._stop.set()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.05)
