"""The nightly research flow: ingest -> per-agent backtests -> portfolio -> report.

The reconcile subflow and the failure notifications (with the live-trading modules
they import) are imported where they are needed: a night with no live run to reconcile
and nothing to announce, the usual one, never loads them (the command's start).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from prefect import flow

from hedgeflow.config import AgentSettings, Settings, load_settings
from hedgeflow.exchange_calendar import closed_day_reason
from hedgeflow.flows.ingest import ingest_window, open_source_spec
from hedgeflow.flows.params import (
    AGENTS_DOC,
    ALLOW_SHORT_DOC,
    DASK_ADDRESS_DOC,
    DAYS_DOC,
    END_DOC,
    INTERVAL_DOC,
    SOURCE_DOC,
    TASK_RUNNER_DOC,
    TRADING_DAYS_DOC,
    AgentParam,
    Allocation,
    Doc,
    IntervalName,
    Rebalance,
    SourceName,
    agents_mapping,
)
from hedgeflow.flows.runners import TaskRunnerName, api_for_workers, task_runner_for
from hedgeflow.tasks.common import (
    batch_label,
    batches,
    current_run_id,
    mark_run_ended,
    raise_if_out_of_space,
    run_logger,
    thread_pool,
)
from hedgeflow.tasks.report import publish_report
from hedgeflow.tasks.research import (
    AgentFailure,
    AgentSummary,
    agent_backtests,
    combine_portfolio,
)
from hedgeflow.warehouse import Warehouse, code_version, combined_fingerprint, failures_reason
from hedgeflow.windows import Window, lookback_window


@dataclass
class NightlySummary:
    run_id: str
    status: str
    agent_rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    portfolio_rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failed_agents: dict[str, str] = field(default_factory=dict)
    report_path: str | None = None  # the run's report.html, absolute
    # why the run did nothing: its day is not a trading day (trading_days_only)
    skipped: str | None = None
    # the live run this night reconciled (hedgeflow.flows.reconcile): live_run_id, run_id,
    # unexplained, explained, counts; or error. None: no live run to reconcile.
    reconcile: dict[str, Any] | None = None


@flow(name="nightly-backtests", validate_parameters=False)
def nightly_backtests(
    agents: list[AgentSettings], settings: Settings, window: Window, run_id: str
) -> list[AgentSummary | AgentFailure]:
    """Every agent's backtest: one task run each on a Prefect server (batches past
    SERVER_TASKS_PER_STAGE, or EPHEMERAL_TASKS_PER_STAGE in ephemeral mode)."""
    groups = batches(agents)
    labels = [batch_label([a.name for a in g], i, len(groups)) for i, g in enumerate(groups)]
    futures = agent_backtests.map(labels, groups, settings=settings, window=window, run_id=run_id)
    out: list[AgentSummary | AgentFailure] = []
    for group, future in zip(groups, futures, strict=True):
        outcome = future.result(raise_on_failure=False)
        raise_if_out_of_space(outcome)
        if isinstance(outcome, BaseException):
            out.extend(AgentFailure(a.name, f"{type(outcome).__name__}: {outcome}") for a in group)
        else:
            out.extend(outcome)
    return out


@flow(name="nightly", task_runner=thread_pool())
def nightly(
    days: Annotated[int | None, DAYS_DOC] = None,
    source: Annotated[SourceName | None, SOURCE_DOC] = None,
    end: Annotated[datetime | None, END_DOC] = None,
    interval: Annotated[IntervalName | None, INTERVAL_DOC] = None,
    agents: Annotated[list[AgentParam] | None, AGENTS_DOC] = None,
    allocation: Annotated[
        Allocation | None, Doc("How the portfolio weights the agents", "portfolio.allocation")
    ] = None,
    rebalance: Annotated[
        Rebalance | None, Doc("When the portfolio rebalances", "portfolio.rebalance")
    ] = None,
    initial_equity: Annotated[
        float | None, Doc("Starting equity of the portfolio", "portfolio.initial_equity")
    ] = None,
    task_runner: Annotated[TaskRunnerName | None, TASK_RUNNER_DOC] = None,
    dask_address: Annotated[str | None, DASK_ADDRESS_DOC] = None,
    trading_days_only: Annotated[bool | None, TRADING_DAYS_DOC] = None,
    allow_short: Annotated[bool | None, ALLOW_SHORT_DOC] = None,
) -> NightlySummary:
    """Ingest the lookback window, backtest every agent (one mapped task each),
    combine them into a portfolio and publish the results.

    Every parameter defaults to the settings (hedgeflow.toml, HEDGEFLOW_* variables);
    ``agents`` replaces the configured agents for this run. The run form's text of
    each parameter is its ``Doc``."""
    overrides: dict[str, Any] = {"source": source, "interval": interval}
    portfolio = {"allocation": allocation, "rebalance": rebalance, "initial_equity": initial_equity}
    overrides["portfolio"] = {k: v for k, v in portfolio.items() if v is not None}
    if allow_short is not None:  # every agent's default; an agent's own risk still wins
        overrides["risk"] = {"allow_short": allow_short}
    settings = load_settings(
        overrides={k: v for k, v in overrides.items() if v}, agents=agents_mapping(agents)
    )
    window = lookback_window(
        settings.lookback_days if days is None else days, end, interval=settings.interval
    )
    notify = settings.notify
    settings = settings.without_secrets()  # tasks and subflows never see the URLs
    run_id = current_run_id()
    warehouse = Warehouse(settings.home, lock_timeout=settings.lock_timeout)
    params = {
        "source": settings.source,
        "interval": settings.interval,
        "adjust_splits": settings.adjust_splits,
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
        "agents": {
            a.name: {
                "symbol": a.symbol,
                "strategy": a.strategy,
                "params": dict(a.params),
                **({"allow_short": True} if a.risk.allow_short else {}),
            }
            for a in settings.agents
        },
    }
    warehouse.start_run(run_id, "nightly", params, code_version())
    log = run_logger()
    closed = (
        closed_day_reason(window.end, settings.symbols, calendars=settings.calendars)
        if trading_days_only and end is None
        else None
    )
    if closed is not None:  # a holiday: the scheduled run completes, having done nothing
        log.info("nightly: %s", closed)
        warehouse.finish_run(run_id, "completed", {"skipped": closed})
        return NightlySummary(run_id=run_id, status="completed", skipped=closed)
    summary = NightlySummary(run_id=run_id, status="running")
    try:
        with open_source_spec(settings) as spec:
            ingested, ingest_failed = ingest_window(
                list(settings.symbols), settings.interval, window, spec, settings, run_id
            )
        quality = {r.symbol: {"stored": r.stored, "quarantined": r.quarantined} for r in ingested}
        runnable = []
        for agent in settings.agents:
            if agent.symbol in ingest_failed:
                summary.failed_agents[agent.name] = f"ingest failed: {ingest_failed[agent.symbol]}"
                log.error("agent %s skipped: %s", agent.name, summary.failed_agents[agent.name])
            else:
                runnable.append(agent)

        runner, runner_name = task_runner_for(
            task_runner or settings.task_runner, dask_address or settings.dask_address
        )
        log.info("backtesting %d agents on %s", len(runnable), runner_name)
        done: list[AgentSummary] = []
        if runnable:
            with api_for_workers(runner_name != "threads"):
                outcomes = nightly_backtests.with_options(task_runner=runner)(
                    runnable, settings, window, run_id
                )
            for item in outcomes:
                if isinstance(item, AgentFailure):
                    summary.failed_agents[item.agent] = item.error
                    log.error("agent %s failed: %s", item.agent, item.error)
                else:
                    done.append(item)
                    summary.agent_rows.append((item.agent, item.metrics))

        port = None
        if done:
            port = combine_portfolio(done, settings, run_id)
            summary.portfolio_rows = list(port.metrics_by_method.items())
        report = publish_report(
            run_id,
            f"{window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M} UTC, "
            f"{settings.interval} bars",
            done,
            port,
            settings,
            summary.failed_agents,
            quality,
            warehouse.report_dir(run_id),
        )
        summary.report_path = str(report)
        summary.status = (
            "completed" if not summary.failed_agents else ("partial" if done else "failed")
        )
        summary.reconcile = _reconcile_live(warehouse)
    except BaseException as exc:
        mark_run_ended(warehouse, run_id, exc)
        if isinstance(exc, Exception):  # not a Ctrl-C / SIGTERM stop: it failed
            from hedgeflow.tasks.notify import notify_run

            notify_run(notify, "nightly", run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    headline: dict[str, Any] = {
        name: {"sharpe": m.get("sharpe"), "total_return": m.get("total_return")}
        for name, m in summary.agent_rows
    }
    headline.update(
        {
            f"portfolio:{k}": {"sharpe": m.get("sharpe"), "total_return": m.get("total_return")}
            for k, m in summary.portfolio_rows
        }
    )
    if summary.reconcile is not None:
        headline["reconcile"] = {
            k: summary.reconcile.get(k) for k in ("live_run_id", "unexplained", "error")
        }
    fingerprint = combined_fingerprint((s.symbol, s.bars_fingerprint) for s in done)
    reason = failures_reason(summary.failed_agents)
    warehouse.finish_run(run_id, summary.status, headline, fingerprint, reason=reason)
    if summary.status != "completed":
        from hedgeflow.tasks.notify import notify_run

        notify_run(notify, "nightly", run_id, summary.status, f"failed agents: {reason}")
    return summary


def _reconcile_live(warehouse: Warehouse) -> dict[str, Any] | None:
    """The nightly's reconcile step: the live run that ended last, when no reconcile run
    covers it yet, reconciled by the reconcile flow (a subflow with its own ``runs`` row);
    None when there is none. A failure is reported, never failing the night."""
    live_run = warehouse.unreconciled_live_run()
    if live_run is None:
        return None
    live_run_id = str(live_run["run_id"])
    log = run_logger()
    from hedgeflow.flows.reconcile import reconcile

    try:
        done = reconcile(run=live_run_id)
    except Exception as exc:
        log.error("reconcile of live run %s failed: %s", live_run_id, exc)
        return {"live_run_id": live_run_id, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "live_run_id": live_run_id,
        "run_id": done.run_id,
        "unexplained": done.unexplained,
        "explained": done.explained,
        "counts": done.counts,
        "notify": done.notify,
    }
