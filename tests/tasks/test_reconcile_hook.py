"""The notification hook of a reconciliation (``hedgeflow.tasks.reconcile.on_reconciled``):
the event it hands a notifier, and the ``[reconcile] max_unexplained`` threshold."""

from __future__ import annotations

import pandas as pd

from hedgeflow.config import load_settings
from hedgeflow.reconcile import AgentReconciliation, Drift, ReconcileResult
from hedgeflow.tasks.reconcile import on_reconciled

TS = pd.Timestamp("2026-11-02 14:35", tz="UTC")


def result(unexplained: int, explained: int) -> ReconcileResult:
    drifts = [
        Drift(
            "stocks",
            "AAPL.US",
            TS + pd.Timedelta(minutes=5 * i),
            "buy",
            "fill_price",
            100.0,
            100.5,
            False,
            "",
        )
        for i in range(unexplained)
    ] + [
        Drift(
            "stocks",
            "AAPL.US",
            TS - pd.Timedelta(minutes=5 * (i + 1)),
            "sell",
            "vendor_revision",
            99.0,
            99.5,
            True,
            "",
        )
        for i in range(explained)
    ]
    return ReconcileResult("live-1", [AgentReconciliation("stocks", "AAPL.US", drifts=drifts)])


def test_the_event_and_the_threshold() -> None:
    strict = load_settings(env={})
    event = on_reconciled("rec-1", result(2, 1), strict)
    assert event == {
        "event_id": "reconcile-rec-1",
        "kind": "reconcile",
        "run_id": "rec-1",
        "live_run_id": "live-1",
        "unexplained": 2,
        "explained": 1,
        "counts": {
            "missed_signal": 0,
            "extra_signal": 0,
            "fill_price": 2,
            "qty": 0,
            "costs": 0,
            "vendor_revision": 1,
        },
        "max_unexplained": 0,
        "notify": True,
    }
    assert not on_reconciled("rec-2", result(0, 3), strict)["notify"]  # explained only
    lenient = load_settings(env={"HEDGEFLOW_RECONCILE__MAX_UNEXPLAINED": "2"})
    assert not on_reconciled("rec-3", result(2, 0), lenient)["notify"]
    assert on_reconciled("rec-4", result(3, 0), lenient)["notify"]
