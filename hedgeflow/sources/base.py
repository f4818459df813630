"""The MarketSource protocol and the helpers every source shares.

A bars frame has exactly the columns ``BAR_COLUMNS`` (ts, open, high, low,
close, volume), ``ts`` as ``datetime64[us, UTC]`` stamped at the bar's OPEN
time, float64 prices and volume (NaN volume where the vendor sends null),
a RangeIndex, sorted by ts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from hedgeflow.columns import BAR_COLUMNS, CLOSE, HIGH, LOW, OPEN, TS, TS_DTYPE, VOLUME
from hedgeflow.errors import InvalidInputError
from hedgeflow.market import asset_class_of, normalize_symbol, validate_interval
from hedgeflow.splits import Split

_UNIX_EPOCH = pd.Timestamp(0, tz="UTC")


@runtime_checkable
class MarketSource(Protocol):
    name: str  # "synthetic" | "eodhd" | "simulator"

    def fetch_bars(
        self, symbol: str, interval: str, start: datetime, end: datetime
    ) -> pd.DataFrame: ...


@dataclass(frozen=True)
class Fetched:
    """What one fetch returned: the bars, and the ``[lo, hi)`` ranges for which the
    vendor answered with no bars at all.

    An empty answer cannot be told from a closed market, so it is never taken as
    "there are no bars here": the ingest keeps whatever is stored in those ranges and
    reports them (DESIGN.md convention 8).
    """

    bars: pd.DataFrame
    empty: tuple[tuple[pd.Timestamp, pd.Timestamp], ...] = ()


def fetch(
    source: MarketSource, symbol: str, interval: str, start: datetime, end: datetime
) -> Fetched:
    """``source.fetch_report`` where the source has one (the EODHD client), else its
    bars with no empty ranges (a source that knows its own sessions, e.g. synthetic)."""
    report = getattr(source, "fetch_report", None)
    if report is not None:
        result = report(symbol, interval, start, end)
        assert isinstance(result, Fetched)
        return result
    return Fetched(source.fetch_bars(symbol, interval, start, end))


# The splits every stock ingest asks for: all of them up to the window's end (one
# request), because a split adjusts every bar before it, however old.
SPLITS_SINCE = date(2000, 1, 1)


def fetch_splits(source: MarketSource, symbol: str, until: date) -> list[Split] | None:
    """The stock ``symbol``'s splits with ex-dates up to ``until``, from a source that
    reports splits (EODHD's ``/splits``, the synthetic market); None for other symbols
    and sources."""
    get = getattr(source, "fetch_splits", None)
    if get is None or asset_class_of(symbol) != "stock":
        return None
    return list(get(symbol, SPLITS_SINCE, until))


def to_utc(value: datetime | pd.Timestamp, what: str = "timestamp") -> pd.Timestamp:
    """A tz-aware datetime as a microsecond UTC Timestamp; naive values are rejected."""
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(
            f"{what} {value!s} is naive: pass a timezone-aware UTC datetime "
            "(e.g. datetime(..., tzinfo=timezone.utc))"
        )
    ts = pd.Timestamp(value).tz_convert("UTC")
    return ts.as_unit("us")


def check_request(
    symbol: str, interval: str, start: datetime, end: datetime
) -> tuple[str, str, pd.Timestamp, pd.Timestamp]:
    """Validate a fetch_bars request before any I/O; returns normalised values."""
    sym = normalize_symbol(symbol)
    validate_interval(interval)
    start_ts = to_utc(start, "start")
    end_ts = to_utc(end, "end")
    if end_ts < start_ts:
        raise InvalidInputError(f"end {end_ts} is before start {start_ts}")
    return sym, interval, start_ts, end_ts


def epoch_us(ts: pd.Timestamp) -> int:
    """Microseconds since the Unix epoch of a UTC Timestamp."""
    return (ts - _UNIX_EPOCH) // pd.Timedelta(1, "us")


def bars_frame(
    ts_us: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
) -> pd.DataFrame:
    """Build a bars frame from epoch-microsecond timestamps and float columns."""
    ts = pd.DatetimeIndex(np.asarray(ts_us, dtype="int64").view("datetime64[us]"), tz="UTC")
    return pd.DataFrame(
        {
            TS: ts,
            OPEN: np.asarray(open_, dtype="float64"),
            HIGH: np.asarray(high, dtype="float64"),
            LOW: np.asarray(low, dtype="float64"),
            CLOSE: np.asarray(close, dtype="float64"),
            VOLUME: np.asarray(volume, dtype="float64"),
        },
        columns=list(BAR_COLUMNS),
    )


def empty_bars() -> pd.DataFrame:
    empty = np.empty(0, dtype="float64")
    frame = bars_frame(np.empty(0, dtype="int64"), empty, empty, empty, empty, empty)
    assert str(frame[TS].dtype) == TS_DTYPE
    return frame
