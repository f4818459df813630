"""The walk-forward flow: a strategy's grid chosen in sample, run out of sample, per fold.

``walkforward`` checks the grid and the fold settings before anything is stored,
ingests the window for symbols whose bars are missing, then runs one
``walkforward-symbol`` task per symbol (rolling or anchored folds, or combinatorial
purged cross-validation; :mod:`hedgeflow.walkforward`), each storing its
``walkforward_folds`` and ``walkforward_equity`` rows in one transaction, and
publishes a report, a table artifact of the folds and a markdown summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from prefect import flow

from hedgeflow.config import load_settings
from hedgeflow.flows.ingest import ingest_missing, resolve_symbols
from hedgeflow.flows.params import (
    DAYS_DOC,
    END_DOC,
    REFERENCE_FORMS,
    SYMBOLS_DOC,
    Doc,
    StrategyName,
)
from hedgeflow.market import interval_seconds
from hedgeflow.sweep import RankMetric, expand_grid
from hedgeflow.tasks.common import (
    current_run_id,
    mark_run_ended,
    raise_if_out_of_space,
    run_logger,
    thread_pool,
)
from hedgeflow.tasks.walkforward import (
    SymbolWalkForward,
    publish_walkforward,
    walkforward_symbol,
)
from hedgeflow.walkforward import fold_spec, precheck
from hedgeflow.warehouse import Warehouse, code_version, combined_fingerprint, failures_reason
from hedgeflow.windows import lookback_window


@dataclass
class WalkForwardSummary:
    run_id: str
    status: str
    strategy: str
    metric: str
    grid: str  # SweepGrid.describe()
    folds: str  # FoldSpec.describe()
    results: list[dict[str, Any]] = field(default_factory=list)  # fold_summary per symbol
    failed: dict[str, str] = field(default_factory=dict)
    report_path: str | None = None


@flow(name="walkforward", task_runner=thread_pool())
def walkforward(
    symbols: Annotated[list[str] | None, SYMBOLS_DOC] = None,
    strategy: Annotated[
        StrategyName, Doc("Strategy to walk forward: {choices}, or " + REFERENCE_FORMS)
    ] = ("sma_cross"),
    grid: Annotated[
        dict[str, list[float | int | bool | str]] | None,
        Doc(
            'Values per parameter, e.g. {"fast": [5, 10], "slow": [20, 50]}',
            empty="the strategy's own grid",
            empty_title="strategy's grid",
        ),
    ] = None,
    train: Annotated[
        str, Doc("Train window: a duration (60d, 12h, 90m, 2w) or a number of bars (500)")
    ] = "60d",
    test: Annotated[str, Doc("Test window, in the same unit as train")] = "10d",
    step: Annotated[
        str | None,
        Doc(
            "How far each fold moves, in the unit of train (at least the test window)",
            empty="the test window",
            empty_title="test window",
        ),
    ] = None,
    anchored: Annotated[
        bool, Doc("Anchored (expanding) train windows, all starting at the first bar")
    ] = False,
    cpcv: Annotated[
        bool,
        Doc("Combinatorial purged cross-validation instead of walk-forward folds"),
    ] = False,
    groups: Annotated[int, Doc("CPCV: groups the bars are split into (N >= 2)")] = 6,
    test_groups: Annotated[int, Doc("CPCV: groups tested per split (1 <= k < N)")] = 2,
    purge: Annotated[int, Doc("CPCV: train bars dropped before each test group")] = 0,
    embargo: Annotated[
        float, Doc("CPCV: train bars dropped after each test group (a fraction < 1: of all bars)")
    ] = 0.0,
    days: Annotated[int | None, DAYS_DOC] = None,
    end: Annotated[datetime | None, END_DOC] = None,
    metric: Annotated[
        RankMetric, Doc("Metric that chooses each fold's combination in sample")
    ] = "sharpe",
) -> WalkForwardSummary:
    """Walk ``strategy``'s ``grid`` forward over ``symbols`` (default: the configured
    agents' symbols): in every fold the grid runs on the train bars, the best
    combination by ``metric`` runs on the test bars from flat, and the test windows'
    equity is stitched into one out-of-sample curve (CPCV: one per path). Stores
    ``walkforward_folds`` and ``walkforward_equity``."""
    plan = expand_grid(strategy, grid)
    spec = fold_spec(train, test, step, anchored, cpcv, groups, test_groups, purge, embargo)
    chosen = resolve_symbols(symbols, load_settings())
    settings = load_settings(
        agents={f"wf-{i}": {"symbol": s, "strategy": strategy} for i, s in enumerate(chosen)}
    ).without_secrets()  # walk-forwards never notify; task parameters are stored
    window = lookback_window(
        settings.lookback_days if days is None else days, end, interval=settings.interval
    )
    precheck(
        spec,
        plan,
        float(interval_seconds(settings.interval)),
        (window.end - window.start).total_seconds(),
    )
    run_id = current_run_id()
    warehouse = Warehouse(settings.home, lock_timeout=settings.lock_timeout)
    params = {
        "strategy": plan.strategy,
        "grid": {k: list(v) for k, v in plan.axes.items()},
        "symbols": chosen,
        "metric": metric,
        "folds": spec.describe(),
        "interval": settings.interval,
        "adjust_splits": settings.adjust_splits,
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
    }
    warehouse.start_run(run_id, "walkforward", params, code_version())
    log = run_logger()
    log.info("walk-forward %s, %s, on %d symbols", plan.describe(), spec.describe(), len(chosen))
    summary = WalkForwardSummary(
        run_id=run_id,
        status="running",
        strategy=plan.strategy,
        metric=metric,
        grid=plan.describe(),
        folds=spec.describe(),
    )
    done: list[SymbolWalkForward] = []
    try:
        summary.failed.update(ingest_missing(warehouse, chosen, window, settings, run_id))
        agents = [a for a in settings.agents if a.symbol not in summary.failed]
        futures = [
            walkforward_symbol.submit(a, plan, spec, settings, window, metric, run_id)
            for a in agents
        ]
        for agent, future in zip(agents, futures, strict=True):
            outcome = future.result(raise_on_failure=False)
            raise_if_out_of_space(outcome)
            if isinstance(outcome, BaseException):
                summary.failed[agent.symbol] = f"{type(outcome).__name__}: {outcome}"
                log.error("walk-forward of %s failed: %s", agent.symbol, outcome)
            else:
                done.append(outcome)
        done.sort(key=lambda s: s.symbol)
        summary.results = [{"symbol": item.symbol, **item.summary} for item in done]
        report = publish_walkforward(
            run_id,
            plan.strategy,
            plan.describe(),
            metric,
            done,
            summary.failed,
            window,
            settings,
            warehouse.report_dir(run_id),
        )
        summary.report_path = str(report)
        summary.status = "completed" if not summary.failed else ("partial" if done else "failed")
    except BaseException as exc:
        mark_run_ended(warehouse, run_id, exc)
        raise
    # the stitched out-of-sample numbers (`hedgeflow runs` shows sharpe and total_return)
    headline = {
        item.symbol: {
            "sharpe": item.summary["oos_sharpe"],
            "total_return": item.summary["oos_total_return"],
            "is_sharpe_mean": item.summary["is_sharpe_mean"],
            "is_metric_mean": item.summary["is_metric_mean"],
        }
        for item in done
    }
    fingerprint = combined_fingerprint((s.symbol, s.bars_fingerprint) for s in done)
    reason = failures_reason(summary.failed)
    warehouse.finish_run(run_id, summary.status, headline, fingerprint, reason=reason)
    return summary
