"""EODHD WebSocket client: subscribe, parse, reconnect with backoff, backfill the gap.

``EodhdWsClient(feed, symbols, token, ws_url, on_tick)`` connects to
``{ws_url}/{feed}?api_token=...``, waits for the server's status frame, subscribes
(``{"action": "subscribe", "symbols": "AAPL, MSFT"}``, at most 50 symbols per
connection), parses every frame with :func:`~hedgeflow.sources.ws_format.parse_frame`
and calls ``on_tick(tick)`` (status frames go to ``on_status``). Bad frames are counted
by reason and logged (rate limited); they never stop the client. A frame longer than
``max_frame_bytes`` (1 MiB) is refused before it is read (the connection closes with
1009 "message too big", and the client reconnects); it counts as an ``oversized`` bad
frame. ``stats.idle_streak`` counts the connection attempts in a row that delivered no
tick (the live runtime's dead-feed check).

When the connection drops the client reconnects with exponential backoff and full
jitter (``sleep = uniform(0, min(backoff_max, backoff_initial x factor^attempt))``,
the attempt counter resetting once a connection is healthy again), resubscribes, and
calls ``backfill(symbol, from_ms, to_ms)`` for every symbol before handling any new
frame: ``from_ms`` is the latest tick time received for the symbol (or, without any
tick yet, the time of its first subscription or its previous backfill's ``to_ms``) and
``to_ms`` the clock (``clock_ms``, default wall time) read just before resubscribing.
Ticks with ``from_ms < t < to_ms`` were missed; every tick received afterwards has
``t >= to_ms`` (for a server on the same clock), but a few just after ``to_ms`` may be
missing too (the subscription takes effect a moment later), so a bar-level backfill
should cover the bars from the one containing ``from_ms`` through the one containing
``to_ms``. A ``backfill`` that is a coroutine function is awaited, a plain function
runs in a worker thread; either way new ticks wait until it returns, so ticks stay in
time order. Its errors are counted and logged, not raised.

A bad token (status 401/403 or an "Unauthorized" message, or HTTP 401/403 on the
handshake) raises :class:`~hedgeflow.errors.PermanentSourceError`. The token never
appears in a log record (``websockets``' own loggers included: the client hands them a
redacting adapter), an exception or a ``repr``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)

from hedgeflow.config import NetworkSettings
from hedgeflow.errors import (
    InvalidInputError,
    PermanentSourceError,
    TransientSourceError,
)
from hedgeflow.market import normalize_symbol, ws_code
from hedgeflow.secrets import redact, register_secret
from hedgeflow.sources.tick import Tick
from hedgeflow.sources.ws_format import (
    FEED_EXCHANGE,
    BadFrame,
    StatusFrame,
    check_feed,
    frame_parser,
)

log = logging.getLogger(__name__)

MAX_SYMBOLS_PER_CONNECTION = 50
# The largest frame read: a tick is ~100 bytes; a bigger frame is refused unread (the
# connection closes with 1009 "message too big") and counted as an ``oversized`` bad frame.
MAX_FRAME_BYTES = 1 << 20
_CLOSE_MESSAGE_TOO_BIG = 1009
DEFAULT_WS_URL = NetworkSettings().ws_url
_BAD_LOG_EVERY_SECONDS = 30.0

Backfill = Callable[[str, int, int], Any]


@dataclass(slots=True)
class ClientStats:
    frames: int = 0
    ticks: int = 0
    bad_frames: dict[str, int] = field(default_factory=dict)  # by reason
    status_frames: int = 0
    status_errors: int = 0
    ignored_ticks: int = 0  # ticks of symbols no longer subscribed (in flight)
    connects: int = 0  # successful connections
    reconnects: int = 0  # successful connections after the first
    disconnects: int = 0
    connect_failures: int = 0
    backfills: int = 0
    backfill_errors: int = 0
    # connection attempts in a row (failed connects included) that delivered no tick:
    # a feed that accepts and closes at once, or never answers, keeps counting up
    idle_streak: int = 0

    @property
    def bad_total(self) -> int:
        return sum(self.bad_frames.values())


class RedactingLoggerAdapter(logging.LoggerAdapter[logging.Logger]):
    """Hands ``websockets`` a logger whose records never contain the token (nor any
    registered secret or ``api_token=`` query value)."""

    def __init__(self, logger: logging.Logger, token: str | None = None) -> None:
        super().__init__(logger, {})
        self._secret = token

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args!r}"
        exc_info = kwargs.pop("exc_info", None)
        kwargs.pop("stack_info", None)
        if exc_info:
            if exc_info is True:
                import sys

                exc_info = sys.exc_info()
            elif isinstance(exc_info, BaseException):
                exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
            if isinstance(exc_info, tuple) and exc_info[0] is not None:
                text += "\n" + logging.Formatter().formatException(exc_info)
        kwargs.setdefault("stacklevel", 2)
        self.logger.log(level, redact(text, self._secret), **kwargs)


class EodhdWsClient:
    """One EODHD WebSocket connection (one feed, up to 50 symbols); see the module doc."""

    def __init__(
        self,
        feed: str,
        symbols: Iterable[str],
        token: str,
        ws_url: str = DEFAULT_WS_URL,
        on_tick: Callable[[Tick], None] | None = None,
        on_status: Callable[[StatusFrame], None] | None = None,
        *,
        rng: random.Random | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        backoff_factor: float = 2.0,
        backfill: Backfill | None = None,
        clock_ms: Callable[[], int] | None = None,
        max_symbols: int = MAX_SYMBOLS_PER_CONNECTION,
        open_timeout: float = 10.0,
        status_timeout: float = 5.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 2.0,
        max_reconnects: int | None = None,
        proxy: str | Literal[True] | None = True,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        self.feed = check_feed(feed)
        if not isinstance(token, str) or not token.strip():
            raise InvalidInputError("the EODHD WebSocket client needs a non-empty API token")
        if not isinstance(ws_url, str) or not ws_url.startswith(("ws://", "wss://")):
            raise InvalidInputError("ws_url must start with ws:// or wss://")
        if not 0 < backoff_initial <= backoff_max or backoff_factor < 1:
            raise InvalidInputError(
                "backoff settings need 0 < backoff_initial <= backoff_max and backoff_factor >= 1"
            )
        self._token = token.strip()
        register_secret(self._token)
        try:
            parts = urlsplit(ws_url)
            valid = bool(parts.hostname) and (parts.port is None or parts.port > 0)
        except ValueError:
            valid = False
        if not valid or parts.query or parts.fragment:
            raise InvalidInputError(
                f"invalid ws_url {redact(ws_url, self._token)!r}: expected ws(s)://host[:port]/path"
            )
        self.ws_url = redact(ws_url.rstrip("/"), self._token)
        self._base_url = ws_url.rstrip("/")
        self.max_symbols = max_symbols
        self._symbols: dict[str, str] = {}  # ws code -> canonical, subscribed
        self._known: dict[str, str] = {}  # every code ever subscribed (frames in flight)
        self._subscribed: set[str] = set()  # canonical symbols subscribed
        for symbol in symbols:
            self._add_symbol(symbol)
        self._parse = frame_parser(self.feed, self._known)
        self._on_tick = on_tick or (lambda tick: None)
        self._on_status = on_status
        self._rng = rng or random.Random()
        self.backoff_initial = float(backoff_initial)
        self.backoff_max = float(backoff_max)
        self.backoff_factor = float(backoff_factor)
        self._backfill = backfill
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._open_timeout = open_timeout
        self._status_timeout = status_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._close_timeout = close_timeout
        self._max_reconnects = max_reconnects
        self._proxy = proxy
        self._max_frame_bytes = int(max_frame_bytes)
        self.stats = ClientStats()
        self.last_status: StatusFrame | None = None
        # Time up to which each symbol's ticks are covered (last tick or last backfill).
        self._covered_ms: dict[str, int] = {}
        self._ws: ClientConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._bad_log_next = 0.0
        self._was_connected = False
        self._bad_unlogged = 0
        self._ws_logger = RedactingLoggerAdapter(logging.getLogger("websockets.client"), token)

    def __repr__(self) -> str:
        return (
            f"EodhdWsClient(feed={self.feed!r}, symbols={sorted(self._symbols.values())}, "
            f"ws_url={self.ws_url!r}, token=***)"
        )

    # -- symbols -------------------------------------------------------------------------

    @property
    def symbols(self) -> list[str]:
        """Subscribed canonical symbols."""
        return list(self._symbols.values())

    def _add_symbol(self, symbol: str) -> str:
        canonical = normalize_symbol(symbol)
        code = ws_code(canonical)
        if canonical.rsplit(".", 1)[1] != FEED_EXCHANGE[self.feed]:
            raise InvalidInputError(
                f"{canonical} is not on the {self.feed!r} feed "
                f"(it carries .{FEED_EXCHANGE[self.feed]} symbols)"
            )
        if code in self._symbols:
            return code
        if len(self._symbols) >= self.max_symbols:
            raise InvalidInputError(
                f"at most {self.max_symbols} symbols per WebSocket connection; "
                "open another client for the rest"
            )
        self._symbols[code] = canonical
        self._known[code] = canonical
        self._subscribed.add(canonical)
        return code

    async def subscribe(self, symbols: Iterable[str]) -> None:
        """Add symbols (sent now when connected, and on every reconnect)."""
        added: list[str] = []
        for symbol in symbols:
            canonical = normalize_symbol(symbol)
            if canonical not in self._subscribed:
                added.append(self._add_symbol(canonical))
        now = self._clock_ms()
        for code in added:
            self._covered_ms.setdefault(self._symbols[code], now)
        if added and self._ws is not None:
            await self._send_action("subscribe", added)

    async def unsubscribe(self, symbols: Iterable[str]) -> None:
        """Remove symbols; ticks of theirs still in flight are ignored (and counted)."""
        codes = [ws_code(s) for s in symbols]
        removed = [code for code in codes if self._symbols.pop(code, None) is not None]
        self._subscribed = set(self._symbols.values())
        if removed and self._ws is not None:
            await self._send_action("unsubscribe", removed)

    async def _send_action(self, action: str, codes: list[str]) -> None:
        ws = self._ws
        if ws is None:
            return
        with contextlib.suppress(WebSocketException, OSError):
            await ws.send(json.dumps({"action": action, "symbols": ", ".join(codes)}))

    # -- running ---------------------------------------------------------------------------

    async def run(
        self, stop: asyncio.Event | None = None, duration: float | None = None
    ) -> ClientStats:
        """Stream until ``stop`` is set, ``duration`` seconds pass or :meth:`stop` is called.

        Raises PermanentSourceError (bad token), InvalidInputError (bad URL) or
        TransientSourceError (``max_reconnects`` exceeded); returns the stats.
        """
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        main = asyncio.create_task(self._main(), name=f"eodhd-ws-{self.feed}")
        waiters: set[asyncio.Task[Any]] = {main, asyncio.create_task(self._stop_event.wait())}
        if stop is not None:
            waiters.add(asyncio.create_task(stop.wait()))
        try:
            await asyncio.wait(waiters, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiters:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        if main.done() and not main.cancelled():
            exc = main.exception()
            if exc is not None:
                raise exc
        return self.stats

    def stop(self) -> None:
        """Ask :meth:`run` to return (safe from any thread)."""
        loop, event = self._loop, self._stop_event
        if loop is None or event is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    @property
    def _url(self) -> str:
        return f"{self._base_url}/{self.feed}?api_token={quote(self._token, safe='')}"

    async def _main(self) -> None:
        attempt = 0
        now = self._clock_ms()
        for canonical in self._symbols.values():
            self._covered_ms.setdefault(canonical, now)
        while True:
            healthy = False
            ticks_before = self.stats.ticks
            try:
                healthy = await self._connect_once()
            except (PermanentSourceError, InvalidInputError):
                raise
            except InvalidURI:
                raise InvalidInputError(
                    f"invalid WebSocket URL {self.ws_url}/{self.feed}"
                ) from None
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    raise PermanentSourceError(
                        f"EODHD WebSocket {self.feed}: HTTP {status} on connect "
                        "(bad API token or plan without WebSocket access)"
                    ) from None
                self._note_disconnect(f"HTTP {status} on connect")
            except (WebSocketException, OSError, TimeoutError) as exc:
                self._note_disconnect(f"{type(exc).__name__}: {exc}")
            if self.stats.ticks > ticks_before:
                self.stats.idle_streak = 0
            else:
                self.stats.idle_streak += 1
            if healthy:
                attempt = 0
            if self._max_reconnects is not None and attempt >= self._max_reconnects:
                raise TransientSourceError(
                    f"EODHD WebSocket {self.feed}: gave up after {attempt + 1} connection "
                    "attempts without a healthy connection"
                )
            ceiling = min(self.backoff_max, self.backoff_initial * self.backoff_factor**attempt)
            delay = self._rng.uniform(0.0, ceiling)
            attempt += 1
            log.info("EODHD WebSocket %s: reconnecting in %.2f s", self.feed, delay)
            await asyncio.sleep(delay)

    def _note_disconnect(self, why: str) -> None:
        what = "connection lost" if self._was_connected else "connect failed"
        if self._was_connected:
            self.stats.disconnects += 1
        self._was_connected = False
        log.warning("EODHD WebSocket %s: %s (%s)", self.feed, what, redact(why, self._token))

    async def _connect_once(self) -> bool:
        """One connection's life; returns True when it got healthy (status 200 or a tick)."""
        healthy = False
        connected = False
        try:
            async with connect(
                self._url,
                open_timeout=self._open_timeout,
                ping_interval=self._ping_interval,
                ping_timeout=self._ping_timeout,
                close_timeout=self._close_timeout,
                max_queue=256,
                max_size=self._max_frame_bytes,
                logger=self._ws_logger,
                proxy=self._proxy,
            ) as ws:
                self._ws = ws
                connected = self._was_connected = True
                reconnect = self.stats.connects > 0
                self.stats.connects += 1
                if reconnect:
                    self.stats.reconnects += 1
                log.info("EODHD WebSocket %s: connected", self.feed)
                healthy = await self._await_status(ws)
                # The gap ends where the new subscription starts: read the clock before
                # subscribing, so every tick received from now on is at or after it.
                resubscribed_ms = self._clock_ms()
                if self._symbols:
                    await ws.send(
                        json.dumps({"action": "subscribe", "symbols": ", ".join(self._symbols)})
                    )
                if reconnect:
                    await self._run_backfills(resubscribed_ms)
                on_frame = self._on_frame
                async for raw in ws:
                    if on_frame(raw):
                        healthy = True
                # A clean close by the server: still a disconnect to recover from.
                self._note_disconnect("closed by the server")
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == _CLOSE_MESSAGE_TOO_BIG:
                self._bad(BadFrame("oversized", f"a frame over {self._max_frame_bytes} bytes"))
            raise
        except (WebSocketException, OSError, TimeoutError):
            if not connected:
                self.stats.connect_failures += 1
            raise
        finally:
            self._ws = None
        return healthy

    async def _await_status(self, ws: ClientConnection) -> bool:
        """Handle the first frame (normally the status); a bad token raises."""
        try:
            raw = await asyncio.wait_for(ws.recv(), self._status_timeout)
        except TimeoutError:
            return False
        return self._on_frame(raw)

    def _on_frame(self, raw: str | bytes) -> bool:
        """Handle one frame; True if it was a tick or a good status."""
        stats = self.stats
        stats.frames += 1
        result = self._parse(raw)
        if type(result) is Tick:
            symbol = result.symbol
            covered = self._covered_ms
            if result.ts_ms > covered.get(symbol, -1):
                covered[symbol] = result.ts_ms
            if symbol not in self._subscribed:
                stats.ignored_ticks += 1
                return True
            stats.ticks += 1
            self._on_tick(result)
            return True
        if type(result) is StatusFrame:
            return self._status(result)
        assert isinstance(result, BadFrame)
        self._bad(result)
        return False

    def _status(self, status: StatusFrame) -> bool:
        self.stats.status_frames += 1
        self.last_status = status
        if self._on_status is not None:
            self._on_status(status)
        if status.is_auth_failure:
            raise PermanentSourceError(
                f"EODHD WebSocket {self.feed}: the server refused the API token "
                f"(status {status.code}: {redact(status.message, self._token)[:120]})"
            )
        if status.is_error:
            self.stats.status_errors += 1
            log.warning(
                "EODHD WebSocket %s: status %s: %s",
                self.feed,
                status.code,
                redact(status.message, self._token)[:200],
            )
            return False
        log.debug("EODHD WebSocket %s: status %s %s", self.feed, status.code, status.message)
        return True

    def _bad(self, bad: BadFrame) -> None:
        counts = self.stats.bad_frames
        first_of_kind = bad.reason not in counts
        counts[bad.reason] = counts.get(bad.reason, 0) + 1
        self._bad_unlogged += 1
        now = time.monotonic()
        if first_of_kind or now >= self._bad_log_next:
            log.warning(
                "EODHD WebSocket %s: dropped %d bad frame(s) since the last report; "
                "latest: %s %s; totals by reason: %s",
                self.feed,
                self._bad_unlogged,
                bad.reason,
                redact(bad.detail, self._token)[:160],
                dict(counts),
            )
            self._bad_unlogged = 0
            self._bad_log_next = now + _BAD_LOG_EVERY_SECONDS

    async def _run_backfills(self, to_ms: int) -> None:
        if self._backfill is None:
            return
        backfill = self._backfill
        is_async = inspect.iscoroutinefunction(backfill)
        for canonical in list(self._symbols.values()):
            from_ms = self._covered_ms.get(canonical)
            if from_ms is None or from_ms >= to_ms:
                continue
            self.stats.backfills += 1
            try:
                if is_async:
                    await backfill(canonical, from_ms, to_ms)
                else:
                    result = await asyncio.to_thread(backfill, canonical, from_ms, to_ms)
                    if inspect.isawaitable(result):
                        await result
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the consumer's problem: count, log, carry on
                self.stats.backfill_errors += 1
                log.warning(
                    "EODHD WebSocket %s: backfill of %s failed: %s",
                    self.feed,
                    canonical,
                    redact(f"{type(exc).__name__}: {exc}", self._token),
                )
                continue
            if to_ms > self._covered_ms.get(canonical, -1):
                self._covered_ms[canonical] = to_ms
