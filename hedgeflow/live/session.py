"""The US regular session the simulated clock starts at by default."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from datetime import time as dtime

__all__ = ["last_session_open"]


def last_session_open(now: datetime | None = None) -> datetime:
    """The open (09:30 America/New_York) of the last complete US regular session
    (weekday, 09:30-16:00; holidays ignored, like the synthetic market): where the
    simulated clock starts by default, so stocks, forex and crypto all trade at once
    and every bar before it is history."""
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")
    now = now or datetime.now(UTC)
    day = now.astimezone(ny).date()
    for _ in range(10):
        if day.weekday() < 5:
            close = datetime.combine(day, dtime(16, 0), ny)
            if close <= now:
                return datetime.combine(day, dtime(9, 30), ny).astimezone(UTC)
        day -= timedelta(days=1)
    raise AssertionError("no weekday in ten days")  # pragma: no cover
