"""Gaps of the live feed: startup catch-up and reconnect backfill (one rule).

Ticks missed while a connection was down - and before the runtime started - are
recovered from REST as whole **bars**, never as ticks. A gap of a symbol opens at
``from_ms``: on a reconnect the time of the last tick received (the client's backfill
hook), at startup the end of the last bar the symbol's agents processed (warm-up
history or restored record). The gap ends at the **first tick received after it**, at
``t1``: ticks arrive in time order on a connection, so from ``t1`` on nothing is
missing, but the bar containing ``t1`` may have lost its first ticks (the subscription
takes effect some time after the clock read, which at a simulator speed of 20,000x can
be several bars). So:

1. every tick of the symbol before ``end`` = the end of the bar containing ``t1`` is
   dropped (counted as ``skipped``), and so is the bar that was open when the
   connection dropped (partly seen);
2. the closed bars ``[bar of from_ms, end)`` are fetched from REST and fed to the
   agents in order: at once those that closed (plus the grace) before now, the rest
   once the clock passes ``end`` plus the grace - in a quiet market (no first tick
   yet) the repair keeps fetching each bar as it closes;
3. meanwhile the symbol's later live bars are held, and released in order after the
   last REST bar.

So the agents see every bar exactly once, in time order, each either built from all
its ticks or taken from REST - the bars the nightly engine sees. A bar REST does not
have (a quiet market; a vendor that has not published it yet) is skipped, as a bar
without ticks is.

A REST fetch is tried three times (0.5 s, then 1 s apart; a permanent error - a bad
token, an invalid request - only once). When it still fails the repair gives up: it
logs a warning ("the gap stays") and counts a ``repair_failure``. The bars fetched
before the failed range have reached the agents; the bars from the failed range's
start up to the gap's end (the end of the bar of the first tick after the gap, or, if
no tick has arrived yet, the end of the failed range) never do - neither from REST nor
as the partly seen live bars, whose ticks stay skipped. The held live bars after that
are released in order and streaming goes on. Nothing refills the hole later: the
agents have moved past it, and a restart's catch-up starts after their last bar.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pandas as pd

from hedgeflow.errors import InvalidInputError, PermanentSourceError
from hedgeflow.live.aggregator import Bar
from hedgeflow.live.clock import sleep_until
from hedgeflow.live.rest import BarFetcher
from hedgeflow.live.router import BarRouter
from hedgeflow.sources.tick import Tick

log = logging.getLogger(__name__)

__all__ = ["FETCH_RETRIES", "GapRepair"]

FETCH_RETRIES = 3


@dataclass
class _Gap:
    start_ms: int  # first bar to fetch (the bar of the gap's start)
    end_ms: int | None = None  # end of the bar of the first tick after the gap
    held: list[Bar] = field(default_factory=list)
    first_tick: asyncio.Event = field(default_factory=asyncio.Event)


class GapRepair:
    """The open gaps of a live runtime's symbols and their REST repairs (module doc).

    The runtime passes every tick through :meth:`admit_tick` and every closed live bar
    through :meth:`admit_bar` before it aggregates or dispatches them; :meth:`open`
    (also the clients' ``backfill`` hook, :meth:`backfill_hook`) opens a gap and starts
    its repair task, which feeds REST bars and then the held live bars to ``router``.
    ``fetch_bars`` None: no repair, gaps stay gaps. An unexpected error of a repair
    goes to ``on_error`` (the runtime stops). :meth:`start` binds it to the running
    loop and the runtime's stop event.
    """

    def __init__(
        self,
        router: BarRouter,
        fetch_bars: BarFetcher | None,
        clock_ms: Callable[[], int],
        *,
        clock_rate: float,
        grace_ms: int,
        on_error: Callable[[BaseException], None],
    ) -> None:
        self.router = router
        self.interval_ms = router.interval_ms
        self.fetch_bars = fetch_bars
        self.clock_ms = clock_ms
        self.clock_rate = clock_rate
        self.grace_ms = grace_ms
        self._on_error = on_error
        self._skip: dict[str, int] = {}
        self._gaps: dict[str, _Gap] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._fetch_lock: asyncio.Lock | None = None
        self._stop: asyncio.Event | None = None
        self.skipped_ticks = 0
        self.repairs = 0
        self.repair_failures = 0

    def start(self, stop: asyncio.Event) -> None:
        """Bind to the running loop; ``stop`` set: repairs return at their next wait."""
        self._stop = stop
        self._fetch_lock = asyncio.Lock()

    @property
    def pending(self) -> int:
        """Gaps still being repaired."""
        return len(self._gaps)

    # -- ticks and bars ------------------------------------------------------------------

    def admit_tick(self, tick: Tick) -> bool:
        """False: the tick falls in a bar covered by a REST repair (counted, dropped)."""
        symbol = tick.symbol
        if self._gaps:
            gap = self._gaps.get(symbol)
            if gap is not None and gap.end_ms is None:
                # The first tick after a gap: live data is complete from the next bar on.
                t = tick.ts_ms
                gap.end_ms = max(t - t % self.interval_ms + self.interval_ms, gap.start_ms)
                self._skip[symbol] = max(self._skip.get(symbol, 0), gap.end_ms)
                gap.first_tick.set()
        skip = self._skip.get(symbol)
        if skip is not None and tick.ts_ms < skip:
            self.skipped_ticks += 1
            return False
        return True

    def admit_bar(self, bar: Bar) -> bool:
        """False: the closed live bar is not for the agents now - partly seen (its REST
        version is, or was to be, fetched) or held until its symbol's repair ends."""
        skip = self._skip.get(bar.symbol)
        if skip is not None and bar.ts_ms < skip:
            return False
        gap = self._gaps.get(bar.symbol)
        if gap is not None:
            gap.held.append(bar)
            return False
        return True

    # -- gaps ----------------------------------------------------------------------------

    async def backfill_hook(self, symbol: str, from_ms: int, to_ms: int) -> None:
        self.open(symbol, from_ms)

    def open(self, symbol: str, from_ms: int) -> None:
        """Ticks of ``symbol`` after ``from_ms`` may be missing until the next tick
        arrives: recover the bars in between from REST (see the module doc)."""
        start = from_ms - from_ms % self.interval_ms
        gap = self._gaps.get(symbol)
        if gap is not None:  # a gap while repairing the previous one: extend it
            gap.start_ms = min(gap.start_ms, start)
            gap.end_ms = None
            gap.first_tick.clear()
            return
        self._gaps[symbol] = _Gap(start)
        self.repairs += 1
        task = asyncio.get_running_loop().create_task(
            self._repair(symbol), name=f"live-repair-{symbol}"
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _fetch(self, symbol: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        if self.fetch_bars is None:
            return []
        assert self._fetch_lock is not None
        fetch = self.fetch_bars
        for attempt in range(FETCH_RETRIES):
            try:
                async with self._fetch_lock:
                    bars = await asyncio.to_thread(fetch, symbol, start_ms, end_ms)
                return [b for b in bars if start_ms <= b.ts_ms < end_ms]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "live: REST bars of %s [%s, %s) failed (attempt %d of %d): %s",
                    symbol,
                    _iso(start_ms),
                    _iso(end_ms),
                    attempt + 1,
                    FETCH_RETRIES,
                    f"{type(exc).__name__}: {exc}",
                )
                if isinstance(exc, PermanentSourceError | InvalidInputError):
                    break
                if attempt + 1 < FETCH_RETRIES:  # no wait after the last attempt
                    await asyncio.sleep(0.5 * 2**attempt)
        return None

    async def _repair(self, symbol: str) -> None:
        gap = self._gaps[symbol]
        stop = self._stop
        assert stop is not None
        interval = self.interval_ms
        done = origin = gap.start_ms
        failed = False
        try:
            while True:
                # Bars closed for grace already are fetched at once, up to the bar of
                # the first tick after the gap (not known yet in a quiet market).
                now = self.clock_ms() - self.grace_ms
                upto = now - now % interval
                if gap.end_ms is not None:
                    upto = min(upto, gap.end_ms)
                if gap.start_ms < origin:  # the gap was extended backwards
                    done = origin = gap.start_ms
                if upto > done:
                    bars = await self._fetch(symbol, done, upto)
                    if bars is None:
                        failed = True
                        # Not from live ticks either: with no tick since the gap yet, the
                        # bar open when the connection dropped (partly seen) is not
                        # covered by a skip and would be released as complete.
                        self._skip[symbol] = max(self._skip.get(symbol, 0), upto)
                        break
                    self._dispatch(bars)
                    done = upto
                    continue
                if gap.end_ms is not None and done >= gap.end_ms:
                    break
                # Wait for the next bar to close (or for the first tick).
                target = upto + interval + self.grace_ms
                if gap.end_ms is not None:
                    target = min(target, gap.end_ms + self.grace_ms)
                    if not await sleep_until(self.clock_ms, target, stop, rate=self.clock_rate):
                        return  # stopping: the held bars are dropped (a restart catches up)
                    continue
                waiters = {
                    asyncio.create_task(gap.first_tick.wait()),
                    asyncio.create_task(
                        sleep_until(self.clock_ms, target, stop, rate=self.clock_rate)
                    ),
                }
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
                if stop.is_set():
                    return
        except Exception as exc:
            self._on_error(exc)
            return
        finally:
            if self._gaps.get(symbol) is gap:
                del self._gaps[symbol]
        if failed:
            self.repair_failures += 1
            log.warning(
                "live: could not fetch the bars of %s from %s from REST; the gap stays",
                symbol,
                _iso(done),
            )
        try:
            for bar in gap.held:
                if bar.ts_ms >= self._skip.get(symbol, 0):
                    self.router.dispatch(bar)
        except Exception as exc:
            self._on_error(exc)

    def _dispatch(self, bars: Iterable[Bar]) -> None:
        for bar in bars:
            self.router.dispatch(bar)


def _iso(ms: int) -> str:
    return pd.Timestamp(ms * 1000, unit="us", tz="UTC").isoformat()
