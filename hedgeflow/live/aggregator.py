"""Ticks -> start-stamped bars, per symbol, pure and O(1) per tick.

Rules (DESIGN.md conventions 1 and 2):

* A bar covers ``[ts, ts + interval)`` with ``ts = floor(t / interval) * interval``
  (epoch milliseconds), so a bar is stamped by its **start**, like EODHD and every
  REST source.
* The open bar of a symbol closes when a tick at or after its end arrives
  (``closed_by="tick"``) or when :meth:`BarAggregator.flush` is called with
  ``now_ms >= ts + interval + grace`` (``closed_by="flush"``), so a quiet market
  still produces bars. Bars without ticks do not exist (as in the REST data).
* A tick older than the open bar's start - or, once a bar was closed, older than the
  end of the last closed bar - is **late**: counted per symbol, logged (rate
  limited) and dropped. It is never merged into a closed bar and never opens a bar
  in the past.
* Out-of-order ticks within the open bar belong to it: high/low are order
  independent, ``open`` is the tick with the earliest ``ts_ms`` and ``close`` the
  tick with the latest ``ts_ms`` (on equal times the first / last arrival).
* **Duplicate rule**: a tick whose ``(ts_ms, price, size)`` equals that of a tick
  already merged into the same open bar of the same symbol is a duplicate: dropped
  and counted. EODHD frames carry no trade id, so two genuine prints with the same
  millisecond, price and size cannot be told from a re-sent frame; re-sent frames
  (reconnects, replays) are by far the more common case, so they are dropped. A
  duplicate of a tick of an already-closed bar is late (and counted as late).
* Volume is the sum of the ticks' sizes, NaN-safe: ticks without a size (NaN: forex,
  quotes) add nothing, a bar none of whose ticks has a size has NaN volume. Closed
  bars round the volume to 8 decimals, exactly like ``aggregate_ticks``, so the same
  ticks give bit-identical bars whatever the summation order.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hedgeflow.columns import BAR_COLUMNS, SYMBOL
from hedgeflow.errors import InvalidInputError
from hedgeflow.sources.base import bars_frame
from hedgeflow.sources.synthetic import VOLUME_DECIMALS
from hedgeflow.sources.tick import Tick

log = logging.getLogger(__name__)

_NAN = math.nan
_LOG_EVERY_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Bar:
    """A closed bar of one symbol; ``ts_ms`` is its start (epoch ms, UTC)."""

    symbol: str
    ts_ms: int
    interval_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    n_ticks: int
    closed_by: str  # "tick" | "flush"

    @property
    def end_ms(self) -> int:
        return self.ts_ms + self.interval_ms

    @property
    def ts(self) -> pd.Timestamp:
        """The bar's start as a microsecond UTC Timestamp."""
        return pd.Timestamp(self.ts_ms * 1000, unit="us", tz="UTC")


@dataclass(slots=True)
class AggregatorStats:
    ticks: int = 0  # ticks offered to add()
    merged: int = 0  # ticks that went into a bar
    bars_closed: int = 0
    bars_by_flush: int = 0
    late_ticks: int = 0
    duplicates: int = 0
    late_by_symbol: dict[str, int] = field(default_factory=dict)
    duplicates_by_symbol: dict[str, int] = field(default_factory=dict)


class _OpenBar:
    __slots__ = (
        "close",
        "close_ts",
        "end",
        "high",
        "low",
        "n",
        "open",
        "open_ts",
        "seen",
        "start",
        "volume",
    )

    def __init__(self, start: int, end: int, ts: int, price: float, size: float) -> None:
        self.start = start
        self.end = end
        self.open = price
        self.open_ts = ts
        self.high = price
        self.low = price
        self.close = price
        self.close_ts = ts
        self.volume = size  # NaN until a tick with a size arrives
        self.n = 1
        self.seen = {(ts, price, size if size == size else None)}


