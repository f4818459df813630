"""The US regular session the simulated clock starts at by default."""

from __future__ import annotations

from datetime import datetime

from hedgeflow.exchange_calendar import last_session_open as _last_open

__all__ = ["last_session_open"]


def last_session_open(now: datetime | None = None) -> datetime:
    """The open (09:30 America/New_York) of the last complete XNYS regular session
    (holidays skipped, early closes at 13:00 honoured; DESIGN.md convention 8): where
    the simulated clock starts by default, so stocks, forex and crypto all trade at
    once and every bar before it is history."""
    return _last_open(now, "XNYS")
