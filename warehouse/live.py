"""The live record of one agent, read back for a restart (``Warehouse.live_record``).

The rows ``hedgeflow.tasks.live.restore_agent`` rebuilds an agent from: its position
(``live_positions``), the last processed bar's signal (``live_signals``), the order
still pending at that bar's close (``live_orders``), the open position's entry fill
(``live_fills``) and the run's ``live_bars`` up to that bar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from hedgeflow.schemas.columns import (
    LIVE_BARS,
    LIVE_DELIVERIES,
    LIVE_FILLS,
    LIVE_ORDERS,
    LIVE_OUTBOX,
    LIVE_POSITIONS,
    LIVE_SIGNALS,
)

# The notifications a (re)started live flow must (re)send: every pending delivery.
PENDING_NOTIFICATIONS_SQL = (
    f"SELECT o.payload, d.channel, d.attempts FROM {LIVE_OUTBOX} AS o "
    f"JOIN {LIVE_DELIVERIES} AS d ON d.event_id = o.event_id "
    "WHERE d.status = 'pending' ORDER BY o.created_at, o.event_id, d.channel"
)

OUTBOX_IDS_SQL = f"SELECT event_id FROM {LIVE_OUTBOX} WHERE run_id = ?"

Query = Callable[[str, Sequence[Any]], pd.DataFrame]


@dataclass(frozen=True)
class LiveRecord:
    """What the record holds of one agent at its last processed bar."""

    run_id: str
    last_bar_ts: pd.Timestamp
    position: dict[str, Any]
    signal: dict[str, Any]
    pending_order: dict[str, Any] | None
    entry_fill: dict[str, Any] | None
    live_bars: pd.DataFrame  # ts, open, high, low, close of the run, up to last_bar_ts


def _one(frame: pd.DataFrame) -> dict[str, Any] | None:
    return None if frame.empty else frame.iloc[0].to_dict()


def _pending(rows: pd.DataFrame) -> dict[str, Any] | None:
    """The pending order row; an exit carries the entry pending with it as ``then``."""
    if rows.empty:
        return None
    found = [r.to_dict() for _, r in rows.iterrows()]
    exits = [r for r in found if str(r["order_id"]).endswith("-exit")]
    if not exits:
        return found[0]
    first = exits[0]
    others = [r for r in found if r is not first]
    if others:
        first["then"] = others[0]
    return first


def read_live_record(
    query: Query, agent: str, symbol: str, interval: str, run_id: str | None = None
) -> LiveRecord | None:
    """The agent's record, or None when it has no processed bar yet. ``run_id``: the
    run to continue; by default the run that stored the agent's last processed bar.
    LookupError when the position names a bar the signals do not have."""
    position = _one(
        query(f"SELECT * FROM {LIVE_POSITIONS} WHERE agent = ? AND symbol = ?", [agent, symbol])
    )
    if position is None or pd.isna(position["last_bar_ts"]):
        return None
    last_ts = pd.Timestamp(position["last_bar_ts"])
    run_filter, run_params = ("AND run_id = ?", [run_id]) if run_id else ("", [])
    signal = _one(
        query(
            f"SELECT * FROM {LIVE_SIGNALS} WHERE agent = ? AND symbol = ? AND ts = ? "
            f"{run_filter} LIMIT 1",
            [agent, symbol, last_ts, *run_params],
        )
    )
    if signal is None:
        raise LookupError(
            f"agent {agent}: live_positions is at {last_ts} but live_signals has no row there"
        )
    run = str(signal["run_id"])
    # An order is pending only between the close that created it and the next bar.
    # A reversal queues two: the exit (kept, with the entry that follows it as "then").
    pending_rows = query(
        f"SELECT * FROM {LIVE_ORDERS} WHERE run_id = ? AND agent = ? AND symbol = ? "
        "AND status = 'pending' AND created_ts = ? ORDER BY order_id DESC",
        [run, agent, symbol, last_ts],
    )
    pending = _pending(pending_rows)
    entry = None
    qty = float(position["qty"])
    if qty != 0.0:
        # the fill of the order that opened it (a long's entry, a short's sale); at a
        # reversal the closing fill of the other side has the same ts
        kind = "entry" if qty > 0.0 else "short"
        entry = _one(
            query(
                f"SELECT * FROM {LIVE_FILLS} WHERE run_id = ? AND agent = ? AND symbol = ? "
                "AND fill_id LIKE ? AND ts <= ? ORDER BY ts DESC LIMIT 1",
                [run, agent, symbol, f"%-{kind}-f", last_ts],
            )
        )
    live_bars = query(
        f"SELECT ts, open, high, low, close FROM {LIVE_BARS} WHERE run_id = ? AND symbol = ? "
        'AND "interval" = ? AND ts <= ? ORDER BY ts',
        [run, symbol, interval, last_ts],
    )
    return LiveRecord(
        run_id=run,
        last_bar_ts=last_ts,
        position=position,
        signal=signal,
        pending_order=pending,
        entry_fill=entry,
        live_bars=live_bars,
    )
