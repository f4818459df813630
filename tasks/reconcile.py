"""Reconcile tasks: re-run one agent's engine over its live record, store the
differences, publish the artifacts, and the one notification hook.

The comparison itself is the core's (``hedgeflow.reconcile``); these tasks only read
the warehouse, call it, and hand the result back to the warehouse or Prefect.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from hedgeflow.config import Settings
from hedgeflow.market import interval_seconds
from hedgeflow.reconcile import (
    AgentReconciliation,
    LiveAgentSpec,
    ReconcileResult,
    drift_table_rows,
    markdown_summary,
    reconcile_agent,
    threshold_exceeded,
)
from hedgeflow.schemas.columns import LIVE_DRIFT
from hedgeflow.tasks.common import log_healed, run_logger
from hedgeflow.tasks.notify import notify_event
from hedgeflow.warehouse import Warehouse

# Prefect artifact keys (lowercase letters, digits and dashes)
SUMMARY_ARTIFACT = "reconcile-summary"
DRIFT_ARTIFACT = "live-drift"


@task(name="reconcile-agent", cache_policy=NO_CACHE)
def reconcile_agent_task(
    warehouse: Warehouse, live_run_id: str, spec: LiveAgentSpec
) -> AgentReconciliation:
    """One agent: its warm-up history and the vendor's bars from the lake, its live
    bars and fills from the record, compared by the core."""
    live_bars = warehouse.agent_live_bars(live_run_id, spec.name, spec.symbol, spec.interval)
    fills = warehouse.agent_live_fills(live_run_id, spec.name)
    history = warehouse.read_bars(
        spec.symbol,
        spec.interval,
        spec.warmup_start,
        spec.live_start,
        on_heal=log_healed,
        adjusted=spec.adjust_splits,
    )
    lake = None
    if not live_bars.empty:
        step = pd.Timedelta(seconds=interval_seconds(spec.interval))
        lake = warehouse.read_bars(
            spec.symbol,
            spec.interval,
            live_bars["ts"].iloc[0],
            live_bars["ts"].iloc[-1] + step,
            on_heal=log_healed,
        )
    signals = warehouse.agent_live_signals(live_run_id, spec.name)
    result = reconcile_agent(spec, history, live_bars, fills, lake, signals)
    run_logger().info(
        "agent %s: %d live fills, %d engine fills, %d revised bars, %d signal mismatches, "
        "%d difference(s), %d unexplained",
        spec.name,
        result.live_fills,
        result.engine_fills,
        result.revised_bars,
        result.signal_mismatches,
        len(result.drifts),
        result.unexplained,
    )
    return result


@task(name="store-live-drift", cache_policy=NO_CACHE)
def store_drift(warehouse: Warehouse, run_id: str, result: ReconcileResult) -> int:
    """The differences as ``live_drift`` rows of run ``run_id`` (one transaction)."""
    counts = warehouse.write_results(run_id, {LIVE_DRIFT: result.frame(run_id)})
    return int(counts.get(LIVE_DRIFT, 0))


@task(name="publish-reconcile", cache_policy=NO_CACHE)
def publish_reconcile(run_id: str, result: ReconcileResult, max_unexplained: int) -> None:
    """A markdown summary (counts per class, per agent) and a table of the differences."""
    create_markdown_artifact(
        markdown_summary(run_id, result, max_unexplained),
        key=SUMMARY_ARTIFACT,
        description=f"reconciliation of live run {result.live_run_id}",
    )
    rows = drift_table_rows(result)
    create_table_artifact(
        rows or [{"kind": "none", "detail": "no differences"}],
        key=DRIFT_ARTIFACT,
        description=f"live vs engine differences of live run {result.live_run_id}",
    )


def on_reconciled(run_id: str, result: ReconcileResult, settings: Settings) -> dict[str, Any]:
    """THE notification hook of a reconciliation: the reconcile flow calls it once per
    run, after ``live_drift`` is stored, with the result. Returns the event a notifier
    sends (``notify`` true when the unexplained differences pass the ``[reconcile]
    max_unexplained`` threshold).

    Over the threshold, the event goes to the ``[notify]`` channels (bounded wait,
    ``hedgeflow.tasks.notify.notify_event``), with ``event["event_id"]`` as its stable
    id (the same reconcile run always gives the same id)."""
    limit = settings.reconcile.max_unexplained
    event: dict[str, Any] = {
        "event_id": f"reconcile-{run_id}",
        "kind": "reconcile",
        "run_id": run_id,
        "live_run_id": result.live_run_id,
        "unexplained": result.unexplained,
        "explained": result.explained,
        "counts": result.counts(),
        "max_unexplained": limit,
        "notify": threshold_exceeded(result.unexplained, limit),
    }
    if event["notify"]:
        run_logger().warning(
            "live run %s: %d unexplained live-vs-engine difference(s), over the threshold "
            "of %d ([reconcile] max_unexplained)",
            result.live_run_id,
            result.unexplained,
            limit,
        )
        notify_event(settings.notify, event)
    return event
