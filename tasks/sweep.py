"""Sweep tasks: a batch of symbols swept and stored; the run's artifacts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from hedgeflow import columns as C
from hedgeflow.config import AgentSettings, RiskSettings, Settings
from hedgeflow.engine import EngineConfig
from hedgeflow.errors import InvalidInputError, out_of_space_as
from hedgeflow.metrics import METRIC_KEYS, json_safe
from hedgeflow.overfit import OverfitStats, overfit_verdict
from hedgeflow.schemas import table_columns
from hedgeflow.sweep import SweepGrid, sweep_symbol_bars
from hedgeflow.sweep.report import (
    best_markdown,
    heatmap_data_url,
    heatmap_matrix,
    render_heatmaps,
)
from hedgeflow.tasks.common import log_healed, progress_log, run_logger
from hedgeflow.tearsheet import SweepSection, sweep_tearsheet
from hedgeflow.warehouse import REPORT_HTML, SUMMARY_MD, Warehouse, data_fingerprint
from hedgeflow.windows import Window


@dataclass(frozen=True)
class SymbolSweep:
    symbol: str
    n_bars: int
    frame: pd.DataFrame  # grid parameters, params (JSON), metrics, rank
    bars_fingerprint: str
    overfit: OverfitStats | None = None  # the combinations' overfitting statistics
    overfit_note: str | None = None  # why there are none


@dataclass(frozen=True)
class SymbolFailure:
    symbol: str
    error: str


def sweep_rows(run_id: str, symbol: str, strategy: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The ``sweep_results`` rows of one symbol (inf stored as null, like agent metrics)."""
    metrics = frame[list(METRIC_KEYS)].replace([np.inf, -np.inf], np.nan)
    rows = pd.concat([frame[["params", "rank", C.ORDERS_SKIPPED]], metrics], axis=1).assign(
        run_id=run_id, symbol=symbol, strategy=strategy
    )
    return rows.reindex(columns=list(table_columns("sweep_results")))


def overfit_rows(
    run_id: str, symbol: str, strategy: str, frame: pd.DataFrame, stats: OverfitStats
) -> pd.DataFrame:
    """The ``sweep_overfit`` row of one symbol (NaN stored as null)."""
    row = {
        "run_id": run_id,
        "symbol": symbol,
        "strategy": strategy,
        "n_trials": stats.n_trials,
        "n_obs": stats.n_obs,
        "n_blocks": stats.n_blocks,
        "n_splits": stats.n_splits,
        "best_params": frame["params"].iloc[stats.best],  # trials are in grid order
        **{k: stats.summary()[k] for k in OVERFIT_FLOATS},
        "overfit": stats.overfit,
    }
    out = pd.DataFrame([row]).reindex(columns=list(table_columns("sweep_overfit")))
    floats = list(OVERFIT_FLOATS)
    out[floats] = out[floats].astype(np.float64).replace([np.inf, -np.inf], np.nan)
    return out


def overfit_headline(stats: OverfitStats | None) -> dict[str, object]:
    """The rank-1 row's overfitting fields: pbo, dsr, psr, n_trials and the verdict
    (``overfit``, ``overfit_text``); empty without statistics."""
    if stats is None:
        return {}
    overfit, text = overfit_verdict(stats.pbo, stats.dsr)
    clean = json_safe({"pbo": stats.pbo, "dsr": stats.dsr, "psr": stats.psr})
    return {**clean, "n_trials": stats.n_trials, "overfit": overfit, "overfit_text": text}


OVERFIT_FLOATS = (
    "sharpe_best", "psr", "sr0", "dsr", "pbo", "prob_oos_loss",
    "degradation_slope", "degradation_intercept",
)  # fmt: skip


def sweep_symbol(
    agent: AgentSettings,
    grid: SweepGrid,
    settings: Settings,
    window: Window,
    metric: str,
) -> SymbolSweep:
    """One symbol: its bars from the warehouse, the whole grid in one compiled batch."""
    bars = Warehouse(settings.home, lock_timeout=settings.lock_timeout).read_bars(
        agent.symbol,
        settings.interval,
        window.start,
        window.end,
        on_heal=log_healed,
        adjusted=settings.adjust_splits,
    )
    config = EngineConfig.from_settings(
        agent.risk,
        settings.costs_for(agent),
        agent.asset_class,
        settings.portfolio.initial_equity,
        settings.minimums_for(agent),
    )
    if bars.empty:
        raise InvalidInputError(f"no {settings.interval} bars for {agent.symbol} in the window")
    result = sweep_symbol_bars(bars, grid, config, agent.asset_class, metric)
    return SymbolSweep(
        agent.symbol,
        len(bars),
        result.frame,
        data_fingerprint({agent.symbol: bars}),
        result.overfit,
        result.overfit_note,
    )


