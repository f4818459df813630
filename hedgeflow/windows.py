"""Time windows for runs. Without an explicit end a window ends at the last completed
bar (DESIGN.md convention 9): now floored to the bar interval, so the nightly run after
the US close includes the session that just closed. Runs store the resolved window
(``start``/``end`` in their parameters), so a run can be repeated exactly with ``--end``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pandas as pd

from hedgeflow.errors import InvalidInputError
from hedgeflow.market import interval_seconds


@dataclass(frozen=True)
class Window:
    """Half-open UTC range ``[start, end)``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value.tzinfo is None:
                raise InvalidInputError(f"window {name} must be timezone-aware UTC, got {value}")
        if self.end <= self.start:
            raise InvalidInputError(f"window end {self.end} must be after start {self.start}")

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400


def parse_utc(value: str | date | datetime | pd.Timestamp, name: str = "date") -> datetime:
    """Parse a date or datetime given by a user; naive values are UTC."""
    if isinstance(value, str):
        try:
            stamp = pd.Timestamp(value.strip())
        except (ValueError, TypeError):
            raise InvalidInputError(
                f"invalid {name} {value!r}: expected ISO format such as 2026-11-24 or "
                "2026-11-24T21:00:00Z"
            ) from None
    elif isinstance(value, datetime | pd.Timestamp):
        stamp = pd.Timestamp(value)
    elif isinstance(value, date):
        stamp = pd.Timestamp(value.isoformat())
    else:
        raise InvalidInputError(f"invalid {name} {value!r}")
    if stamp is pd.NaT or pd.isna(stamp):
        raise InvalidInputError(f"invalid {name} {value!r}")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if not (
        datetime(1990, 1, 1, tzinfo=UTC)
        <= stamp.to_pydatetime()
        <= datetime(2200, 1, 1, tzinfo=UTC)
    ):
        raise InvalidInputError(f"{name} {value!r} is out of range (1990..2200)")
    return stamp.to_pydatetime()


# One symbol's window is held in memory whole (fetched, validated, backtested): at
# most this many bars of the interval (19 years of 1-minute bars around the clock).
MAX_WINDOW_BARS = 10_000_000


def check_window_bars(days: int, interval: str) -> None:
    """Refuse a lookback whose bars per symbol (counted around the clock) pass
    MAX_WINDOW_BARS."""
    bars = days * 86_400 // interval_seconds(interval)
    if bars > MAX_WINDOW_BARS:
        most = MAX_WINDOW_BARS * interval_seconds(interval) // 86_400
        raise InvalidInputError(
            f"{days} days of {interval} bars is up to {bars:,} bars per symbol, more than "
            f"the limit of {MAX_WINDOW_BARS:,}: use at most {most} days at {interval}"
        )


def last_completed_bar_end(now: datetime, interval: str | None = None) -> datetime:
    """``now`` floored to the bar interval (the minute without one), in UTC: the end of
    the last bar that is complete at ``now`` (an injected naive ``now`` is UTC)."""
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    step = interval_seconds(interval) if interval is not None else 60
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    micros = (now - epoch) // timedelta(microseconds=1)
    return epoch + timedelta(microseconds=micros - micros % (step * 1_000_000))


def lookback_window(
    days: int,
    end: str | datetime | None = None,
    now: datetime | None = None,
    interval: str | None = None,
) -> Window:
    """The ``days`` before ``end``; ``end`` defaults to the end of the last completed
    bar: now floored to ``interval`` (to the minute without one; convention 9). With
    ``interval``, the window must hold at most MAX_WINDOW_BARS bars."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 20_000:
        raise InvalidInputError(f"days must be an integer in [1, 20000], got {days!r}")
    if interval is not None:
        check_window_bars(days, interval)
    if end is None:
        now = now or datetime.now(UTC)
        end_dt = last_completed_bar_end(now, interval)
    else:
        end_dt = parse_utc(end, "end")
    return Window(start=end_dt - timedelta(days=days), end=end_dt)
