"""BarAggregator: conventions 1-2, late and duplicate ticks, and the same bars as REST."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgeflow.errors import InvalidInputError
from hedgeflow.live.aggregator import Bar, BarAggregator, bars_to_frame
from hedgeflow.sources.synthetic import SyntheticMarket, aggregate_ticks
from hedgeflow.sources.tick import Tick

NAN = math.nan
T0 = 1_725_321_600_000  # 2024-09-03 00:00 UTC, a Tuesday
MIN = 60_000


def tick(ts: int, price: float, size: float = 1.0, symbol: str = "AAPL.US") -> Tick:
    return Tick(symbol, ts, price, size)


def test_bars_are_stamped_by_their_start() -> None:
    # The article's bug: bars stamped by their end.
    agg = BarAggregator(300)
    assert agg.add(tick(T0 + 3 * MIN, 10.0)) == []
    (bar,) = agg.add(tick(T0 + 5 * MIN, 11.0))
    assert bar.ts_ms == T0 and bar.end_ms == T0 + 5 * MIN
    assert bar.ts == pd.Timestamp("2024-09-03 00:00", tz="UTC")
    assert (bar.open, bar.close, bar.n_ticks, bar.closed_by) == (10.0, 10.0, 1, "tick")
    assert agg.open_bar("AAPL.US").ts_ms == T0 + 5 * MIN  # type: ignore[union-attr]


def test_a_tick_exactly_at_the_end_closes_the_bar() -> None:
    agg = BarAggregator(60)
    agg.add(tick(T0, 1.0))
    assert agg.add(tick(T0 + MIN - 1, 2.0)) == []
    (bar,) = agg.add(tick(T0 + MIN, 3.0))
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (1.0, 2.0, 1.0, 2.0, 2.0)


def test_gaps_make_no_empty_bars() -> None:
    agg = BarAggregator(60)
    agg.add(tick(T0, 1.0))
    (bar,) = agg.add(tick(T0 + 10 * MIN, 2.0))
    assert bar.ts_ms == T0
    assert agg.stats.bars_closed == 1


def test_time_flush_closes_a_quiet_bar_after_the_grace() -> None:
    agg = BarAggregator(60, grace_seconds=5)
    agg.add(tick(T0 + 1000, 1.0))
    assert agg.flush(T0 + MIN) == []
    assert agg.flush(T0 + MIN + 4999) == []
    (bar,) = agg.flush(T0 + MIN + 5000)
    assert bar.closed_by == "flush" and bar.ts_ms == T0
    assert agg.flush(T0 + 10 * MIN) == []
    assert agg.stats.bars_by_flush == 1


def test_late_ticks_are_counted_never_merged_never_reopen_a_past_bar(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agg = BarAggregator(60, grace_seconds=1)
    agg.add(tick(T0 + 10_000, 5.0))
    agg.add(tick(T0 + MIN + 10_000, 6.0))  # closes the first bar
    with caplog.at_level("WARNING", logger="hedgeflow.live.aggregator"):
        assert agg.add(tick(T0 + 20_000, 99.0)) == []  # before the open bar: late
    assert agg.stats.late_ticks == 1 and agg.stats.late_by_symbol == {"AAPL.US": 1}
    assert "late" in caplog.text
    (bar,) = agg.flush(T0 + 3 * MIN)
    assert bar.high == 6.0  # the late tick went nowhere
    # After a flush there is no open bar; a tick inside the flushed bar is still late.
    assert agg.add(tick(T0 + 2 * MIN - 1, 7.0)) == []
    assert agg.stats.late_ticks == 2
    assert agg.open_bar("AAPL.US") is None
    # ...but a tick of a later bar starts one.
    agg.add(tick(T0 + 2 * MIN, 8.0))
    assert agg.open_bar("AAPL.US").ts_ms == T0 + 2 * MIN  # type: ignore[union-attr]


def test_duplicates_are_dropped_and_counted() -> None:
    agg = BarAggregator(60)
    agg.add(tick(T0 + 1, 5.0, 2.0))
    agg.add(tick(T0 + 1, 5.0, 2.0))  # duplicate
    agg.add(tick(T0 + 1, 5.0, 3.0))  # same time and price, other size: a trade
    agg.add(Tick("EURUSD.FOREX", T0 + 1, 1.1, NAN, 1.0, 1.2))
    agg.add(Tick("EURUSD.FOREX", T0 + 1, 1.1, NAN, 1.0, 1.2))  # duplicate (NaN size)
    assert agg.stats.duplicates == 2
    assert agg.stats.duplicates_by_symbol == {"AAPL.US": 1, "EURUSD.FOREX": 1}
    bars = {b.symbol: b for b in agg.close_all()}
    assert (bars["AAPL.US"].volume, bars["AAPL.US"].n_ticks) == (5.0, 2)
    assert bars["EURUSD.FOREX"].n_ticks == 1


def test_out_of_order_within_a_bar_is_merged_by_time() -> None:
    agg = BarAggregator(60)
    for ts, price in [
        (T0 + 30_000, 3.0),
        (T0 + 10_000, 1.0),
        (T0 + 50_000, 5.0),
        (T0 + 40_000, 4.0),
    ]:
        agg.add(tick(ts, price))
    (bar,) = agg.close_all()
    assert (bar.open, bar.high, bar.low, bar.close, bar.n_ticks) == (1.0, 5.0, 1.0, 5.0, 4)
    assert agg.stats.late_ticks == 0


def test_volume_is_nan_safe() -> None:
    agg = BarAggregator(60)
    agg.add(Tick("EURUSD.FOREX", T0, 1.1, NAN, 1.0, 1.2))
    agg.add(Tick("EURUSD.FOREX", T0 + 1, 1.2, NAN, 1.1, 1.3))
    agg.add(tick(T0, 1.0, NAN))
    agg.add(tick(T0 + 1, 1.0, 3.0))
    bars = {b.symbol: b for b in agg.close_all()}
    assert math.isnan(bars["EURUSD.FOREX"].volume)
    assert bars["AAPL.US"].volume == 3.0


def test_symbols_are_independent() -> None:
    agg = BarAggregator(60)
    agg.add(tick(T0, 1.0, symbol="AAPL.US"))
    agg.add(tick(T0 + 5 * MIN, 2.0, symbol="MSFT.US"))
    assert agg.add(tick(T0 + 1, 1.5, symbol="AAPL.US")) == []  # not late: AAPL's own bar
    assert agg.stats.late_ticks == 0


def test_bad_settings() -> None:
    for bad in (0, -60, 1.5, True):
        with pytest.raises(InvalidInputError):
            BarAggregator(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        BarAggregator(60, -1)


# -- the same bars as the REST data ---------------------------------------------------------


def _ticks(symbol: str, start: datetime, end: datetime, seed: int = 7) -> list[Tick]:
    t = SyntheticMarket(seed).ticks(symbol, start, end)
    return [
        Tick(symbol, int(ts), float(p), float(s), float(b), float(a))
        for ts, p, s, b, a in zip(t.ts_ms, t.price, t.size, t.bid, t.ask, strict=True)
    ]


def _run(ticks: list[Tick], interval: int) -> list[Bar]:
    agg = BarAggregator(interval, grace_seconds=10)
    bars = agg.add_many(ticks)
    return bars + agg.close_all()


@pytest.mark.parametrize("symbol", ["AAPL.US", "EURUSD.FOREX", "BTC-USD.CC"])
@pytest.mark.parametrize("interval", ["1m", "5m", "1h"])
def test_streaming_a_day_rebuilds_the_rest_bars_exactly(symbol: str, interval: str) -> None:
    start = datetime(2024, 9, 3, tzinfo=UTC)
    end = start + timedelta(days=1)
    seconds = {"1m": 60, "5m": 300, "1h": 3600}[interval]
    ticks = _ticks(symbol, start, end)
    bars = _run(ticks, seconds)
    got = bars_to_frame(bars)
    market = SyntheticMarket(7)
    pd.testing.assert_frame_equal(got, market.fetch_bars(symbol, interval, start, end))
    t = market.ticks(symbol, start, end)
    pd.testing.assert_frame_equal(got, aggregate_ticks(t.ts_ms, t.price, t.size, seconds))
    assert sum(b.n_ticks for b in bars) == len(ticks)


def test_reordering_inside_bars_gives_the_same_bars() -> None:
    start = datetime(2024, 9, 3, tzinfo=UTC)
    ticks = _ticks("BTC-USD.CC", start, start + timedelta(hours=6))
    rng = random.Random(3)
    shuffled: list[Tick] = []
    by_bar: dict[int, list[Tick]] = {}
    for t in ticks:
        by_bar.setdefault(t.ts_ms // 300_000, []).append(t)
    for group in by_bar.values():
        rng.shuffle(group)
        shuffled += group
    assert bars_to_frame(_run(shuffled, 300)).equals(bars_to_frame(_run(ticks, 300)))


# -- property test against a pandas reference -------------------------------------------------


def _reference(ticks: list[Tick], interval: int) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "ts": [t.ts_ms for t in ticks],
            "price": [t.price for t in ticks],
            "size": [t.size for t in ticks],
        }
    )
    frame = frame.drop_duplicates(["ts", "price", "size"])  # the duplicate rule (NaN == NaN)
    frame["bar"] = frame["ts"] // (interval * 1000) * (interval * 1000)
    g = frame.groupby("bar", sort=True)
    out = pd.DataFrame(
        {
            "open": g["price"].first(),
            "high": g["price"].max(),
            "low": g["price"].min(),
            "close": g["price"].last(),
            "volume": g["size"].sum(min_count=1).round(8),
        }
    )
    return bars_to_frame(
        Bar("X", int(b), interval * 1000, r.open, r.high, r.low, r.close, r.volume, 0, "")
        for b, r in out.iterrows()
    )


tick_lists = st.lists(
    st.tuples(
        st.integers(0, 4 * 3_600_000),  # time offset, ms
        st.integers(1, 10**6).map(lambda c: c / 100),  # price, cents
        st.one_of(st.just(NAN), st.integers(0, 10**6).map(lambda q: q / 10**4)),  # size
    ),
    min_size=1,
    max_size=200,
)


@settings(max_examples=150, deadline=None)
@given(rows=tick_lists, interval=st.sampled_from([1, 60, 300, 3600]))
def test_random_sorted_ticks_match_a_pandas_reference(rows: list, interval: int) -> None:
    rows.sort(key=lambda r: r[0])
    ticks = [Tick("X", T0 + ts, price, size) for ts, price, size in rows]
    got = bars_to_frame(_run(ticks, interval))
    pd.testing.assert_frame_equal(got, _reference(ticks, interval))


@settings(max_examples=100, deadline=None)
@given(rows=tick_lists, seed=st.integers(0, 1000))
def test_random_in_bar_reordering_keeps_the_bars(rows: list, seed: int) -> None:
    unique = sorted({r[0]: r for r in rows}.values())  # distinct times: open/close unambiguous
    ticks = [Tick("X", T0 + ts, price, size) for ts, price, size in unique]
    groups: dict[int, list[Tick]] = {}
    for t in ticks:
        groups.setdefault(t.ts_ms // 60_000, []).append(t)
    rng = random.Random(seed)
    shuffled = [t for g in groups.values() for t in rng.sample(g, len(g))]
    agg_sorted = bars_to_frame(_run(ticks, 60))
    got = bars_to_frame(_run(shuffled, 60))
    pd.testing.assert_frame_equal(got, agg_sorted)
    assert np.array_equal(got["ts"].to_numpy(), _reference(ticks, 60)["ts"].to_numpy())
