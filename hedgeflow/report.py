"""Run summaries: equity and drawdown charts (PNG) and a markdown summary (the
nightly run's summary.md and its Prefect markdown artifact); the interactive HTML
tearsheet is ``hedgeflow.tearsheet``.

Pure rendering: it writes only into the directory it is given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from hedgeflow import columns as C
from hedgeflow.metrics import METRIC_KEYS

METRIC_ORDER = METRIC_KEYS  # the order of DESIGN convention 6
# Short column labels (tables that fit: the terminal, the tearsheet, Prefect artifacts).
METRIC_LABELS: dict[str, str] = {
    "total_return": "return",
    "cagr": "cagr",
    "ann_vol": "vol",
    "sharpe": "sharpe",
    "sortino": "sortino",
    "max_drawdown": "max dd",
    "calmar": "calmar",
    "n_trades": "trades",
    "win_rate": "win",
    "profit_factor": "pf",
    "exposure": "exposure",
}
PERCENT_METRICS = {"total_return", "cagr", "ann_vol", "max_drawdown", "win_rate", "exposure"}


def fmt_metric(name: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if name == "n_trades":
        return f"{int(value)}"
    if name in PERCENT_METRICS:
        return f"{value:.2%}"
    return f"{value:.2f}"


MAX_CHART_LINES = 10
MAX_CHART_POINTS = 2_000


def chart_points(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ts, equity, drawdown) thinned to at most MAX_CHART_POINTS points per line.

    The drawdown is computed on the full curve first, and each kept point shows the
    deepest drawdown of the stretch it stands for, so thinning never hides a trough.
    """
    ts = frame[C.TS].to_numpy()
    equity = frame["equity"].to_numpy(dtype=np.float64)
    drawdown = equity / np.maximum.accumulate(equity) - 1.0 if len(equity) else equity
    step = max(1, int(np.ceil(len(equity) / MAX_CHART_POINTS)))
    if step == 1:
        return ts, equity, drawdown
    starts = np.arange(0, len(equity), step)
    return ts[starts], equity[starts], np.minimum.reduceat(drawdown, starts)


def chart_selection(curves: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Every curve when there are few; else the portfolio plus the best and worst agents
    by final return, so a 100-agent chart stays readable."""
    agents = {k: v for k, v in curves.items() if k != "portfolio" and len(v)}
    if len(agents) <= MAX_CHART_LINES:
        return dict(curves)
    ranked = sorted(
        agents, key=lambda k: agents[k]["equity"].iloc[-1] / agents[k]["equity"].iloc[0]
    )
    half = MAX_CHART_LINES // 2
    keep = ranked[-half:][::-1] + ranked[:half]
    chosen = {k: agents[k] for k in keep}
    if "portfolio" in curves:
        chosen["portfolio"] = curves["portfolio"]
    return chosen


def _style(name: str) -> dict[str, Any]:
    """The portfolio is drawn black and on top; agents take the colour cycle."""
    return {"color": "black", "zorder": 3} if name == "portfolio" else {}


def _line_chart(
    lines: Mapping[str, tuple[np.ndarray, np.ndarray]],
    title: str,
    ylabel: str,
    size: tuple[float, float],
    target: Path | BinaryIO,
    dpi: int = 110,
) -> None:
    """One PNG: a line per name (the portfolio thick, black, on top), legend outside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=dpi)
    for name, (x, y) in lines.items():
        width = 2.4 if name == "portfolio" else 1.2
        ax.plot(x, y, label=name, linewidth=width, **_style(name))
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if lines:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(target, format="png")
    plt.close(fig)


