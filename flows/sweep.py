"""The sweep flow: a strategy's parameter grid on every symbol, ranked and stored.

``sweep`` validates the grid, ingests the window for symbols whose bars are
missing, then runs the subflow ``sweep-backtests`` (at most MAX_SWEEP_TASKS
tasks, each sweeping a batch of symbols, one compiled batch per symbol) on the
chosen task runner, stores ``sweep_results`` and the overfitting statistics of
each symbol's combinations (``sweep_overfit``: PSR, deflated Sharpe, PBO by CSCV)
and publishes a summary and a heatmap. The task runner is per call
(``flow.with_options(task_runner=...)``):

- ``threads`` (default): Prefect's thread pool;
- a Dask scheduler address (``dask_address`` or the ``DASK_SCHEDULER_ADDRESS``
  environment variable, dask's own setting): ``DaskTaskRunner(address=...)``;
  its workers must see the same ``HEDGEFLOW_HOME`` (they read bars and write
  results there);
- ``dask`` without an address: a ``distributed.LocalCluster`` of 2 worker
  processes for the duration of the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from prefect import flow

from hedgeflow.config import AgentSettings, Settings, load_settings
from hedgeflow.flows.ingest import ingest_missing, resolve_symbols
from hedgeflow.flows.params import (
    ALLOW_SHORT_DOC,
    DASK_ADDRESS_DOC,
    DAYS_DOC,
    END_DOC,
    REFERENCE_FORMS,
    SYMBOLS_DOC,
    TASK_RUNNER_DOC,
    Doc,
    StrategyName,
)
from hedgeflow.flows.runners import TaskRunnerName, api_for_workers, task_runner_for
from hedgeflow.sweep import RankMetric, SweepGrid, expand_grid
from hedgeflow.tasks.common import (
    batch_label,
    batches,
    current_run_id,
    mark_run_ended,
    raise_if_out_of_space,
    run_logger,
    thread_pool,
)
from hedgeflow.tasks.research import clean_metrics
from hedgeflow.tasks.sweep import (
    SymbolFailure,
    SymbolSweep,
    overfit_headline,
    publish_sweep,
    sweep_batch,
)
from hedgeflow.warehouse import Warehouse, code_version, combined_fingerprint, failures_reason
from hedgeflow.windows import Window, lookback_window

# Task runs per sweep-backtests run (PREFECT.md: keep task counts small).
MAX_SWEEP_TASKS = 12


@dataclass
class SweepSummary:
    run_id: str
    status: str
    strategy: str
    metric: str
    grid: str  # SweepGrid.describe()
    combinations: int  # valid combinations per symbol
    skipped: int  # refused combinations per symbol
    task_runner: str
    best: list[dict[str, Any]] = field(default_factory=list)  # rank-1 row per symbol
    failed: dict[str, str] = field(default_factory=dict)
    report_path: str | None = None  # the run's report.html, absolute


@flow(name="sweep-backtests", validate_parameters=False)
def sweep_backtests(
    agents: list[AgentSettings],
    grid: SweepGrid,
    settings: Settings,
    window: Window,
    metric: str,
    run_id: str,
) -> list[SymbolSweep | SymbolFailure]:
    """The grid on every symbol: at most MAX_SWEEP_TASKS tasks on this run's task runner."""
    groups = batches(agents, MAX_SWEEP_TASKS)
    labels = [batch_label([a.symbol for a in g], i, len(groups)) for i, g in enumerate(groups)]
    futures = sweep_batch.map(
        labels, groups, grid=grid, settings=settings, window=window, metric=metric, run_id=run_id
    )
    out: list[SymbolSweep | SymbolFailure] = []
    for group, future in zip(groups, futures, strict=True):
        outcome = future.result(raise_on_failure=False)
        raise_if_out_of_space(outcome)
        if isinstance(outcome, BaseException):
            out.extend(
                SymbolFailure(a.symbol, f"{type(outcome).__name__}: {outcome}") for a in group
            )
        else:
            out.extend(outcome)
    return out


def _best_row(item: SymbolSweep) -> dict[str, Any]:
    row = item.frame[item.frame["rank"] == 1].iloc[0].to_dict()
    return {"symbol": item.symbol, **clean_metrics(row), **overfit_headline(item.overfit)}