def sweep_batch_body(
    label: str,
    agents: list[AgentSettings],
    grid: SweepGrid,
    settings: Settings,
    window: Window,
    metric: str,
    run_id: str,
) -> list[SymbolSweep | SymbolFailure]:
    """Sweep a batch of symbols and store their rows in one transaction.

    A batch of one fails its task run when the symbol fails; in a larger batch a
    symbol's failure is returned instead, so the rest of the batch still stores."""
    log = run_logger()
    out: list[SymbolSweep | SymbolFailure] = []
    for agent in agents:
        try:
            done = sweep_symbol(agent, grid, settings, window, metric)
        except Exception as exc:
            if len(agents) == 1:
                raise
            log.error("sweep of %s failed: %s", agent.symbol, exc)
            out.append(SymbolFailure(agent.symbol, f"{type(exc).__name__}: {exc}"))
            continue
        best = done.frame[done.frame["rank"] == 1].iloc[0]
        log.info(
            "%s: %d combinations on %d bars, best %s %s = %.4g",
            agent.symbol,
            len(done.frame),
            done.n_bars,
            best["params"],
            metric,
            float(best[metric]),
        )
        if done.overfit is not None:
            log.info(
                "%s: PBO %.3f, DSR %.3f over %d combinations",
                agent.symbol,
                done.overfit.pbo,
                done.overfit.dsr,
                done.overfit.n_trials,
            )
        elif done.overfit_note:
            log.info("%s: %s", agent.symbol, done.overfit_note)
        out.append(done)
    swept = [r for r in out if isinstance(r, SymbolSweep)]
    rows = [sweep_rows(run_id, r.symbol, grid.strategy, r.frame) for r in swept]
    overfit = [
        overfit_rows(run_id, r.symbol, grid.strategy, r.frame, r.overfit)
        for r in swept
        if r.overfit is not None
    ]
    if rows:
        tables = {"sweep_results": pd.concat(rows, ignore_index=True)}
        if overfit:
            tables["sweep_overfit"] = pd.concat(overfit, ignore_index=True)
        Warehouse(settings.home, lock_timeout=settings.lock_timeout).write_results(run_id, tables)
    for item in out:
        if isinstance(item, SymbolSweep):
            progress_log.info(
                "%s: %d combinations",
                item.symbol,
                len(item.frame),
                extra={"hedgeflow_event": "sweep_done"},
            )
    return out


sweep_batch = task(
    name="sweep-batch",
    task_run_name="sweep-{label}",
    cache_policy=NO_CACHE,
)(sweep_batch_body)


def sweep_section(
    grid: SweepGrid,
    metric: str,
    frames: Mapping[str, pd.DataFrame],
    settings: Settings,
    overfit: Mapping[str, OverfitStats] | None = None,
) -> SweepSection:
    """The sweep tearsheet's inputs: results per symbol, the grid, risk and costs used."""
    heatmaps = {}
    for symbol, frame in frames.items():
        found = heatmap_matrix(frame, grid, metric)
        if found is not None:
            heatmaps[symbol] = found
    risk = settings.agents[0].risk if settings.agents else RiskSettings()
    classes = sorted({a.asset_class for a in settings.agents})
    return SweepSection(
        strategy=grid.strategy,
        metric=metric,
        grid=grid.describe(),
        parameters=tuple(grid.axes),
        heatmaps=heatmaps,
        frames=frames,
        risk=risk,
        costs={k: settings.costs[k] for k in classes if k in settings.costs},
        overfit=dict(overfit or {}),
    )


def publish_sweep_body(
    run_id: str,
    grid: SweepGrid,
    metric: str,
    frames: Mapping[str, pd.DataFrame],
    best: Sequence[Mapping[str, object]],
    failed: Mapping[str, str],
    window: Window,
    settings: Settings,
    out_dir: Path,
    overfit: Mapping[str, OverfitStats] | None = None,
) -> Path:
    """report.html (the tearsheet), summary.md and heatmap.png under the run's report
    directory; the summary (heatmap embedded) as a Prefect markdown artifact. Returns
    the absolute path of report.html. ``overfit``: each symbol's overfitting statistics."""
    label = f"{window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M} UTC, "
    label += f"{settings.interval} bars"
    html_path = (out_dir / REPORT_HTML).resolve()
    days = (window.end - window.start).total_seconds() / 86400
    section = sweep_section(grid, metric, frames, settings, overfit)
    with out_of_space_as(out_dir):  # a full disk: "no space left on <report folder>"
        html_path.write_text(sweep_tearsheet(run_id, label, section, best, failed, days), "utf-8")
        heatmap = render_heatmaps(frames, grid, metric, out_dir / "heatmap.png")
        markdown = best_markdown(run_id, grid, metric, best, failed, label)
        markdown += f"\nFull report (interactive tearsheet): `{html_path}`\n"
        summary = out_dir / SUMMARY_MD
        summary.write_text(
            markdown + (f"\n![heatmap of {metric}](heatmap.png)\n" if heatmap is not None else ""),
            encoding="utf-8",
        )
    thumbnail = heatmap_data_url(frames, grid, metric)
    if thumbnail is not None:
        markdown += f"\n![heatmap of {metric}]({thumbnail})\n"
    create_markdown_artifact(markdown, key="sweep-summary", description=f"sweep run {run_id}")
    run_logger().info("sweep report written to %s", html_path)
    return html_path


publish_sweep = task(name="publish-sweep", cache_policy=NO_CACHE)(publish_sweep_body)
