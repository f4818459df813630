"""Terminal output of the CLI: progress displays and summary tables (rich)."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import decimal
import json
import logging
import math
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from hedgeflow.report import METRIC_LABELS

PROGRESS_LOGGER = "hedgeflow.progress"
METRIC_FORMATS: dict[str, str] = {
    "total_return": "{:+.2%}",
    "cagr": "{:+.2%}",
    "ann_vol": "{:.2%}",
    "sharpe": "{:.2f}",
    "sortino": "{:.2f}",
    "max_drawdown": "{:.2%}",
    "calmar": "{:.2f}",
    "n_trades": "{:.0f}",
    "win_rate": "{:.1%}",
    "profit_factor": "{:.2f}",
    "exposure": "{:.1%}",
}

# Tables are wider than 80 columns: keep them whole when output is piped.
stdout = Console(width=None if sys.stdout.isatty() else 160)
stderr = Console(stderr=True)


class _ProgressHandler(logging.Handler):
    def __init__(self, progress: Progress, task_id: Any, describe: Any) -> None:
        super().__init__(logging.INFO)
        self.progress = progress
        self.task_id = task_id
        self.describe = describe

    def emit(self, record: logging.LogRecord) -> None:
        text = self.describe(record)
        if text is None:
            return
        self.progress.advance(self.task_id)
        self.progress.console.print(text, highlight=False)


@contextlib.contextmanager
def _progress(label: str, total: int | None, describe: Any) -> Iterator[Progress]:
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
    )
    task_id = progress.add_task(label, total=total)
    handler = _ProgressHandler(progress, task_id, describe)
    logger = logging.getLogger(PROGRESS_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with progress:
            yield progress
    finally:
        logger.removeHandler(handler)


def _describe_ingest(record: logging.LogRecord) -> str | None:
    result = getattr(record, "hedgeflow_result", None)
    if getattr(record, "hedgeflow_event", None) != "ingested" or result is None:
        return None
    extra = f", [yellow]{result.quarantined} quarantined[/]" if result.quarantined else ""
    return f"{result.symbol}: {result.stored:,} bars stored{extra} ({result.seconds:.1f} s)"


def _describe_nightly(record: logging.LogRecord) -> str | None:
    event = getattr(record, "hedgeflow_event", None)
    if event == "ingested":
        return _describe_ingest(record)
    if event == "agent_done":
        return f"agent {record.getMessage()}"
    return None


def ingest_progress(total: int | None) -> contextlib.AbstractContextManager[Progress]:
    return _progress("ingesting", total, _describe_ingest)


def nightly_progress(n_symbols: int, n_agents: int) -> contextlib.AbstractContextManager[Progress]:
    """One step per symbol ingested and one per agent backtested (it showed 6/3)."""
    return _progress("nightly", n_symbols + n_agents, _describe_nightly)


def print_ingest_summary(results: Sequence[Any]) -> None:
    table = Table(title="ingest summary", title_justify="left")
    for name in ("symbol", "interval", "fetched", "stored", "quarantined", "seconds"):
        table.add_column(name, justify="left" if name in ("symbol", "interval") else "right")
    for r in results:
        table.add_row(
            r.symbol,
            r.interval,
            f"{r.fetched:,}",
            f"{r.stored:,}",
            f"{r.quarantined:,}",
            f"{r.seconds:.2f}",
        )
    table.add_row(
        "total",
        "",
        f"{sum(r.fetched for r in results):,}",
        f"{sum(r.stored for r in results):,}",
        f"{sum(r.quarantined for r in results):,}",
        "",
        style="bold",
    )
    stdout.print(table)


def format_metric(name: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    fmt = METRIC_FORMATS.get(name)
    return fmt.format(value) if fmt else str(value)


def metrics_table(title: str, rows: Sequence[tuple[str, Mapping[str, Any]]], first: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(first, no_wrap=True)
    for name in METRIC_FORMATS:
        table.add_column(METRIC_LABELS[name], justify="right", no_wrap=True)
    for label, metrics in rows:
        table.add_row(label, *(format_metric(k, metrics.get(k)) for k in METRIC_FORMATS))
    return table


def print_metrics(metrics: Mapping[str, Any], title: str) -> None:
    stdout.print(metrics_table(title, [("result", metrics)], ""))


def print_report_path(path: str | None) -> None:
    """The run's report.html as the last line: absolute, never wrapped or marked up
    (a terminal makes it clickable, a script reads it with ``tail -1``)."""
    if path:
        stdout.print(f"report: {path}", soft_wrap=True, markup=False, highlight=False)


def print_nightly_summary(summary: Any) -> None:
    skipped = getattr(summary, "skipped", None)
    if skipped:  # not a trading day: nothing ran
        stdout.print(f"nightly (run {summary.run_id}): {skipped}", markup=False, highlight=False)
        stdout.print(f"status: {summary.status}")
        return
    stdout.print(metrics_table(f"agents (run {summary.run_id})", list(summary.agent_rows), "agent"))
    stdout.print(metrics_table("portfolio", list(summary.portfolio_rows), "method"))
    for name, error in summary.failed_agents.items():
        stderr.print(f"[red]agent {name} failed:[/] {error}")
    rec = getattr(summary, "reconcile", None)
    if rec:  # the nightly's reconcile step (hedgeflow reconcile) ran
        if rec.get("error"):
            text = f"reconcile of live run {rec['live_run_id']} failed: {rec['error']}"
        else:
            text = (
                f"reconciled live run {rec['live_run_id']}: {rec['unexplained']} unexplained "
                f"difference(s), {rec['explained']} explained by vendor revisions"
            )
        stdout.print(text, markup=False, highlight=False)
    stdout.print(f"status: {summary.status}")
    print_report_path(summary.report_path)


def print_sweep_summary(summary: Any) -> None:
    """Best parameters per symbol of a sweep run (``hedgeflow.flows.sweep.SweepSummary``)."""
    table = Table(
        title=f"best {summary.strategy} parameters by {summary.metric} (run {summary.run_id})",
        title_justify="left",
    )
    table.add_column("symbol", no_wrap=True)
    table.add_column("parameters", no_wrap=True)
    for name in METRIC_FORMATS:
        table.add_column(METRIC_LABELS[name], justify="right", no_wrap=True)
    for row in summary.best:
        try:
            params = json.loads(row.get("params") or "{}")
        except ValueError:
            params = {}
        text = " ".join(f"{k}={v}" for k, v in params.items())
        table.add_row(row["symbol"], text, *(format_metric(k, row.get(k)) for k in METRIC_FORMATS))
    stdout.print(table)
    for row in summary.best:
        if row.get("overfit_text"):
            stdout.print(f"{row['symbol']}: {row['overfit_text']}", markup=False, highlight=False)
    stdout.print(f"grid: {summary.grid}; task runner: {summary.task_runner}")
    for symbol, error in summary.failed.items():
        stderr.print(f"[red]{symbol} failed:[/] {error}")
    stdout.print(f"status: {summary.status}")
    print_report_path(summary.report_path)


def print_query_result(
    columns: Sequence[str], batches: Iterable[Sequence[Sequence[Any]]], fmt: str, max_rows: int
) -> None:
    """Print a query's rows literally (never as rich markup), batch by batch.

    csv and json stream every row as it comes; the table shows the first
    ``max_rows`` and stops reading there."""
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        for batch in batches:
            writer.writerows(batch)
        return
    if fmt == "json":
        out = sys.stdout
        out.write("[")
        sep = ""
        for batch in batches:
            for row in batch:
                record = dict(zip(columns, _json_ready(row), strict=True))
                out.write(sep + json.dumps(record, default=str, allow_nan=False))
                sep = ", "
        out.write("]\n")
        return
    shown = 0
    more = False
    kept: list[Sequence[Any]] = []
    for batch in batches:
        for row in batch:
            if shown == max_rows:
                more = True
                break
            kept.append(row)
            shown += 1
        if more:
            break
    table = Table(show_lines=False)
    for i, name in enumerate(columns):
        numeric = any(_is_number(row[i]) for row in kept[:100])
        table.add_column(Text(str(name)), justify="right" if numeric else "left")
    for row in kept:
        table.add_row(*(Text(_cell(v)) for v in row))
    stdout.print(table)
    if more:
        stdout.print(
            f"{shown} rows shown, more not read (--max-rows, or --format csv for all)",
            markup=False,
            highlight=False,
        )
    else:
        stdout.print(f"{shown} row{'s' if shown != 1 else ''}", markup=False, highlight=False)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | decimal.Decimal) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    """A table cell: floats to 8 significant digits (csv and json stay exact)."""
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.8g}"
    return str(value)


def _json_ready(value: Any) -> Any:
    """Strict JSON values: NaN and infinities (not JSON) become null, DECIMAL a number
    (not a string); lists and structs are cleaned inside. The rest is left to
    ``json.dumps`` (``str`` for timestamps, dates, intervals)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return _json_ready(float(value))
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    return value


