"""Closed bars from REST as aggregator bars: the live path's REST adapter.

A :class:`BarFetcher` is what catch-up, reconnect backfill and poll mode call;
:func:`rest_fetcher` makes one over any ``MarketSource``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd

from hedgeflow.columns import CLOSE, HIGH, LOW, OPEN, TS, VOLUME
from hedgeflow.live.aggregator import Bar
from hedgeflow.market import interval_seconds

__all__ = ["BarFetcher", "bars_from_frame", "rest_fetcher"]


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
