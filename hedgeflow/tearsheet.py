"""The run tearsheet: one self-contained, interactive HTML page per nightly or sweep run.

Pure: frames and settings in, an HTML string out (no I/O but reading the packaged
chart library). Charts are plotly.js figure specs (JSON) drawn by ONE inlined copy of
plotly.js's "basic" bundle (``hedgeflow/assets/plotly-basic.min.js``, MIT, about
1.2 MB: scatter and bar traces, which is all the page draws), so the page opens
offline. Long series are thinned to at most ``max_points`` points per line (each
kept point of a drawdown shows the deepest drawdown of the stretch it stands for);
trade markers are drawn at their exact fills. Tables are HTML with formatted
numbers, each in a box that scrolls sideways when it is wider than the page.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from html import escape
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from hedgeflow import columns as C
from hedgeflow.config import CostSettings, OrderMinimums, RiskSettings
from hedgeflow.market import bars_per_year
from hedgeflow.metrics import bar_spacing_seconds, compute_metrics, side_summary
from hedgeflow.overfit import DSR_LIMIT, PBO_LIMIT, OverfitStats, overfit_verdict
from hedgeflow.report import METRIC_LABELS, METRIC_ORDER, fmt_metric, skipped_by_reason

__all__ = [
    "ANNUALISED_METRICS",
    "CHART_LIBRARY",
    "CHART_LIBRARY_BANNER",
    "MAX_CHART_POINTS",
    "METHOD_LABELS",
    "SHORT_WINDOW_DAYS",
    "AgentSection",
    "PortfolioSection",
    "SweepSection",
    "buy_and_hold",
    "degradation_scatter",
    "logit_histogram",
    "market_gaps",
    "monthly_returns",
    "nightly_tearsheet",
    "plotly_js",
    "rolling_sharpe",
    "sweep_tearsheet",
    "thin",
    "window_days",
    "worst_drawdowns",
]

CHART_LIBRARY = "plotly-basic.min.js"  # hedgeflow/assets/, inlined once per page
CHART_LIBRARY_BANNER = "plotly.js (basic - minified)"  # its first comment names it
# Annualised figures from windows shorter than this carry a caution.
SHORT_WINDOW_DAYS = 90
ANNUALISED_METRICS = ("cagr", "ann_vol", "sharpe", "sortino", "calmar")
MAX_CHART_POINTS = 2_000  # per line, for a few agents
MIN_CHART_POINTS = 300  # per line, however many agents
CHART_POINT_BUDGET = 100_000  # per page: the per-line cap shrinks with many agents
MAX_TRADE_ROWS = 500  # per agent in the trades table (all trades are in the warehouse)
WORST_DRAWDOWNS = 5
METHOD_LABELS = {
    "equal": "equal weight",
    "inverse_vol": "inverse volatility",
    "risk_parity": "risk parity",
}
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
PORTFOLIO_COLOUR = "#111111"
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


@cache
def plotly_js() -> str:
    """The packaged plotly.js basic bundle (read once per process)."""
    return resources.files("hedgeflow").joinpath("assets", CHART_LIBRARY).read_text("utf-8")


@dataclass(frozen=True)
class AgentSection:
    """One agent's results and the settings it ran with."""

    name: str
    symbol: str
    strategy: str
    asset_class: str
    params: Mapping[str, Any]
    risk: RiskSettings
    costs: CostSettings
    prices: pd.DataFrame  # ts, close: the bars the agent traded
    trades: pd.DataFrame  # engine.TRADE_COLUMNS
    equity: pd.DataFrame  # ts, equity
    metrics: Mapping[str, Any]
    minimums: OrderMinimums = field(default_factory=OrderMinimums)
    # engine.SKIPPED_COLUMNS: the entries the order minimums skipped
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["reason"]))


@dataclass(frozen=True)
class PortfolioSection:
    method: str  # the configured allocation: its curve is the one drawn
    rebalance: str
    fee_bps: float
    initial_equity: float
    asset_class: str  # how its metrics are annualised
    equity: pd.DataFrame  # ts, equity
    metrics_by_method: Mapping[str, Mapping[str, Any]]
    weights_by_method: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


# ------------------------------------------------------------------ analytics


