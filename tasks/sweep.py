"""Sweep tasks: a batch of symbols swept and stored; the run's artifacts."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_image_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from hedgeflow.config import AgentSettings, Settings
from hedgeflow.engine import EngineConfig
from hedgeflow.errors import InvalidInputError, out_of_space_as
from hedgeflow.metrics import METRIC_KEYS
from hedgeflow.schemas import table_columns
from hedgeflow.sweep import SweepGrid, sweep_bars
from hedgeflow.sweep.report import best_markdown, render_heatmaps
from hedgeflow.tasks.common import log_healed, progress_log, run_logger
from hedgeflow.warehouse import Warehouse, data_fingerprint
from hedgeflow.windows import Window


@dataclass(frozen=True)
class SymbolSweep:
    symbol: str
    n_bars: int
    frame: pd.DataFrame  # grid parameters, params (JSON), metrics, rank
    bars_fingerprint: str


@dataclass(frozen=True)
class SymbolFailure:
    symbol: str
    error: str


def sweep_rows(run_id: str, symbol: str, strategy: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The ``sweep_results`` rows of one symbol (inf stored as null, like agent metrics)."""
    metrics = frame[list(METRIC_KEYS)].replace([np.inf, -np.inf], np.nan)
    rows = pd.concat([frame[["params", "rank"]], metrics], axis=1).assign(
        run_id=run_id, symbol=symbol, strategy=strategy
    )
    return rows.reindex(columns=list(table_columns("sweep_results")))


def sweep_symbol(
    agent: AgentSettings,
    grid: SweepGrid,
    settings: Settings,
    window: Window,
    metric: str,
) -> SymbolSweep:
    """One symbol: its bars from the warehouse, the whole grid in one compiled batch."""
    bars = Warehouse(settings.home, lock_timeout=settings.lock_timeout).read_bars(
        agent.symbol, settings.interval, window.start, window.end, on_heal=log_healed
    )
    config = EngineConfig.from_settings(
        agent.risk, settings.costs_for(agent), agent.asset_class, settings.portfolio.initial_equity
    )
    if bars.empty:
        raise InvalidInputError(f"no {settings.interval} bars for {agent.symbol} in the window")
    frame = sweep_bars(bars, grid, config, agent.asset_class, metric)
    return SymbolSweep(agent.symbol, len(bars), frame, data_fingerprint({agent.symbol: bars}))


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
        out.append(done)
    rows = [
        sweep_rows(run_id, r.symbol, grid.strategy, r.frame)
        for r in out
        if isinstance(r, SymbolSweep)
    ]
    if rows:
        Warehouse(settings.home, lock_timeout=settings.lock_timeout).write_results(
            run_id, {"sweep_results": pd.concat(rows, ignore_index=True)}
        )
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


def _data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def publish_sweep_body(
    run_id: str,
    grid: SweepGrid,
    metric: str,
    frames: Mapping[str, pd.DataFrame],
    best: Sequence[Mapping[str, object]],
    failed: Mapping[str, str],
    window: str,
    out_dir: Path,
) -> Path:
    """summary.md + heatmap.png under the run's report directory, as Prefect artifacts."""
    with out_of_space_as(out_dir):  # a full disk: "no space left on <report folder>"
        heatmap = render_heatmaps(frames, grid, metric, out_dir / "heatmap.png")
        markdown = best_markdown(run_id, grid, metric, best, failed, window)
        if heatmap is not None:
            markdown += f"\nHeatmap of {metric}: {heatmap.resolve().as_uri()}\n"
        summary = out_dir / "summary.md"
        summary.write_text(markdown, encoding="utf-8")
    create_markdown_artifact(markdown, key="sweep-summary", description=f"sweep run {run_id}")
    if heatmap is not None:
        create_image_artifact(
            _data_url(heatmap), key="sweep-heatmap", description=f"{metric} heatmap, {heatmap}"
        )
    run_logger().info("sweep summary written to %s", summary)
    return summary


publish_sweep = task(name="publish-sweep", cache_policy=NO_CACHE)(publish_sweep_body)
