"""The walk-forward run's report: a self-contained HTML page and a markdown summary.

Pure: results in, text out. The page is built with the tearsheet's parts (one
inlined copy of the chart library, the same tables and formats): per symbol the
in-sample against stitched out-of-sample metrics, the stitched out-of-sample
equity of every path, the CPCV paths' Sharpe ratios and the folds.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from hedgeflow.report import fmt_metric
from hedgeflow.tearsheet import (
    COLOURS,
    MAX_CHART_POINTS,
    _cell,
    _kv_table,
    _layout,
    _line,
    _Page,
    _page,
    _params_text,
    _table,
    metrics_table,
    thin,
)
from hedgeflow.walkforward import WalkForwardResult, fold_summary

__all__ = ["walkforward_markdown", "walkforward_tearsheet"]

Sections = Mapping[str, tuple[WalkForwardResult, pd.Series]]  # symbol -> (result, bar ts)
MAX_PATH_LINES = 20


def _stamp(ts: pd.Series, i: int) -> str:
    return f"{pd.Timestamp(ts.iloc[i]):%Y-%m-%d %H:%M}"


def _oos_row(result: WalkForwardResult) -> tuple[str, dict[str, Any]]:
    """The stitched out-of-sample metrics; CPCV: their mean over the paths."""
    if result.plan.mode != "cpcv":
        return "out of sample (stitched)", dict(result.paths[0].metrics)
    mean = {
        k: float(np.nanmean([float(p.metrics[k]) for p in result.paths]))
        for k in result.paths[0].metrics
    }
    return f"out of sample (mean of {len(result.paths)} paths)", mean


def _equity_figure(symbol: str, result: WalkForwardResult, ts: pd.Series) -> dict[str, Any]:
    data = []
    for i, path in enumerate(result.paths[:MAX_PATH_LINES]):
        keep = thin(len(path.bars), MAX_CHART_POINTS)
        stamps = ts.iloc[path.bars[keep]].to_numpy()
        name = "stitched OOS" if len(result.paths) == 1 else f"path {i}"
        data.append(_line(name, stamps, path.equity[keep], line={"color": COLOURS[i % 7]}))
    title = f"{symbol}: stitched out-of-sample equity ({result.plan.describe()})"
    return {"data": data, "layout": _layout(title, 360)}


def _folds_table(result: WalkForwardResult, ts: pd.Series) -> str:
    head = ["fold", "train", "test", "train bars", "test bars", "chosen parameters",
            f"IS {escape(result.metric)}", "OOS Sharpe", "OOS return", "OOS trades"]  # fmt: skip
    rows = []
    for fr in result.folds:
        f = fr.fold
        rows.append(
            [
                f"<th>{f.index}</th>",
                _cell(f"{_stamp(ts, f.train[0][0])} .. {_stamp(ts, f.train[-1][1] - 1)}"),
                _cell(f"{_stamp(ts, f.test[0][0])} .. {_stamp(ts, f.test[-1][1] - 1)}"),
                _cell(f"{f.n_train:,}"),
                _cell(f"{f.n_test:,}"),
                _cell(_params_text(fr.params)),
                _cell(fmt_metric(result.metric, fr.is_metrics[result.metric])),
                _cell(fmt_metric("sharpe", fr.oos_metrics["sharpe"]), fr.oos_metrics["sharpe"]),
                _cell(
                    fmt_metric("total_return", fr.oos_metrics["total_return"]),
                    fr.oos_metrics["total_return"],
                ),
                _cell(fmt_metric("n_trades", fr.oos_metrics["n_trades"])),
            ]
        )
    return _table(head, rows, "folds scroll-y")


def walkforward_tearsheet(
    run_id: str,
    strategy: str,
    grid: str,
    metric: str,
    sections: Sections,
    failed: Mapping[str, str],
    window: str,
) -> str:
    """The run's HTML page (self-contained, the chart library inlined once)."""
    page = _Page()
    parts = [
        f"<h1>hedgeflow walk-forward: {escape(strategy)}</h1>",
        f'<p class="meta">run <code>{escape(run_id)}</code> · {escape(window)} · '
        f"grid {escape(grid)} · chosen in sample by <b>{escape(metric)}</b></p>",
        '<p class="meta">Each fold runs the whole grid on its train bars, keeps the best '
        "combination and runs only it on the test bars, starting flat (its indicators warm "
        "up on the bars before the test window, never after it). The test windows' equity "
        "curves are chained into the stitched out-of-sample curve. In sample: the mean, over "
        "the folds, of the chosen combinations' in-sample metrics.</p>",
    ]
    if failed:
        items = "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in failed.items())
        parts.append(f'<h3 id="failed">Failed symbols</h3><ul>{items}</ul>')
    for symbol in sorted(sections):
        result, ts = sections[symbol]
        summary = fold_summary(result)
        parts.append(f'<section class="card" id="wf-{escape(symbol)}"><h2>{escape(symbol)}</h2>')
        rows: list[tuple[str, Mapping[str, Any]]] = [
            ("in sample (mean of the folds' winners)", result.is_mean),
            _oos_row(result),
        ]
        parts.append(metrics_table(rows, "", short_window=False))
        pairs = [
            ("folds", result.plan.describe()),
            (f"in-sample {metric} (mean)", fmt_metric(metric, summary["is_metric_mean"])),
            ("stitched out-of-sample Sharpe", fmt_metric("sharpe", summary["oos_sharpe"])),
        ]
        if result.plan.mode == "cpcv":
            sharpes = result.oos_sharpes
            pairs.append(
                ("OOS Sharpe across paths (min / median / max, std)",
                 f"{np.min(sharpes):.2f} / {np.median(sharpes):.2f} / {np.max(sharpes):.2f}, "
                 f"{fmt_metric('sharpe', summary['oos_sharpe_std'])}")
            )  # fmt: skip
        parts.append(_kv_table(pairs))
        parts.append(page.plot(_equity_figure(symbol, result, ts)))
        if result.plan.mode == "cpcv":
            path_rows = [(f"path {p.index}", p.metrics) for p in result.paths]
            parts.append("<h3>Out-of-sample paths</h3>")
            parts.append(metrics_table(path_rows, "path", short_window=False))
        parts.append(f"<h3>Folds ({len(result.folds)})</h3>")
        parts.append(_folds_table(result, ts))
        parts.append("</section>")
    return _page(f"hedgeflow walk-forward {run_id}", "".join(parts))


