"""The outbox and delivery-state write rules, one step at a time and batched: the outbox
keeps an event's first row, a delivery state never moves back (a replayed ``pending``
row after ``delivered`` changes nothing), and ``live_notifications`` aggregates the
channels of an event."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hedgeflow.live.notify import deliveries_frame, delivery_row, outbox_tables
from hedgeflow.warehouse import Warehouse

TS = pd.Timestamp("2026-12-01 14:35", tz="UTC")


def _event(eid: str, status: str) -> dict:
    return {"event_id": eid, "kind": "order", "run_id": "r1", "agent": "stocks",
            "symbol": "AAPL.US", "ts": TS.isoformat(), "side": "buy", "qty": None,
            "price": None, "reason": "signal", "status": status}  # fmt: skip


def test_first_event_row_wins_and_states_only_move_forward(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "home")
    first = outbox_tables([_event("ev-1", "pending")], ["a", "b"], TS)
    later = outbox_tables([_event("ev-1", "filled")], ["a", "b"], TS)
    delivered = {"live_deliveries": deliveries_frame([
        delivery_row("ev-1", "a", "delivered", 1, delivered_at=TS),
        delivery_row("ev-1", "b", "pending", 2, "HTTP 500"),
    ])}  # fmt: skip
    # batched (the live writer's path): first row of the outbox, latest state per channel
    assert wh.write_live_steps([first, delivered, later]) == 3
    # one at a time: a replay of the first step changes nothing
    wh.write_live_many(first)
    outbox = wh.query("SELECT payload FROM live_outbox")
    assert len(outbox) == 1 and '"status": "pending"' in outbox["payload"][0]
    states = wh.query("SELECT channel, status, attempts FROM live_deliveries ORDER BY 1")
    assert states.values.tolist() == [["a", "delivered", 1], ["b", "pending", 2]]
    view = wh.query("SELECT status, attempts, last_error, channels FROM live_notifications")
    assert view.values.tolist() == [["pending", 2, "HTTP 500", 2]]
    wh.write_live_many(
        {"live_deliveries": deliveries_frame([delivery_row("ev-1", "b", "dead", 3, "HTTP 500")])}
    )
    assert wh.query("SELECT status FROM live_notifications")["status"][0] == "dead"
