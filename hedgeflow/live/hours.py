"""Regular-session hours of the live feed (DESIGN.md convention 8).

A stock symbol's trades outside its exchange's regular session (EODHD's ``ms`` market
status ``pre-market``, ``after-hours`` or ``closed``, or a time the calendar says is
outside a session: after the close, on a holiday) are not regular-session bars: they
are dropped before the bar aggregator and counted, so no bar opens after the close.
``extended_hours=True`` (``[live] extended_hours``) keeps them. Forex and crypto have
no session calendar and pass through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hedgeflow.exchange_calendar import Sessions, calendar_of, sessions
from hedgeflow.sources.tick import Tick

__all__ = ["EXTENDED_STATUSES", "SessionFilter"]

# EODHD US trade feed ``ms`` values that are not the regular session.
EXTENDED_STATUSES = frozenset({"pre-market", "after-hours", "closed"})


class SessionFilter:
    """``admit(tick)``: whether a tick belongs in the regular-session bars."""

    def __init__(
        self,
        symbols: Iterable[str],
        *,
        extended_hours: bool = False,
        calendars: Mapping[str, str] | None = None,
    ) -> None:
        self.extended_hours = bool(extended_hours)
        self._calendars: dict[str, Sessions] = {}
        for symbol in symbols:
            name = calendar_of(symbol, dict(calendars) if calendars else None)
            if name is not None:
                self._calendars[symbol] = sessions(name)
        self.dropped = 0
        self.dropped_by_symbol: dict[str, int] = {}

    def admit(self, tick: Tick) -> bool:
        if self.extended_hours:
            return True
        cal = self._calendars.get(tick.symbol)
        if cal is None:
            return True
        if tick.ms in EXTENDED_STATUSES or not cal.is_open(tick.ts_ms):
            self.dropped += 1
            self.dropped_by_symbol[tick.symbol] = self.dropped_by_symbol.get(tick.symbol, 0) + 1
            return False
        return True