def print_runs(runs: Any) -> None:
    """Recent runs: id, flow, status, start, duration and the headline numbers, or why a
    failed, crashed or cancelled run ended."""
    table = Table(title="recent runs", title_justify="left")
    for name in ("run_id", "flow", "status", "started (UTC)", "took", "headline / reason"):
        table.add_column(name, no_wrap=name != "headline / reason")
    for row in runs.to_dict("records"):
        started, finished = row.get("started_at"), row.get("finished_at")
        took = "-"
        if started is not None and finished is not None and finished == finished:
            took = f"{(finished - started).total_seconds():.0f} s"
        status = str(row.get("status"))
        colour = {
            "completed": "green",
            "partial": "yellow",
            "degraded": "yellow",
            "failed": "red",
            "crashed": "red",
            "cancelled": "magenta",
        }.get(status, "cyan")
        reason = row.get("reason")
        shown: str | Text = _headline(row.get("summary"))
        if isinstance(reason, str) and reason and status not in ("completed", "running"):
            shown = Text(reason)  # literal: a reason may hold [brackets]
        table.add_row(
            str(row["run_id"])[:8],
            str(row.get("flow")),
            Text(status, style=colour),
            f"{started:%Y-%m-%d %H:%M:%S}" if started is not None else "-",
            took,
            shown,
        )
    stdout.print(table)


