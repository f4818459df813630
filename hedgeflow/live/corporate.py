"""Corporate actions during a live run: the stock splits ahead.

The warm-up history is read split-adjusted to the day the run starts on (the ingest
stores the splits up to then). A split whose ex-date comes while the run goes on is
given to its agent in advance (:attr:`LiveAgent.splits_ahead`): at the first bar of
that day the agent multiplies its position by the ratio and divides its prices
(:meth:`LiveAgent.apply_split`), so the raw price jump is not a crash.

The vendor is asked per stock for ``horizon_days`` ahead when the run starts
(:func:`announce_splits`), then again on every new New York day of the live clock
(:class:`SplitRefresh`, in a background thread: a slow vendor never holds up the
bars), so a split announced after the run started still reaches its agent before its
ex-date. A split the vendor never announces before its ex-date is only picked up by
the next run's warm-up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta

import pandas as pd

from hedgeflow.errors import SourceError
from hedgeflow.live.agent import LiveAgent
from hedgeflow.market import asset_class_of
from hedgeflow.splits import EXCHANGE_TZ, Split

__all__ = ["HORIZON_DAYS", "SplitFetcher", "SplitRefresh", "announce_splits", "new_york_day"]

SplitFetcher = Callable[[str, date, date], Sequence[Split]]
HORIZON_DAYS = 60


def new_york_day(ts: datetime | pd.Timestamp) -> date:
    """The New York calendar day of a UTC instant (ex-dates are exchange days)."""
    return pd.Timestamp(ts).tz_convert(EXCHANGE_TZ).date()


def announce_splits(
    agents: Sequence[LiveAgent],
    fetch: SplitFetcher,
    begin: datetime,
    horizon_days: int = HORIZON_DAYS,
    *,
    after: date | None = None,
) -> list[str]:
    """Set each stock agent's ``splits_ahead``: the splits with an ex-date after
    ``after`` (default: the New York day of ``begin``, which the warm-up history is
    adjusted to) and after the last day the agent processed, within ``horizon_days``,
    never one it applied already. One warning per symbol the vendor could not answer
    for (that agent keeps the splits it knew)."""
    day = after if after is not None else new_york_day(begin)
    first, last = day + timedelta(days=1), day + timedelta(days=horizon_days)
    warnings: list[str] = []
    cache: dict[str, list[Split] | None] = {}
    for agent in agents:
        if asset_class_of(agent.symbol) != "stock":
            continue
        if agent.symbol not in cache:
            try:
                cache[agent.symbol] = list(fetch(agent.symbol, first, last))
            except SourceError as exc:
                warnings.append(f"{agent.symbol}: splits ahead unknown ({exc})")
                cache[agent.symbol] = None
        fetched = cache[agent.symbol]
        if fetched is None:
            continue
        done = agent.processed_day
        floor = day if done is None or done < day else done
        agent.splits_ahead = sorted(
            s for s in fetched if s.ex_date > floor and s not in agent.splits_applied
        )
    return warnings


class SplitRefresh:
    """Asks the vendor again for the stock agents' splits ahead once per New York day
    of the live clock (:meth:`on_clock`, from the runtime's status callback), in a
    background thread; ``on_warning`` gets the symbols it could not ask for."""

    def __init__(
        self,
        agents: Sequence[LiveAgent],
        fetch: SplitFetcher,
        begin: datetime,
        on_warning: Callable[[str], None],
        horizon_days: int = HORIZON_DAYS,
    ) -> None:
        self._agents = [a for a in agents if asset_class_of(a.symbol) == "stock"]
        self._fetch = fetch
        self._asked = new_york_day(begin)  # announce_splits covered the first day
        self._on_warning = on_warning
        self._horizon = horizon_days
        self._thread: threading.Thread | None = None
        self.refreshes = 0  # refreshes finished

    def on_clock(self, clock: datetime | pd.Timestamp) -> bool:
        """Start a refresh when the clock reached a New York day not asked for yet
        (and none is running); True when one started."""
        if not self._agents:
            return False
        day = new_york_day(clock)
        if day <= self._asked or (self._thread is not None and self._thread.is_alive()):
            return False
        self._asked = day
        self._thread = threading.Thread(
            target=self._refresh, args=(day,), name="hedgeflow-splits", daemon=True
        )
        self._thread.start()
        return True

    def _refresh(self, day: date) -> None:
        # ex-dates from the new day on: its first bar has not come yet (a stock session
        # opens hours after midnight in New York), or the agent skips it (processed_day)
        after = day - timedelta(days=1)
        try:
            warnings = announce_splits(
                self._agents, self._fetch, datetime.now(), self._horizon, after=after
            )
        except Exception as exc:  # the run goes on without the refresh
            warnings = [f"splits ahead not refreshed ({type(exc).__name__}: {exc})"]
        for warning in warnings:
            self._on_warning(warning)
        self.refreshes += 1

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
