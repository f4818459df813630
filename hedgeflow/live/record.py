"""The live flow's durable record as rows, and the state rebuilt from them (pure).

:func:`step_tables` turns one :class:`~hedgeflow.live.agent.LiveStep` into rows of
``live_bars``, ``live_signals``, ``live_orders``, ``live_fills`` and
``live_positions`` (one frame per table that has rows); ``hedgeflow.tasks.live`` writes
them in one transaction per bar. Every row has a natural key (bar ts, order id,
fill id, agent): rewriting a bar's rows replaces them, never duplicates them.

:func:`state_from_rows` is the inverse for a restart: from the stored position,
the signal of the last processed bar, the order still pending at its close and
the entry fill of the open position it rebuilds the broker's
:class:`~hedgeflow.live.broker.BrokerState`; :func:`replay_bars` picks the bars
the strategy must replay.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from hedgeflow import columns as C
from hedgeflow.columns import (
    EXTRA_INDICATORS,
    INDICATOR_COLUMNS,
    LIVE_BARS,
    LIVE_FILLS,
    LIVE_ORDERS,
    LIVE_POSITIONS,
    LIVE_SIGNALS,
)
from hedgeflow.engine import TRADE_COLUMNS
from hedgeflow.live.agent import LiveStep
from hedgeflow.live.broker import (
    BrokerState,
    Event,
    Fill,
    OrderCreated,
    OrderUpdated,
    PendingOrder,
)
from hedgeflow.research import extra_indicators_json

__all__ = [
    "LIVE_COLUMNS",
    "bar_row",
    "event_rows",
    "fill_row",
    "order_row",
    "pending_from_row",
    "replay_bars",
    "signal_row",
    "state_from_rows",
    "step_tables",
    "trades_frame",
]

LIVE_COLUMNS: dict[str, tuple[str, ...]] = {
    LIVE_BARS: (
        "run_id",
        "symbol",
        "interval",
        "ts",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "n_ticks",
        "closed_by",
    ),
    LIVE_SIGNALS: (
        "run_id",
        "agent",
        "symbol",
        "ts",
        "close",
        "signal",
        *INDICATOR_COLUMNS,
        EXTRA_INDICATORS,
    ),
    LIVE_ORDERS: (
        "run_id",
        "agent",
        "order_id",
        "symbol",
        "side",
        "qty",
        "created_ts",
        "fill_after_ts",
        "status",
        "reason",
    ),
    LIVE_FILLS: (
        "run_id",
        "agent",
        "fill_id",
        "order_id",
        "symbol",
        "side",
        "qty",
        "price",
        "fee",
        "ts",
        "reason",
    ),
    LIVE_POSITIONS: (
        "agent",
        "symbol",
        "qty",
        "entry_price",
        "stop",
        "take_profit",
        "cash",
        "equity",
        "updated_ts",
        "last_bar_ts",
    ),
}


# --------------------------------------------------------------------------- rows


def bar_row(run_id: str, symbol: str, interval: str, ts: pd.Timestamp, bar: Any) -> dict[str, Any]:
    """A ``live_bars`` row. Bars without tick counts (e.g. polled from REST) store
    ``n_ticks`` 0 and ``closed_by`` ``flush`` (closed by time, not by a tick)."""
    volume = getattr(bar, "volume", math.nan)
    return {
        "run_id": run_id,
        "symbol": symbol,
        "interval": interval,
        "ts": ts,
        "open": float(bar.open),
        "high": float(bar.high),
        "low": float(bar.low),
        "close": float(bar.close),
        "volume": None if volume is None or volume != volume else float(volume),
        "n_ticks": int(getattr(bar, "n_ticks", 0)),
        "closed_by": str(getattr(bar, "closed_by", "flush")),
    }


def signal_row(run_id: str, agent: str, symbol: str, step: LiveStep) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": run_id,
        "agent": agent,
        "symbol": symbol,
        "ts": step.ts,
        "close": step.close,
        "signal": int(step.signal or 0),
    }
    for col in INDICATOR_COLUMNS:
        row[col] = step.indicators.get(col, math.nan)
    extra = [c for c in step.indicators if c not in INDICATOR_COLUMNS]
    row[EXTRA_INDICATORS] = extra_indicators_json(step.indicators, extra, 1)[0]
    return row


def order_row(
    run_id: str, agent: str, symbol: str, event: OrderCreated | OrderUpdated
) -> dict[str, Any]:
    if isinstance(event, OrderCreated):
        o = event.order
        return {
            "run_id": run_id,
            "agent": agent,
            "order_id": o.order_id,
            "symbol": symbol,
            "side": o.side,
            "qty": None,
            "created_ts": o.created_ts,
            "fill_after_ts": o.fill_after_ts,
            "status": "pending",
            "reason": o.reason,
        }
    return {
        "run_id": run_id,
        "agent": agent,
        "order_id": event.order_id,
        "symbol": symbol,
        "side": event.side,
        "qty": event.qty,
        "created_ts": event.created_ts,
        "fill_after_ts": event.fill_after_ts,
        "status": event.status,
        "reason": event.reason,
    }


def fill_row(run_id: str, agent: str, symbol: str, fill: Fill) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "agent": agent,
        "fill_id": fill.fill_id,
        "order_id": fill.order_id,
        "symbol": symbol,
        "side": fill.side,
        "qty": fill.qty,
        "price": fill.price,
        "fee": fill.fee,
        "ts": fill.ts,
        "reason": fill.reason,
    }


def event_rows(
    run_id: str, agent: str, symbol: str, events: Iterable[Event]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(order rows, fill rows); an order seen twice keeps its last state."""
    orders: dict[str, dict[str, Any]] = {}
    fills: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, Fill):
            fills.append(fill_row(run_id, agent, symbol, event))
        else:
            row = order_row(run_id, agent, symbol, event)
            orders[row["order_id"]] = row
    return list(orders.values()), fills


