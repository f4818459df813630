"""The reconcile flow: the live record against the backtest engine, trade by trade.

``reconcile(run)``: the live run ``run`` (default: the latest) is looked up first (no
live run: one-line error, nothing written); then a ``runs`` row of flow ``reconcile``
(``running``), one task per agent re-running the engine over the bars the live run
recorded (``hedgeflow.reconcile``), the differences stored in ``live_drift``, the
Prefect artifacts (``reconcile-summary``, ``live-drift``), the notification hook
(``hedgeflow.tasks.reconcile.on_reconciled``), and the run marked finished last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import flow

from hedgeflow.config import load_settings
from hedgeflow.reconcile import ReconcileResult, live_agent_specs, summary_lines
from hedgeflow.tasks.common import current_run_id, mark_run_ended, run_logger, thread_pool
from hedgeflow.tasks.reconcile import (
    on_reconciled,
    publish_reconcile,
    reconcile_agent_task,
    store_drift,
)
from hedgeflow.warehouse import Warehouse, code_version


@dataclass
class ReconcileSummary:
    run_id: str
    live_run_id: str
    status: str
    counts: dict[str, int] = field(default_factory=dict)  # differences per class
    unexplained: int = 0
    explained: int = 0
    max_unexplained: int = 0
    notify: bool = False  # unexplained > max_unexplained
    agents: list[dict[str, Any]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # the CLI's summary


@flow(name="reconcile", task_runner=thread_pool())
def reconcile(run: str | None = None) -> ReconcileSummary:
    """Reconcile live run ``run`` (an id or a unique prefix; default: the latest live
    run) with the backtest engine; see the module doc."""
    settings = load_settings()
    warehouse = Warehouse(settings.home, lock_timeout=settings.lock_timeout)
    live_run = warehouse.find_live_run(run)
    live_run_id = str(live_run["run_id"])
    specs, skipped = live_agent_specs(live_run["params"])
    run_id = current_run_id()
    limit = settings.reconcile.max_unexplained
    params = {"live_run_id": live_run_id, "max_unexplained": limit}
    warehouse.start_run(run_id, "reconcile", params, code_version())
    log = run_logger()
    try:
        result = ReconcileResult(
            live_run_id, skipped=skipped, live_status=str(live_run.get("status") or "")
        )
        for spec in specs:
            result.agents.append(reconcile_agent_task(warehouse, live_run_id, spec))
        store_drift(warehouse, run_id, result)
        publish_reconcile(run_id, result, limit)
        event = on_reconciled(run_id, result, settings)
    except BaseException as exc:
        mark_run_ended(warehouse, run_id, exc)
        raise
    summary = ReconcileSummary(
        run_id=run_id,
        live_run_id=live_run_id,
        status="completed",
        counts=result.counts(),
        unexplained=result.unexplained,
        explained=result.explained,
        max_unexplained=limit,
        notify=bool(event["notify"]),
        agents=result.agent_rows(),
        lines=list(summary_lines(run_id, result, limit)),
    )
    headline = {
        "live_run_id": live_run_id,
        "unexplained": summary.unexplained,
        "explained": summary.explained,
        "counts": summary.counts,
    }
    warehouse.finish_run(run_id, "completed", headline)
    log.info("reconciled live run %s: %d unexplained", live_run_id, summary.unexplained)
    return summary
