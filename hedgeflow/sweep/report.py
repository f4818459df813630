"""Sweep outputs for people: heatmaps of a metric over two parameters, a best-params table."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from hedgeflow.report import fmt_metric
from hedgeflow.sweep.core import RANK_METRICS
from hedgeflow.sweep.grid import SweepGrid

__all__ = [
    "MAX_HEATMAPS",
    "best_markdown",
    "heatmap_data_url",
    "heatmap_matrix",
    "render_heatmaps",
]

MAX_HEATMAPS = 12  # symbols drawn in one heatmap figure
BEST_COLUMNS = ("sharpe", "total_return", "max_drawdown", "n_trades", "win_rate")


def heatmap_matrix(
    frame: pd.DataFrame, grid: SweepGrid, metric: str
) -> tuple[str, str, pd.DataFrame] | None:
    """(row parameter, column parameter, metric matrix) over the first two varying
    parameters of the grid; with more than two, each cell is the best value over
    the others. None when fewer than two parameters vary."""
    axes = grid.varying
    if len(axes) < 2:
        return None
    y, x = axes[0], axes[1]
    values = pd.to_numeric(frame[metric], errors="coerce")
    agg = "max" if RANK_METRICS.get(metric, True) else "min"
    table = (
        frame.assign(_v=values)
        .pivot_table(index=y, columns=x, values="_v", aggfunc=agg, dropna=False)
        .reindex(index=list(grid.axes[y]), columns=list(grid.axes[x]))
    )
    return y, x, table


def render_heatmaps(
    frames: Mapping[str, pd.DataFrame],
    grid: SweepGrid,
    metric: str,
    path: Path | BinaryIO,
    dpi: int = 90,
) -> Path | BinaryIO | None:
    """One heatmap per symbol (at most MAX_HEATMAPS) in one PNG (a file, or a binary
    buffer); None for 1-D grids."""
    symbols = sorted(frames)[:MAX_HEATMAPS]
    mats = {s: heatmap_matrix(frames[s], grid, metric) for s in symbols}
    if not symbols or any(m is None for m in mats.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(symbols))
    rows = (len(symbols) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False)
    extra = [k for k in grid.varying[2:]]
    for ax, symbol in zip(axes.flat, symbols, strict=False):
        found = mats[symbol]
        assert found is not None
        y, x, table = found
        data = table.to_numpy(dtype=np.float64)
        im = ax.imshow(np.ma.masked_invalid(data), aspect="auto", origin="lower", cmap="viridis")
        ax.set_xticks(range(len(table.columns)), [str(v) for v in table.columns], fontsize=7)
        ax.set_yticks(range(len(table.index)), [str(v) for v in table.index], fontsize=7)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(symbol, fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8)
    for ax in list(axes.flat)[len(symbols) :]:
        ax.axis("off")
    title = f"{grid.strategy}: {metric}"
    if extra:
        title += f" (best over {', '.join(extra)})"
    if len(frames) > len(symbols):
        title += f" - first {len(symbols)} of {len(frames)} symbols"
    fig.suptitle(title)
    fig.tight_layout()
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    plt.close(fig)
    return path


def heatmap_data_url(
    frames: Mapping[str, pd.DataFrame], grid: SweepGrid, metric: str, dpi: int = 45
) -> str | None:
    """The heatmaps as a small PNG data URL (a Prefect markdown artifact shows it)."""
    import base64
    import io

    buffer = io.BytesIO()
    if render_heatmaps(frames, grid, metric, buffer, dpi) is None:
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _stat(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def best_markdown(
    run_id: str,
    grid: SweepGrid,
    metric: str,
    best: Sequence[Mapping[str, Any]],
    failed: Mapping[str, str],
    window: str,
) -> str:
    """The run summary: the grid and, per symbol, the best parameters and their metrics."""
    shown = [metric, *(c for c in BEST_COLUMNS if c != metric)]
    lines = [
        f"# Sweep {run_id}",
        "",
        f"{window}; ranked by **{metric}**.",
        "",
        f"Grid: {grid.describe()}.",
        "",
        "| symbol | best parameters | " + " | ".join(shown) + " | PBO | DSR | overfit? |",
        "|---|---|" + "---:|" * len(shown) + "---:|---:|---|",
    ]
    for row in best:
        params = json.loads(row["params"])
        text = ", ".join(f"{k}={params[k]}" for k in grid.axes)
        cells = " | ".join(fmt_metric(c, row.get(c)) for c in shown)
        verdict = str(row.get("overfit_text") or "no statistics (too few bars or combinations)")
        stats = " | ".join(_stat(row.get(k)) for k in ("pbo", "dsr"))
        lines.append(f"| {row['symbol']} | {text} | {cells} | {stats} | {verdict} |")
    for symbol, error in failed.items():
        lines.append(f"\n**{symbol} failed:** {error}")
    return "\n".join(lines) + "\n"
