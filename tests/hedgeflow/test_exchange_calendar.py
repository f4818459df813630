"""XNYS sessions from exchange-calendars (DESIGN.md convention 8): holidays, early
closes at 13:00 ET and DST; unknown calendar names; the nightly's trading-day rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from hedgeflow.errors import InvalidInputError
from hedgeflow.exchange_calendar import (
    calendar_of,
    closed_day_reason,
    last_session_open,
    sessions,
    validate_calendar,
)

DEFAULT_SYMBOLS = ("AAPL.US", "EURUSD.FOREX", "BTC-USD.CC")


def ms(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").value // 1_000_000)


def day(text: str) -> int:
    return (pd.Timestamp(text) - pd.Timestamp("1970-01-01")).days


def test_xnys_sessions_holidays_early_closes_and_dst() -> None:
    xnys = sessions("XNYS")
    assert xnys.on_day(day("2025-12-25")) is None  # Christmas
    assert xnys.on_day(day("2025-11-27")) is None  # Thanksgiving
    assert xnys.on_day(day("2025-11-29")) is None  # a Saturday
    assert xnys.on_day(day("2025-11-28")) == (ms("2025-11-28 14:30"), ms("2025-11-28 18:00"))
    assert xnys.on_day(day("2025-01-15")) == (ms("2025-01-15 14:30"), ms("2025-01-15 21:00"))
    assert xnys.on_day(day("2025-07-15")) == (ms("2025-07-15 13:30"), ms("2025-07-15 20:00"))
    # 2025 had 250 sessions (the hand-free weekday count is 261)
    in_2025 = xnys.between(ms("2025-01-01"), ms("2026-01-01"))
    assert in_2025.stop - in_2025.start == 250
    assert xnys.is_open(ms("2025-11-28 17:59")) and not xnys.is_open(ms("2025-11-28 18:00"))


def test_calendar_of_symbols() -> None:
    assert calendar_of("AAPL.US") == "XNYS"
    assert calendar_of("EURUSD.FOREX") is None and calendar_of("BTC-USD.CC") is None
    assert calendar_of("VOD.LSE", {"LSE": "XLON"}) == "XLON"


@pytest.mark.parametrize("name", ["XNYZ", "", "nyse?", 7])
def test_an_unknown_calendar_is_a_one_line_error(name: object) -> None:
    with pytest.raises(InvalidInputError) as err:
        validate_calendar(name)
    assert "\n" not in str(err.value) and "calendar" in str(err.value)
    assert validate_calendar(" xnys ") == "XNYS"


def test_last_session_open_skips_holidays() -> None:
    # Boxing Day morning: the last complete session is Christmas Eve's (an early close)
    assert last_session_open(datetime(2025, 12, 26, 12, tzinfo=UTC)) == datetime(
        2025, 12, 24, 14, 30, tzinfo=UTC
    )
    # after the early close of 28 Nov 2025 (18:00 UTC) that session counts
    assert last_session_open(datetime(2025, 11, 28, 18, 0, tzinfo=UTC)) == datetime(
        2025, 11, 28, 14, 30, tzinfo=UTC
    )
    assert last_session_open(datetime(2025, 11, 28, 17, 59, tzinfo=UTC)) == datetime(
        2025, 11, 26, 14, 30, tzinfo=UTC
    )


def test_closed_day_reason() -> None:
    christmas = datetime(2025, 12, 25, 22, 30, tzinfo=UTC)
    assert closed_day_reason(christmas, DEFAULT_SYMBOLS) == (
        "2025-12-25 is not a trading day of XNYS (a holiday): no new session to backtest, "
        "nothing run (pass an end to run anyway)"
    )
    assert "(a weekend)" in (
        closed_day_reason(datetime(2025, 12, 27, 22, tzinfo=UTC), ["AAPL.US"]) or ""
    )
    # an ordinary day, or the early-close day, is a trading day
    assert closed_day_reason(datetime(2025, 12, 24, 22, 30, tzinfo=UTC), DEFAULT_SYMBOLS) is None
    # the New York date decides: 01:00 UTC on the 26th is still the 25th in New York
    assert closed_day_reason(datetime(2025, 12, 26, 1, tzinfo=UTC), DEFAULT_SYMBOLS) is not None
    # no stock: no calendar, never closed
    assert closed_day_reason(christmas, ["BTC-USD.CC", "EURUSD.FOREX"]) is None
