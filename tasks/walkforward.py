"""Walk-forward tasks: one symbol's folds run and stored; the run's artifacts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from hedgeflow import columns as C
from hedgeflow.config import AgentSettings, Settings
from hedgeflow.engine import EngineConfig
from hedgeflow.errors import InvalidInputError, out_of_space_as
from hedgeflow.metrics import METRIC_KEYS, json_safe
from hedgeflow.schemas import table_columns
from hedgeflow.sweep import SweepGrid
from hedgeflow.tasks.common import log_healed, run_logger
from hedgeflow.walkforward import FoldSpec, WalkForwardResult, fold_summary, walkforward_bars
from hedgeflow.walkforward_report import walkforward_markdown, walkforward_tearsheet
from hedgeflow.warehouse import REPORT_HTML, SUMMARY_MD, Warehouse, data_fingerprint
from hedgeflow.windows import Window


@dataclass(frozen=True)
class SymbolWalkForward:
    symbol: str
    n_bars: int
    result: WalkForwardResult
    ts: pd.Series  # the bars' timestamps (fold indices point into them)
    summary: dict[str, Any]  # fold_summary
    bars_fingerprint: str


def folds_rows(
    run_id: str, symbol: str, strategy: str, result: WalkForwardResult, ts: pd.Series
) -> pd.DataFrame:
    """The ``walkforward_folds`` rows of one symbol (inf stored as null)."""
    stamps = pd.DatetimeIndex(ts)
    rows = []
    for fr in result.folds:
        f = fr.fold
        rows.append(
            {
                "run_id": run_id,
                "symbol": symbol,
                "strategy": strategy,
                "mode": result.plan.mode,
                "fold": f.index,
                "train_start": stamps[f.train[0][0]],
                "train_end": stamps[f.train[-1][1] - 1],
                "test_start": stamps[f.test[0][0]],
                "test_end": stamps[f.test[-1][1] - 1],
                "n_train_bars": f.n_train,
                "n_test_bars": f.n_test,
                "metric": result.metric,
                "best_params": fr.params,
                "is_metric": float(fr.is_metrics[result.metric]),
                "is_sharpe": float(fr.is_metrics["sharpe"]),
                **{k: fr.oos_metrics[k] for k in METRIC_KEYS},
            }
        )
    out = pd.DataFrame(rows)
    floats = ["is_metric", "is_sharpe", *(k for k in METRIC_KEYS if k != "n_trades")]
    out[floats] = out[floats].astype(np.float64).replace([np.inf, -np.inf], np.nan)
    out["n_trades"] = out["n_trades"].astype(np.int64)
    return out.reindex(columns=list(table_columns("walkforward_folds")))


def equity_rows(
    run_id: str, symbol: str, strategy: str, result: WalkForwardResult, ts: pd.Series
) -> pd.DataFrame:
    """The ``walkforward_equity`` rows: every path's stitched out-of-sample curve."""
    stamps = pd.DatetimeIndex(ts)
    frames = []
    for p in result.paths:
        fold = np.empty(len(p.bars), dtype=np.int64)
        at = 0
        for f, s in result.plan.paths[p.index]:
            a, b = result.plan.folds[f].test[s]
            fold[at : at + b - a] = f
            at += b - a
        peak = np.maximum.accumulate(p.equity)
        frames.append(
            pd.DataFrame(
                {
                    "path": p.index,
                    C.TS: stamps[p.bars],
                    "fold": fold,
                    "equity": p.equity,
                    "drawdown": np.minimum(p.equity / peak - 1.0, 0.0),
                }
            )
        )
    out = pd.concat(frames, ignore_index=True).assign(
        run_id=run_id, symbol=symbol, strategy=strategy, mode=result.plan.mode
    )
    return out.reindex(columns=list(table_columns("walkforward_equity")))


