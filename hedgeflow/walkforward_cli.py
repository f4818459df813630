"""``hedgeflow walkforward``: its arguments and command (kept out of ``hedgeflow.cli``,
which only registers them). Every argument is checked before Prefect starts."""

from __future__ import annotations

import argparse
import os
from typing import Any

from hedgeflow.errors import InvalidInputError

__all__ = ["add_parser", "cmd_walkforward"]


def add_parser(sub: Any, strategy_help: str, rank_metrics: tuple[str, ...]) -> None:
    p = sub.add_parser(
        "walkforward",
        help="walk-forward or purged cross-validation of a grid: in-sample winners run "
        "out of sample",
        description="For every fold, run the grid on the train bars, keep the best "
        "combination by --metric and run only it on the test bars (from flat; its "
        "indicators warm up on earlier bars, never later ones). The test windows' equity "
        "is stitched into one out-of-sample curve (CPCV: one per path). Stores "
        "walkforward_folds and walkforward_equity and writes a report.",
    )
    p.add_argument("--strategy", required=True, help=strategy_help)
    p.add_argument(
        "--symbols", nargs="+", metavar="SYMBOL", help="default: the configured agents' symbols"
    )
    p.add_argument(
        "--grid", action="append", default=[], metavar="KEY=V1,V2,...",
        help="values of one parameter, repeatable (default: a built-in grid per strategy)",
    )  # fmt: skip
    p.add_argument(
        "--train", default="60d", metavar="SPAN",
        help="train window: 60d, 12h, 90m, 2w, or a number of bars (default 60d)",
    )  # fmt: skip
    p.add_argument("--test", default="10d", metavar="SPAN", help="test window (default 10d)")
    p.add_argument("--step", metavar="SPAN", help="fold step (default: the test window)")
    p.add_argument("--anchored", action="store_true", help="expanding train windows")
    p.add_argument(
        "--cpcv", action="store_true", help="combinatorial purged cross-validation instead"
    )
    p.add_argument("--groups", type=int, default=6, metavar="N", help="CPCV groups (default 6)")
    p.add_argument(
        "--test-groups", type=int, default=2, metavar="K",
        help="CPCV groups tested per split, 1 <= K < N (default 2)",
    )  # fmt: skip
    p.add_argument(
        "--purge", type=int, default=0, metavar="BARS",
        help="CPCV: train bars dropped before each test group (default 0)",
    )  # fmt: skip
    p.add_argument(
        "--embargo", type=float, default=0.0, metavar="BARS",
        help="CPCV: train bars dropped after each test group; below 1: a share of all bars",
    )  # fmt: skip
    p.add_argument("--days", type=int, help="lookback in days (default 30)")
    p.add_argument("--end", help="end of the window, UTC (default: start of today)")
    p.add_argument(
        "--metric", choices=rank_metrics, default="sharpe", help="in-sample choice metric"
    )


def cmd_walkforward(args: argparse.Namespace) -> int:
    from hedgeflow import cli
    from hedgeflow.market import interval_seconds
    from hedgeflow.sweep import expand_grid, grid_from_strings
    from hedgeflow.walkforward import fold_spec, precheck
    from hedgeflow.windows import lookback_window

    symbols = cli._symbols_arg(args.symbols)
    days = cli._days_arg(args.days)
    end = cli._end_arg(args.end)
    grid: dict[str, list[Any]] | None = grid_from_strings(args.grid) if args.grid else None
    plan = expand_grid(args.strategy, grid)  # a bad grid fails here, before Prefect starts
    spec = fold_spec(
        args.train, args.test, args.step, args.anchored, args.cpcv,
        args.groups, args.test_groups, args.purge, args.embargo,
    )  # fmt: skip
    from hedgeflow.config import load_settings

    settings = load_settings()
    window = lookback_window(days or settings.lookback_days, end, interval=settings.interval)
    precheck(
        spec,
        plan,
        float(interval_seconds(settings.interval)),
        (window.end - window.start).total_seconds(),
    )
    cli.prepare_prefect(args.verbose)
    os.environ.setdefault("PREFECT_LOGGING_LOGGERS_DISTRIBUTED_LEVEL", "WARNING")
    from hedgeflow.flows.walkforward import walkforward

    cli.start_done()
    summary = walkforward(
        symbols=symbols,
        strategy=args.strategy,
        grid=grid,
        train=args.train,
        test=args.test,
        step=args.step,
        anchored=args.anchored,
        cpcv=args.cpcv,
        groups=args.groups,
        test_groups=args.test_groups,
        purge=args.purge,
        embargo=args.embargo,
        days=days,
        end=end,
        metric=args.metric,
    )
    print_walkforward_summary(summary)
    if summary.status == "failed" and summary.failed:
        first = next(iter(summary.failed.values()))
        if first.startswith(InvalidInputError.__name__):
            return cli.EXIT_USAGE
    return 0 if summary.status == "completed" else 1


def print_walkforward_summary(summary: Any) -> None:
    """In-sample against stitched out-of-sample per symbol (``WalkForwardSummary``)."""
    from rich.table import Table

    from hedgeflow.console import format_metric, print_report_path, stderr, stdout

    table = Table(
        title=f"walk-forward {summary.strategy} by {summary.metric} (run {summary.run_id})",
        title_justify="left",
    )
    columns = [("symbol", None), ("folds", None), (f"IS {summary.metric}", "is_metric_mean")]
    if summary.metric != "sharpe":
        columns.append(("IS sharpe", "is_sharpe_mean"))
    columns += [("OOS sharpe", "oos_sharpe"), ("OOS return", "oos_total_return"),
                ("OOS max dd", "oos_max_drawdown")]  # fmt: skip
    formats = {"is_metric_mean": summary.metric, "is_sharpe_mean": "sharpe",
               "oos_sharpe": "sharpe", "oos_total_return": "total_return",
               "oos_max_drawdown": "max_drawdown"}  # fmt: skip
    for head, _ in columns:
        table.add_column(head, no_wrap=True, justify="left" if head == "symbol" else "right")
    for row in summary.results:
        paths = f"{row['paths']} path{'s' if row['paths'] != 1 else ''}"
        cells = [row["symbol"], f"{row['folds']} ({paths})"]
        cells += [format_metric(formats[key], row.get(key)) for _, key in columns[2:] if key]
        table.add_row(*cells)
    stdout.print(table)
    stdout.print(f"grid: {summary.grid}; folds: {summary.folds}", markup=False, highlight=False)
    for symbol, error in summary.failed.items():
        stderr.print(f"{symbol} failed: {error}", markup=False, highlight=False)
    stdout.print(f"status: {summary.status}")
    print_report_path(summary.report_path)