def walkforward_markdown(
    run_id: str,
    strategy: str,
    grid: str,
    metric: str,
    sections: Sections,
    failed: Mapping[str, str],
    window: str,
) -> str:
    """The run's summary: per symbol, in-sample against stitched out-of-sample."""
    lines = [
        f"# Walk-forward {strategy} (run `{run_id}`)",
        "",
        f"{window}; grid {grid}; chosen in sample by {metric}.",
        "",
        f"| symbol | folds | IS {metric} (mean) | IS Sharpe (mean) | OOS Sharpe | "
        "OOS return | OOS max drawdown |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for symbol in sorted(sections):
        result, _ = sections[symbol]
        s = fold_summary(result)
        lines.append(
            f"| {symbol} | {result.plan.describe()} | {fmt_metric(metric, s['is_metric_mean'])} "
            f"| {fmt_metric('sharpe', s['is_sharpe_mean'])} "
            f"| {fmt_metric('sharpe', s['oos_sharpe'])} "
            f"| {fmt_metric('total_return', s['oos_total_return'])} "
            f"| {fmt_metric('max_drawdown', s['oos_max_drawdown'])} |"
        )
    for symbol, error in failed.items():
        lines.append(f"\n**{symbol} failed**: {error}")
    return "\n".join(lines) + "\n"
