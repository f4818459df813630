"""The ``runs`` table: one row per flow run, written first and finished last."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from hedgeflow.schemas._base import TableModel, json_text_check, ts_field
from hedgeflow.schemas.columns import RUN_ID_PATTERN, RUN_STATUSES


class Runs(TableModel):
    """A flow run. ``params`` and ``summary`` are JSON text; ``summary`` holds headline numbers."""

    run_id: Series[str] = pa.Field(str_matches=RUN_ID_PATTERN, unique=True)
    flow: Series[str] = pa.Field(str_length={"min_value": 1})
    started_at: Series[pd.DatetimeTZDtype] = ts_field()
    finished_at: Series[pd.DatetimeTZDtype] = ts_field(nullable=True)
    status: Series[str] = pa.Field(isin=list(RUN_STATUSES))
    params: Series[str]
    code_version: Series[str]
    data_fingerprint: Series[str] = pa.Field(nullable=True)
    summary: Series[str] = pa.Field(nullable=True)
    reason: Series[str] = pa.Field(nullable=True)
    process: Series[str] = pa.Field(nullable=True)

    @pa.check("params", "summary", name="json_text")
    def _json(cls, s: pd.Series) -> pd.Series:
        return json_text_check(s)