# Where the record of a run without a tearsheet is, with a query to start from.
RUN_RECORDS = {
    "live": "its record is in the live_bars, live_signals, live_orders and live_fills "
    "tables, e.g. hedgeflow sql \"select * from live_fills where run_id = '{run_id}'\"",
    "ingest": "its bars are in the bars view and the rows it refused in quarantine, e.g. "
    "hedgeflow sql \"select * from quarantine where run_id = '{run_id}'\"",
}


def print_run_card(run: Mapping[str, Any]) -> None:
    """A run without a tearsheet (live, ingest): what it was and where its record is."""
    started, finished = run.get("started_at"), run.get("finished_at")
    flow = str(run.get("flow"))
    lines = [
        f"run {run['run_id']} ({flow}): {run.get('status')}",
        f"started {started:%Y-%m-%d %H:%M:%S} UTC" if started is not None else "started -",
    ]
    if finished is not None and finished == finished:
        lines.append(f"finished {finished:%Y-%m-%d %H:%M:%S} UTC")
    headline = _headline(run.get("summary"))
    if headline:
        lines.append(f"headline: {headline}")
    where = RUN_RECORDS.get(flow, "its rows carry its run id").format(run_id=run["run_id"])
    lines.append(f"no HTML report (only nightly and sweep runs have one): {where}")
    for line in lines:
        stdout.print(line, soft_wrap=True, markup=False, highlight=False)