class BarAggregator:
    """Per-symbol bar builder. ``add(tick)`` and ``flush(now_ms)`` return closed bars."""

    def __init__(self, interval_seconds: int, grace_seconds: float = 0.0) -> None:
        if isinstance(interval_seconds, bool) or not isinstance(interval_seconds, int):
            raise InvalidInputError(
                f"interval_seconds must be an integer, got {interval_seconds!r}"
            )
        if interval_seconds <= 0:
            raise InvalidInputError(f"interval_seconds must be positive, got {interval_seconds}")
        if not (isinstance(grace_seconds, int | float) and 0 <= grace_seconds < math.inf):
            raise InvalidInputError(
                f"grace_seconds must be a finite number >= 0, got {grace_seconds!r}"
            )
        self.interval_ms = interval_seconds * 1000
        self.grace_ms = round(grace_seconds * 1000)
        self.stats = AggregatorStats()
        self._open: dict[str, _OpenBar] = {}
        # End of the last closed bar per symbol: ticks before it are late.
        self._closed_until: dict[str, int] = {}
        self._last_log = -math.inf
        self._unlogged_late = 0
        self._unlogged_dupes = 0

    def __repr__(self) -> str:
        return (
            f"BarAggregator(interval_seconds={self.interval_ms // 1000}, "
            f"grace_seconds={self.grace_ms / 1000:g}, open_bars={len(self._open)})"
        )

    # -- ticks ------------------------------------------------------------------------

    def add(self, tick: Tick) -> list[Bar]:
        """Merge one tick; returns the bar it closed (at most one), else []."""
        stats = self.stats
        stats.ticks += 1
        symbol = tick.symbol
        t = tick.ts_ms
        price = tick.price
        size = tick.size
        bar = self._open.get(symbol)
        if bar is not None:
            if t < bar.end:
                if t >= bar.start:
                    key = (t, price, size if size == size else None)
                    seen = bar.seen
                    if key in seen:
                        self._duplicate(symbol)
                        return []
                    seen.add(key)
                    if price > bar.high:
                        bar.high = price
                    elif price < bar.low:
                        bar.low = price
                    if t >= bar.close_ts:
                        bar.close = price
                        bar.close_ts = t
                    elif t < bar.open_ts:
                        bar.open = price
                        bar.open_ts = t
                    if size == size:
                        volume = bar.volume
                        bar.volume = size if volume != volume else volume + size
                    bar.n += 1
                    stats.merged += 1
                    return []
                self._late(symbol, t, bar.start)
                return []
            # A tick at or after the open bar's end closes it and opens the next one.
            closed = self._close(symbol, bar, "tick")
            self._start(symbol, t, price, size)
            return [closed]
        closed_until = self._closed_until.get(symbol)
        if closed_until is not None and t < closed_until:
            self._late(symbol, t, closed_until)
            return []
        self._start(symbol, t, price, size)
        return []

    def add_many(self, ticks: Iterable[Tick]) -> list[Bar]:
        out: list[Bar] = []
        add = self.add
        for tick in ticks:
            closed = add(tick)
            if closed:
                out.extend(closed)
        return out

    def _start(self, symbol: str, t: int, price: float, size: float) -> None:
        start = t - t % self.interval_ms
        self._open[symbol] = _OpenBar(start, start + self.interval_ms, t, price, size)
        self.stats.merged += 1

    def _close(self, symbol: str, bar: _OpenBar, closed_by: str) -> Bar:
        del self._open[symbol]
        self._closed_until[symbol] = bar.end
        volume = bar.volume
        if volume == volume:
            volume = float(np.round(volume, VOLUME_DECIMALS))
        self.stats.bars_closed += 1
        return Bar(
            symbol,
            bar.start,
            self.interval_ms,
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            volume,
            bar.n,
            closed_by,
        )

    # -- time ---------------------------------------------------------------------------

    def flush(self, now_ms: int) -> list[Bar]:
        """Close every open bar with ``now_ms >= start + interval + grace``."""
        limit = now_ms - self.grace_ms
        due = [symbol for symbol, bar in self._open.items() if bar.end <= limit]
        closed = [self._close(symbol, self._open[symbol], "flush") for symbol in due]
        self.stats.bars_by_flush += len(closed)
        return closed

    def close_all(self) -> list[Bar]:
        """Close every open bar now (shutdown); ``closed_by="flush"``."""
        closed = [self._close(symbol, bar, "flush") for symbol, bar in list(self._open.items())]
        self.stats.bars_by_flush += len(closed)
        return closed

    def open_bar(self, symbol: str) -> Bar | None:
        """A snapshot of the open (unfinished) bar of ``symbol``, if any."""
        bar = self._open.get(symbol)
        if bar is None:
            return None
        return Bar(
            symbol,
            bar.start,
            self.interval_ms,
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            bar.volume,
            bar.n,
            "open",
        )

    @property
    def open_symbols(self) -> list[str]:
        return list(self._open)

    # -- counting ---------------------------------------------------------------------

    def _late(self, symbol: str, t: int, boundary: int) -> None:
        stats = self.stats
        stats.late_ticks += 1
        stats.late_by_symbol[symbol] = stats.late_by_symbol.get(symbol, 0) + 1
        self._unlogged_late += 1
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_SECONDS:
            self._report(now, f"{symbol} tick at {t} is before {boundary}")

    def _duplicate(self, symbol: str) -> None:
        stats = self.stats
        stats.duplicates += 1
        stats.duplicates_by_symbol[symbol] = stats.duplicates_by_symbol.get(symbol, 0) + 1
        self._unlogged_dupes += 1
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_SECONDS:
            self._report(now, f"duplicate {symbol} tick")

    def _report(self, now: float, example: str) -> None:
        log.warning(
            "bar aggregator dropped %d late and %d duplicate ticks (e.g. %s); totals: "
            "late %d, duplicates %d",
            self._unlogged_late,
            self._unlogged_dupes,
            example,
            self.stats.late_ticks,
            self.stats.duplicates,
        )
        self._last_log = now
        self._unlogged_late = 0
        self._unlogged_dupes = 0


def bars_to_frame(bars: Iterable[Bar], *, with_symbol: bool = False) -> pd.DataFrame:
    """Closed bars as a bars frame (``BAR_COLUMNS``, start-stamped ``datetime64[us, UTC]``),
    in the given order; optionally with a leading ``symbol`` column."""
    items = list(bars)
    frame = bars_frame(
        np.array([b.ts_ms * 1000 for b in items], dtype="int64"),
        np.array([b.open for b in items], dtype="float64"),
        np.array([b.high for b in items], dtype="float64"),
        np.array([b.low for b in items], dtype="float64"),
        np.array([b.close for b in items], dtype="float64"),
        np.array([b.volume for b in items], dtype="float64"),
    )
    if with_symbol:
        frame.insert(0, SYMBOL, [b.symbol for b in items])
        return frame[[SYMBOL, *BAR_COLUMNS]]
    return frame
