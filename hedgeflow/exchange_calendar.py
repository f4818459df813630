"""Exchange sessions from the maintained ``exchange-calendars`` library (DESIGN.md
convention 8): holidays, early closes (13:00 ET on XNYS) and DST, never a hand-kept list.

Stocks follow their exchange's calendar (``.US`` -> XNYS); forex and crypto have no
calendar here (their hours are fixed: 24x5 and 24x7). A calendar is loaded once per
process for :data:`FIRST_DAY` .. :data:`LAST_DAY` and kept as plain int64 arrays, so a
lookup is a binary search.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np

from hedgeflow.errors import InvalidInputError
from hedgeflow.market import asset_class_of, normalize_symbol

__all__ = [
    "DEFAULT_CALENDAR",
    "EXCHANGE_CALENDARS",
    "Sessions",
    "calendar_of",
    "closed_day_reason",
    "known_calendars",
    "last_session_open",
    "sessions",
    "validate_calendar",
]

# The stock calendar of an exchange suffix; stocks of other exchanges use the default.
EXCHANGE_CALENDARS: dict[str, str] = {"US": "XNYS"}
DEFAULT_CALENDAR = "XNYS"
# The span a calendar is loaded for (the synthetic market's EPOCH..HORIZON).
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2059, 12, 31)
MS_PER_DAY = 86_400_000


@functools.cache
def known_calendars() -> tuple[str, ...]:
    import exchange_calendars

    return tuple(sorted(exchange_calendars.get_calendar_names(include_aliases=False)))


def validate_calendar(name: object) -> str:
    """``name`` if exchange-calendars knows it (XNYS, XLON, ...), else InvalidInputError."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"invalid exchange calendar {name!r}: expected a name such as XNYS")
    import exchange_calendars

    candidate = name.strip().upper()
    if candidate not in exchange_calendars.get_calendar_names(include_aliases=True):
        raise InvalidInputError(
            f"unknown exchange calendar {name!r}: expected a calendar name of the "
            f"exchange-calendars library, such as XNYS, XNAS, XLON or XTKS"
        )
    return candidate


def calendar_of(symbol: str, overrides: Mapping[str, str] | None = None) -> str | None:
    """The session calendar of a stock symbol (``AAPL.US`` -> XNYS); None for forex and
    crypto. ``overrides`` maps an exchange suffix to a calendar name."""
    sym = normalize_symbol(symbol)
    if asset_class_of(sym) != "stock":
        return None
    exchange = sym.rsplit(".", 1)[1]
    if overrides and exchange in overrides:
        return overrides[exchange]
    return EXCHANGE_CALENDARS.get(exchange, DEFAULT_CALENDAR)


@dataclass(frozen=True)
class Sessions:
    """The sessions of one calendar: per session its UTC day number (days since
    1970-01-01 of the session's local date), open and close (epoch ms, UTC)."""

    name: str
    day: np.ndarray  # int64, ascending
    open_ms: np.ndarray  # int64
    close_ms: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.day)

    def on_day(self, day: int) -> tuple[int, int] | None:
        """(open_ms, close_ms) of the session dated ``day`` (days since 1970-01-01), or
        None on a holiday or weekend."""
        i = int(np.searchsorted(self.day, day))
        if i < len(self.day) and int(self.day[i]) == day:
            return int(self.open_ms[i]), int(self.close_ms[i])
        return None

    def is_open(self, ts_ms: int) -> bool:
        """Whether the regular session is open at ``ts_ms`` (open <= t < close)."""
        i = int(np.searchsorted(self.open_ms, ts_ms, "right")) - 1
        return i >= 0 and ts_ms < int(self.close_ms[i])

    def close_at_or_before(self, ts_ms: int) -> int | None:
        """The close (ms) of the session open at ``ts_ms``, or None when closed."""
        i = int(np.searchsorted(self.open_ms, ts_ms, "right")) - 1
        if i >= 0 and ts_ms < int(self.close_ms[i]):
            return int(self.close_ms[i])
        return None

    def between(self, start_ms: int, end_ms: int) -> slice:
        """The index range of sessions that overlap ``[start_ms, end_ms)``."""
        lo = int(np.searchsorted(self.close_ms, start_ms, "right"))
        hi = int(np.searchsorted(self.open_ms, end_ms, "left"))
        return slice(lo, max(lo, hi))

    def last_closed(self, now_ms: int) -> int | None:
        """The index of the last session whose close is at or before ``now_ms``."""
        i = int(np.searchsorted(self.close_ms, now_ms, "right")) - 1
        return i if i >= 0 else None


@functools.cache
def sessions(name: str = DEFAULT_CALENDAR) -> Sessions:
    """The sessions of calendar ``name`` from FIRST_DAY to LAST_DAY (cached)."""
    import exchange_calendars

    checked = validate_calendar(name)
    with warnings.catch_warnings():
        # the library's own use of Series.values on pandas 3 (a Pandas4Warning), not ours
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        cal = exchange_calendars.get_calendar(
            checked, start=FIRST_DAY.isoformat(), end=LAST_DAY.isoformat()
        )
    sched = cal.schedule
    day = sched.index.to_numpy().astype("datetime64[D]").astype("int64")
    open_ms = sched["open"].dt.tz_convert(None).to_numpy().astype("datetime64[ms]").astype("int64")
    close_ms = (
        sched["close"].dt.tz_convert(None).to_numpy().astype("datetime64[ms]").astype("int64")
    )
    return Sessions(checked, day, open_ms, close_ms)


def closed_day_reason(
    now: datetime,
    symbols: Iterable[str],
    timezone: str = "America/New_York",
    calendars: Mapping[str, str] | None = None,
) -> str | None:
    """Why there is no new session to run on at ``now``: a one-line message when the
    local date (``timezone``: the exchange's, New York for XNYS) of ``now`` is not a
    session of the calendar of any stock among ``symbols``; None when it is, or when no
    symbol is a stock (forex and crypto have no holidays here)."""
    from zoneinfo import ZoneInfo

    overrides = dict(calendars) if calendars else None
    names = sorted({c for s in symbols if (c := calendar_of(s, overrides)) is not None})
    if not names:
        return None
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    local = now.astimezone(ZoneInfo(timezone)).date()
    day = (local - date(1970, 1, 1)).days
    closed = [n for n in names if sessions(n).on_day(day) is None]
    if len(closed) < len(names):
        return None
    what = "a weekend" if local.weekday() >= 5 else "a holiday"
    return (
        f"{local.isoformat()} is not a trading day of {', '.join(closed)} ({what}): no new "
        "session to backtest, nothing run (pass an end to run anyway)"
    )


def last_session_open(now: datetime | None = None, calendar: str = DEFAULT_CALENDAR) -> datetime:
    """The open of the last complete regular session of ``calendar`` (XNYS by default:
    09:30 America/New_York, holidays skipped, early closes honoured)."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    cal = sessions(calendar)
    i = cal.last_closed(int(now.timestamp() * 1000))
    if i is None:
        raise InvalidInputError(f"no {calendar} session closed before {now.isoformat()}")
    return datetime.fromtimestamp(int(cal.open_ms[i]) / 1000, UTC)
