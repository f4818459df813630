"""A local EODHD-compatible WebSocket server that streams the synthetic market.

``WsSimulator(seed, speed, start)`` runs a ``websockets`` (asyncio) server on
``127.0.0.1:<free port>`` in a background thread and serves the four EODHD feeds at
``/ws/us``, ``/ws/us-quote``, ``/ws/forex`` and ``/ws/crypto`` with ``?api_token=``:

* a bad token gets ``{"status_code": 401, "message": "Unauthorized"}`` and a close;
  a good one ``{"status_code": 200, "message": "Authorized"}``;
* ``{"action": "subscribe", "symbols": "AAPL, MSFT"}`` / ``"unsubscribe"`` as EODHD
  (codes without the exchange suffix, up to 50 per connection);
* each subscribed symbol's ticks come from ``SyntheticMarket(seed).ticks(...)``, in time
  order, rendered with :func:`~hedgeflow.sources.ws_format.render_tick`.

The simulated clock is ``start + wall elapsed x speed`` (from :meth:`start`). A
subscription streams the ticks at or after the clock, each when the clock reaches it,
so ticks that fall while a client is disconnected are missed (the client's backfill
covers them). ``speed=0`` streams as fast as possible instead: each symbol resumes
where it stopped (a per-symbol cursor from ``start``) and :meth:`now_ms` is the latest
tick time sent. ``end`` bounds the stream (simulated time).

Faults (thread-safe, switchable at any time; the kinds and the
:class:`~hedgeflow.sources.faults.FaultPlan` are in :mod:`hedgeflow.sources.faults`, the
fault model shared with the REST simulator): :meth:`drop_connection` (once or every
``n`` ticks), :meth:`duplicate`, :meth:`out_of_order` (a tick held back and sent after
the next tick of the same symbol), :meth:`malformed` (garbage frames in addition to the
ticks), :meth:`silence` (no frames for a while; in real-time mode the ticks due meanwhile
are skipped, as in a quiet market; the connection stays open).

Every tick frame actually written is recorded in :attr:`sent_log` (per symbol, in send
order, duplicates included) and every injected fault in :attr:`fault_log`.

The us-quote feed derives a quote from each stock trade: bid/ask one cent either side.
The us trade feed also streams a stock's pre-market and after-hours trades
(``SyntheticMarket.extended_ticks``) with EODHD's ``ms`` market status (``market``,
``pre-market``, ``after-hours``), unless ``extended_hours=False``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from hedgeflow.errors import InvalidInputError
from hedgeflow.sources.eodhd_ws import RedactingLoggerAdapter
from hedgeflow.sources.faults import MALFORMED_KINDS, FaultDice, FaultPlan, check_rate
from hedgeflow.sources.synthetic import SyntheticMarket, Ticks
from hedgeflow.sources.tick import Tick
from hedgeflow.sources.ws_format import FEEDS, canonical_symbol, render_tick

log = logging.getLogger(__name__)

MAX_SYMBOLS_PER_CONNECTION = 50
AUTHORIZED = json.dumps({"status_code": 200, "message": "Authorized"})
UNAUTHORIZED = json.dumps({"status_code": 401, "message": "Unauthorized"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHUNK_MS = 3 * 3_600_000
_HORIZON_MS = int((datetime(2059, 12, 31, tzinfo=UTC) - _EPOCH).total_seconds() * 1000)
_NAN = float("nan")


def _dt(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _ms(value: datetime) -> int:
    if value.tzinfo is None:
        raise InvalidInputError(f"{value} is naive: pass a timezone-aware UTC datetime")
    return (value - _EPOCH) // timedelta(milliseconds=1)


class _SymbolStream:
    """Ticks of one symbol from a cursor, generated in chunks."""

    def __init__(
        self,
        market: SyntheticMarket,
        symbol: str,
        feed: str,
        cursor: int,
        end: int | None,
        extended_hours: bool = False,
    ) -> None:
        self.market = market
        # stocks on the us trade feed: pre-market and after-hours trades too (ms field)
        self.extended = extended_hours and feed == "us"
        self._status: list[str] = []
        self.symbol = symbol
        self.feed = feed
        self.end = end if end is not None else _HORIZON_MS
        self._next_from = cursor
        self._ts: list[int] = []
        self._rows: list[tuple[float, float, float, float]] = []
        self._i = 0
        self.head: Tick | None = None
        self.day_open: tuple[int, float] = (-1, 0.0)
        self._load()

    def _load(self) -> None:
        """Fill the buffer with the next chunk that has ticks (head None when exhausted)."""
        while self._i >= len(self._ts):
            lo = self._next_from
            if lo >= self.end:
                self.head = None
                return
            hi = min(self.end, lo + _CHUNK_MS)
            ticks = self.market.ticks(self.symbol, _dt(lo), _dt(hi))
            self._next_from = hi
            status = np.full(len(ticks), "market", dtype=object)
            if self.extended:
                ticks, status = _with_extended(
                    ticks, status, *self.market.extended_ticks(self.symbol, _dt(lo), _dt(hi))
                )
            self._status = status.tolist()
            self._ts = ticks.ts_ms.tolist()
            self._rows = list(
                zip(
                    ticks.price.tolist(),
                    ticks.size.tolist(),
                    ticks.bid.tolist(),
                    ticks.ask.tolist(),
                    strict=True,
                )
            )
            self._i = 0
        ts = self._ts[self._i]
        price, size, bid, ask = self._rows[self._i]
        if self.feed == "us-quote":
            # one cent either side, to 6 decimals: a price after a synthetic split is
            # on a finer grid than cents (hedgeflow.sources.synthetic_splits)
            bid = round(price - 0.01, 6)
            ask = round(price + 0.01, 6)
            price = (ask + bid) / 2
            size = _NAN
        ms = self._status[self._i] if self.feed == "us" else ""
        self.head = Tick(self.symbol, ts, price, size, bid, ask, self.feed, ms)

    def advance(self) -> None:
        self._i += 1
        self._load()

    def render(self, tick: Tick) -> str:
        day = tick.ts_ms // 86_400_000
        if self.day_open[0] != day:
            self.day_open = (day, tick.price)
        ref = self.day_open[1]
        change = tick.price - ref
        return render_tick(self.feed, tick, day_change_pct=100 * change / ref, day_change=change)


def _with_extended(
    regular: Ticks, status: np.ndarray, extended: Ticks, ext_status: np.ndarray
) -> tuple[Ticks, np.ndarray]:
    """Regular-session and extended-hours ticks merged in time order."""
    if not len(extended):
        return regular, status
    order = np.argsort(np.concatenate([regular.ts_ms, extended.ts_ms]), kind="stable")
    merged = Ticks(
        *(
            np.concatenate([getattr(regular, f), getattr(extended, f)])[order]
            for f in ("ts_ms", "price", "size", "bid", "ask")
        )
    )
    return merged, np.concatenate([status, ext_status])[order]


class _Connection:
    def __init__(self, ident: int, ws: ServerConnection, feed: str) -> None:
        self.ident = ident
        self.ws = ws
        self.feed = feed
        self.streams: dict[str, _SymbolStream] = {}
        self.held: dict[str, Tick] = {}
        self.changed = asyncio.Event()


class WsSimulator:
    """EODHD-compatible WebSocket server over the synthetic market (see module doc).

    Use as a context manager (or :meth:`start` / :meth:`stop`)::

        with WsSimulator(seed=7, speed=0, start=..., end=...) as sim:
            url = sim.url("crypto")   # ws://127.0.0.1:PORT/ws/crypto
    """

    def __init__(
        self,
        seed: int = 7,
        speed: float = 300.0,
        start: datetime | None = None,
        *,
        end: datetime | None = None,
        tokens: Iterable[str] | None = None,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        extended_hours: bool = True,
    ) -> None:
        if not (isinstance(speed, int | float) and 0 <= speed < float("inf")):
            raise InvalidInputError(f"speed must be a finite number >= 0, got {speed!r}")
        self.seed = seed
        self.speed = float(speed)
        if start is None:
            start = datetime.now(UTC).replace(microsecond=0)
        self.start_ms = _ms(start)
        self.end_ms = None if end is None else _ms(end)
        self.market = SyntheticMarket(seed)
        # US stocks also trade pre-market and after-hours, flagged by the ``ms`` field
        self.extended_hours = bool(extended_hours)
        self._tokens = None if tokens is None else frozenset(tokens)
        self._host = host
        self._lock = threading.Lock()
        self._faults = FaultPlan(**vars(faults)) if faults is not None else FaultPlan()
        self._drop_remaining = self._faults.drop_after
        self._silence_until = 0.0
        self._dice = FaultDice(seed * 7919 + 17)
        self._cursors: dict[str, int] = {}
        self._latest_sent = self.start_ms
        self.sent_log: dict[str, list[Tick]] = {}
        self.fault_log: list[tuple[str, str, int]] = []  # (kind, symbol, ts_ms or count)
        self.subscription_log: list[tuple[int, str, tuple[str, ...]]] = []
        self.connections = 0
        self.rejected_connections = 0
        self._t0 = time.monotonic()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._port: int | None = None
        self._error: BaseException | None = None
        self._next_ident = 0

    def __repr__(self) -> str:
        where = f"port={self._port}" if self._port else "stopped"
        return f"WsSimulator(seed={self.seed}, speed={self.speed:g}, {where})"

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> WsSimulator:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="ws-simulator", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None or self._port is None:
            raise RuntimeError(f"the WebSocket simulator did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        thread, loop, event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)
        thread.join(10)
        self._thread = None

    def __enter__(self) -> WsSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        server: Server
        async with serve(
            self._handle,
            self._host,
            0,
            compression=None,
            ping_interval=None,
            close_timeout=1,
            logger=RedactingLoggerAdapter(logging.getLogger("websockets.server")),
        ) as server:
            self._port = server.sockets[0].getsockname()[1]
            self._t0 = time.monotonic()
            self._ready.set()
            await self._stop_event.wait()
            server.close()
            await server.wait_closed()

    # -- addresses and clock ---------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not running")
        return self._port

    @property
    def ws_url(self) -> str:
        """The base URL (``NetworkSettings.ws_url`` equivalent): ``ws://127.0.0.1:PORT/ws``."""
        return f"ws://{self._host}:{self.port}/ws"

    def url(self, feed: str) -> str:
        if feed not in FEEDS:
            raise InvalidInputError(f"unknown feed {feed!r}: expected one of {FEEDS}")
        return f"{self.ws_url}/{feed}"

    def now_ms(self) -> int:
        """The simulated clock (speed 0: the latest tick time sent, from ``start``)."""
        if self.speed > 0:
            return self.start_ms + int((time.monotonic() - self._t0) * self.speed * 1000)
        with self._lock:
            return self._latest_sent

    def _due(self, ts_ms: int) -> float:
        """Monotonic wall time at which the tick at ``ts_ms`` is due (real-time mode)."""
        return self._t0 + (ts_ms - self.start_ms) / (self.speed * 1000)

    # -- faults (thread-safe) ------------------------------------------------------------

    def drop_connection(
        self, after_n_ticks: int, *, every: bool = False, abrupt: bool = True
    ) -> None:
        """Drop the connection that sends the ``after_n_ticks``-th next tick frame
        (``every``: and again every ``after_n_ticks`` frames). Abrupt = TCP abort after
        the sent frames left the socket buffer; else a 1011 close frame."""
        if after_n_ticks < 1:
            raise InvalidInputError("after_n_ticks must be >= 1")
        with self._lock:
            self._faults.drop_after = after_n_ticks
            self._faults.drop_every = every
            self._faults.drop_abrupt = abrupt
            self._drop_remaining = after_n_ticks

    def duplicate(self, rate: float) -> None:
        with self._lock:
            self._faults.duplicate_rate = check_rate(rate)

    def out_of_order(self, rate: float) -> None:
        with self._lock:
            self._faults.out_of_order_rate = check_rate(rate)

    def malformed(self, rate: float) -> None:
        with self._lock:
            self._faults.malformed_rate = check_rate(rate)

    def silence(self, seconds: float) -> None:
        """No frames for ``seconds`` of wall time from now; connections stay open."""
        with self._lock:
            self._silence_until = time.monotonic() + float(seconds)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = FaultPlan()
            self._drop_remaining = None
            self._silence_until = 0.0

    # -- records ---------------------------------------------------------------------------

    def sent_ticks(self, symbol: str) -> list[Tick]:
        """A copy of the tick frames sent for ``symbol`` (canonical), in send order."""
        with self._lock:
            return list(self.sent_log.get(symbol, ()))

    def faults_injected(self, kind: str | None = None) -> list[tuple[str, str, int]]:
        with self._lock:
            return [f for f in self.fault_log if kind is None or f[0] == kind]

    def exhausted(self, symbol: str) -> bool:
        """Speed 0 with an ``end``: every tick of ``symbol`` before ``end`` was sent."""
        if self.end_ms is None:
            return False
        with self._lock:
            return self._cursors.get(symbol, self.start_ms) >= self.end_ms

    # -- connection handling -------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        target = urlsplit(ws.request.path if ws.request is not None else "")
        feed = target.path.rstrip("/").rsplit("/", 1)[-1]
        token = (parse_qs(target.query).get("api_token") or [""])[0]
        try:
            if not target.path.startswith("/ws/") or feed not in FEEDS:
                await ws.send(json.dumps({"status_code": 404, "message": "Unknown endpoint"}))
                await ws.close(1008, "unknown endpoint")
                return
            if not token or (self._tokens is not None and token not in self._tokens):
                with self._lock:
                    self.rejected_connections += 1
                await ws.send(UNAUTHORIZED)
                await ws.close(1008, "Unauthorized")
                return
            with self._lock:
                self.connections += 1
                self._next_ident += 1
                conn = _Connection(self._next_ident, ws, feed)
            await ws.send(AUTHORIZED)
            reader = asyncio.create_task(self._read(conn))
            writer = asyncio.create_task(self._write(conn))
            done, pending = await asyncio.wait({reader, writer}, return_when="FIRST_COMPLETED")
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await task
            for task in done:
                exc = task.exception()
                if exc is not None and not isinstance(exc, ConnectionClosed):
                    log.error("ws simulator connection failed: %r", exc)
        except ConnectionClosed:
            pass

    async def _read(self, conn: _Connection) -> None:
        async for raw in conn.ws:
            try:
                msg = json.loads(raw)
                action = msg["action"]
                codes = [c.strip() for c in str(msg["symbols"]).split(",") if c.strip()]
            except (ValueError, TypeError, KeyError):
                log.debug("ws simulator ignored a message that is not a subscription")
                continue
            symbols = []
            for code in codes:
                try:
                    symbols.append(canonical_symbol(conn.feed, code))
                except InvalidInputError:
                    log.debug("ws simulator ignored invalid symbol %r", code)
            with self._lock:
                self.subscription_log.append((conn.ident, str(action), tuple(symbols)))
            if action == "subscribe":
                for symbol in symbols:
                    if symbol in conn.streams:
                        continue
                    if len(conn.streams) >= MAX_SYMBOLS_PER_CONNECTION:
                        await conn.ws.send(
                            json.dumps(
                                {
                                    "status_code": 400,
                                    "message": f"symbol limit reached "
                                    f"({MAX_SYMBOLS_PER_CONNECTION} per connection)",
                                }
                            )
                        )
                        break
                    conn.streams[symbol] = _SymbolStream(
                        self.market,
                        symbol,
                        conn.feed,
                        self._cursor(symbol),
                        self.end_ms,
                        self.extended_hours,
                    )
            elif action == "unsubscribe":
                for symbol in symbols:
                    conn.streams.pop(symbol, None)
                    conn.held.pop(symbol, None)
            conn.changed.set()

    def _cursor(self, symbol: str) -> int:
        if self.speed > 0:
            return max(self.now_ms(), self.start_ms)
        with self._lock:
            return self._cursors.get(symbol, self.start_ms)

    async def _write(self, conn: _Connection) -> None:
        sent_since_yield = 0
        while True:
            conn.changed.clear()
            live = [s for s in conn.streams.values() if s.head is not None]
            if not live:
                # Nothing to send: release held ticks, then wait for a subscription change.
                for symbol in list(conn.held):
                    await self._send_tick(conn, conn.streams.get(symbol), conn.held.pop(symbol))
                await conn.changed.wait()
                continue
            stream = min(live, key=_head_ts)
            tick = stream.head
            assert tick is not None
            if self.speed > 0:
                delay = self._due(tick.ts_ms) - time.monotonic()
                if delay > 0.0005:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(conn.changed.wait(), delay)
                    continue  # re-evaluate: the subscriptions may have changed
            silent_for = self._silent_for()
            if silent_for > 0:
                if self.speed > 0:
                    stream.advance()
                    with self._lock:
                        self.fault_log.append(("silenced", stream.symbol, tick.ts_ms))
                    if stream.head is None:
                        self._exhausted(stream)
                    continue
                await asyncio.sleep(silent_for)
                continue
            stream.advance()
            await self._emit(conn, stream, tick)
            if stream.head is None:
                self._exhausted(stream)
            sent_since_yield += 1
            if sent_since_yield >= 64:
                sent_since_yield = 0
                await asyncio.sleep(0)

    def _exhausted(self, stream: _SymbolStream) -> None:
        with self._lock:
            cursor = self._cursors.get(stream.symbol, self.start_ms)
            self._cursors[stream.symbol] = max(cursor, stream.end)

    def _silent_for(self) -> float:
        with self._lock:
            return self._silence_until - time.monotonic()

    async def _emit(self, conn: _Connection, stream: _SymbolStream, tick: Tick) -> None:
        """Send ``tick`` with whatever faults are switched on."""
        with self._lock:
            faults = self._faults
            dice = self._dice
            roll_malformed = dice.roll(faults.malformed_rate)
            roll_hold = stream.symbol not in conn.held and dice.roll(faults.out_of_order_rate)
            roll_duplicate = dice.roll(faults.duplicate_rate)
            kind = dice.pick(MALFORMED_KINDS) if roll_malformed else ""
        if roll_malformed:
            await conn.ws.send(_garbage(kind, stream, tick))
            with self._lock:
                self.fault_log.append(("malformed:" + kind, stream.symbol, tick.ts_ms))
        if roll_hold:
            conn.held[stream.symbol] = tick
            with self._lock:
                self.fault_log.append(("out_of_order", stream.symbol, tick.ts_ms))
            return
        await self._send_tick(conn, stream, tick)
        if roll_duplicate:
            with self._lock:
                self.fault_log.append(("duplicate", stream.symbol, tick.ts_ms))
            await self._send_tick(conn, stream, tick)
        held = conn.held.pop(stream.symbol, None)
        if held is not None:
            await self._send_tick(conn, stream, held)

    async def _send_tick(self, conn: _Connection, stream: _SymbolStream | None, tick: Tick) -> None:
        frame = (
            stream.render(tick)
            if stream is not None
            else render_tick(conn.feed, tick)  # a held tick of an unsubscribed symbol
        )
        await conn.ws.send(frame)
        with self._lock:
            self.sent_log.setdefault(tick.symbol, []).append(tick)
            cursor = self._cursors.get(tick.symbol, self.start_ms)
            self._cursors[tick.symbol] = max(cursor, tick.ts_ms + 1)
            self._latest_sent = max(self._latest_sent, tick.ts_ms)
            drop = False
            if self._drop_remaining is not None:
                self._drop_remaining -= 1
                if self._drop_remaining <= 0:
                    drop = True
                    self._drop_remaining = (
                        self._faults.drop_after if self._faults.drop_every else None
                    )
                    self.fault_log.append(("drop", tick.symbol, tick.ts_ms))
            abrupt = self._faults.drop_abrupt
        if drop:
            await _drop(conn.ws, abrupt)

    # -- helpers for tests -----------------------------------------------------------------