def _frame(table: str, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=list(LIVE_COLUMNS[table]))
    for col in LIVE_COLUMNS[table]:
        if col == "ts" or col.endswith("_ts"):
            frame[col] = pd.to_datetime(frame[col], utc=True).dt.as_unit("us")
    if table == LIVE_SIGNALS:
        frame["signal"] = frame["signal"].astype(np.int8)
    return frame


def step_tables(
    step: LiveStep,
    *,
    run_id: str,
    agent: str,
    symbol: str,
    interval: str,
    updated_ts: pd.Timestamp,
    extra_events: Sequence[Event] = (),
) -> dict[str, pd.DataFrame]:
    """The rows one step adds or updates, one frame per table that has rows.

    A bar step gives its ``live_bars`` and ``live_signals`` rows; every step its
    orders and fills (``extra_events`` first: e.g. the position carried over from
    a shadow warm-up) and the ``live_positions`` row after it."""
    tables: dict[str, pd.DataFrame] = {}
    if step.bar is not None:
        tables[LIVE_BARS] = _frame(
            LIVE_BARS, [bar_row(run_id, symbol, interval, step.ts, step.bar)]
        )
        tables[LIVE_SIGNALS] = _frame(LIVE_SIGNALS, [signal_row(run_id, agent, symbol, step)])
    orders, fills = event_rows(run_id, agent, symbol, [*extra_events, *step.events])
    if orders:
        tables[LIVE_ORDERS] = _frame(LIVE_ORDERS, orders)
    if fills:
        tables[LIVE_FILLS] = _frame(LIVE_FILLS, fills)
    tables[LIVE_POSITIONS] = _frame(LIVE_POSITIONS, [step.state.to_row(agent, symbol, updated_ts)])
    return tables


def trades_frame(fills: Iterable[Fill]) -> pd.DataFrame:
    """The round trips closed by ``fills`` as the engine's trades frame."""
    trades = [f.trade for f in fills if f.trade is not None]
    k = len(trades)
    ts_dtype = pd.DatetimeTZDtype(unit="us", tz="UTC")
    return pd.DataFrame(
        {
            "trade_id": np.arange(1, k + 1, dtype=np.int64),
            "side": pd.Series([t.side for t in trades], dtype="str"),
            "qty": np.array([t.qty for t in trades], dtype=np.float64),
            "entry_ts": pd.Series([t.entry_ts for t in trades], dtype=ts_dtype),
            "entry_price": np.array([t.entry_price for t in trades], dtype=np.float64),
            "exit_ts": pd.Series([t.exit_ts for t in trades], dtype=ts_dtype),
            "exit_price": np.array([t.exit_price for t in trades], dtype=np.float64),
            "exit_reason": pd.Series([t.exit_reason for t in trades], dtype="str"),
            "fees": np.array([t.fees for t in trades], dtype=np.float64),
            "pnl": np.array([t.pnl for t in trades], dtype=np.float64),
            "return_pct": np.array([t.return_pct for t in trades], dtype=np.float64),
        },
        columns=list(TRADE_COLUMNS),
    )


# --------------------------------------------------------------------------- restore


def pending_from_row(row: Mapping[str, Any]) -> PendingOrder:
    side = str(row["side"])
    if side not in ("buy", "sell"):
        raise ValueError(f"order side must be buy or sell, got {side!r}")
    then = row.get("then")
    return PendingOrder(
        order_id=str(row["order_id"]),
        side="buy" if side == "buy" else "sell",
        created_ts=pd.Timestamp(row["created_ts"]),
        fill_after_ts=pd.Timestamp(row["fill_after_ts"]),
        reason=str(row["reason"]),
        then=pending_from_row(then) if then is not None else None,
    )


def state_from_rows(
    position: Mapping[str, Any],
    *,
    last_signal: Mapping[str, Any],
    pending_order: Mapping[str, Any] | None,
    entry_fill: Mapping[str, Any] | None,
) -> BrokerState:
    """The broker state after the last processed bar, from stored rows.

    ``last_signal`` is the ``live_signals`` row of that bar (its signal is the
    broker's "previous signal"; its close the price an end close-out uses);
    ``pending_order`` the ``live_orders`` row still ``pending`` created at that
    bar (a reversal's exit with its entry as ``then``); ``entry_fill`` the fill that
    opened the position (None when flat)."""
    return BrokerState.from_row(
        dict(position),
        prev_signal=int(last_signal["signal"]),
        pending=pending_from_row(pending_order) if pending_order is not None else None,
        entry_fill=dict(entry_fill) if entry_fill is not None else None,
        last_close=float(last_signal["close"]),
    )


def replay_bars(history: pd.DataFrame | None, live_bars: pd.DataFrame) -> pd.DataFrame:
    """The bars a restored agent replays: ``history`` (the warm-up bars) before
    the first live bar, then the live bars (sorted by ts)."""
    cols = [C.TS, *C.PRICE_COLUMNS]
    live = live_bars.sort_values(C.TS)[cols]
    if history is None or history.empty:
        return live.reset_index(drop=True)
    hist = history[cols]
    if not live.empty:
        hist = hist[hist[C.TS] < live[C.TS].iloc[0]]
    return pd.concat([hist, live], ignore_index=True)