def _chart_lines(
    curves: Mapping[str, pd.DataFrame],
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The lines of the two charts: equity rebased to 100, drawdown in %."""
    points = {name: chart_points(f) for name, f in chart_selection(curves).items() if len(f)}
    return {
        "equity": {name: (ts, 100 * eq / eq[0]) for name, (ts, eq, _) in points.items()},
        "drawdown": {name: (ts, 100 * dd) for name, (ts, _, dd) in points.items()},
    }


CHART_TITLES = {"equity": ("Equity (rebased to 100)", "equity"), "drawdown": ("Drawdown (%)", "%")}
CHART_HEIGHTS = {"equity": 4.5, "drawdown": 3.2}
# Thumbnails for the Prefect markdown artifact (embedded as data URLs, a few tens of kB).
THUMBNAIL_WIDTH_IN = 8.0
THUMBNAIL_DPI = 60


def render_charts(curves: Mapping[str, pd.DataFrame], out_dir: Path) -> dict[str, Path]:
    """Two PNGs: equity rebased to 100 per curve, and drawdown per curve."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, lines in _chart_lines(curves).items():
        title, ylabel = CHART_TITLES[name]
        out[name] = out_dir / f"{name}.png"
        _line_chart(lines, title, ylabel, (10, CHART_HEIGHTS[name]), out[name])
    return out


def chart_data_urls(curves: Mapping[str, pd.DataFrame]) -> dict[str, str]:
    """The two charts as small PNG data URLs (what a Prefect markdown artifact can show:
    its UI renders markdown images, and a ``file://`` image is broken there)."""
    import base64
    import io

    out = {}
    for name, lines in _chart_lines(curves).items():
        title, ylabel = CHART_TITLES[name]
        buffer = io.BytesIO()
        height = CHART_HEIGHTS[name] * THUMBNAIL_WIDTH_IN / 10
        _line_chart(lines, title, ylabel, (THUMBNAIL_WIDTH_IN, height), buffer, THUMBNAIL_DPI)
        out[name] = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return out


def metrics_markdown(rows: Sequence[tuple[str, Mapping[str, Any]]], first: str) -> str:
    """The rows as a markdown table of the artifact columns (``formatted_metrics_rows``)."""
    table = formatted_metrics_rows(rows, first)
    heads = list(table[0]) if table else [first, *(METRIC_LABELS[k] for k in ARTIFACT_METRICS)]
    lines = ["| " + " | ".join(heads) + " |", "|---|" + "---:|" * (len(heads) - 1)]
    lines += ["| " + " | ".join(row.values()) + " |" for row in table]
    return "\n".join(lines)


def summary_markdown(
    run_id: str,
    window: str,
    agent_rows: Sequence[tuple[str, Mapping[str, Any]]],
    portfolio_rows: Sequence[tuple[str, Mapping[str, Any]]],
    failed: Mapping[str, str],
    data_quality: Mapping[str, Mapping[str, int]],
    chart_links: Mapping[str, str],
    report_path: str | None = None,
    caution: str | None = None,
) -> str:
    parts = [f"# hedgeflow nightly run `{run_id}`", "", f"Window: {window}", ""]
    if report_path:
        parts += [f"Full report (interactive tearsheet): `{report_path}`", ""]
    if caution:
        parts += [f"**Caution:** {caution}", ""]
    if agent_rows:
        ranked = sorted(agent_rows, key=lambda r: r[1].get("sharpe") or -math.inf, reverse=True)
        best, worst = ranked[0], ranked[-1]
        parts += [
            f"**Best agent:** {best[0]} (Sharpe {fmt_metric('sharpe', best[1].get('sharpe'))}, "
            f"return {fmt_metric('total_return', best[1].get('total_return'))})  ",
            f"**Worst agent:** {worst[0]} (Sharpe {fmt_metric('sharpe', worst[1].get('sharpe'))}, "
            f"return {fmt_metric('total_return', worst[1].get('total_return'))})",
            "",
        ]
    parts += ["## Agents", "", metrics_markdown(agent_rows, "agent"), ""]
    parts += ["## Portfolio", "", metrics_markdown(portfolio_rows, "method"), ""]
    if failed:
        parts += ["## Failed agents", ""]
        parts += [f"- **{name}**: {error}" for name, error in failed.items()]
        parts.append("")
    if data_quality:
        parts += [
            "## Data quality",
            "",
            "| symbol | bars stored | quarantined |",
            "|---|---:|---:|",
        ]
        for symbol, counts in data_quality.items():
            parts.append(
                f"| {symbol} | {counts.get('stored', 0):,} | {counts.get('quarantined', 0):,} |"
            )
        parts.append("")
    if chart_links:
        parts += ["## Charts", ""]
        parts += [f"![{name}]({link})" for name, link in chart_links.items()]
        parts.append("")
    return "\n".join(parts)


# The Prefect table artifacts' columns: they must fit the artifact page next to its
# sidebar (about 850 px at a 1,400 px window), so Sortino stays in the tearsheet.
ARTIFACT_METRICS = tuple(k for k in METRIC_ORDER if k != "sortino")


def formatted_metrics_rows(
    rows: Sequence[tuple[str, Mapping[str, Any]]], first: str
) -> list[dict[str, str]]:
    """Metrics rows as short-labelled, formatted strings (a Prefect table artifact shows
    values as given: raw floats would show as ``0.03488235911084914``); a metric empty
    in every row (the portfolio's trade statistics) is left out."""
    keys = [k for k in ARTIFACT_METRICS if any(fmt_metric(k, m.get(k)) != "–" for _, m in rows)]
    return [
        {first: label, **{METRIC_LABELS[k]: fmt_metric(k, metrics.get(k)) for k in keys}}
        for label, metrics in rows
    ]


def skipped_by_reason(skipped: pd.DataFrame) -> str:
    """The entries the order minimums skipped (``engine.SKIPPED_COLUMNS``), counted per
    reason in reason order: ``"below_min_notional 3, below_qty_step 1"``."""
    counts = skipped["reason"].value_counts().sort_index()
    return ", ".join(f"{reason} {n}" for reason, n in counts.items())