def _headline(summary: Any) -> str:
    if not summary or not isinstance(summary, str):
        return ""
    try:
        data = json.loads(summary)
    except ValueError:
        return ""
    parts = []
    ordered = sorted(data.items(), key=lambda kv: not str(kv[0]).startswith("portfolio"))
    for name, value in ordered:
        if isinstance(value, dict) and "sharpe" in value:
            parts.append(
                f"{name} {format_metric('total_return', value.get('total_return'))} "
                f"(sharpe {format_metric('sharpe', value.get('sharpe'))})"
            )
        elif isinstance(value, int | float):
            parts.append(f"{name} {value:,}")
    return "; ".join(parts[:3]) + (" ..." if len(parts) > 3 else "")


# -- live ---------------------------------------------------------------------------------


def format_live_status(status: Any) -> str:
    """One status line of the live runtime (``hedgeflow.live.status.RuntimeStatus``)."""
    parts = [
        f"{a.name} {a.symbol}: {a.bars} bars, sig {a.signal} ({a.signals} chg), "
        f"{a.fills} fills, "
        + (f"{a.skipped} skipped (order minimums), " if getattr(a, "skipped", 0) else "")
        + f"pos {a.position:g}, eq {a.equity:,.2f}"
        for a in status.agents
    ]
    feed = f"{status.ticks:,} ticks"
    if status.reconnects:
        feed += f", {status.reconnects} reconnects"
    if getattr(status, "backlog", 0):
        feed += f", {status.backlog:,} steps journaled (warehouse busy)"
    return f"[{status.clock:%Y-%m-%d %H:%M} UTC, {status.elapsed:4.0f} s, {feed}] " + " | ".join(
        parts
    )


