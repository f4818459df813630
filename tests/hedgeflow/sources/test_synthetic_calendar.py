"""The synthetic stock market follows XNYS (DESIGN.md convention 8): no bars on
holidays, 13:00 ET early closes, the session moving with US DST."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from hedgeflow.sources.synthetic import SyntheticMarket

MARKET = SyntheticMarket(7)


def last_bar(day: str) -> pd.Timestamp:
    start = pd.Timestamp(day, tz="UTC")
    bars = MARKET.fetch_bars("AAPL.US", "5m", start, start + pd.Timedelta(days=1))
    return bars["ts"].iloc[-1]


def test_no_aapl_bars_on_christmas() -> None:
    bars = MARKET.fetch_bars(
        "AAPL.US", "5m", datetime(2025, 12, 25, tzinfo=UTC), datetime(2025, 12, 26, tzinfo=UTC)
    )
    assert bars.empty


def test_2025_has_the_nyse_sessions() -> None:
    bars = MARKET.fetch_bars(
        "AAPL.US", "1h", datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert bars["ts"].dt.date.nunique() == 250


@pytest.mark.parametrize(
    ("day", "last"),
    [
        ("2025-11-28", "2025-11-28 17:55"),  # the day after Thanksgiving: 13:00 ET close
        ("2025-12-24", "2025-12-24 17:55"),  # Christmas Eve: 13:00 ET close
        ("2025-01-15", "2025-01-15 20:55"),  # winter (EST): 16:00 ET = 21:00 UTC
        ("2025-07-15", "2025-07-15 19:55"),  # summer (EDT): 16:00 ET = 20:00 UTC
    ],
)
def test_the_last_5m_bar_of_a_session(day: str, last: str) -> None:
    assert last_bar(day) == pd.Timestamp(last, tz="UTC")


def test_an_early_close_still_opens_at_0930() -> None:
    start = pd.Timestamp("2025-11-28", tz="UTC")
    bars = MARKET.fetch_bars("AAPL.US", "5m", start, start + pd.Timedelta(days=1))
    assert bars["ts"].iloc[0] == pd.Timestamp("2025-11-28 14:30", tz="UTC")
    assert len(bars) == 42  # 3.5 hours of 5-minute bars
