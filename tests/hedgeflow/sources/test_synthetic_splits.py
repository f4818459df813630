"""The synthetic market's stock splits: deterministic per (seed, symbol), stocks only,
and raw prices and sizes that jump by the ratio at the ex-date."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from hedgeflow.exchange_calendar import sessions
from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.sources.synthetic_splits import FIRST_YEAR, LAST_YEAR, RATIOS

MARKET = SyntheticMarket(7)
NEVER = SyntheticMarket(7, splits=False)


def test_the_schedule_is_deterministic_and_per_seed() -> None:
    stocks = [f"S{i}.US" for i in range(300)]
    first = [MARKET.split_schedule(s) for s in stocks]
    assert first == [SyntheticMarket(7).split_schedule(s) for s in stocks]
    assert first != [SyntheticMarket(8).split_schedule(s) for s in stocks]
    splits = [s for sched in first for s in sched]
    # about YEARLY_RATE x 59 years per stock; every draw on a weekday, in range, known ratio
    assert 3.0 < len(splits) / len(stocks) < 6.5
    open_days = {date(1970, 1, 1) + timedelta(days=int(d)) for d in sessions("XNYS").day}
    assert all(s.ex_date in open_days for s in splits)  # ex-dates are trading days
    assert all(FIRST_YEAR <= s.ex_date.year <= LAST_YEAR + 1 for s in splits)
    assert {(s.new, s.old) for s in splits} == {(n, o) for n, o, _ in RATIOS}
    assert all(list(sched) == sorted(sched) for sched in first)


def test_only_stocks_split() -> None:
    for symbol in ("EURUSD.FOREX", "BTC-USD.CC"):
        assert MARKET.split_schedule(symbol) == ()
        assert MARKET.fetch_splits(symbol, date(2000, 1, 1), date(2060, 1, 1)) == []
    assert NEVER.split_schedule("AAPL.US") == ()


def test_fetch_splits_filters_by_ex_date() -> None:
    sched = MARKET.split_schedule("VTI.US")
    assert len(sched) >= 3
    one = sched[1].ex_date
    assert MARKET.fetch_splits("VTI.US", one, one) == [sched[1]]
    assert MARKET.fetch_splits("VTI.US", date(2000, 1, 1), one) == list(sched[:2])


@pytest.mark.parametrize("symbol", ["VTI.US", "MSFT.US", "S152.US"])
def test_raw_ticks_jump_by_the_ratio_at_each_ex_date(symbol: str) -> None:
    for split in MARKET.split_schedule(symbol)[:3]:
        lo = datetime.combine(split.ex_date - timedelta(days=4), datetime.min.time(), UTC)
        hi = datetime.combine(split.ex_date + timedelta(days=3), datetime.min.time(), UTC)
        raw, never = MARKET.ticks(symbol, lo, hi), NEVER.ticks(symbol, lo, hi)
        assert np.array_equal(raw.ts_ms, never.ts_ms)
        ex_ms = (split.ex_date - date(1970, 1, 1)).days * 86_400_000
        before_split = raw.ts_ms < ex_ms
        ratio = raw.price[before_split][0] / never.price[before_split][0]
        # the earlier splits divide both sides; this one divides only from its ex-date
        assert np.allclose(raw.price[before_split] / never.price[before_split], ratio)
        assert np.allclose(
            raw.price[~before_split] / never.price[~before_split], ratio / split.ratio
        )
        assert np.allclose(raw.size[~before_split] / never.size[~before_split], split.ratio / ratio)
