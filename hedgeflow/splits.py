"""Stock splits: the vendor's format, and split-adjusted bars.

EODHD's intraday bars are **not** adjusted: a 4-for-1 split reads as a 75% drop. A
split is ``new_shares / old_shares`` from its ex-date, the first session trading on the
new basis (``../shared/EODHD.md``, "Splits"). Adjusting a bar divides its prices by, and
multiplies its volume by, the cumulative ratio of the splits **after** it (ex-date later
than the bar's session date), so the latest bars keep their raw prices and a series that
splits reads as one that never did.

A bar's session date is its date on the exchange's clock (America/New_York for US
stocks): an after-hours bar at 20:30 New York (00:30 UTC the next day) still belongs
to the session before the ex-date.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from hedgeflow.columns import PRICE_COLUMNS, TS, VOLUME
from hedgeflow.errors import DataFormatError

EXCHANGE_TZ = "America/New_York"
# "4.000000/1.000000": new shares / old shares, each a positive decimal number.
_RATIO_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*/\s*(\d+(?:\.\d*)?|\.\d+)\s*")


@dataclass(frozen=True, order=True)
class Split:
    """One split: from ``ex_date`` on, each old share is ``new / old`` shares."""

    ex_date: date
    new: float
    old: float

    @property
    def ratio(self) -> float:
        return self.new / self.old

    def vendor_text(self) -> str:
        """The ratio as EODHD writes it (``4.000000/1.000000``)."""
        return f"{self.new:.6f}/{self.old:.6f}"


def parse_ratio(text: object, where: str) -> tuple[float, float]:
    """(new, old) of a vendor ratio; zero, negative, non-finite or malformed is refused
    naming ``where`` and the value."""
    match = _RATIO_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise DataFormatError(f"{where}: split ratio {text!r} is not 'new/old' shares")
    new, old = float(match.group(1)), float(match.group(2))
    if not (new > 0 and old > 0 and math.isfinite(new) and math.isfinite(old)):
        raise DataFormatError(f"{where}: split ratio {text!r} must be two positive numbers")
    if new == old:
        raise DataFormatError(f"{where}: split ratio {text!r} changes nothing (1 for 1)")
    return new, old


def parse_splits_json(body: bytes, symbol: str) -> list[Split]:
    """EODHD's ``/splits`` answer: ``[{"date": "2020-08-31", "split": "4.000000/1.000000"}]``
    (possibly empty). Anything else is a ``DataFormatError`` naming the entry."""
    where = f"the splits answer for {symbol}"
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise DataFormatError(f"{where}: the answer is not JSON") from None
    if not isinstance(data, list):
        raise DataFormatError(f"{where}: expected a JSON array, got {type(data).__name__}")
    out: dict[date, Split] = {}
    for i, entry in enumerate(data):
        at = f"{where}, entry {i + 1}"
        if not isinstance(entry, dict):
            raise DataFormatError(f"{at}: expected an object, got {type(entry).__name__}")
        raw_date = entry.get("date")
        try:
            ex_date = date.fromisoformat(raw_date) if isinstance(raw_date, str) else None
        except ValueError:
            ex_date = None
        if ex_date is None:
            raise DataFormatError(f"{at}: date {raw_date!r} is not YYYY-MM-DD")
        new, old = parse_ratio(entry.get("split"), at)
        out[ex_date] = Split(ex_date, new, old)  # a repeated date: the later entry wins
    return sorted(out.values())


def render_splits_json(splits: Iterable[Split]) -> bytes:
    """The vendor's format, oldest first (the simulator's answer)."""
    rows = [{"date": s.ex_date.isoformat(), "split": s.vendor_text()} for s in sorted(splits)]
    return json.dumps(rows).encode()


def session_dates(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """``datetime64[D]`` session date of each UTC timestamp, on the exchange's clock."""
    index = pd.DatetimeIndex(ts)
    local = index.tz_convert(EXCHANGE_TZ).tz_localize(None)
    return np.asarray(local.values.astype("datetime64[D]"))


def adjustment_factors(ts: pd.Series | pd.DatetimeIndex, splits: Sequence[Split]) -> np.ndarray:
    """Per bar, the product of the ratios of the splits whose ex-date is after the bar's
    session date (1.0 where none is). The product runs from the latest split back."""
    n = len(ts)
    if not splits or n == 0:
        return np.ones(n)
    ordered = sorted(splits)
    ex = np.array([s.ex_date for s in ordered], dtype="datetime64[D]")
    after = np.ones(len(ordered) + 1)  # after[k]: product of the ratios of splits k..end
    for k in range(len(ordered) - 1, -1, -1):
        after[k] = ordered[k].ratio * after[k + 1]
    first_later = np.searchsorted(ex, session_dates(ts), side="right")
    return np.asarray(after[first_later])


def adjust_bars(bars: pd.DataFrame, splits: Sequence[Split]) -> pd.DataFrame:
    """``bars`` with prices divided and volume multiplied by :func:`adjustment_factors`;
    the frame itself when no split applies (no copy)."""
    if not splits or bars.empty:
        return bars
    factor = adjustment_factors(bars[TS], splits)
    if bool((factor == 1.0).all()):
        return bars
    out = bars.copy()
    for col in PRICE_COLUMNS:
        out[col] = out[col].to_numpy(dtype="float64") / factor
    if VOLUME in out.columns:
        out[VOLUME] = out[VOLUME].to_numpy(dtype="float64") * factor
    return out
