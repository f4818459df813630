"""The ``splits`` table: one row per (symbol, ex_date), as the vendor reported it.

Stored in the lake (``lake/splits/symbol=<s>/splits.parquet``, one file per stock),
read by the ``splits`` and ``bars_adjusted`` views and by every adjusted bars read.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.engines import pandas_engine
from pandera.typing import Series

from hedgeflow.schemas._base import SYMBOL_PATTERN, TableModel, ts_field

SPLIT_COLUMNS: tuple[str, ...] = (
    "symbol",
    "ex_date",
    "new_shares",
    "old_shares",
    "ratio",
    "source",
    "ingested_at",
)


class Splits(TableModel):
    """A split: from ``ex_date`` on, each old share is ``ratio = new_shares / old_shares``."""

    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    ex_date: Series[pandas_engine.Date] = pa.Field()  # a calendar date (datetime.date)
    new_shares: Series[float] = pa.Field(gt=0)
    old_shares: Series[float] = pa.Field(gt=0)
    ratio: Series[float] = pa.Field(gt=0)
    source: Series[str] = pa.Field(str_length={"min_value": 1})
    ingested_at: Series[pd.DatetimeTZDtype] = ts_field()

    class Config:
        unique = ("symbol", "ex_date")

    @pa.dataframe_check(name="ratio_is_new_over_old")
    def _ratio(cls, df: pd.DataFrame) -> pd.Series:
        return (df["ratio"] - df["new_shares"] / df["old_shares"]).abs() <= 1e-12 * df["ratio"]
