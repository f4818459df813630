"""The synthetic market's stock splits: occasional, deterministic per (seed, symbol).

Each year from ``FIRST_YEAR`` a stock splits with probability ``YEARLY_RATE``, on a day
drawn for that year (moved to the next XNYS session), with a ratio drawn from ``RATIOS``
(mostly forward splits, some reverse ones). A year's draw depends only on
``(seed, symbol, year)``, so the schedule never changes when a range is extended.

Raw prices follow the schedule: a tick on or after an ex-date is the unsplit quote
divided by the cumulative ratio of the splits so far, its size multiplied by it (the
vendor's unadjusted bars; ``hedgeflow.splits`` adjusts them back). The divided quote is
not rounded to the tick again, so that adjusting gives back the never-split market
exactly; a price after a split is on the grid of the tick divided by that ratio.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from hedgeflow.exchange_calendar import DEFAULT_CALENDAR, sessions
from hedgeflow.splits import Split

FIRST_YEAR = 2001
LAST_YEAR = 2059
YEARLY_RATE = 0.08
# (new shares, old shares, probability)
RATIOS: tuple[tuple[float, float, float], ...] = (
    (2.0, 1.0, 0.40),
    (3.0, 1.0, 0.15),
    (4.0, 1.0, 0.20),
    (3.0, 2.0, 0.10),
    (1.0, 4.0, 0.05),
    (1.0, 10.0, 0.10),
)
_SALT = 0x5B117
_UNIX = date(1970, 1, 1)


def split_schedule(seed_key: int, symbol_key: int) -> tuple[Split, ...]:
    """Every split of one stock, oldest first."""
    weights = np.array([p for _, _, p in RATIOS])
    weights = weights / weights.sum()
    out = []
    for year in range(FIRST_YEAR, LAST_YEAR + 1):
        rng = np.random.default_rng([seed_key, symbol_key, _SALT, year])
        if rng.random() >= YEARLY_RATE:
            continue
        drawn = date(year, 1, 1) + timedelta(days=int(rng.integers(0, 365)))
        day = _first_session_from(drawn)
        if day is None:
            continue
        new, old, _ = RATIOS[int(rng.choice(len(RATIOS), p=weights))]
        out.append(Split(day, new, old))
    return tuple(out)


def _first_session_from(day: date) -> date | None:
    """The first XNYS session on or after ``day`` (an ex-date is a trading day)."""
    days = sessions(DEFAULT_CALENDAR).day
    i = int(np.searchsorted(days, (day - _UNIX).days))
    return _UNIX + timedelta(days=int(days[i])) if i < len(days) else None


def divisors(schedule: tuple[Split, ...], ts_ms: np.ndarray) -> np.ndarray | None:
    """Per tick, the cumulative ratio of the splits with ex-date on or before its UTC
    date (US sessions lie inside one UTC date); None when every divisor is 1."""
    if not schedule or len(ts_ms) == 0:
        return None
    ex_ms = np.array(
        [(s.ex_date - date(1970, 1, 1)).days * 86_400_000 for s in schedule], dtype="int64"
    )
    done = np.searchsorted(ex_ms, ts_ms, side="right")  # splits in effect at each tick
    if not done.any():
        return None
    cumulative = np.ones(len(schedule) + 1)
    for k, s in enumerate(schedule):
        cumulative[k + 1] = cumulative[k] * s.ratio
    return np.asarray(cumulative[done])
