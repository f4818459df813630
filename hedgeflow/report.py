"""Run reports: equity and drawdown charts (PNG) and a markdown summary.

Pure rendering: it writes only into the directory it is given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hedgeflow import columns as C
from hedgeflow.metrics import METRIC_KEYS

METRIC_ORDER = METRIC_KEYS  # the order of DESIGN convention 6
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
    height: float,
    path: Path,
) -> Path:
    """One PNG: a line per name (the portfolio thick, black, on top), legend outside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, height), dpi=110)
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
    fig.savefig(path)
    plt.close(fig)
    return path


def render_charts(curves: Mapping[str, pd.DataFrame], out_dir: Path) -> dict[str, Path]:
    """Two PNGs: equity rebased to 100 per curve, and drawdown per curve."""
    out_dir.mkdir(parents=True, exist_ok=True)
    points = {name: chart_points(f) for name, f in chart_selection(curves).items() if len(f)}
    equity = {name: (ts, 100 * eq / eq[0]) for name, (ts, eq, _) in points.items()}
    drawdown = {name: (ts, 100 * dd) for name, (ts, _, dd) in points.items()}
    return {
        "equity": _line_chart(
            equity, "Equity (rebased to 100)", "equity", 4.5, out_dir / "equity.png"
        ),
        "drawdown": _line_chart(drawdown, "Drawdown (%)", "%", 3.2, out_dir / "drawdown.png"),
    }


def metrics_markdown(rows: Sequence[tuple[str, Mapping[str, Any]]], first: str) -> str:
    header = f"| {first} | " + " | ".join(METRIC_ORDER) + " |"
    rule = "|---|" + "---:|" * len(METRIC_ORDER)
    lines = [header, rule]
    for label, metrics in rows:
        lines.append(
            f"| {label} | " + " | ".join(fmt_metric(k, metrics.get(k)) for k in METRIC_ORDER) + " |"
        )
    return "\n".join(lines)


def summary_markdown(
    run_id: str,
    window: str,
    agent_rows: Sequence[tuple[str, Mapping[str, Any]]],
    portfolio_rows: Sequence[tuple[str, Mapping[str, Any]]],
    failed: Mapping[str, str],
    data_quality: Mapping[str, Mapping[str, int]],
    chart_links: Mapping[str, str],
) -> str:
    parts = [f"# hedgeflow nightly run `{run_id}`", "", f"Window: {window}", ""]
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


def _html_table(rows: Sequence[tuple[str, Mapping[str, Any]]], first: str) -> str:
    from html import escape

    head = "".join(f"<th>{escape(k)}</th>" for k in (first, *METRIC_ORDER))
    body = []
    for label, metrics in rows:
        cells = []
        for k in METRIC_ORDER:
            value = metrics.get(k)
            css = ""
            if isinstance(value, int | float) and k in ("total_return", "cagr", "sharpe"):
                css = ' class="pos"' if value > 0 else ' class="neg"' if value < 0 else ""
            cells.append(f"<td{css}>{escape(fmt_metric(k, value))}</td>")
        body.append(f"<tr><th>{escape(label)}</th>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def summary_html(
    run_id: str,
    window: str,
    agent_rows: Sequence[tuple[str, Mapping[str, Any]]],
    portfolio_rows: Sequence[tuple[str, Mapping[str, Any]]],
    failed: Mapping[str, str],
    data_quality: Mapping[str, Mapping[str, int]],
    chart_files: Mapping[str, Path],
) -> str:
    """One self-contained HTML page (charts embedded as data URLs)."""
    import base64
    from html import escape

    charts = "".join(
        f'<figure><img alt="{escape(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(path.read_bytes()).decode("ascii")}"></figure>'
        for name, path in chart_files.items()
    )
    failures = "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in failed.items())
    quality = "".join(
        f"<tr><th>{escape(sym)}</th><td>{c.get('stored', 0):,}</td>"
        f"<td>{c.get('quarantined', 0):,}</td></tr>"
        for sym, c in data_quality.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>hedgeflow run {escape(run_id)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1150px;color:#222}}
table{{border-collapse:collapse;margin:.5rem 0 1.5rem}}
td,th{{padding:.3rem .7rem;border-bottom:1px solid #ddd;text-align:right}}
th:first-child{{text-align:left}} thead th{{background:#f3f3f3}}
.pos{{color:#18794e}} .neg{{color:#c62828}} img{{max-width:100%}}
.meta{{color:#666}}
</style></head><body>
<h1>hedgeflow nightly run</h1>
<p class="meta">run <code>{escape(run_id)}</code> &middot; {escape(window)}</p>
<h2>Agents</h2>{_html_table(agent_rows, "agent")}
<h2>Portfolio</h2>{_html_table(portfolio_rows, "method")}
{f"<h2>Failed agents</h2><ul>{failures}</ul>" if failures else ""}
<h2>Charts</h2>{charts}
<h2>Data quality</h2>
<table><thead><tr><th>symbol</th><th>bars stored</th><th>quarantined</th></tr></thead>
<tbody>{quality}</tbody></table>
</body></html>
"""