def thin(n: int, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` evenly spaced rows of ``n`` (always the last)."""
    if n <= max_points:
        return np.arange(n)
    step = math.ceil(n / max_points)
    idx = np.arange(0, n, step)
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def _drawdown(equity: np.ndarray) -> np.ndarray:
    return equity / np.maximum.accumulate(equity) - 1.0 if len(equity) else equity


def _thin_series(
    ts: Any, values: np.ndarray, max_points: int, keep_min: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(ts, values) thinned; ``keep_min``: each kept point is its stretch's minimum."""
    ts = np.asarray(ts)
    idx = thin(len(values), max_points)
    if len(idx) == len(values) or not keep_min:
        return ts[idx], values[idx]
    starts = idx[:-1]
    mins = np.minimum.reduceat(values, starts)
    return ts[idx], np.append(mins, values[-1])


def buy_and_hold(prices: pd.DataFrame, initial_equity: float) -> pd.DataFrame:
    """Equity of ``initial_equity`` put into the symbol at the first close and held:
    ``ts``, ``equity`` (no costs)."""
    close = prices[C.CLOSE].to_numpy(dtype=np.float64)
    return pd.DataFrame(
        {C.TS: prices[C.TS].to_numpy(), "equity": initial_equity * close / close[0]}
    )


def monthly_returns(equity: pd.DataFrame) -> pd.DataFrame:
    """Calendar-month returns (UTC months): rows are years, columns 1..12 and ``year``
    (the compounded year); the first month is measured from the first equity point."""
    series = pd.Series(
        equity["equity"].to_numpy(dtype=np.float64),
        index=pd.DatetimeIndex(pd.to_datetime(equity[C.TS], utc=True)),
    )
    month_end = series.groupby([series.index.year, series.index.month]).last()
    previous = month_end.shift(1)
    previous.iloc[0] = series.iloc[0]
    returns = month_end / previous - 1.0
    table = returns.unstack().reindex(columns=range(1, 13))
    table.index.name = "year"
    table.columns.name = None
    table["year"] = (1.0 + table[list(range(1, 13))].fillna(0.0)).prod(axis=1) - 1.0
    return table


def worst_drawdowns(equity: pd.DataFrame, n: int = WORST_DRAWDOWNS) -> pd.DataFrame:
    """The ``n`` deepest drawdowns: ``peak`` (last high before it), ``trough``,
    ``recovered`` (first time back at the high; NaT while under water), ``depth``
    (a negative fraction) and ``days`` (peak to recovery, or to the last point)."""
    e = equity["equity"].to_numpy(dtype=np.float64)
    ts = pd.DatetimeIndex(pd.to_datetime(equity[C.TS], utc=True))
    dd = _drawdown(e)
    rows = []
    i = 0
    while i < len(dd):
        if dd[i] >= 0:
            i += 1
            continue
        start = i
        while i < len(dd) and dd[i] < 0:
            i += 1
        stretch = dd[start:i]
        trough = start + int(np.argmin(stretch))
        peak = max(start - 1, 0)
        recovered = ts[i] if i < len(dd) else pd.NaT
        end = ts[i] if i < len(dd) else ts[-1]
        rows.append(
            {
                "peak": ts[peak],
                "trough": ts[trough],
                "recovered": recovered,
                "depth": float(stretch.min()),
                "days": (end - ts[peak]).total_seconds() / 86400,
            }
        )
    frame = pd.DataFrame(rows, columns=["peak", "trough", "recovered", "depth", "days"])
    return frame.sort_values("depth", kind="stable").head(n).reset_index(drop=True)


def rolling_sharpe(equity: pd.DataFrame, asset_class: str) -> tuple[pd.DataFrame, int]:
    """Sharpe of the bar returns over a rolling window of about one week of bars
    (``N / 52``, convention 6's N of the asset class), annualised like the metrics:
    (``ts``, ``sharpe``) from the first full window, and the window in bars."""
    e = equity["equity"].to_numpy(dtype=np.float64)
    if len(e) < 3:
        return pd.DataFrame({C.TS: [], "sharpe": []}), 0
    n_per_year = bars_per_year(asset_class, bar_spacing_seconds(equity[C.TS]))  # type: ignore[arg-type]
    window = max(2, round(n_per_year / 52))
    r = pd.Series(e[1:] / e[:-1] - 1.0)
    roll = r.rolling(window)
    std = roll.std(ddof=1)
    sharpe = (roll.mean() / std.where(std > 0) * math.sqrt(n_per_year)).fillna(0.0)
    keep = np.arange(window - 1, len(r))
    ts = np.asarray(equity[C.TS].to_numpy())[1:]
    return pd.DataFrame({C.TS: ts[keep], "sharpe": sharpe.to_numpy()[keep]}), window


def window_days(frames: Sequence[pd.DataFrame]) -> float:
    """The longest time span (days) covered by the ``ts`` of the frames."""
    spans = [
        (pd.Timestamp(f[C.TS].iloc[-1]) - pd.Timestamp(f[C.TS].iloc[0])).total_seconds() / 86400
        for f in frames
        if len(f)
    ]
    return max(spans, default=0.0)


MAX_GAPS = 400  # more closed stretches than this: draw them instead of hiding them


def market_gaps(ts: Any) -> list[dict[str, Any]]:
    """Plotly rangebreaks hiding the stretches with no bars (nights, weekends and
    holidays of a market that closes), so its chart has no flat lines across them."""
    t = pd.DatetimeIndex(pd.to_datetime(np.asarray(ts), utc=True))
    if len(t) < 3:
        return []
    spacing = pd.Timedelta(seconds=bar_spacing_seconds(t))
    diffs = t[1:] - t[:-1]
    where = np.flatnonzero(diffs > 3 * spacing)
    if not len(where) or len(where) > MAX_GAPS:
        return []
    return [{"bounds": _times([t[i] + spacing, t[i + 1]])} for i in where]


# ------------------------------------------------------------------ formatting


def fmt_price(value: Any) -> str:
    if value is None or not math.isfinite(float(value)):
        return "–"
    v = float(value)
    if abs(v) >= 100:
        return f"{v:,.2f}"
    if abs(v) >= 1:
        return f"{v:,.4f}"
    return f"{v:.6g}"


def fmt_qty(value: Any) -> str:
    v = float(value)
    return f"{v:,.0f}" if v == int(v) else f"{v:,.4f}"


def fmt_money(value: Any) -> str:
    if value is None or not math.isfinite(float(value)):
        return "–"
    return f"{float(value):+,.2f}"


def fmt_pct(value: Any, signed: bool = True) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{float(value):+.2%}" if signed else f"{float(value):.2%}"


def fmt_ts(value: Any) -> str:
    if value is None or pd.isna(value):
        return "–"
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")


def _sign_class(value: Any) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value) or value == 0:
        return ""
    return ' class="pos"' if value > 0 else ' class="neg"'


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """A table of already formatted (and escaped) cells in a sideways-scrolling box."""
    thead = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    klass = f' class="{cls}"' if cls else ""
    return (
        f'<div class="table-wrap"><table{klass}><thead><tr>{thead}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _cell(text: str, value: Any = None, first: bool = False) -> str:
    tag = "th" if first else "td"
    return f"<{tag}{_sign_class(value)}>{escape(text)}</{tag}>"


def metric_heads(short_window: bool) -> list[str]:
    """Column heads of the metrics (escaped); annualised ones marked † for a short window."""
    return [
        escape(METRIC_LABELS[k]) + ("&#8201;†" if short_window and k in ANNUALISED_METRICS else "")
        for k in METRIC_ORDER
    ]


def metrics_table(
    rows: Sequence[tuple[str, Mapping[str, Any]]], first: str, short_window: bool
) -> str:
    """Metrics with convention 6's names shortened; annualised columns flagged with †
    when the window is short."""
    head = [escape(first), *metric_heads(short_window)]
    body = []
    for label, metrics in rows:
        cells = [_cell(label, first=True)]
        for k in METRIC_ORDER:
            value = metrics.get(k)
            signed = k in ("total_return", "cagr", "sharpe", "sortino", "calmar")
            cells.append(_cell(fmt_metric(k, value), value if signed else None))
        body.append(cells)
    return _table(head, body, "metrics")


def _caveat(days: float) -> str:
    return (
        f'<p class="caveat" id="short-window-caveat"><b>Caution:</b> this window covers only '
        f"{days:.0f} days. The columns marked † (CAGR, volatility, Sharpe, Sortino, Calmar) "
        f"are annualised from it: over fewer than {SHORT_WINDOW_DAYS} days they extrapolate a "
        "few weeks to a year and are not estimates of what a year would bring.</p>"
    )


def _monthly_table(table: pd.DataFrame) -> str:
    values = table[list(range(1, 13))].to_numpy(dtype=np.float64)
    scale = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.0
    head = ["", *MONTHS, "year"]
    rows = []
    for year, row in table.iterrows():
        cells = [f"<th>{year}</th>"]
        for m in range(1, 13):
            v = row[m]
            if pd.isna(v):
                cells.append('<td class="empty"></td>')
                continue
            alpha = 0.12 + 0.6 * abs(v) / scale if scale > 0 else 0.0
            rgb = "24,121,78" if v >= 0 else "198,40,40"
            cells.append(f'<td style="background:rgba({rgb},{alpha:.2f})">{fmt_pct(v)}</td>')
        cells.append(_cell(fmt_pct(row["year"]), row["year"]))
        rows.append(cells)
    return _table(head, rows, "monthly")


def _drawdowns_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return '<p class="meta">No drawdown in this window.</p>'
    rows = [
        [
            f"<th>{i + 1}</th>",
            _cell(fmt_pct(r.depth), r.depth),
            _cell(fmt_ts(r.peak)),
            _cell(fmt_ts(r.trough)),
            _cell(fmt_ts(r.recovered) if not pd.isna(r.recovered) else "not yet"),
            _cell(f"{r.days:.1f}"),
        ]
        for i, r in enumerate(frame.itertuples())
    ]
    return _table(["#", "depth", "peak", "trough", "recovered", "days"], rows, "drawdowns")


def _trades_table(trades: pd.DataFrame) -> str:
    if trades.empty:
        return '<p class="meta">No trades in this window.</p>'
    shown = trades.head(MAX_TRADE_ROWS)
    rows = [
        [
            f"<th>{int(t.trade_id)}</th>",
            _cell(str(t.side)),
            _cell(fmt_qty(t.qty)),
            _cell(fmt_ts(t.entry_ts)),
            _cell(fmt_price(t.entry_price)),
            _cell(fmt_ts(t.exit_ts)),
            _cell(fmt_price(t.exit_price)),
            _cell(str(t.exit_reason)),
            _cell(f"{float(t.fees):,.2f}"),
            _cell(fmt_money(t.pnl), t.pnl),
            _cell(fmt_pct(t.return_pct), t.return_pct),
        ]
        for t in shown.itertuples()
    ]
    head = ["#", "side", "qty", "entry (UTC)", "entry price", "exit (UTC)", "exit price"]
    head += ["exit reason", "fees", "pnl", "return"]
    note = (
        f'<p class="meta">First {MAX_TRADE_ROWS} of {len(trades):,} trades (all are in the '
        "<code>trades</code> table).</p>"
        if len(trades) > MAX_TRADE_ROWS
        else ""
    )
    return note + _table(head, rows, "trades scroll-y")


def _sides_table(trades: pd.DataFrame) -> str:
    """Trades, pnl, win rate and profit factor per side (long, short)."""
    if trades.empty:
        return ""
    rows = [
        [
            f"<th>{side}</th>",
            _cell(f"{int(v['n_trades']):,}"),
            _cell(fmt_money(v["pnl"]), v["pnl"]),
            _cell(fmt_pct(v["win_rate"], signed=False)),
            _cell(fmt_metric("profit_factor", v["profit_factor"])),
        ]
        for side, v in side_summary(trades).items()
    ]
    return _table(["side", "trades", "pnl", "win rate", "profit factor"], rows, "sides")


def _kv_table(pairs: Sequence[tuple[str, str]]) -> str:
    return _table(
        ["setting", "value"],
        [[f"<th>{escape(k)}</th>", f"<td class='left'>{escape(v)}</td>"] for k, v in pairs],
        "settings",
    )


# ------------------------------------------------------------------ charts


def _num(values: np.ndarray, digits: int = 7) -> list[float | None]:
    """Plain floats rounded to ``digits`` significant digits (None for NaN): short JSON."""
    return [float(f"{v:.{digits}g}") if math.isfinite(v) else None for v in values.tolist()]


def _times(values: Any) -> list[str]:
    idx = pd.DatetimeIndex(pd.to_datetime(np.asarray(values), utc=True))
    return list(idx.strftime("%Y-%m-%d %H:%M"))


def _layout(title: str, height: int, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "x": 0.01, "font": {"size": 15}},
        "height": height,
        "margin": {"l": 64, "r": 16, "t": 40, "b": 36},
        "hovermode": "x unified",
        "legend": {"orientation": "h", "y": -0.12},
        "xaxis": {"type": "date"},
        "template": None,
    }
    layout.update(extra)
    return layout


def _line(name: str, ts: Any, y: np.ndarray, **extra: Any) -> dict[str, Any]:
    trace = {"type": "scatter", "mode": "lines", "name": name, "x": _times(ts), "y": _num(y)}
    trace.update(extra)
    return trace


def _levels(trades: pd.DataFrame, risk: RiskSettings) -> tuple[list[Any], list[Any], list[Any]]:
    """Initial stop and take-profit of each trade as segments from entry to exit
    (None-separated for one trace each): x, stop y, target y."""
    xs: list[Any] = []
    stops: list[Any] = []
    targets: list[Any] = []
    for t in trades.itertuples():
        side = 1.0 if t.side == "long" else -1.0
        stop = t.entry_price * (1 - side * risk.stop_pct)
        target = t.entry_price * (1 + side * risk.take_profit_pct)
        xs += [*_times([t.entry_ts, t.exit_ts]), None]
        stops += [*_num(np.array([stop, stop])), None]
        targets += [*_num(np.array([target, target])), None]
    return xs, stops, targets


def price_figure(agent: AgentSection, max_points: int) -> dict[str, Any]:
    prices = agent.prices
    ts, close = _thin_series(
        prices[C.TS].to_numpy(), prices[C.CLOSE].to_numpy(np.float64), max_points
    )
    data: list[dict[str, Any]] = [
        _line(f"{agent.symbol} close", ts, close, line={"color": "#555", "width": 1})
    ]
    trades = agent.trades
    if len(trades):
        xs, stops, targets = _levels(trades, agent.risk)
        data.append(
            {"type": "scatter", "mode": "lines", "name": "stop (initial)", "x": xs, "y": stops,
             "line": {"color": "#c62828", "width": 1, "dash": "dot"}, "connectgaps": False}
        )  # fmt: skip
        data.append(
            {"type": "scatter", "mode": "lines", "name": "take-profit", "x": xs, "y": targets,
             "line": {"color": "#18794e", "width": 1, "dash": "dot"}, "connectgaps": False}
        )  # fmt: skip
        for side, symbol, colour in (("long", "triangle-up", "#18794e"),
                                     ("short", "triangle-down", "#c62828")):  # fmt: skip
            part = trades[trades["side"] == side]
            if len(part):
                data.append(
                    {"type": "scatter", "mode": "markers", "name": f"entry ({side})",
                     "x": _times(part["entry_ts"]), "y": _num(part["entry_price"].to_numpy()),
                     "marker": {"symbol": symbol, "size": 9, "color": colour},
                     "text": [f"#{int(i)}" for i in part["trade_id"]]}
                )  # fmt: skip
        data.append(
            {"type": "scatter", "mode": "markers", "name": "exit",
             "x": _times(trades["exit_ts"]), "y": _num(trades["exit_price"].to_numpy()),
             "marker": {"symbol": "x", "size": 8, "color": "#222"},
             "text": [f"#{int(i)} {r}, {p:+.2%}" for i, r, p in
                      zip(trades["trade_id"], trades["exit_reason"], trades["return_pct"],
                          strict=True)]}
        )  # fmt: skip
    breaks = market_gaps(prices[C.TS])
    return {
        "data": data,
        "layout": _layout(
            f"{agent.symbol}: price and trades",
            420,
            yaxis={"title": {"text": "price"}},
            xaxis={"type": "date", "rangebreaks": breaks},
        ),
    }


def equity_figure(
    title: str,
    curves: Mapping[str, pd.DataFrame],
    max_points: int,
    styles: Mapping[str, Mapping[str, Any]] | None = None,
    breaks: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Equity lines (top) and their drawdowns (bottom) sharing the time axis."""
    data = []
    for i, (name, frame) in enumerate(curves.items()):
        if not len(frame):
            continue
        e = frame["equity"].to_numpy(np.float64)
        style = dict((styles or {}).get(name, {"color": COLOURS[i % len(COLOURS)]}))
        ts, eq = _thin_series(frame[C.TS].to_numpy(), e, max_points)
        _, dd = _thin_series(frame[C.TS].to_numpy(), _drawdown(e), max_points, keep_min=True)
        data.append(_line(name, ts, eq, line=style, legendgroup=name))
        data.append(
            _line(name, ts, dd * 100, line=style, legendgroup=name, showlegend=False,
                  yaxis="y2", fill="tozeroy" if len(data) < 3 else "none",
                  fillcolor="rgba(120,120,120,0.18)")
        )  # fmt: skip
    layout = _layout(
        title,
        460,
        xaxis={"type": "date", "anchor": "y2", "rangebreaks": breaks},
        yaxis={"title": {"text": "equity"}, "domain": [0.34, 1.0], "anchor": "x"},
        yaxis2={"title": {"text": "drawdown %"}, "domain": [0.0, 0.28], "anchor": "x"},
    )
    return {"data": data, "layout": layout}


def sharpe_figure(
    title: str,
    frame: pd.DataFrame,
    window: int,
    max_points: int,
    breaks: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    ts, s = _thin_series(frame[C.TS].to_numpy(), frame["sharpe"].to_numpy(np.float64), max_points)
    return {
        "data": [_line("rolling Sharpe", ts, s, line={"color": "#6a3d9a", "width": 1.2})],
        "layout": _layout(
            f"{title}: rolling Sharpe ({window:,} bars ≈ 1 week, annualised)",
            260,
            yaxis={"zeroline": True},
            xaxis={"type": "date", "rangebreaks": breaks},
            showlegend=False,
        ),
    }


class _Page:
    """Collects figure specs; each becomes a div plus a JSON script tag."""

    def __init__(self) -> None:
        self.n = 0

    def plot(self, figure: Mapping[str, Any]) -> str:
        self.n += 1
        spec = json.dumps(figure, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
        return (
            f'<div class="plot" id="plot-{self.n}" data-spec="spec-{self.n}"></div>'
            f'<script type="application/json" id="spec-{self.n}">{spec}</script>'
        )


_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d1d1f;
background:#f6f7f9;font-size:14px}
main{max-width:1320px;margin:0 auto;padding:1.2rem 1.5rem 3rem}
h1{font-size:1.5rem;margin:.2rem 0}
h2{font-size:1.2rem;margin:1.8rem 0 .6rem;border-bottom:2px solid #dde1e6;padding-bottom:.3rem}
h3{font-size:1rem;margin:1.2rem 0 .4rem}
section.card{background:#fff;border:1px solid #e3e6ea;border-radius:8px;padding:.6rem 1rem 1rem;
margin:1rem 0}
.table-wrap{max-width:100%;overflow-x:auto;margin:.4rem 0 1rem}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;white-space:nowrap}
td,th{padding:.28rem .6rem;border-bottom:1px solid #e6e8eb;text-align:right}
tbody th,thead th:first-child{text-align:left}
thead th{background:#f0f2f5;font-weight:600;position:sticky;top:0}
td.left{text-align:left;white-space:normal}
table.scroll-y{display:block;max-height:340px;overflow-y:auto}
.pos{color:#18794e}.neg{color:#c62828}
ul.verdicts{margin:.2rem 0 .6rem;padding-left:1.2rem}
.meta{color:#5f6670}
.caveat{background:#fff6e0;border:1px solid #f0c36d;border-radius:6px;padding:.5rem .8rem}
.plot{width:100%;min-height:260px}
.grid2{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:1rem}
@media (max-width:1000px){.grid2{grid-template-columns:minmax(0,1fr)}}
nav a{margin-right:.9rem}
#js-errors{color:#c62828}
code{background:#f0f2f5;padding:0 .25rem;border-radius:3px}
"""

# Errors are caught before anything else runs and listed in the page (and in
# #js-errors, which the headless-browser test reads from the dumped DOM).
_ERROR_HOOK = """<script>
window.hedgeflowErrors=[];
function hedgeflowError(msg){window.hedgeflowErrors.push(String(msg));
var box=document.getElementById('js-errors');if(box){var li=document.createElement('li');
li.className='js-error';li.textContent=String(msg);box.appendChild(li);}}
window.addEventListener('error',function(e){hedgeflowError(e.message||e);});
window.addEventListener('unhandledrejection',function(e){hedgeflowError(e.reason);});
</script>"""

# Charts are drawn one after the other (the page stays responsive with many agents);
# body[data-charts-rendered] = how many were drawn, once all have been tried.
_DRAW = """<script>
(function(){
  var divs=Array.prototype.slice.call(document.querySelectorAll('div.plot')), i=0, done=0;
  function next(){
    if(i>=divs.length){document.body.dataset.chartsRendered=String(done);return;}
    var div=divs[i++];
    function fail(e){hedgeflowError(e&&e.message||e);setTimeout(next,0);}
    try{
      var spec=JSON.parse(document.getElementById(div.dataset.spec).textContent);
      Plotly.newPlot(div,spec.data,spec.layout,{responsive:true,displaylogo:false})
        .then(function(){div.dataset.rendered='1';done++;setTimeout(next,0);},fail);
    }catch(e){fail(e);}
  }
  next();
})();
</script>"""


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style>{_ERROR_HOOK}"
        f"<script>{plotly_js()}</script></head><body><main>{body}"
        '<ul id="js-errors"></ul></main>'
        f"{_DRAW}</body></html>\n"
    )


def _points_per_line(n_agents: int) -> int:
    lines = max(1, n_agents) * 4 + 4
    return int(min(MAX_CHART_POINTS, max(MIN_CHART_POINTS, CHART_POINT_BUDGET // lines)))


def _settings_pairs(agent: AgentSection) -> list[tuple[str, str]]:
    r, c = agent.risk, agent.costs
    params = ", ".join(f"{k}={v}" for k, v in agent.params.items()) or "defaults"
    trailing = f"ATR({r.atr_period}) x {r.atr_mult:g}" if r.use_trailing_atr else "off"
    return [
        ("strategy", f"{agent.strategy} ({params})"),
        ("symbol / asset class", f"{agent.symbol} / {agent.asset_class}"),
        ("risk per trade", f"{r.risk_per_trade:.2%} of equity"),
        ("stop / take-profit", f"{r.stop_pct:.2%} / {r.take_profit_pct:.2%} from the fill"),
        ("trailing stop", trailing),
        ("max leverage", f"{r.max_leverage:g}x"),
        ("short selling", "on" if r.allow_short else "off (long only)"),
        ("fees / slippage", f"{c.fee_bps:g} bp / {c.slippage_bps:g} bp per fill"),
        ("order minimums", _minimums_text(agent)),
    ]


def _minimums_text(agent: AgentSection) -> str:
    """``"quantity step 1e-05, notional >= 10; 3 entries skipped (below_min_notional 3)"``."""
    m = agent.minimums
    text = f"quantity step {m.qty_step:g}" if m.qty_step > 0 else "any quantity"
    if m.min_notional > 0:
        text += f", notional >= {m.min_notional:g}"
    skipped = agent.skipped
    if len(skipped):
        noun = "entry" if len(skipped) == 1 else "entries"
        text += f"; {len(skipped):,} {noun} skipped ({skipped_by_reason(skipped)})"
    return text


def _skipped_head(agent: AgentSection) -> str:
    n = len(agent.skipped)
    return f"; {n:,} entr{'y' if n == 1 else 'ies'} skipped by the order minimums" if n else ""


def _agent_section(agent: AgentSection, page: _Page, points: int) -> str:
    anchor = f"agent-{escape(agent.name)}"
    bench = buy_and_hold(agent.prices, float(agent.equity["equity"].iloc[0]))
    bench_metrics = compute_metrics(
        bench["equity"].to_numpy(), bench[C.TS], None, agent.asset_class
    )
    roll, window = rolling_sharpe(agent.equity, agent.asset_class)
    strategy_ret = agent.metrics.get("total_return")
    rows = [
        [
            "<th>strategy</th>",
            _cell(fmt_pct(strategy_ret), strategy_ret),
            _cell(fmt_pct(agent.metrics.get("max_drawdown"))),
            _cell(fmt_metric("sharpe", agent.metrics.get("sharpe"))),
        ],
        [
            f"<th>buy and hold {escape(agent.symbol)}</th>",
            _cell(fmt_pct(bench_metrics["total_return"]), bench_metrics["total_return"]),
            _cell(fmt_pct(bench_metrics["max_drawdown"])),
            _cell(fmt_metric("sharpe", bench_metrics["sharpe"])),
        ],
    ]
    parts = [
        f'<section class="card agent" id="{anchor}">',
        f"<h2>Agent {escape(agent.name)}: {escape(agent.symbol)}, {escape(agent.strategy)}</h2>",
        page.plot(price_figure(agent, points)),
        f"<h3>Trades ({len(agent.trades):,}{_skipped_head(agent)})</h3>",
        _sides_table(agent.trades),
        _trades_table(agent.trades),
        page.plot(
            equity_figure(
                f"{agent.name}: equity and drawdown vs buy and hold",
                {agent.name: agent.equity, f"buy and hold {agent.symbol}": bench},
                points,
                {f"buy and hold {agent.symbol}": {"color": "#999", "dash": "dash", "width": 1}},
                market_gaps(agent.prices[C.TS]),
            )
        ),
        "<h3>Monthly returns</h3>",
        _monthly_table(monthly_returns(agent.equity)),
        '<div class="grid2"><div>',
        "<h3>Against buy and hold (no costs)</h3>",
        _table(["", "return", "max drawdown", "Sharpe"], rows, "bench"),
        "<h3>Worst drawdowns</h3>",
        _drawdowns_table(worst_drawdowns(agent.equity)),
        "</div><div>",
        "<h3>Settings</h3>",
        _kv_table(_settings_pairs(agent)),
        "</div></div>",
    ]
    if window and len(roll):
        gaps = market_gaps(agent.prices[C.TS])
        parts.append(page.plot(sharpe_figure(agent.name, roll, window, points, gaps)))
    else:
        parts.append('<p class="meta">Too few bars for a rolling Sharpe.</p>')
    parts.append("</section>")
    return "".join(parts)


def _portfolio_section(
    port: PortfolioSection, agents: Sequence[AgentSection], page: _Page, points: int, short: bool
) -> str:
    label = METHOD_LABELS.get(port.method, port.method)
    rows = [
        (f"{METHOD_LABELS.get(m, m)}{' (drawn)' if m == port.method else ''}", metrics)
        for m, metrics in port.metrics_by_method.items()
    ]
    names = [a.name for a in agents]
    weights = [
        [_cell(METHOD_LABELS.get(m, m), first=True)]
        + [_cell(fmt_pct(w.get(n), signed=False)) for n in names]
        for m, w in port.weights_by_method.items()
    ]
    curves = {f"portfolio ({label})": port.equity}
    curves.update({a.name: a.equity for a in agents[:10]})
    styles = {f"portfolio ({label})": {"color": PORTFOLIO_COLOUR, "width": 2.6}}
    roll, window = rolling_sharpe(port.equity, port.asset_class)
    parts = [
        '<section class="card" id="portfolio">',
        f"<h2>Portfolio: {escape(label)}</h2>",
        f'<p class="meta">Allocation <b>{escape(label)}</b> (<code>{escape(port.method)}</code>), '
        f"rebalanced {escape(port.rebalance)}, {port.fee_bps:g} bp on rebalance turnover, "
        f"initial equity {port.initial_equity:,.0f}. The curve drawn is this method's; the "
        "table compares all three methods on the same agents.</p>",
        metrics_table(rows, "method", short),
        page.plot(
            equity_figure("Portfolio and agents: equity and drawdown", curves, points, styles)
        ),
        "<h3>Monthly returns</h3>",
        _monthly_table(monthly_returns(port.equity)),
        '<div class="grid2"><div>',
        "<h3>Worst drawdowns</h3>",
        _drawdowns_table(worst_drawdowns(port.equity)),
        "</div><div>",
        "<h3>Weights (last rebalance)</h3>" if weights else "",
        _table(["method", *map(escape, names)], weights, "weights") if weights else "",
        "</div></div>",
    ]
    if window and len(roll):
        parts.append(page.plot(sharpe_figure("portfolio", roll, window, points)))
    parts.append("</section>")
    return "".join(parts)


def nightly_tearsheet(
    run_id: str,
    window: str,
    agents: Sequence[AgentSection],
    portfolio: PortfolioSection | None,
    failed: Mapping[str, str],
    data_quality: Mapping[str, Mapping[str, int]],
    run_settings: Sequence[tuple[str, str]] = (),
) -> str:
    """The nightly run's tearsheet (one self-contained HTML page)."""
    page = _Page()
    curves = [a.equity for a in agents] + ([portfolio.equity] if portfolio else [])
    days = window_days(curves)
    short = bool(curves) and days < SHORT_WINDOW_DAYS
    points = _points_per_line(len(agents))
    nav = " ".join(f'<a href="#agent-{escape(a.name)}">{escape(a.name)}</a>' for a in agents) + (
        ' <a href="#portfolio">portfolio</a>' if portfolio else ""
    )
    parts = [
        "<h1>hedgeflow nightly run</h1>",
        f'<p class="meta">run <code>{escape(run_id)}</code> · {escape(window)}</p>',
        f"<nav>{nav}</nav>" if nav else "",
        _caveat(days) if short else "",
        '<section class="card" id="summary"><h2>Agents</h2>',
        metrics_table([(a.name, a.metrics) for a in agents], "agent", short),
    ]
    if portfolio:
        parts.append(
            metrics_table(
                [
                    (f"portfolio ({METHOD_LABELS.get(portfolio.method, portfolio.method)})",
                     portfolio.metrics_by_method.get(portfolio.method, {}))
                ],
                "portfolio", short,
            )
        )  # fmt: skip
    if failed:
        items = "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in failed.items())
        parts.append(f'<h3 id="failed">Failed agents</h3><ul>{items}</ul>')
    parts.append(
        f'<p class="meta">Charts: price and equity lines thinned to at most {points:,} points '
        "each (drawdowns keep each stretch's deepest point); trades are drawn at their exact "
        "fills, stop and take-profit at their initial levels.</p></section>"
    )
    if portfolio:
        parts.append(_portfolio_section(portfolio, agents, page, points, short))
    parts += [_agent_section(a, page, points) for a in agents]
    if data_quality or run_settings:
        parts.append('<section class="card" id="run"><h2>Run settings and data quality</h2>')
        if run_settings:
            parts.append(_kv_table(run_settings))
        if data_quality:
            rows = [
                [_cell(sym, first=True), _cell(f"{c.get('stored', 0):,}"),
                 _cell(f"{c.get('quarantined', 0):,}")]
                for sym, c in data_quality.items()
            ]  # fmt: skip
            parts.append(_table(["symbol", "bars stored", "quarantined"], rows, "quality"))
        parts.append("</section>")
    return _page(f"hedgeflow nightly run {run_id}", "".join(parts))


# ------------------------------------------------------------------ sweep


@dataclass(frozen=True)
class SweepSection:
    """A sweep's results: per symbol, every combination with its metrics and rank."""

    strategy: str
    metric: str
    grid: str  # SweepGrid.describe()
    parameters: Sequence[str]  # the grid's parameter names
    heatmaps: Mapping[str, tuple[str, str, pd.DataFrame]]  # symbol -> (row, col, matrix)
    frames: Mapping[str, pd.DataFrame]  # symbol -> parameters, metrics, rank
    risk: RiskSettings
    costs: Mapping[str, CostSettings]  # asset class -> costs
    overfit: Mapping[str, OverfitStats] = field(default_factory=dict)  # symbol -> statistics


MAX_SPLIT_POINTS = 2_000  # CSCV splits drawn in a scatter (of 12,870 with S = 16)
LOGIT_BINS = 40


def _fmt_stat(value: Any, digits: int = 3) -> str:
    if value is None or not math.isfinite(float(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def _verdict_cells(stats: OverfitStats | None) -> list[str]:
    """A rank-1 row's verdict (short, in words), PBO and DSR."""
    if stats is None:
        return [_cell("no statistics"), _cell("–"), _cell("–")]
    overfit = overfit_verdict(stats.pbo, stats.dsr)[0]
    label = "probably overfit" if overfit else "no sign of overfitting"
    klass = "neg" if overfit else "pos"
    return [
        f'<td class="verdict {klass}"><b>{label}</b></td>',
        _cell(_fmt_stat(stats.pbo)),
        _cell(_fmt_stat(stats.dsr)),
    ]


def _verdict_list(symbols: Sequence[str], overfit: Mapping[str, OverfitStats]) -> str:
    """Each symbol's verdict in a sentence (why the winner is, or is not, suspect)."""
    items = []
    for symbol in symbols:
        stats = overfit.get(symbol)
        if stats is None:
            text = "too few bars or combinations for overfitting statistics."
            klass = "meta"
        else:
            bad, text = overfit_verdict(stats.pbo, stats.dsr)
            klass = "neg" if bad else "pos"
        items.append(f'<li class="{klass}"><b>{escape(symbol)}</b>: {escape(text)}</li>')
    return f'<ul class="verdicts">{"".join(items)}</ul>'


def logit_histogram(stats: OverfitStats, symbol: str) -> dict[str, Any]:
    """The CSCV logits as a bar chart (bins symmetric about 0: the bars left of 0 are
    the splits where the in-sample winner fell into the bottom half out of sample)."""
    lim = float(np.abs(stats.logits).max()) if len(stats.logits) else 1.0
    lim = max(lim, 1e-9) * 1.0001
    counts, edges = np.histogram(stats.logits, bins=LOGIT_BINS, range=(-lim, lim))
    mids = (edges[:-1] + edges[1:]) / 2
    colours = ["#c62828" if m < 0 else "#18794e" for m in mids]
    bars = {
        "type": "bar", "name": "splits", "x": _num(mids), "y": counts.tolist(),
        "marker": {"color": colours}, "width": float(edges[1] - edges[0]),
        "hovertemplate": "logit %{x:.2f}: %{y} splits<extra></extra>",
    }  # fmt: skip
    return {
        "data": [bars],
        "layout": _layout(
            f"{symbol}: CSCV logits, {stats.n_splits:,} splits (PBO {stats.pbo:.3f})",
            300,
            xaxis={
                "type": "linear",
                "title": {"text": "logit of n*'s out-of-sample rank (<= 0: bottom half)"},
            },
            yaxis={"title": {"text": "splits"}},
            hovermode="closest",
            showlegend=False,
            bargap=0.02,
        ),
    }


def degradation_scatter(stats: OverfitStats, symbol: str) -> dict[str, Any]:
    """The in-sample winner's Sharpe in sample against out of sample, per split
    (thinned evenly to MAX_SPLIT_POINTS), with the least-squares degradation line."""
    idx = thin(len(stats.is_sharpe), MAX_SPLIT_POINTS)
    x, y = stats.is_sharpe[idx], stats.oos_sharpe[idx]
    data: list[dict[str, Any]] = [
        {"type": "scatter", "mode": "markers", "name": "split", "x": _num(x), "y": _num(y),
         "marker": {"size": 4, "color": "#1f77b4", "opacity": 0.45},
         "hovertemplate": "in sample %{x:.4f}<br>out of sample %{y:.4f}<extra></extra>"}
    ]  # fmt: skip
    slope, intercept = stats.degradation_slope, stats.degradation_intercept
    if math.isfinite(slope) and len(x):
        ends = np.array([float(stats.is_sharpe.min()), float(stats.is_sharpe.max())])
        data.append(
            {"type": "scatter", "mode": "lines",
             "name": f"OOS = {intercept:.4f} + {slope:.3f} x IS",
             "x": _num(ends), "y": _num(intercept + slope * ends),
             "line": {"color": "#c62828", "width": 2}}
        )  # fmt: skip
    title = f"{symbol}: Sharpe of n*, in vs out of sample"
    if len(idx) < len(stats.is_sharpe):
        title += f" ({len(idx):,} of {len(stats.is_sharpe):,} splits)"
    return {
        "data": data,
        "layout": _layout(
            title,
            340,
            xaxis={"type": "linear", "title": {"text": "in-sample Sharpe (per bar)"}},
            yaxis={"title": {"text": "out-of-sample Sharpe"}, "zeroline": True},
            hovermode="closest",
        ),
    }


def _overfit_block(
    symbol: str, stats: OverfitStats, sweep: SweepSection, frame: pd.DataFrame, page: _Page
) -> str:
    overfit, text = overfit_verdict(stats.pbo, stats.dsr)
    best = _params_text(frame["params"].iloc[stats.best], sweep.parameters)
    pairs = [
        ("combinations (trials) / bar returns", f"{stats.n_trials:,} / {stats.n_obs:,}"),
        ("highest Sharpe (per bar)", f"{_fmt_stat(stats.sharpe_best, 4)} ({best})"),
        ("PSR (Sharpe > 0)", _fmt_stat(stats.psr)),
        ("SR0 (expected best of unskilled trials)", _fmt_stat(stats.sr0, 4)),
        (f"DSR (deflated Sharpe; below {DSR_LIMIT:g}: no evidence of skill)",
         _fmt_stat(stats.dsr)),
        (f"PBO ({stats.n_blocks} blocks, {stats.n_splits:,} splits; above {PBO_LIMIT:g}: "
         "probably overfit)", _fmt_stat(stats.pbo)),
        ("P(out-of-sample loss)", _fmt_stat(stats.prob_oos_loss)),
        ("degradation: OOS = a + b x IS",
         f"a = {_fmt_stat(stats.degradation_intercept, 4)}, "
         f"b = {_fmt_stat(stats.degradation_slope)}"),
    ]  # fmt: skip
    klass = "neg" if overfit else "pos"
    return "".join(
        [
            "<h3>Overfitting statistics</h3>",
            f'<p class="verdict {klass}"><b>{escape(text)}</b></p>',
            _kv_table(pairs),
            '<div class="grid2"><div>',
            page.plot(logit_histogram(stats, symbol)),
            "</div><div>",
            page.plot(degradation_scatter(stats, symbol)),
            "</div></div>",
        ]
    )


def _params_text(value: Any, keys: Sequence[str] = ()) -> str:
    """A combination's parameters (a mapping or its JSON) as ``k=v, ...``: those in
    ``keys`` (the grid's) when given."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items() if not keys or k in keys)
    return "" if value is None else str(value)


def _heatmap_table(metric: str, row: str, col: str, matrix: pd.DataFrame) -> str:
    values = matrix.to_numpy(dtype=np.float64)
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    head = [f"{escape(row)} \\ {escape(col)}", *(escape(str(c)) for c in matrix.columns)]
    rows = []
    for label, line in zip(matrix.index, values, strict=True):
        cells = [f"<th>{escape(str(label))}</th>"]
        for v in line:
            if not math.isfinite(v):
                cells.append('<td class="empty">–</td>')
                continue
            t = (v - lo) / (hi - lo) if hi > lo else 0.5
            cells.append(
                f'<td style="background:rgba(49,130,189,{0.08 + 0.7 * t:.2f})">'
                f"{escape(fmt_metric(metric, v))}</td>"
            )
        rows.append(cells)
    return _table(head, rows, "heatmap")


def sweep_tearsheet(
    run_id: str,
    window: str,
    sweep: SweepSection,
    best: Sequence[Mapping[str, Any]],
    failed: Mapping[str, str],
    days: float,
    top: int = 10,
) -> str:
    """The sweep run's tearsheet: best parameters, heatmaps, top combinations, and an
    interactive risk / return scatter of every combination."""
    page = _Page()
    short = days < SHORT_WINDOW_DAYS
    best_rows = [
        [
            _cell(str(b.get("symbol")), first=True),
            _cell(_params_text(b.get("params"), sweep.parameters)),
        ]
        + _verdict_cells(sweep.overfit.get(str(b.get("symbol"))))
        + [_cell(fmt_metric(k, b.get(k)), b.get(k)) for k in METRIC_ORDER]
        for b in best
    ]
    head = ["symbol", "best parameters", "overfit?", "PBO", "DSR", *metric_heads(short)]
    scatter = []
    for i, (symbol, frame) in enumerate(sorted(sweep.frames.items())):
        if not len(frame):
            continue
        labels = [
            ", ".join(f"{p}={r[p]}" for p in sweep.parameters if p in frame.columns)
            for _, r in frame.iterrows()
        ]
        scatter.append(
            {"type": "scatter", "mode": "markers", "name": symbol,
             "x": _num(pd.to_numeric(frame["max_drawdown"]).to_numpy(np.float64) * 100),
             "y": _num(pd.to_numeric(frame["total_return"]).to_numpy(np.float64) * 100),
             "text": labels, "marker": {"size": 7, "color": COLOURS[i % len(COLOURS)]},
             "hovertemplate": "%{text}<br>return %{y:.2f}%<br>max dd %{x:.2f}%"}
        )  # fmt: skip
    costs = ", ".join(
        f"{k}: {c.fee_bps:g} bp fee, {c.slippage_bps:g} bp slippage" for k, c in sweep.costs.items()
    )
    r = sweep.risk
    parts = [
        f"<h1>hedgeflow sweep: {escape(sweep.strategy)}</h1>",
        f'<p class="meta">run <code>{escape(run_id)}</code> · {escape(window)} · '
        f"grid {escape(sweep.grid)} · ranked by <b>{escape(sweep.metric)}</b></p>",
        _caveat(days) if short else "",
        '<section class="card" id="best"><h2>Best parameters per symbol</h2>',
        _table(head, best_rows, "metrics"),
        _verdict_list([str(b.get("symbol")) for b in best], sweep.overfit),
        '<p class="meta">PBO: probability of backtest overfitting, the share of the '
        "combinatorially symmetric cross-validation splits in which the combination with the "
        "best in-sample Sharpe ranks in the bottom half out of sample. DSR: the probability "
        "that the winner's Sharpe beats the best Sharpe expected from this many combinations "
        f"with no skill. The winner is called probably overfit when PBO &gt; {PBO_LIMIT:g} "
        f"or DSR &lt; {DSR_LIMIT:g}; both judge picking the highest Sharpe.</p>",
    ]
    if failed:
        items = "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in failed.items())
        parts.append(f'<h3 id="failed">Failed symbols</h3><ul>{items}</ul>')
    parts.append("</section>")
    if scatter:
        layout = _layout(
            "Every combination: return against max drawdown",
            440,
            xaxis={"title": {"text": "max drawdown %"}, "type": "linear"},
            yaxis={"title": {"text": "total return %"}},
            hovermode="closest",
        )
        parts.append(f'<section class="card">{page.plot({"data": scatter, "layout": layout})}')
        parts.append("</section>")
    for symbol in sorted(sweep.frames):
        frame = sweep.frames[symbol]
        parts.append(f'<section class="card" id="sweep-{escape(symbol)}"><h2>{escape(symbol)}</h2>')
        if symbol in sweep.heatmaps:
            row, col, matrix = sweep.heatmaps[symbol]
            parts.append(f"<h3>{escape(sweep.metric)} by {escape(row)} and {escape(col)}</h3>")
            parts.append(_heatmap_table(sweep.metric, row, col, matrix))
        ranked = frame.sort_values("rank").head(top)
        shown = [p for p in sweep.parameters if p in frame.columns]
        rows = [
            [f"<th>{int(x['rank'])}</th>"]
            + [_cell(str(x[p])) for p in shown]
            + [_cell(fmt_metric(k, x.get(k)), x.get(k)) for k in METRIC_ORDER]
            for _, x in ranked.iterrows()
        ]
        parts.append(f"<h3>Top {len(rows)} of {len(frame):,} combinations</h3>")
        parts.append(_table(["rank", *map(escape, shown), *metric_heads(short)], rows))
        stats = sweep.overfit.get(symbol)
        if stats is not None:
            parts.append(_overfit_block(symbol, stats, sweep, frame, page))
        parts.append("</section>")
    parts.append('<section class="card" id="run"><h2>Risk and costs used</h2>')
    parts.append(
        _kv_table(
            [
                ("risk per trade", f"{r.risk_per_trade:.2%} of equity"),
                ("stop / take-profit", f"{r.stop_pct:.2%} / {r.take_profit_pct:.2%}"),
                ("max leverage", f"{r.max_leverage:g}x"),
                ("short selling", "on" if r.allow_short else "off (long only)"),
                ("costs per asset class", costs),
            ]
        )
    )
    parts.append("</section>")
    return _page(f"hedgeflow sweep {run_id}", "".join(parts))
