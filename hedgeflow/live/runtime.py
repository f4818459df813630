"""The live runtime: WebSocket feeds -> bar aggregator -> live agents -> sink (pure).

:class:`LiveRuntime` runs, in one asyncio loop, one
:class:`~hedgeflow.sources.eodhd_ws.EodhdWsClient` per feed (``us``, ``forex``,
``crypto``; at most 50 symbols per connection, more connections when needed). Every
tick goes to one :class:`~hedgeflow.live.aggregator.BarAggregator`; every closed bar
goes to the :class:`~hedgeflow.live.agent.LiveAgent` s of its symbol (in bar order)
and each step they produce to ``sink(agent, step)`` - the live flow's sink persists
it (``hedgeflow.tasks.live.persist_step``); this module knows neither Prefect nor DuckDB.

Clock. The time flush (DESIGN.md convention 2) and every "has this bar ended" test
use ``clock_ms`` - the feed's clock: :meth:`WsSimulator.now_ms` against the simulator
(its market time runs ``speed`` times faster than the wall clock), the wall clock for
EODHD. ``grace_seconds`` is in feed time too: against a fast simulator it must also
cover the network latency times the speed (the live flow uses ``max(2, 0.25 x
speed)`` seconds).

Gaps: startup catch-up and reconnect backfill (one rule). Ticks missed while a
connection was down - and before the runtime started - are recovered from REST as
whole **bars**, never as ticks. A gap of a symbol opens at ``from_ms``: on a reconnect
the time of the last tick received (the client's backfill hook), at startup the end
of the last bar the symbol's agents processed (warm-up history or restored record).
The gap ends at the **first tick received after it**, at ``t1``: ticks arrive in time
order on a connection, so from ``t1`` on nothing is missing, but the bar containing
``t1`` may have lost its first ticks (the subscription takes effect some time after
the clock read, which at a simulator speed of 20,000x can be several bars). So:

1. every tick of the symbol before ``end`` = the end of the bar containing ``t1`` is
   dropped (counted as ``skipped``), and so is the bar that was open when the
   connection dropped (partly seen);
2. the closed bars ``[bar of from_ms, end)`` are fetched from REST and fed to the
   agents in order: at once those that closed (plus the grace) before now, the rest
   once the clock passes ``end`` plus the grace - in a quiet market (no first tick
   yet) the runtime keeps fetching each bar as it closes;
3. meanwhile the symbol's later live bars are held, and released in order after the
   last REST bar.

So the agents see every bar exactly once, in time order, each either built from all
its ticks or taken from REST - the bars the nightly engine sees. A bar REST does not
have (a quiet market; a vendor that has not published it yet) is skipped, as a bar
without ticks is. A repair that fails after retries is logged and the held bars are
released (the gap stays; a restart's catch-up refills it).

Stopping (``duration``, :meth:`LiveRuntime.stop`, a ``threading.Event`` such as
:data:`SHUTDOWN` set by a Ctrl-C handler) closes the connections and returns; nothing
is closed out: open positions stay open (the sink has stored them) and the bar in
progress is dropped (a restart's catch-up fetches it from REST).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import Any, Protocol

import numpy as np
import pandas as pd

from hedgeflow.columns import CLOSE, HIGH, LOW, OPEN, TS, VOLUME
from hedgeflow.errors import InvalidInputError, PermanentSourceError
from hedgeflow.live.agent import LiveAgent, LiveStep
from hedgeflow.live.aggregator import Bar, BarAggregator
from hedgeflow.live.broker import Fill
from hedgeflow.live.ticks import Tick
from hedgeflow.market import interval_seconds, normalize_symbol
from hedgeflow.sources.eodhd_ws import MAX_SYMBOLS_PER_CONNECTION, EodhdWsClient

log = logging.getLogger(__name__)

__all__ = [
    "SHUTDOWN",
    "AgentStatus",
    "BarFetcher",
    "BarRouter",
    "LiveRuntime",
    "RuntimeStatus",
    "SimulatedClock",
    "ThreadedSink",
    "bars_from_frame",
    "feed_of",
    "last_session_open",
    "rest_fetcher",
    "sleep_until",
    "wall_clock_ms",
]

Sink = Callable[[LiveAgent, LiveStep], Any]

# Set by a Ctrl-C / SIGTERM handler (the CLI's): every running runtime stops cleanly.
SHUTDOWN = threading.Event()

_FEED_OF_EXCHANGE = {"US": "us", "FOREX": "forex", "CC": "crypto"}
_FETCH_RETRIES = 3


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


# --------------------------------------------------------------------------- REST bars


class BarFetcher(Protocol):
    """Closed bars of ``symbol`` with ``start_ms <= ts < end_ms``, sorted (blocking)."""

    def __call__(self, symbol: str, start_ms: int, end_ms: int) -> Sequence[Bar]: ...


def bars_from_frame(frame: pd.DataFrame, symbol: str, interval_ms: int) -> list[Bar]:
    """Bars of a bars frame as aggregator :class:`Bar` s (``n_ticks`` 0, closed by flush:
    how ``live_bars`` marks a bar taken from REST)."""
    if frame.empty:
        return []
    ts_ms = (frame[TS].dt.as_unit("us").array.asi8 // 1000).tolist()
    cols = [frame[c].to_numpy(np.float64).tolist() for c in (OPEN, HIGH, LOW, CLOSE, VOLUME)]
    return [
        Bar(symbol, t, interval_ms, o, h, lo, c, v, 0, "flush")
        for t, o, h, lo, c, v in zip(ts_ms, *cols, strict=True)
    ]


def rest_fetcher(source: Any, interval: str) -> BarFetcher:
    """A :class:`BarFetcher` over a ``MarketSource`` (``fetch_bars(symbol, interval,
    start, end)``: the EODHD client, the simulator's client, the synthetic market)."""
    interval_ms = interval_seconds(interval) * 1000

    def fetch(symbol: str, start_ms: int, end_ms: int) -> list[Bar]:
        if end_ms <= start_ms:
            return []
        start = datetime.fromtimestamp(start_ms / 1000, UTC)
        end = datetime.fromtimestamp(end_ms / 1000, UTC)
        frame = source.fetch_bars(symbol, interval, start, end)
        bars = bars_from_frame(frame, symbol, interval_ms)
        return [b for b in bars if start_ms <= b.ts_ms < end_ms]

    return fetch


# --------------------------------------------------------------------------- sink


class ThreadedSink:
    """Runs a slow sink (the warehouse writes) on one writer thread, in order, so the
    event loop keeps reading ticks while a bar is stored.

    ``sink(agent, step)`` queues the step; :meth:`close` waits until every queued step
    is stored. An error of the wrapped sink is raised by the next call (the runtime
    then stops) and by :meth:`close`; steps queued after it are not stored. A process
    killed with steps still queued loses them: the agents' state in the record is
    then that of the last stored bar, and a restart recomputes the lost bars."""

    _DONE = object()

    def __init__(self, sink: Sink, max_queue: int = 10_000) -> None:
        import queue

        self._sink = sink
        self._queue: queue.Queue[Any] = queue.Queue(max_queue)
        self._error: BaseException | None = None
        self.stored = 0
        self._thread = threading.Thread(target=self._work, name="live-sink", daemon=True)
        self._thread.start()

    def __call__(self, agent: LiveAgent, step: LiveStep) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((agent, step))

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if self._error is not None:
                continue
            try:
                self._sink(*item)
                self.stored += 1
            except BaseException as exc:
                self._error = exc

    def close(self) -> None:
        """Store everything queued, stop the thread; raise the sink's error, if any."""
        if self._thread.is_alive():
            self._queue.put(self._DONE)
            self._thread.join()
        if self._error is not None:
            raise self._error


# --------------------------------------------------------------------------- status


@dataclass(slots=True)
class AgentStatus:
    """One agent's running totals (since this process started)."""

    name: str
    symbol: str
    strategy: str
    bars: int = 0  # bars processed live
    signals: int = 0  # signal changes (0 -> 1, 1 -> 0) among them
    signal: int = 0  # the signal at the last close
    orders: int = 0
    fills: int = 0
    trades: int = 0
    realized_pnl: float = 0.0
    equity: float = math.nan
    position: float = 0.0
    last_ts: pd.Timestamp | None = None
    refused: int = 0


@dataclass(slots=True)
class RuntimeStatus:
    """A snapshot of the runtime (``on_status`` gets one every ``status_every`` s)."""

    mode: str
    clock_ms: int
    elapsed: float  # wall seconds since run() started
    agents: list[AgentStatus]
    ticks: int = 0
    bars: int = 0  # closed bars dispatched (live + REST)
    rest_bars: int = 0  # of which from REST (catch-up, backfill, polling)
    late_ticks: int = 0
    duplicate_ticks: int = 0
    skipped_ticks: int = 0  # ticks of bars covered by a REST repair
    bad_frames: int = 0
    reconnects: int = 0
    repairs: int = 0
    repairs_pending: int = 0
    repair_failures: int = 0
    connections: int = 0
    running: bool = True

    @property
    def clock(self) -> pd.Timestamp:
        return pd.Timestamp(self.clock_ms * 1000, unit="us", tz="UTC")


# --------------------------------------------------------------------------- router


class BarRouter:
    """Closed bars -> the agents of their symbol -> ``sink``; keeps the status.

    A bar an agent has already processed (``ts <= its last bar``) is skipped silently
    (a REST repair may overlap what the agent saw); the agent itself refuses anything
    else that is not new (counted in ``LiveAgent.refused``)."""

    def __init__(self, agents: Sequence[LiveAgent], sink: Sink, interval: str) -> None:
        if not agents:
            raise InvalidInputError("the live runtime needs at least one agent")
        names = [a.name for a in agents]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"agent names must be unique, got {names}")
        self.interval = interval
        self.interval_ms = interval_seconds(interval) * 1000
        for agent in agents:
            if agent.interval != interval:
                raise InvalidInputError(
                    f"agent {agent.name} runs on {agent.interval} bars, the runtime on {interval}"
                )
        self.agents = list(agents)
        self.sink = sink
        self.by_symbol: dict[str, list[LiveAgent]] = {}
        for agent in self.agents:
            self.by_symbol.setdefault(agent.symbol, []).append(agent)
        self._last_ms: dict[str, int] = {
            a.name: (a.last_ts.value // 1_000_000 if a.last_ts is not None else -(2**62))
            for a in self.agents
        }
        self.status = {
            a.name: AgentStatus(
                a.name,
                a.symbol,
                a.strategy,
                signal=a.last_signal,
                equity=a.equity if a.last_ts is not None else a.config.initial_equity,
                position=a.broker.held,
                last_ts=a.last_ts,
            )
            for a in self.agents
        }
        self.bars = 0
        self.rest_bars = 0
        self.steps: list[tuple[LiveAgent, LiveStep]] | None = None  # tests may collect
        self.on_step: Callable[[LiveAgent, LiveStep, Bar], None] | None = None

    @property
    def symbols(self) -> list[str]:
        return list(self.by_symbol)

    def next_needed_ms(self, symbol: str) -> int | None:
        """Start of the first bar some agent of ``symbol`` still needs (None: no
        agent has processed any bar, not even history)."""
        lasts = [self._last_ms[a.name] for a in self.by_symbol[symbol]]
        if all(last < -(2**61) for last in lasts):
            return None
        return min(lasts) + self.interval_ms

    def dispatch(self, bar: Bar) -> None:
        agents = self.by_symbol.get(bar.symbol)
        if not agents:
            return
        self.bars += 1
        if bar.n_ticks == 0:
            self.rest_bars += 1
        for agent in agents:
            if bar.ts_ms <= self._last_ms[agent.name]:
                continue
            step = agent.on_bar(bar)
            st = self.status[agent.name]
            if step is None:
                st.refused += 1
                continue
            self._last_ms[agent.name] = bar.ts_ms
            if self.on_step is not None:
                self.on_step(agent, step, bar)
            self.sink(agent, step)
            self._count(st, step)
            if self.steps is not None:
                self.steps.append((agent, step))

    @staticmethod
    def _count(st: AgentStatus, step: LiveStep) -> None:
        st.bars += 1
        signal = int(step.signal or 0)
        if signal != st.signal:
            st.signals += 1
        st.signal = signal
        for event in step.events:
            if isinstance(event, Fill):
                st.fills += 1
                if event.trade is not None:
                    st.trades += 1
                    st.realized_pnl += event.trade.pnl
            else:
                st.orders += 1
        st.equity = step.equity
        st.position = step.state.qty
        st.last_ts = step.ts

    def agent_status(self) -> list[AgentStatus]:
        return [dataclasses.replace(s) for s in self.status.values()]


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


# --------------------------------------------------------------------------- runtime


@dataclass
class _Gap:
    start_ms: int  # first bar to fetch (the bar of the gap's start)
    end_ms: int | None = None  # end of the bar of the first tick after the gap
    held: list[Bar] = field(default_factory=list)
    first_tick: asyncio.Event = field(default_factory=asyncio.Event)


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
    ) -> None:
        self.router = BarRouter(agents, sink, interval)
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
        self._skip: dict[str, int] = {}
        self._gaps: dict[str, _Gap] = {}
        self._repair_tasks: set[asyncio.Task[None]] = set()
        self._fetch_lock: asyncio.Lock | None = None
        self.skipped_ticks = 0
        self.repairs = 0
        self.repair_failures = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._t0 = time.monotonic()
        self.running = False
        # Tick-to-step latency (ns) of bars closed by a tick: from the frame's arrival
        # in the client to the step produced (before the sink stores it).
        self.latencies_ns: list[int] | None = [] if measure_latency else None
        self._frame_t0 = 0
        self._closing = False
        if measure_latency:
            self.router.on_step = self._record_latency

    def __repr__(self) -> str:
        return f"LiveRuntime(symbols={self.router.symbols}, interval_ms={self.interval_ms})"

    # -- status ------------------------------------------------------------------------

    def status(self) -> RuntimeStatus:
        agg = self.aggregator.stats
        return RuntimeStatus(
            mode=self.mode,
            clock_ms=self.clock_ms(),
            elapsed=time.monotonic() - self._t0,
            agents=self.router.agent_status(),
            ticks=agg.ticks + self.skipped_ticks,
            bars=self.router.bars,
            rest_bars=self.router.rest_bars,
            late_ticks=agg.late_ticks,
            duplicate_ticks=agg.duplicates,
            skipped_ticks=self.skipped_ticks,
            bad_frames=sum(c.stats.bad_total for c in self.clients),
            reconnects=sum(c.stats.reconnects for c in self.clients),
            repairs=self.repairs,
            repairs_pending=len(self._gaps),
            repair_failures=self.repair_failures,
            connections=len(self.clients),
            running=self.running,
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
            return
        closed = self.aggregator.add(tick)
        if closed:
            self._closing = True  # a step produced now is this frame's (latency)
            try:
                for bar in closed:
                    self._on_closed(bar)
            finally:
                self._closing = False

    def _on_closed(self, bar: Bar) -> None:
        skip = self._skip.get(bar.symbol)
        if skip is not None and bar.ts_ms < skip:
            return  # a partly seen bar: its REST version is (being) fetched
        gap = self._gaps.get(bar.symbol)
        if gap is not None:
            gap.held.append(bar)
            return
        try:
            self.router.dispatch(bar)
        except Exception as exc:
            self._fail(exc)
            raise

    def _record_latency(self, agent: LiveAgent, step: LiveStep, bar: Bar) -> None:
        if self.latencies_ns is not None and self._closing and self._frame_t0:
            self.latencies_ns.append(time.perf_counter_ns() - self._frame_t0)

    # -- gaps (startup catch-up and reconnect backfill; see the module doc) -----------------

    async def _backfill_hook(self, symbol: str, from_ms: int, to_ms: int) -> None:
        self.open_gap(symbol, from_ms)

    def open_gap(self, symbol: str, from_ms: int) -> None:
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
        self._repair_tasks.add(task)
        task.add_done_callback(self._repair_tasks.discard)

    async def _fetch(self, symbol: str, start_ms: int, end_ms: int) -> list[Bar] | None:
        if self.fetch_bars is None:
            return []
        assert self._fetch_lock is not None
        fetch = self.fetch_bars
        for attempt in range(_FETCH_RETRIES):
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
                    _FETCH_RETRIES,
                    f"{type(exc).__name__}: {exc}",
                )
                if isinstance(exc, PermanentSourceError | InvalidInputError):
                    break
                if attempt + 1 < _FETCH_RETRIES:  # no wait after the last attempt
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
                    self._dispatch_rest(bars)
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
            self._fail(exc)
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
            self._fail(exc)

    def _dispatch_rest(self, bars: Iterable[Bar]) -> None:
        for bar in bars:
            self.router.dispatch(bar)

    # -- running ---------------------------------------------------------------------------

    def _make_clients(self) -> list[EodhdWsClient]:
        by_feed: dict[str, list[str]] = {}
        for symbol in self.router.symbols:
            by_feed.setdefault(feed_of(symbol), []).append(symbol)
        options: dict[str, Any] = {"clock_ms": self.clock_ms, "backfill": self._backfill_hook}
        options.update(self._client_options)
        client_cls = _TimedClient if self.latencies_ns is not None else EodhdWsClient
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
                if isinstance(client, _TimedClient):
                    client.runtime = self
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
        self._fetch_lock = asyncio.Lock()
        self._t0 = time.monotonic()
        self.running = True
        self.clients = self._make_clients()
        # Startup catch-up: a gap from each symbol's last processed bar (or now).
        now = self.clock_ms()
        for symbol in self.router.symbols:
            needed = self.router.next_needed_ms(symbol)
            self.open_gap(symbol, now if needed is None else min(needed, now))
        tasks = [
            asyncio.create_task(c.run(stop=self._stop), name=f"live-{c.feed}") for c in self.clients
        ]
        ticker = asyncio.create_task(self._tick_loop(duration, stop), name="live-flush")
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
            leftovers = [*tasks, ticker, *self._repair_tasks]
            for task in leftovers:
                if task is ticker or task in self._repair_tasks:
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.flush_every)


class _TimedClient(EodhdWsClient):
    """Notes each frame's arrival time for the latency measurement."""

    runtime: LiveRuntime

    def _on_frame(self, raw: str | bytes) -> bool:
        self.runtime._frame_t0 = time.perf_counter_ns()
        return super()._on_frame(raw)


def _iso(ms: int) -> str:
    return pd.Timestamp(ms * 1000, unit="us", tz="UTC").isoformat()


def last_session_open(now: datetime | None = None) -> datetime:
    """The open (09:30 America/New_York) of the last complete US regular session
    (weekday, 09:30-16:00; holidays ignored, like the synthetic market): where the
    simulated clock starts by default, so stocks, forex and crypto all trade at once
    and every bar before it is history."""
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")
    now = now or datetime.now(UTC)
    day = now.astimezone(ny).date()
    for _ in range(10):
        if day.weekday() < 5:
            close = datetime.combine(day, dtime(16, 0), ny)
            if close <= now:
                return datetime.combine(day, dtime(9, 30), ny).astimezone(UTC)
        day -= timedelta(days=1)
    raise AssertionError("no weekday in ten days")  # pragma: no cover
