"""The live runtime: WebSocket feeds -> bar aggregator -> live agents -> sink (pure).

:class:`LiveRuntime` runs, in one asyncio loop, one
:class:`~hedgeflow.sources.eodhd_ws.EodhdWsClient` per feed (``us``, ``forex``,
``crypto``; at most 50 symbols per connection, more connections when needed). Every
tick goes to one :class:`~hedgeflow.live.aggregator.BarAggregator`; every closed bar
goes through the :class:`~hedgeflow.live.router.BarRouter` to the
:class:`~hedgeflow.live.agent.LiveAgent` s of its symbol (in bar order) and each step
they produce to ``sink(agent, step)`` - the live flow's sink persists it
(``hedgeflow.tasks.live.persist_step``); this module knows neither Prefect nor DuckDB.

Clock. The time flush (DESIGN.md convention 2) and every "has this bar ended" test
use ``clock_ms`` - the feed's clock (:mod:`hedgeflow.live.clock`):
:meth:`WsSimulator.now_ms` against the simulator (its market time runs ``speed``
times faster than the wall clock), the wall clock for EODHD. ``grace_seconds`` is in
feed time too: against a fast simulator it must also cover the network latency times
the speed (the live flow uses ``max(2, 0.25 x speed)`` seconds).

Gaps (startup catch-up and reconnect backfill) are repaired from REST as whole bars
by :class:`~hedgeflow.live.gapfill.GapRepair`; its module doc has the rule, and what
happens when a repair fails.

Feed health. A feed that sends nothing is not a quiet success: with ``max_silence``
(wall seconds) the runtime stops when no tick arrived for that long (from the start,
or the last tick), and with ``max_idle_connections`` when that many connection
attempts in a row of one client delivered no tick (a feed that accepts and closes at
once, refuses, or only sends oversized frames). :attr:`RuntimeStatus.problem` then
says why; the live flow ends such a run ``degraded`` or ``failed``.

Stopping (``duration``, :meth:`LiveRuntime.stop`, a ``threading.Event`` such as
:data:`SHUTDOWN` set by a Ctrl-C handler) closes the connections and returns; nothing
is closed out: open positions stay open (the sink has stored them) and the bar in
progress is dropped (a restart's catch-up fetches it from REST).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hedgeflow.errors import InvalidInputError
from hedgeflow.live.agent import LiveAgent
from hedgeflow.live.aggregator import Bar, BarAggregator
from hedgeflow.live.clock import wall_clock_ms
from hedgeflow.live.gapfill import GapRepair
from hedgeflow.live.hours import SessionFilter
from hedgeflow.live.latency import LatencyProbe, TimedClient
from hedgeflow.live.rest import BarFetcher
from hedgeflow.live.router import BarRouter
from hedgeflow.live.sink import Sink
from hedgeflow.live.status import RuntimeStatus
from hedgeflow.market import normalize_symbol
from hedgeflow.sources.eodhd_ws import MAX_SYMBOLS_PER_CONNECTION, EodhdWsClient
from hedgeflow.sources.tick import Tick

__all__ = ["SHUTDOWN", "LiveRuntime", "feed_of", "request_shutdown", "shutdown_reason"]

# Set by a Ctrl-C / SIGTERM handler (the CLI's): every running runtime stops cleanly.
SHUTDOWN = threading.Event()
_SHUTDOWN_REASON: list[tuple[str, int | None]] = []


def request_shutdown(reason: str, signum: int | None = None) -> None:
    """Stop every running runtime cleanly; the run then ends ``cancelled`` with ``reason``
    (e.g. "stopped by SIGINT (Ctrl-C)"), and ``signum`` is the signal that asked."""
    if not _SHUTDOWN_REASON:
        _SHUTDOWN_REASON.append((reason, signum))
    SHUTDOWN.set()


def shutdown_reason() -> str | None:
    """Why a shutdown was requested (None: none was, or it was cleared)."""
    return _SHUTDOWN_REASON[0][0] if SHUTDOWN.is_set() and _SHUTDOWN_REASON else None


def shutdown_signal() -> int | None:
    """The signal that requested the shutdown, if one did."""
    return _SHUTDOWN_REASON[0][1] if SHUTDOWN.is_set() and _SHUTDOWN_REASON else None


def clear_shutdown() -> None:
    SHUTDOWN.clear()
    _SHUTDOWN_REASON.clear()


_FEED_OF_EXCHANGE = {"US": "us", "FOREX": "forex", "CC": "crypto"}


def feed_of(symbol: str) -> str:
    """The EODHD WebSocket feed of a symbol: ``.US`` -> us, ``.FOREX`` -> forex,
    ``.CC`` -> crypto."""
    exchange = normalize_symbol(symbol).rsplit(".", 1)[1]
    try:
        return _FEED_OF_EXCHANGE[exchange]
    except KeyError:
        raise InvalidInputError(
            f"{symbol}: no EODHD WebSocket feed for .{exchange} symbols "
            "(live needs .US, .FOREX or .CC)"
        ) from None


class LiveRuntime:
    """WebSocket feeds -> aggregator -> agents -> sink, in one asyncio loop.

    ``agents`` are ready (warmed up or restored); ``sink(agent, step)`` stores a step
    (a plain call; an exception stops the runtime and is raised by :meth:`run`);
    ``fetch_bars`` fetches closed bars from REST for catch-up and backfill (None: no
    repair, gaps stay gaps); ``clock_ms`` is the feed clock (default: wall clock);
    ``on_status`` gets a :class:`RuntimeStatus` every ``status_every`` wall seconds and
    at the end. ``client_options`` go to every :class:`EodhdWsClient` (backoff, ...).
    """

    mode = "ws"

    def __init__(
        self,
        agents: Sequence[LiveAgent],
        *,
        interval: str,
        sink: Sink,
        ws_url: str,
        token: str,
        fetch_bars: BarFetcher | None = None,
        clock_ms: Callable[[], int] | None = None,
        clock_rate: float = 1.0,
        grace_seconds: float = 2.0,
        on_status: Callable[[RuntimeStatus], Any] | None = None,
        status_every: float = 1.0,
        flush_every: float = 0.02,
        client_options: dict[str, Any] | None = None,
        max_symbols_per_connection: int = MAX_SYMBOLS_PER_CONNECTION,
        measure_latency: bool = False,
        max_silence: float | None = None,
        max_idle_connections: int | None = None,
        extended_hours: bool = False,
        calendars: Mapping[str, str] | None = None,
    ) -> None:
        self.router = BarRouter(agents, sink, interval)
        # stock ticks outside the regular session are kept out of the bars (convention 8)
        self.hours = SessionFilter(
            self.router.symbols, extended_hours=extended_hours, calendars=calendars
        )
        self.interval_ms = self.router.interval_ms
        self.aggregator = BarAggregator(self.interval_ms // 1000, grace_seconds)
        self.grace_ms = self.aggregator.grace_ms
        self.clock_ms = clock_ms or wall_clock_ms
        self.clock_rate = float(clock_rate)
        self.fetch_bars = fetch_bars
        self.on_status = on_status
        self.status_every = float(status_every)
        self.flush_every = float(flush_every)
        self._ws_url = ws_url
        self._token = token
        self._client_options = dict(client_options or {})
        self._max_symbols = max_symbols_per_connection
        self.clients: list[EodhdWsClient] = []
        self.gaps = GapRepair(
            self.router,
            fetch_bars,
            self.clock_ms,
            clock_rate=self.clock_rate,
            grace_ms=self.grace_ms,
            on_error=self._fail,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._t0 = time.monotonic()
        self.running = False
        self.max_silence = max_silence
        self.max_idle_connections = max_idle_connections
        self.problem: str | None = None
        self._last_tick = self._t0
        # Tick-to-step latency (ns) of bars closed by a tick (hedgeflow.live.latency).
        self._probe = LatencyProbe() if measure_latency else None
        self.latencies_ns: list[int] | None = None
        if self._probe is not None:
            self.latencies_ns = self._probe.latencies_ns
            self.router.on_step = self._probe.on_step

    def __repr__(self) -> str:
        return f"LiveRuntime(symbols={self.router.symbols}, interval_ms={self.interval_ms})"

    # -- status ------------------------------------------------------------------------

    def status(self) -> RuntimeStatus:
        agg = self.aggregator.stats
        gaps = self.gaps
        return RuntimeStatus(
            mode=self.mode,
            clock_ms=self.clock_ms(),
            elapsed=time.monotonic() - self._t0,
            agents=self.router.agent_status(),
            ticks=agg.ticks + gaps.skipped_ticks,
            bars=self.router.bars,
            rest_bars=self.router.rest_bars,
            late_ticks=agg.late_ticks,
            duplicate_ticks=agg.duplicates,
            skipped_ticks=gaps.skipped_ticks,
            bad_frames=sum(c.stats.bad_total for c in self.clients),
            reconnects=sum(c.stats.reconnects for c in self.clients),
            repairs=gaps.repairs,
            repairs_pending=gaps.pending,
            repair_failures=gaps.repair_failures,
            connections=len(self.clients),
            running=self.running,
            problem=self.problem,
            idle_connections=max((c.stats.idle_streak for c in self.clients), default=0),
            silent_seconds=time.monotonic() - self._last_tick,
        )

    # -- control -----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to return (safe from any thread)."""
        loop, event = self._loop, self._stop
        if loop is None or event is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(event.set)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        if self._stop is not None:
            self._stop.set()

    # -- ticks and bars ------------------------------------------------------------------

    def _on_tick(self, tick: Tick) -> None:
        self._last_tick = time.monotonic()
        if not self.hours.admit(tick):
            return
        if not self.gaps.admit_tick(tick):
            return
        closed = self.aggregator.add(tick)
        if closed:
            probe = self._probe
            if probe is not None:
                probe.closing = True  # a step produced now is this frame's (latency)
            try:
                for bar in closed:
                    self._on_closed(bar)
            finally:
                if probe is not None:
                    probe.closing = False

    def _on_closed(self, bar: Bar) -> None:
        if not self.gaps.admit_bar(bar):
            return
        try:
            self.router.dispatch(bar)
        except Exception as exc:
            self._fail(exc)
            raise

    # -- running ---------------------------------------------------------------------------

    def _make_clients(self) -> list[EodhdWsClient]:
        by_feed: dict[str, list[str]] = {}
        for symbol in self.router.symbols:
            by_feed.setdefault(feed_of(symbol), []).append(symbol)
        options: dict[str, Any] = {
            "clock_ms": self.clock_ms,
            "backfill": self.gaps.backfill_hook,
        }
        options.update(self._client_options)
        client_cls = TimedClient if self._probe is not None else EodhdWsClient
        clients = []
        for feed, symbols in by_feed.items():
            for i in range(0, len(symbols), self._max_symbols):
                client = client_cls(
                    feed,
                    symbols[i : i + self._max_symbols],
                    self._token,
                    self._ws_url,
                    self._on_tick,
                    max_symbols=self._max_symbols,
                    **options,
                )
                if isinstance(client, TimedClient):
                    assert self._probe is not None
                    client.probe = self._probe
                clients.append(client)
        return clients

    async def run(
        self,
        duration: float | None = None,
        stop: threading.Event | None = None,
    ) -> RuntimeStatus:
        """Stream until ``duration`` wall seconds pass, :meth:`stop` is called or
        ``stop`` (a threading.Event, e.g. :data:`SHUTDOWN`) is set. Returns the final
        status; raises a client's permanent error (bad token) or the sink's error."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.gaps.start(self._stop)
        self._t0 = self._last_tick = time.monotonic()
        self.running = True
        self.clients = self._make_clients()
        # Startup catch-up: a gap from each symbol's last processed bar (or now).
        now = self.clock_ms()
        for symbol in self.router.symbols:
            needed = self.router.next_needed_ms(symbol)
            self.gaps.open(symbol, now if needed is None else min(needed, now))
        tasks = [
            asyncio.create_task(c.run(stop=self._stop), name=f"live-{c.feed}") for c in self.clients
        ]
        ticker = asyncio.create_task(self._tick_loop(duration, stop), name="live-flush")
        repairs = self.gaps.tasks
        try:
            pending: set[asyncio.Task[Any]] = {*tasks, ticker}
            while pending and not self._stop.is_set():
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        self._fail(task.exception())  # type: ignore[arg-type]
        finally:
            self._stop.set()
            for client in self.clients:
                client.stop()
            leftovers = [*tasks, ticker, *repairs]
            for task in leftovers:
                if task is ticker or task in repairs:
                    task.cancel()
            results = await asyncio.gather(*leftovers, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception) and self._error is None:
                    self._error = result
            self.running = False
        final = self.status()
        if self.on_status is not None:
            self.on_status(final)
        if self._error is not None:
            raise self._error
        return final

    def _feed_problem(self, now: float) -> str | None:
        """Why the feed counts as dead (see "Feed health" in the module doc), or None."""
        silent = now - self._last_tick
        if self.max_silence is not None and silent > self.max_silence:
            what = "no tick at all" if self.aggregator.stats.ticks == 0 else "no tick"
            return f"{what} for {silent:.0f} s (the silence limit is {self.max_silence:g} s)"
        limit = self.max_idle_connections
        if limit is not None:
            for client in self.clients:
                if client.stats.idle_streak >= limit:
                    return (
                        f"{client.stats.idle_streak} connections in a row to the "
                        f"{client.feed} feed delivered no tick"
                    )
        return None

    async def _tick_loop(self, duration: float | None, stop: threading.Event | None) -> None:
        """Time flush, status callbacks, duration and the external stop event."""
        assert self._stop is not None
        next_status = time.monotonic() + self.status_every
        deadline = None if duration is None else time.monotonic() + float(duration)
        while not self._stop.is_set():
            for bar in self.aggregator.flush(self.clock_ms()):
                self._on_closed(bar)
            now = time.monotonic()
            if self.on_status is not None and now >= next_status:
                next_status = now + self.status_every
                self.on_status(self.status())
            if (deadline is not None and now >= deadline) or (stop is not None and stop.is_set()):
                self._stop.set()
                return
            problem = self._feed_problem(now)
            if problem is not None:
                self.problem = problem
                self._stop.set()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.flush_every)
