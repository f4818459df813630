"""The default window end (DESIGN.md convention 9: the last completed bar, now floored
to the interval), with the
clock under the test's control: either injected (``now=``) or the module's own
``datetime.now`` replaced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest

import hedgeflow.windows as windows
from hedgeflow.cli import _end_arg
from hedgeflow.errors import InvalidInputError
from hedgeflow.windows import Window, lookback_window

DAY = datetime(2026, 11, 24, tzinfo=UTC)  # a Tuesday


def frozen_clock(monkeypatch: pytest.MonkeyPatch, at: datetime) -> list[object]:
    """Make ``hedgeflow.windows`` read ``at`` as the current time; returns the tz
    arguments its ``datetime.now`` was called with."""
    calls: list[object] = []

    class FrozenDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> FrozenDatetime:
            calls.append(tz)
            moment = at if tz is None else at.astimezone(tz)
            return cls.fromtimestamp(moment.timestamp(), moment.tzinfo)

    monkeypatch.setattr(windows, "datetime", FrozenDatetime)
    return calls


@pytest.mark.parametrize(
    ("now", "end"),
    [
        (DAY, DAY),  # midnight itself: the bar before it is complete
        (DAY + timedelta(hours=13, minutes=30), DAY + timedelta(hours=13, minutes=30)),
        (DAY + timedelta(hours=21, minutes=4, seconds=59), DAY + timedelta(hours=21)),
        (
            DAY + timedelta(hours=23, minutes=59, seconds=59, microseconds=999_999),
            DAY + timedelta(hours=23, minutes=55),
        ),
    ],
)
def test_default_end_is_the_last_completed_bar(
    monkeypatch: pytest.MonkeyPatch, now: datetime, end: datetime
) -> None:
    """Convention 9: without an end a window ends at the last completed bar (now
    floored to the interval), not at the start of the UTC day."""
    calls = frozen_clock(monkeypatch, now)
    window = lookback_window(10, interval="5m")
    assert calls == [UTC]  # the clock is read once, in UTC
    assert window == Window(end - timedelta(days=10), end)
    assert window.end.tzinfo is not None and window.end.utcoffset() == timedelta(0)
    assert window.days == 10


def test_the_interval_decides_the_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    now = DAY + timedelta(hours=21, minutes=37, seconds=12)
    frozen_clock(monkeypatch, now)
    assert lookback_window(1, interval="1h").end == DAY + timedelta(hours=21)
    assert lookback_window(1, interval="5m").end == DAY + timedelta(hours=21, minutes=35)
    assert lookback_window(1, interval="1m").end == DAY + timedelta(hours=21, minutes=37)
    assert lookback_window(1).end == DAY + timedelta(hours=21, minutes=37)  # the minute


def test_the_nightly_after_the_close_includes_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    # 17:30 in New York (the nightly cron) on the 24th is 22:30 UTC: the window ends
    # after the 21:00 UTC close, so that day's session is in it
    ny_evening = datetime(2026, 11, 24, 17, 30, tzinfo=ZoneInfo("America/New_York"))
    frozen_clock(monkeypatch, ny_evening)
    assert lookback_window(5, interval="5m").end == DAY + timedelta(hours=22, minutes=30)
    # the injected clock obeys the same rule, whatever its time zone (naive = UTC)
    assert lookback_window(5, now=ny_evening, interval="5m").end == DAY + timedelta(
        hours=22, minutes=30
    )
    assert lookback_window(
        5, now=datetime(2026, 11, 24, 23, 59), interval="1h"
    ).end == DAY + timedelta(hours=23)
    tokyo_morning = datetime(2026, 11, 25, 8, 2, tzinfo=ZoneInfo("Asia/Tokyo"))  # 23:02Z 24th
    assert lookback_window(5, now=tokyo_morning, interval="5m").end == DAY + timedelta(hours=23)


def test_an_explicit_end_ignores_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = frozen_clock(monkeypatch, DAY)
    window = lookback_window(3, "2025-01-10T12:00:00Z")
    assert calls == []
    assert window == Window(
        datetime(2025, 1, 7, 12, tzinfo=UTC), datetime(2025, 1, 10, 12, tzinfo=UTC)
    )
    # a date without a time is that day's midnight UTC, like the default end
    assert lookback_window(3, "2025-01-10").end == datetime(2025, 1, 10, tzinfo=UTC)


def test_no_end_on_the_command_line_reaches_the_flow_as_none() -> None:
    # the CLI passes None on, so the flow's lookback_window applies the default end
    assert _end_arg(None) is None
    assert _end_arg("2025-01-10") == datetime(2025, 1, 10, tzinfo=UTC)
    with pytest.raises(InvalidInputError, match="invalid --end 'yesterday'"):
        _end_arg("yesterday")
