"""Micro-benchmark: WebSocket frame parse -> bar aggregation throughput on one core
(``python -m benchmarks._live_ticks``; its frames feed ``benchmarks.live`` too).

``ticks_per_second(n)`` renders ``n`` frames of synthetic ticks (a mix of the us, forex
and crypto feeds, one symbol each, as the live flow sees them) up front, then times
``parse_frame`` + ``BarAggregator.add`` over all of them and returns ticks per second.
Rendering, tick generation and the first (warm-up) pass are not timed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from hedgeflow.live.aggregator import BarAggregator
from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.sources.tick import Tick
from hedgeflow.sources.ws_format import frame_parser, render_tick, symbol_map

_SYMBOLS = (("us", "AAPL.US"), ("forex", "EURUSD.FOREX"), ("crypto", "BTC-USD.CC"))
_START = datetime(2024, 9, 2, 0, 0, tzinfo=UTC)  # a Monday


def _frames(n: int, seed: int) -> list[tuple[str, str]]:
    """About ``n`` (feed, frame) pairs, interleaved across the feeds in time order."""
    market = SyntheticMarket(seed)
    per_feed = -(-n // len(_SYMBOLS))
    rows: list[tuple[int, str, str]] = []
    for feed, symbol in _SYMBOLS:
        made = 0
        day = _START
        while made < per_feed:
            ticks = market.ticks(symbol, day, day + timedelta(days=1))
            for i in range(min(len(ticks), per_feed - made)):
                tick = Tick(
                    symbol,
                    int(ticks.ts_ms[i]),
                    float(ticks.price[i]),
                    float(ticks.size[i]),
                    float(ticks.bid[i]),
                    float(ticks.ask[i]),
                    feed,
                )
                rows.append((tick.ts_ms, feed, render_tick(feed, tick)))
            made += min(len(ticks), per_feed - made)
            day += timedelta(days=1)
    rows.sort(key=lambda row: row[0])
    return [(feed, frame) for _, feed, frame in rows[:n]]


def ticks_per_second(n: int = 200_000, *, interval_seconds: int = 300, seed: int = 7) -> float:
    """Frames parsed and aggregated per second on one core (best of three passes)."""
    if n <= 0:
        raise ValueError("n must be positive")
    frames = _frames(n, seed)
    codes = symbol_map(symbol for _, symbol in _SYMBOLS)
    parsers = {feed: frame_parser(feed, codes) for feed, _ in _SYMBOLS}
    work = [(parsers[feed], frame) for feed, frame in frames]
    best = float("inf")
    for _ in range(3):  # first pass warms up
        aggregator = BarAggregator(interval_seconds, 5)
        add = aggregator.add
        began = time.perf_counter()
        for parse, frame in work:
            tick = parse(frame)
            if type(tick) is Tick:
                add(tick)
        elapsed = time.perf_counter() - began
        if aggregator.stats.merged != len(work):
            raise RuntimeError("benchmark frames did not all aggregate")
        best = min(best, elapsed)
    return len(work) / best


if __name__ == "__main__":
    print(f"{ticks_per_second():,.0f} ticks/s (parse + aggregate, one core)")