@flow(name="sweep", task_runner=thread_pool())
def sweep(
    symbols: Annotated[list[str] | None, SYMBOLS_DOC] = None,
    strategy: Annotated[
        StrategyName, Doc("Strategy to sweep: {choices}, or " + REFERENCE_FORMS)
    ] = ("sma_cross"),
    grid: Annotated[
        dict[str, list[float | int | bool | str]] | None,
        Doc(
            'Values per parameter, e.g. {"fast": [5, 10], "slow": [20, 50]}',
            empty="the strategy's own grid",
            empty_title="strategy's grid",
        ),
    ] = None,
    days: Annotated[int | None, DAYS_DOC] = None,
    end: Annotated[datetime | None, END_DOC] = None,
    metric: Annotated[RankMetric, Doc("Metric that ranks the combinations per symbol")] = "sharpe",
    task_runner: Annotated[TaskRunnerName | None, TASK_RUNNER_DOC] = None,
    dask_address: Annotated[str | None, DASK_ADDRESS_DOC] = None,
    allow_short: Annotated[bool | None, ALLOW_SHORT_DOC] = None,
) -> SweepSummary:
    """Sweep ``strategy`` over ``grid`` (default: the strategy's own grid) on
    ``symbols`` (default: the configured agents' symbols) over the ``days`` before
    ``end``, rank every combination by ``metric`` per symbol and store the results
    in ``sweep_results``. Engine risk is the configured base ``risk``, costs the
    asset class's."""
    plan = expand_grid(strategy, grid)
    chosen = resolve_symbols(symbols, load_settings())
    risk = {} if allow_short is None else {"risk": {"allow_short": allow_short}}
    settings = load_settings(
        agents={
            f"sweep-{i}": {"symbol": s, "strategy": strategy, **risk} for i, s in enumerate(chosen)
        }
    ).without_secrets()  # sweeps never notify; subflow parameters are stored
    window = lookback_window(
        settings.lookback_days if days is None else days, end, interval=settings.interval
    )
    runner, runner_name = task_runner_for(
        task_runner or settings.task_runner, dask_address or settings.dask_address
    )
    run_id = current_run_id()
    warehouse = Warehouse(settings.home, lock_timeout=settings.lock_timeout)
    params = {
        "strategy": plan.strategy,
        "grid": {k: list(v) for k, v in plan.axes.items()},
        "symbols": chosen,
        "metric": metric,
        "interval": settings.interval,
        "adjust_splits": settings.adjust_splits,
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
        "task_runner": runner_name,
        **({"allow_short": True} if any(a.risk.allow_short for a in settings.agents) else {}),
    }
    warehouse.start_run(run_id, "sweep", params, code_version())
    log = run_logger()
    log.info("sweep %s on %d symbols with %s", plan.describe(), len(chosen), runner_name)
    summary = SweepSummary(
        run_id=run_id,
        status="running",
        strategy=plan.strategy,
        metric=metric,
        grid=plan.describe(),
        combinations=plan.size,
        skipped=plan.skipped,
        task_runner=runner_name,
    )
    done: list[SymbolSweep] = []
    try:
        summary.failed.update(ingest_missing(warehouse, chosen, window, settings, run_id))
        agents = [a for a in settings.agents if a.symbol not in summary.failed]
        outcomes: list[SymbolSweep | SymbolFailure] = []
        if agents:
            with api_for_workers(runner_name != "threads"):
                outcomes = sweep_backtests.with_options(task_runner=runner)(
                    agents, plan, settings, window, metric, run_id
                )
        for item in outcomes:
            if isinstance(item, SymbolFailure):
                summary.failed[item.symbol] = item.error
                log.error("sweep of %s failed: %s", item.symbol, item.error)
            else:
                done.append(item)
        done.sort(key=lambda s: s.symbol)
        summary.best = [_best_row(item) for item in done]
        report = publish_sweep(
            run_id,
            plan,
            metric,
            {item.symbol: item.frame for item in done},
            summary.best,
            summary.failed,
            window,
            settings,
            warehouse.report_dir(run_id),
            {item.symbol: item.overfit for item in done if item.overfit is not None},
        )
        summary.report_path = str(report)
        summary.status = "completed" if not summary.failed else ("partial" if done else "failed")
    except BaseException as exc:
        mark_run_ended(warehouse, run_id, exc)
        raise
    headline = {
        row["symbol"]: {
            "sharpe": row.get("sharpe"),
            "total_return": row.get("total_return"),
            "params": row.get("params"),
            "pbo": row.get("pbo"),
            "dsr": row.get("dsr"),
        }
        for row in summary.best
    }
    fingerprint = combined_fingerprint((s.symbol, s.bars_fingerprint) for s in done)
    reason = failures_reason(summary.failed)
    warehouse.finish_run(run_id, summary.status, headline, fingerprint, reason=reason)
    return summary
