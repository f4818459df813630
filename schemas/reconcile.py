"""The ``live_drift`` table: what ``hedgeflow reconcile`` found, one row per difference
between a live fill and the engine's re-run over the same bars."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from hedgeflow.schemas._base import SYMBOL_PATTERN, TableModel, name_field, ts_field
from hedgeflow.schemas.columns import DRIFT_KINDS, ORDER_SIDES, RUN_ID_PATTERN


class LiveDrift(TableModel):
    """A difference of reconcile run ``run_id`` over live run ``live_run_id``.

    ``trade_key`` (``<agent>-<bar ts>-<side>``) and ``ts`` name the fill (the bar it
    executed in); ``kind`` its class; ``live_value`` / ``engine_value`` the differing
    numbers (fill prices; quantities for ``qty``; fees for ``costs``; null on the side
    that did not fill); ``explained`` is true for vendor revisions only."""

    run_id: Series[str] = pa.Field(str_matches=RUN_ID_PATTERN)
    live_run_id: Series[str] = pa.Field(str_matches=RUN_ID_PATTERN)
    agent: Series[str] = name_field()
    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    trade_key: Series[str] = pa.Field(str_length={"min_value": 1, "max_value": 256})
    ts: Series[pd.DatetimeTZDtype] = ts_field()
    side: Series[str] = pa.Field(isin=list(ORDER_SIDES))
    kind: Series[str] = pa.Field(isin=list(DRIFT_KINDS))
    live_value: Series[float] = pa.Field(nullable=True)
    engine_value: Series[float] = pa.Field(nullable=True)
    explained: Series[bool]
    detail: Series[str]

    class Config:
        unique = ("run_id", "trade_key")
