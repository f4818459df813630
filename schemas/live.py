"""The live flow's durable record: bars, signals, orders, fills, positions, and the
notification outbox with its delivery states.

Rows are written as they happen (the warehouse shows them immediately, unlike
backtest results). Orders and fills follow DESIGN.md convention 3: a signal on
the close of bar t queues an order that fills at the open of the first bar with
``ts >= fill_after_ts``; its ``qty`` is sized at fill (null while pending).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from hedgeflow.market import INTERVAL_SECONDS
from hedgeflow.schemas._base import (
    SYMBOL_PATTERN,
    TableModel,
    json_text_check,
    name_field,
    ts_field,
)
from hedgeflow.schemas.columns import (
    BAR_CLOSED_BY,
    DELIVERY_STATUSES,
    NOTIFY_KINDS,
    ORDER_SIDES,
    ORDER_STATUSES,
    RUN_ID_PATTERN,
)
from hedgeflow.schemas.results import Signals


class LiveBars(TableModel):
    """A bar built from ticks; ``closed_by`` says whether a tick or the time flush closed it."""

    run_id: Series[str] = pa.Field(str_matches=RUN_ID_PATTERN)
    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    interval: Series[str] = pa.Field(isin=list(INTERVAL_SECONDS))
    ts: Series[pd.DatetimeTZDtype] = ts_field()
    open: Series[float] = pa.Field(gt=0)
    high: Series[float] = pa.Field(gt=0)
    low: Series[float] = pa.Field(gt=0)
    close: Series[float] = pa.Field(gt=0)
    volume: Series[float] = pa.Field(ge=0, nullable=True)
    n_ticks: Series[np.int64] = pa.Field(ge=0)
    closed_by: Series[str] = pa.Field(isin=list(BAR_CLOSED_BY))

    class Config:
        unique = ("run_id", "symbol", "interval", "ts")

    @pa.dataframe_check(name="low <= open, close <= high")
    def _ohlc(cls, df: pd.DataFrame) -> pd.Series:
        lo = np.minimum(df["open"], df["close"])
        hi = np.maximum(df["open"], df["close"])
        return (df["low"] <= lo) & (hi <= df["high"])


class LiveSignals(Signals):
    """Same columns as ``signals``, computed by the streaming indicators."""


class LiveOrders(TableModel):
    """An order of the paper broker; one row per order, updated in place as its status changes."""

    run_id: Series[str] = pa.Field(str_matches=RUN_ID_PATTERN)
    agent: Series[str] = name_field()
    order_id: Series[str] = name_field()
    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    side: Series[str] = pa.Field(isin=list(ORDER_SIDES))
    qty: Series[float] = pa.Field(gt=0, nullable=True)
    created_ts: Series[pd.DatetimeTZDtype] = ts_field()
    fill_after_ts: Series[pd.DatetimeTZDtype] = ts_field()
    status: Series[str] = pa.Field(isin=list(ORDER_STATUSES))
    reason: Series[str] = name_field()

    class Config:
        unique = ("run_id", "order_id")


class LiveFills(TableModel):
    """An execution of an order at ``price`` (slippage included) paying ``fee``."""

    run_id: Series[str] = pa.Field(str_matches=RUN_ID_PATTERN)
    agent: Series[str] = name_field()
    fill_id: Series[str] = name_field()
    order_id: Series[str] = name_field()
    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    side: Series[str] = pa.Field(isin=list(ORDER_SIDES))
    qty: Series[float] = pa.Field(gt=0)
    price: Series[float] = pa.Field(gt=0)
    fee: Series[float] = pa.Field(ge=0)
    ts: Series[pd.DatetimeTZDtype] = ts_field()
    reason: Series[str] = name_field()

    class Config:
        unique = ("run_id", "fill_id")


class LivePositions(TableModel):
    """Current state per (agent, symbol), kept across live runs: flat = qty 0, levels null."""

    agent: Series[str] = name_field()
    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    qty: Series[float]
    entry_price: Series[float] = pa.Field(gt=0, nullable=True)
    stop: Series[float] = pa.Field(gt=0, nullable=True)
    take_profit: Series[float] = pa.Field(gt=0, nullable=True)
    cash: Series[float]
    equity: Series[float]
    updated_ts: Series[pd.DatetimeTZDtype] = ts_field()
    last_bar_ts: Series[pd.DatetimeTZDtype] = ts_field(nullable=True)

    class Config:
        unique = ("agent", "symbol")


class LiveOutbox(TableModel):
    """A notification event (one per live order and fill), stored in the same transaction
    as the order or fill; ``payload`` is the JSON object the webhooks receive. Rows are
    never rewritten: the first event of an ``event_id`` stays."""

    event_id: Series[str] = name_field()
    kind: Series[str] = pa.Field(isin=list(NOTIFY_KINDS))
    run_id: Series[str] = pa.Field(str_matches=RUN_ID_PATTERN)
    agent: Series[str] = name_field()
    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    ts: Series[pd.DatetimeTZDtype] = ts_field()
    payload: Series[str]
    created_at: Series[pd.DatetimeTZDtype] = ts_field()

    class Config:
        unique = ("event_id",)

    @pa.check("payload", name="json_text")
    def _payload_json(cls, s: pd.Series) -> pd.Series:
        return json_text_check(s)


class LiveDeliveries(TableModel):
    """The delivery state of an event on one channel (``channel``: a hash of its URL,
    never the URL); ``last_error`` never contains the URL either."""

    event_id: Series[str] = name_field()
    channel: Series[str] = name_field()
    status: Series[str] = pa.Field(isin=list(DELIVERY_STATUSES))
    attempts: Series[np.int64] = pa.Field(ge=0)
    last_error: Series[str] = pa.Field(nullable=True)
    delivered_at: Series[pd.DatetimeTZDtype] = ts_field(nullable=True)
    updated_at: Series[pd.DatetimeTZDtype] = ts_field()

    class Config:
        unique = ("event_id", "channel")
