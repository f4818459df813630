"""The default window end (README: "`--end` defaults to the start of the current UTC
day, so running a command twice on one day covers exactly the same bars"), with the
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
    "now",
    [
        DAY,  # midnight itself
        DAY + timedelta(hours=13, minutes=30),
        DAY + timedelta(hours=23, minutes=59, seconds=59, microseconds=999_999),
    ],
)
def test_default_end_is_the_start_of_the_current_utc_day(
    monkeypatch: pytest.MonkeyPatch, now: datetime
) -> None:
    calls = frozen_clock(monkeypatch, now)
    window = lookback_window(10)
    assert calls == [UTC]  # the clock is read once, in UTC
    assert window == Window(DAY - timedelta(days=10), DAY)
    assert window.end.tzinfo is not None and window.end.utcoffset() == timedelta(0)
    assert window.days == 10


def test_two_runs_on_one_utc_day_cover_the_same_window_and_the_next_day_moves_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frozen_clock(monkeypatch, DAY + timedelta(minutes=1))
    morning = lookback_window(30)
    frozen_clock(monkeypatch, DAY + timedelta(hours=23, minutes=59))
    evening = lookback_window(30)
    assert morning == evening == Window(DAY - timedelta(days=30), DAY)
    frozen_clock(monkeypatch, DAY + timedelta(days=1))  # one microsecond later
    tomorrow = lookback_window(30)
    assert tomorrow == Window(DAY - timedelta(days=29), DAY + timedelta(days=1))


def test_the_utc_day_decides_not_the_local_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # 20:00 in New York on the 24th is 01:00 UTC on the 25th: the window ends on the 25th
    ny_evening = datetime(2026, 11, 24, 20, 0, tzinfo=ZoneInfo("America/New_York"))
    frozen_clock(monkeypatch, ny_evening)
    assert lookback_window(5).end == DAY + timedelta(days=1)
    # the injected clock obeys the same rule, whatever its time zone (naive = UTC)
    assert lookback_window(5, now=ny_evening).end == DAY + timedelta(days=1)
    assert lookback_window(5, now=datetime(2026, 11, 24, 23, 59)).end == DAY
    tokyo_morning = datetime(2026, 11, 25, 8, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # 23:00Z 24th
    assert lookback_window(5, now=tokyo_morning).end == DAY


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