def _live_table(agents: Sequence[Any], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name in (
        "agent",
        "symbol",
        "strategy",
        "bars",
        "signal",
        "changes",
        "orders",
        "fills",
        "trades",
        "realized pnl",
        "position",
        "equity",
        "last bar (UTC)",
    ):
        table.add_column(name, no_wrap=True, justify="left" if name in _LEFT else "right")
    for agent in agents:
        a = agent if isinstance(agent, Mapping) else dataclasses.asdict(agent)
        last = a.get("last_ts")
        table.add_row(
            str(a["name"]),
            str(a["symbol"]),
            str(a["strategy"]),
            f"{a['bars']:,}",
            str(a["signal"]),
            f"{a['signals']:,}",
            f"{a['orders']:,}",
            f"{a['fills']:,}",
            f"{a['trades']:,}",
            f"{a['realized_pnl']:+,.2f}",
            f"{a['position']:g}",
            f"{a['equity']:,.2f}",
            f"{last:%Y-%m-%d %H:%M}" if last is not None else "-",
        )
    return table


_LEFT = ("agent", "symbol", "strategy", "last bar (UTC)")


class _LiveHandler(logging.Handler):
    def __init__(self, show: Any) -> None:
        super().__init__(logging.INFO)
        self.show = show

    def emit(self, record: logging.LogRecord) -> None:
        status = getattr(record, "hedgeflow_status", None)
        if getattr(record, "hedgeflow_event", None) == "live_status" and status is not None:
            self.show(status)


@contextlib.contextmanager
def live_status_display() -> Iterator[None]:
    """Show the live flow's status while it runs: a table redrawn in place on a
    terminal (rich Live), one status line per update otherwise."""
    from rich.live import Live

    logger = logging.getLogger(PROGRESS_LOGGER)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if stdout.is_terminal:
        display = Live(console=stdout, auto_refresh=False, transient=True)

        def show(status: Any) -> None:
            title = f"live: {status.clock:%Y-%m-%d %H:%M} UTC, {status.ticks:,} ticks"
            if getattr(status, "backlog", 0):
                title += f", {status.backlog:,} steps journaled (warehouse busy)"
            display.update(_live_table(status.agents, title), refresh=True)

        handler = _LiveHandler(show)
        logger.addHandler(handler)
        try:
            with display:
                yield
        finally:
            logger.removeHandler(handler)
        return

    def line(status: Any) -> None:
        if status.running:
            stdout.print(format_live_status(status), highlight=False, soft_wrap=True)

    handler = _LiveHandler(line)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def paper_equity_line(summary: Any) -> str:
    """Where each agent's paper equity started: the stated initial equity, or (for
    agents continuing the run's record) their carried-over cash and position."""
    start = f"{float(getattr(summary, 'initial_equity', 0.0) or 0.0):,.0f}"
    resumed = list(summary.resumed)
    if not resumed:
        return f"paper equity: every agent started this run at {start} ([portfolio] initial_equity)"
    fresh = [str(a["name"]) for a in summary.agents if a["name"] not in resumed]
    line = (
        f"paper equity: {', '.join(resumed)} continue live run {summary.run_id} "
        "(cash and positions carried over from its record, not reset)"
    )
    if fresh:
        line += f"; {', '.join(fresh)} started at {start}"
    return line + f"; `hedgeflow live --fresh` starts every agent at {start}"


def print_live_summary(summary: Any) -> None:
    """The final table of a live run (``hedgeflow.flows.live.LiveSummary``)."""
    stdout.print(
        _live_table(
            summary.agents,
            f"live run {summary.run_id} ({summary.source}, {summary.mode}"
            + (f", x{summary.speed:g}" if summary.source == "simulator" else "")
            + ")",
        )
    )
    feed = summary.feed
    stdout.print(
        f"market time {summary.start:%Y-%m-%d %H:%M} to "
        f"{summary.end:%Y-%m-%d %H:%M} UTC in {summary.seconds:.0f} s; "
        f"{feed.get('ticks', 0):,} ticks, {feed.get('bars', 0):,} bars "
        f"({feed.get('rest_bars', 0):,} from REST), {feed.get('late_ticks', 0):,} late, "
        f"{feed.get('duplicate_ticks', 0):,} duplicate, {feed.get('bad_frames', 0):,} bad frames, "
        f"{feed.get('reconnects', 0):,} reconnects",
        highlight=False,
    )
    stdout.print(paper_equity_line(summary), markup=False, highlight=False)
    open_positions = [a["name"] for a in summary.agents if a.get("position")]
    if open_positions:
        stdout.print(
            f"open positions stay open ({', '.join(map(str, open_positions))}): "
            "see live_positions (hedgeflow sql)",
            markup=False,
        )
    reason = getattr(summary, "reason", None)
    stdout.print(f"status: {summary.status}" + (f" ({reason})" if reason else ""), highlight=False)
    journal = getattr(summary, "journal", None) or {}
    if journal.get("busy_seconds"):
        stdout.print(
            f"the warehouse was locked by another process for {journal['busy_seconds']:.0f} s: "
            f"up to {journal.get('max_backlog', 0):,} steps waited in the journal, all stored",
            highlight=False,
        )


OVERFIT_FORMATS = {
    "sharpe_best": "{:.4f}",
    "psr": "{:.4f}",
    "sr0": "{:.4f}",
    "dsr": "{:.4f}",
    "pbo": "{:.4f}",
    "prob_oos_loss": "{:.4f}",
    "degradation_slope": "{:.4f}",
    "degradation_intercept": "{:.6f}",
}


def print_overfit(summary: Mapping[str, Any], source: str) -> None:
    """``hedgeflow overfit``'s result: the overfit.json fields and a one-line verdict
    (data printed literally, never as markup)."""
    from hedgeflow.overfit import overfit_verdict

    table = Table(title=Text(f"overfitting statistics of {source}"), title_justify="left")
    table.add_column("statistic", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    for key, value in summary.items():
        fmt = OVERFIT_FORMATS.get(key)
        if value is None:
            text = "-"
        elif fmt and isinstance(value, float):
            text = fmt.format(value)
        else:
            text = f"{value:,}" if isinstance(value, int) else str(value)
        table.add_row(Text(key), Text(text))
    stdout.print(table)
    _, sentence = overfit_verdict(summary.get("pbo"), summary.get("dsr"))
    stdout.print(sentence, markup=False, highlight=False)