def walkforward_symbol_body(
    agent: AgentSettings,
    grid: SweepGrid,
    spec: FoldSpec,
    settings: Settings,
    window: Window,
    metric: str,
    run_id: str,
) -> SymbolWalkForward:
    """One symbol: its bars from the warehouse, every fold (the grid in sample in the
    sweep kernel, the winner out of sample), the fold and equity rows stored in one
    transaction."""
    warehouse = Warehouse(settings.home, lock_timeout=settings.lock_timeout)
    bars = warehouse.read_bars(
        agent.symbol,
        settings.interval,
        window.start,
        window.end,
        on_heal=log_healed,
        adjusted=settings.adjust_splits,  # split-adjusted, as the sweep reads them
    )
    if bars.empty:
        raise InvalidInputError(f"no {settings.interval} bars for {agent.symbol} in the window")
    config = EngineConfig.from_settings(
        agent.risk,
        settings.costs_for(agent),
        agent.asset_class,
        settings.portfolio.initial_equity,
        settings.minimums_for(agent),
    )
    result = walkforward_bars(bars, grid, config, agent.asset_class, spec, metric=metric)
    ts = bars[C.TS].reset_index(drop=True)
    tables = {
        "walkforward_folds": folds_rows(run_id, agent.symbol, grid.strategy, result, ts),
        "walkforward_equity": equity_rows(run_id, agent.symbol, grid.strategy, result, ts),
    }
    warehouse.write_results(run_id, tables)
    summary = fold_summary(result)
    run_logger().info(
        "%s: %s on %d bars; in-sample %s %.4g (mean of the folds' winners), stitched "
        "out-of-sample Sharpe %.4g",
        agent.symbol,
        result.plan.describe(),
        len(bars),
        metric,
        summary["is_metric_mean"],
        summary["oos_sharpe"],
    )
    return SymbolWalkForward(
        agent.symbol,
        len(bars),
        result,
        ts,
        summary,
        data_fingerprint({agent.symbol: bars}),
    )


walkforward_symbol = task(
    name="walkforward-symbol",
    task_run_name="walkforward-{agent.symbol}",
    cache_policy=NO_CACHE,
)(walkforward_symbol_body)


def fold_table(done: Sequence[SymbolWalkForward]) -> list[dict[str, Any]]:
    """The folds of every symbol as artifact rows (JSON-safe)."""
    rows = []
    for item in done:
        for fr in item.result.folds:
            f = fr.fold
            rows.append(
                json_safe(
                    {
                        "symbol": item.symbol,
                        "fold": f.index,
                        "train": f"{item.ts.iloc[f.train[0][0]]:%Y-%m-%d %H:%M} .. "
                        f"{item.ts.iloc[f.train[-1][1] - 1]:%Y-%m-%d %H:%M}",
                        "test": f"{item.ts.iloc[f.test[0][0]]:%Y-%m-%d %H:%M} .. "
                        f"{item.ts.iloc[f.test[-1][1] - 1]:%Y-%m-%d %H:%M}",
                        "n_train": f.n_train,
                        "n_test": f.n_test,
                        "best_params": fr.params,
                        "is_" + item.result.metric: float(fr.is_metrics[item.result.metric]),
                        "oos_sharpe": float(fr.oos_metrics["sharpe"]),
                        "oos_total_return": float(fr.oos_metrics["total_return"]),
                        "oos_n_trades": int(fr.oos_metrics["n_trades"]),
                    }
                )
            )
    return rows


def publish_walkforward_body(
    run_id: str,
    strategy: str,
    grid_text: str,
    metric: str,
    done: Sequence[SymbolWalkForward],
    failed: Mapping[str, str],
    window: Window,
    settings: Settings,
    out_dir: Path,
) -> Path:
    """report.html (stitched out-of-sample equity, in- vs out-of-sample metrics) and
    summary.md under the run's report directory; a table artifact of the folds and the
    summary as a markdown artifact. Returns the absolute path of report.html."""
    label = f"{window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M} UTC, "
    label += f"{settings.interval} bars"
    html_path = (out_dir / REPORT_HTML).resolve()
    sections = {item.symbol: (item.result, item.ts) for item in done}
    markdown = walkforward_markdown(run_id, strategy, grid_text, metric, sections, failed, label)
    with out_of_space_as(out_dir):
        html_path.write_text(
            walkforward_tearsheet(run_id, strategy, grid_text, metric, sections, failed, label),
            "utf-8",
        )
        (out_dir / SUMMARY_MD).write_text(
            markdown + f"\nFull report: `{html_path}`\n", encoding="utf-8"
        )
    rows = fold_table(done)
    if rows:
        create_table_artifact(rows, key="walkforward-folds", description=f"folds of {run_id}")
    create_markdown_artifact(
        markdown, key="walkforward-summary", description=f"walk-forward run {run_id}"
    )
    run_logger().info("walk-forward report written to %s", html_path)
    return html_path


publish_walkforward = task(name="publish-walkforward", cache_policy=NO_CACHE)(
    publish_walkforward_body
)