def _head_ts(stream: _SymbolStream) -> int:
    return stream.head.ts_ms if stream.head is not None else 1 << 62


async def _drop(ws: ServerConnection, abrupt: bool) -> None:
    """Drop the connection; frames already sent are delivered first."""
    if not abrupt:
        await ws.close(1011, "simulated drop")
        raise ConnectionClosed(None, None)
    transport = ws.transport
    deadline = time.monotonic() + 2.0
    while transport.get_write_buffer_size() > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    transport.abort()
    raise ConnectionClosed(None, None)


def _garbage(kind: str, stream: _SymbolStream, tick: Tick) -> str:
    """A malformed frame of ``kind`` built from (a copy of) ``tick``'s frame."""
    if kind == "truncated":
        return stream.render(tick)[:-9]
    if kind == "html":
        return "<html><body><h1>502 Bad Gateway</h1></body></html>"
    if kind == "not_object":
        return "[1, 2, 3]"
    frame: dict[str, Any] = json.loads(render_tick(stream.feed, tick))
    price_fields = {"us": ("p",), "crypto": ("p",), "forex": ("a", "b"), "us-quote": ("ap", "bp")}[
        stream.feed
    ]
    if kind == "missing_price":
        for name in price_fields:
            frame.pop(name, None)
    elif kind == "string_price":
        frame[price_fields[0]] = "abc"
    elif kind == "negative_price":
        frame[price_fields[0]] = -abs(float(frame[price_fields[0]]))
    elif kind == "nan_price":
        frame[price_fields[0]] = float("nan")  # json.dumps writes the NaN literal
    elif kind == "seconds_time":
        frame["t"] = tick.ts_ms // 1000
    elif kind == "missing_time":
        del frame["t"]
    elif kind == "unknown_symbol":
        frame["s"] = "ZZZNOTSUBSCRIBED"
    elif kind == "crossed_quote":
        if len(price_fields) == 2:
            frame[price_fields[0]], frame[price_fields[1]] = (
                float(frame[price_fields[1]]) * 0.99,
                float(frame[price_fields[0]]) * 1.01,
            )
        else:
            frame[price_fields[0]] = "1.2.3"
    return json.dumps(frame)
