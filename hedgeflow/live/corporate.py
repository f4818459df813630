"""Corporate actions during a live run: the stock splits ahead of its first day.

The warm-up history is read split-adjusted to the day the run starts on (the ingest
stores the splits up to then). A split whose ex-date comes while the run goes on is
given to its agent in advance (:attr:`LiveAgent.splits_ahead`): at the first bar of
that day the agent multiplies its position by the ratio and divides its prices
(:meth:`LiveAgent.apply_split`), so the raw price jump is not a crash. The vendor is
asked once per stock, for ``horizon_days`` ahead; a split it announces later (or
never in advance) is only picked up by the next run's warm-up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta

import pandas as pd

from hedgeflow.errors import SourceError
from hedgeflow.live.agent import LiveAgent
from hedgeflow.market import asset_class_of
from hedgeflow.splits import EXCHANGE_TZ, Split

SplitFetcher = Callable[[str, date, date], Sequence[Split]]
HORIZON_DAYS = 60


def announce_splits(
    agents: Sequence[LiveAgent],
    fetch: SplitFetcher,
    begin: datetime,
    horizon_days: int = HORIZON_DAYS,
) -> list[str]:
    """Set each stock agent's ``splits_ahead`` (ex-dates after the live clock's first New
    York day, within ``horizon_days``); one warning per symbol the vendor could not
    answer for (that agent trades on without them)."""
    day = pd.Timestamp(begin).tz_convert(EXCHANGE_TZ).date()
    first, last = day + timedelta(days=1), day + timedelta(days=horizon_days)
    warnings: list[str] = []
    cache: dict[str, list[Split]] = {}
    for agent in agents:
        if asset_class_of(agent.symbol) != "stock":
            continue
        if agent.symbol not in cache:
            try:
                ahead = fetch(agent.symbol, first, last)
                cache[agent.symbol] = [s for s in ahead if s.ex_date > day]
            except SourceError as exc:
                warnings.append(f"{agent.symbol}: splits ahead unknown ({exc})")
                cache[agent.symbol] = []
        agent.splits_ahead = list(cache[agent.symbol])
    return warnings
