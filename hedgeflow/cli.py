"""The ``hedgeflow`` command.

The one core module that may start flows: Prefect and the flows are imported
lazily inside the commands, after the environment is prepared, so ``--help``
and input errors are instant and never touch the warehouse.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from hedgeflow import __version__
from hedgeflow.errors import HedgeflowError, InvalidInputError
from hedgeflow.market import normalize_symbol
from hedgeflow.stdio import line_buffered

EXIT_USAGE = 2
EXAMPLES = """\
examples:
  hedgeflow nightly                          the whole pipeline on synthetic demo data
  hedgeflow ingest --symbols AAPL.US BTC-USD.CC --days 5
  hedgeflow ingest --source eodhd --interval 1h --days 365   (needs EODHD_API_TOKEN)
  hedgeflow backtest --bars my.csv --strategy sma_cross --param fast=10 --out results/
  hedgeflow sweep --strategy sma_cross --grid fast=5,10,20 --grid slow=50,100
  hedgeflow overfit --returns trials.parquet --out results/   (PBO, deflated Sharpe)
  hedgeflow walkforward --strategy sma_cross --train 20d --test 5d [--anchored | --cpcv]
  hedgeflow backtest --bars my.csv --strategy my_strategy.py:Bollinger --out results/
  hedgeflow strategies check my_strategy.py:Bollinger
  hedgeflow live --duration 30               live signals and paper trades, simulator
  hedgeflow reconcile                        the last live run's fills vs the engine's
  hedgeflow sql "select agent, n_trades, sharpe from agent_metrics"
  hedgeflow runs && hedgeflow report RUN_ID

settings come from ./hedgeflow.toml (or --config) and HEDGEFLOW_* variables; data
goes to $HEDGEFLOW_HOME (default ./data). Exit status: 0 ok, 1 run finished with
failed agents, 2 bad input or a clear error, 130 interrupted.
"""
_STRATEGY_HELP = (
    "a built-in (sma_cross, rsi_mean_revert, donchian_breakout; `hedgeflow strategies` "
    "lists all), package.module:Name or path/to/file.py:Name"
)
# hedgeflow.sweep.RANK_METRICS (not imported here: it loads numba)
_RANK_METRICS = (
    "sharpe",
    "sortino",
    "total_return",
    "cagr",
    "calmar",
    "max_drawdown",
    "profit_factor",
    "win_rate",
    "ann_vol",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hedgeflow",
        description=(
            "Multi-agent trading research on Prefect: ingest EODHD intraday bars into a "
            "Parquet lake + DuckDB warehouse, backtest one agent per market, combine them "
            "into a portfolio, and query everything with SQL."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hedgeflow {__version__}")
    parser.add_argument(
        "--home", type=Path, help="data directory (default $HEDGEFLOW_HOME or ./data)"
    )
    parser.add_argument(
        "--config", type=Path, help="settings file (default ./hedgeflow.toml if present)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show Prefect's run logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("ingest", help="fetch, validate and store intraday bars")
    p.add_argument(
        "--source", choices=("synthetic", "eodhd", "simulator"), help="default: synthetic"
    )
    p.add_argument(
        "--symbols", nargs="+", metavar="SYMBOL", help="e.g. AAPL.US EURUSD.FOREX BTC-USD.CC"
    )
    p.add_argument("--days", type=int, help="lookback in days (default 30)")
    p.add_argument("--interval", choices=("1m", "5m", "1h"), help="bar interval (default 5m)")
    p.add_argument("--end", help="end of the window, UTC (default: the last completed bar)")

    p = sub.add_parser("nightly", help="ingest, backtest every agent, combine, publish")
    p.add_argument(
        "--dask",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="backtest on Dask: a LocalCluster of 2 workers, or the scheduler at ADDRESS",
    )
    p.add_argument(
        "--source", choices=("synthetic", "eodhd", "simulator"), help="default: synthetic"
    )
    p.add_argument("--days", type=int, help="lookback in days (default 30)")
    p.add_argument("--end", help="end of the window, UTC (default: the last completed bar)")

    p = sub.add_parser("backtest", help="backtest one strategy on your own bars file")
    p.add_argument("--bars", required=True, type=Path, metavar="FILE", help="CSV or Parquet bars")
    p.add_argument("--strategy", required=True, help=_STRATEGY_HELP)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--asset-class", choices=("stock", "forex", "crypto"), default="stock")
    p.add_argument("--equity", type=float, default=100_000.0)
    p.add_argument("--risk", type=float, default=0.01, help="risk per trade (fraction of equity)")
    p.add_argument("--stop-pct", type=float, default=0.01)
    p.add_argument("--take-profit-pct", type=float, default=0.02)
    p.add_argument("--max-leverage", type=float, default=1.0)
    p.add_argument("--fee-bps", type=float, default=0.0)
    p.add_argument("--slippage-bps", type=float, default=0.0)
    p.add_argument(
        "--qty-step",
        type=float,
        help="order quantities in whole steps of this (default: the asset class's; "
        "stock 1, forex 1000, crypto 1e-5; 0: any quantity)",
    )
    p.add_argument(
        "--min-notional",
        type=float,
        help="skip entries below this notional (default: the asset class's; crypto 10)",
    )
    p.add_argument(
        "--allow-short",
        action="store_true",
        help="trade the strategy's short signals: -1 sells short (default: long only)",
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument(
        "--format",
        # hedgeflow.exports.EXPORT_FORMATS, not imported here so that the command starts
        # without numba and pyarrow (tests/hedgeflow/test_exports.py checks they agree)
        choices=("csv", "parquet"),
        default="csv",
        help="trades and equity files: csv (ISO times) or parquet (default csv)",
    )

    p = sub.add_parser(
        "sweep", help="sweep a strategy's parameter grid, best parameters per symbol"
    )
    p.add_argument("--strategy", required=True, help=_STRATEGY_HELP)
    p.add_argument(
        "--symbols", nargs="+", metavar="SYMBOL", help="default: the configured agents' symbols"
    )
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="values of one parameter, repeatable, e.g. --grid fast=5,10,20 --grid slow=50,100 "
        "(default: a built-in grid per strategy)",
    )
    p.add_argument("--days", type=int, help="lookback in days (default 30)")
    p.add_argument("--end", help="end of the window, UTC (default: the last completed bar)")
    p.add_argument("--metric", choices=_RANK_METRICS, default="sharpe", help="ranking metric")
    p.add_argument(
        "--allow-short",
        action="store_true",
        default=None,
        help="trade the strategy's short signals (default: the allow_short setting)",
    )
    p.add_argument(
        "--dask",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run the backtests on Dask: the scheduler at ADDRESS, or a local cluster "
        "of 2 workers without one",
    )

    from hedgeflow.walkforward_cli import add_parser as add_walkforward

    add_walkforward(sub, _STRATEGY_HELP, _RANK_METRICS)

    p = sub.add_parser(
        "overfit",
        help="overfitting statistics of a returns matrix: PSR, deflated Sharpe, PBO by CSCV",
        description="Read a returns matrix (CSV or Parquet: a time column and one numeric "
        "column of per-period returns per trial, rows in time order) and write "
        "DIR/overfit.json: the best trial's probabilistic and deflated Sharpe ratios and "
        "the probability of backtest overfitting by combinatorially symmetric "
        "cross-validation over the C(S, S/2) splits of S blocks.",
    )
    p.add_argument("--returns", required=True, type=Path, metavar="FILE", help="CSV or Parquet")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument(
        "--blocks", type=int, default=16, metavar="S", help="CSCV blocks, even (default 16)"
    )

    p = sub.add_parser(
        "live",
        help="live signals and paper trades from WebSocket ticks (local simulator by default)",
        description="Stream ticks (or poll REST bars), build bars, run every agent on each "
        "closed bar and store bars, signals, orders, fills and positions in the live_* "
        "tables. Ctrl-C or --duration stops it; positions stay open and the next run "
        "continues them.",
    )
    p.add_argument(
        "--source",
        choices=("simulator", "eodhd"),
        default="simulator",
        help="simulator: a local EODHD-compatible server with synthetic data (default); "
        "eodhd: the real feeds (needs EODHD_API_TOKEN)",
    )
    p.add_argument(
        "--mode", choices=("ws", "poll"), default="ws", help="WebSocket ticks or REST polling"
    )
    p.add_argument(
        "--speed",
        type=float,
        default=300.0,
        help="simulated market seconds per second (simulator only; default 300)",
    )
    p.add_argument(
        "--duration", type=float, metavar="SECONDS", help="stop after SECONDS (default: Ctrl-C)"
    )
    p.add_argument(
        "--start", help="simulated clock start, UTC (default: the last complete US session open)"
    )
    p.add_argument(
        "--fresh", action="store_true", help="start a new live run instead of continuing the last"
    )
    p.add_argument(
        "--max-silence",
        type=float,
        metavar="SECONDS",
        help="stop the run as degraded (failed without any tick) when no tick arrives for "
        "SECONDS of wall time; 0: no limit (default: [live] max_silence, 60)",
    )

    p = sub.add_parser(
        "reconcile",
        help="compare a live run's fills with the backtest engine re-run on its bars",
        description="Re-run the engine over the bars a live run recorded (with the settings "
        "it ran with) and compare its fills with the live fills, fill by fill. Every "
        "difference is stored in live_drift and classified: missed_signal, extra_signal, "
        "fill_price, qty, costs (unexplained), or vendor_revision (explained: the vendor's "
        "bar differs from the live one). Exit status: 0 when no difference is "
        "unexplained, 1 otherwise, 2 on bad input.",
    )
    p.add_argument(
        "--run", metavar="RUN_ID", help="the live run (an id or unique prefix; default: the latest)"
    )

    p = sub.add_parser("runs", help="list recent runs with status and headline metrics")
    p.add_argument("--limit", type=int, default=15, help="how many runs (default 15)")

    p = sub.add_parser("report", help="print (or open) a run's report")
    p.add_argument("run_id", help="a run id from `hedgeflow runs` (a unique prefix is enough)")
    p.add_argument("--open", action="store_true", help="open the HTML report in a browser")

    p = sub.add_parser(
        "server",
        help="the local Prefect server hedgeflow starts on first use: status or stop",
    )
    p.add_argument("action", choices=("status", "stop"))

    p = sub.add_parser("strategies", help="list strategies, or check that one is sound")
    strat = p.add_subparsers(dest="strategies_command", metavar="check")
    c = strat.add_parser(
        "check",
        help="batch = streaming = sweep, no look-ahead, honest warm-up, deterministic",
    )
    c.add_argument("ref", metavar="NAME|REF", help=_STRATEGY_HELP)
    c.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")

    p = sub.add_parser("sql", help="run a read-only SQL query on the warehouse")
    p.add_argument("query", help='e.g. "select symbol, count(*) from bars group by 1"')
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument(
        "--max-rows", type=int, default=200, help="rows shown in table format (csv, json: all)"
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, help="stop the query after this many seconds"
    )
    p.add_argument(
        "--memory-limit",
        default="2GB",
        help="memory the query may use before DuckDB spills to disk or stops it",
    )
    return parser


def _skip_pandera_dask_probe() -> None:
    """pandera, at the first schema it builds, imports ``dask.dataframe`` just to learn
    whether Dask is installed (0.4-0.7 s of every command's start, as Dask is a
    dependency here). hedgeflow validates pandas frames only, so the command tells
    pandera that its Dask typing is absent. Only in the ``hedgeflow`` process: a
    program importing hedgeflow keeps pandera as it is."""
    name = "pandera.typing.dask"
    if name not in sys.modules:
        import types

        probe = types.ModuleType(name, "hedgeflow CLI: pandera's Dask typing, not loaded")
        probe.DASK_INSTALLED = False  # type: ignore[attr-defined]
        sys.modules[name] = probe


# Whether the cyclic garbage collector is off for this command's start (gc_off_for_start).
_START_WITHOUT_GC = False


def gc_off_for_start() -> None:
    """A flow command's start (its imports: Prefect, pandas, numba, the flows; settings
    and the server check) builds some hundred thousand long-lived objects and no
    garbage worth collecting, yet the collector's passes over them, full ones
    included, cost about 0.25 s of every command before its flow starts. It is off
    until :func:`start_done`. Only in the ``hedgeflow`` process, when it is on."""
    global _START_WITHOUT_GC
    if gc.isenabled():
        gc.disable()
        _START_WITHOUT_GC = True


def start_done() -> None:
    """The command's start is over, its flow about to run: what the start built is
    moved out of the collector's way for good (``gc.freeze``: modules, classes and
    functions, alive until the process ends anyway) and the collector is back on."""
    global _START_WITHOUT_GC
    if _START_WITHOUT_GC:
        _START_WITHOUT_GC = False
        gc.freeze()
        gc.enable()


def _gc_back_on() -> None:
    """A command that ended before its flow: the collector back on, nothing frozen."""
    global _START_WITHOUT_GC
    if _START_WITHOUT_GC:
        _START_WITHOUT_GC = False
        gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    line_buffered()
    cli_process = __name__ == "__main__" or Path(sys.argv[0]).name in ("hedgeflow", "__main__.py")
    if cli_process:
        _skip_pandera_dask_probe()
    parser = build_parser()
    args = parser.parse_args(argv)
    if cli_process and args.command in PREFECT_COMMANDS:
        gc_off_for_start()
    if args.home is not None:
        os.environ["HEDGEFLOW_HOME"] = str(args.home)
    if args.config is not None:
        os.environ["HEDGEFLOW_CONFIG"] = str(args.config)
    from hedgeflow.secrets import install_redaction

    install_redaction()
    began = time.time()
    previous_term = _terminate_as_interrupt()
    try:
        if args.command in WAREHOUSE_COMMANDS:
            _mark_crashed_runs(args.command, args.verbose)
        handler = _COMMANDS[args.command]
        return handler(args)
    except HedgeflowError as exc:
        print(f"hedgeflow: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        signum = int(getattr(exc, "signum", signal.SIGINT))
        print(_end_interrupted(signum, began), file=sys.stderr)
        return 128 + signum
    except Exception as exc:
        if not _out_of_memory(exc):
            raise
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(
            f"hedgeflow: error: out of memory ({detail}): this process may not use more; "
            "narrow the work or raise the limit",
            file=sys.stderr,
        )
        return EXIT_USAGE
    finally:
        _gc_back_on()
        _COMMAND_SCOPE.close()
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signal.SIGTERM, previous_term)


def run() -> NoReturn:
    """The ``hedgeflow`` command: :func:`main`, then a quick exit.

    A finished command exits the way the interpreter would (threads joined, Prefect's
    queued events and logs drained, ``atexit`` handlers, output flushed) but skips the
    final teardown of every imported module, about 0.5 s after a flow (pandas, numba,
    Prefect). Every file hedgeflow writes is closed or committed before this point."""
    code = main()
    exit_now(code)


def exit_now(code: int) -> NoReturn:
    shutdown_threads = getattr(threading, "_shutdown", None)
    if shutdown_threads is not None:  # what Py_Finalize runs first: join, then drain
        shutdown_threads()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


# What a command set up for its own duration only (Prefect settings); closed when main
# returns, so that in-process callers (tests, notebooks) get their settings back.
_COMMAND_SCOPE = contextlib.ExitStack()
# The runs this command found dead and marked ``crashed``: their Prefect flow runs are
# marked Crashed too once Prefect is reachable (prepare_prefect).
_CRASHED_RUNS: list[str] = []


# Commands that read or write the warehouse: each first marks runs whose process died
# ``crashed`` (a killed run must never stay ``running``). ``sql`` shows them crashed in
# its snapshot instead (it opens no second database: its memory is the query's).
WAREHOUSE_COMMANDS = frozenset(
    {"ingest", "nightly", "sweep", "walkforward", "live", "runs", "report", "reconcile"}
)
# Commands that run Prefect flows (each calls prepare_prefect).
PREFECT_COMMANDS = frozenset({"ingest", "nightly", "sweep", "walkforward", "live", "reconcile"})


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that every command stops the
    same way (a final flush, the run ``cancelled``), but exits 143."""

    signum = signal.SIGTERM


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


def _terminate_as_interrupt() -> Any:
    """SIGTERM raises ``Terminated`` (in the main thread); the previous handler."""
    try:
        return signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (a test calling main() from a thread)
        return signal.getsignal(signal.SIGTERM)


def signal_words(signum: int) -> str:
    name = signal.Signals(signum).name
    return f"{name} (Ctrl-C)" if signum == signal.SIGINT else name


def _mark_crashed_runs(command: str, verbose: bool) -> None:
    """Runs whose process died become ``crashed`` (said once on stderr), and so do their
    Prefect flow runs: now, when a Prefect server is already up, or once the command
    itself has reached Prefect (prepare_prefect)."""
    from hedgeflow.config import load_settings

    try:
        settings = load_settings()
    except HedgeflowError:
        return  # the command itself reports a bad setting
    from hedgeflow.warehouse import Warehouse

    try:
        marked = Warehouse(settings.home).mark_crashed_runs()
    except HedgeflowError:
        return  # an unreadable warehouse: the command says so
    if not marked:
        return
    print(
        f"hedgeflow: marked {len(marked)} run(s) whose process died as crashed: "
        + ", ".join(marked),
        file=sys.stderr,
    )
    _CRASHED_RUNS[:] = marked
    if command not in PREFECT_COMMANDS and _prefect_up(settings.prefect_server):
        prepare_prefect(verbose)


def _prefect_up(mode: str) -> bool:
    """A Prefect server this command can reach without starting one."""
    from hedgeflow.prefect_server import configured_api_url, server_status

    if configured_api_url() is not None:
        return True
    return mode == "resident" and server_status()[1]


def _end_interrupted(signum: int, began: float) -> str:
    """After SIGINT / SIGTERM: the runs this process left ``running`` become
    ``cancelled``, and so do their Prefect flow runs; the one line to print."""
    reason = f"stopped by {signal_words(signum)}"
    cancelled: list[str] = []
    with contextlib.suppress(Exception):
        from hedgeflow.config import load_settings
        from hedgeflow.tasks.common import INTERRUPT_LOCK_WAIT
        from hedgeflow.warehouse import Warehouse

        warehouse = Warehouse(load_settings().home, lock_timeout=INTERRUPT_LOCK_WAIT)
        warehouse.end_runs_of_this_process("cancelled", reason)
        mine = warehouse.runs_of_this_process(pd_timestamp(began))
        cancelled = [str(r) for r in mine.loc[mine["status"] == "cancelled", "run_id"]]
    if "prefect" in sys.modules:  # a flow ran: its flow run(s) end Cancelled too
        from hedgeflow.tasks.common import cancel_flow_runs

        cancel_flow_runs(reason)
    runs = f"; run {', '.join(cancelled)} cancelled" if cancelled else ""
    return f"hedgeflow: {reason}{runs}"


def pd_timestamp(epoch: float) -> Any:
    import pandas as pd

    return pd.Timestamp(epoch, unit="s", tz="UTC")


def _out_of_memory(exc: BaseException) -> bool:
    """Python's MemoryError, or DuckDB's OutOfMemoryException (by name: duckdb is
    imported lazily)."""
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryException"


def _symbols_arg(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                out.append(normalize_symbol(part))
    return out


def _days_arg(days: int | None) -> int | None:
    if days is not None and not 1 <= days <= 20_000:
        raise InvalidInputError(f"--days must be in [1, 20000], got {days}")
    return days


def _end_arg(end: str | None) -> Any:
    if end is None:
        return None
    from hedgeflow.windows import parse_utc

    return parse_utc(end, "--end")


def settings_for_writing(days: int | None = None, interval: str | None = None) -> Any:
    """The settings of a command that writes the warehouse; its home must be a writable
    directory (or creatable) on a file system with space left, and its window of bars
    within the memory ceiling, checked before any work."""
    from hedgeflow.config import check_home, load_settings
    from hedgeflow.windows import check_window_bars

    settings = load_settings()
    check_window_bars(days or settings.lookback_days, interval or settings.interval)
    check_home(settings.home, writable=True)
    return settings


def cmd_ingest(args: argparse.Namespace) -> int:
    symbols = _symbols_arg(args.symbols)
    days = _days_arg(args.days)
    interval = args.interval  # argparse restricts it to 1m/5m/1h
    end = _end_arg(args.end)
    settings_for_writing(days, interval)  # a bad setting or home fails here, before Prefect
    from hedgeflow.console import ingest_progress, print_ingest_summary

    prepare_prefect(args.verbose)
    require_token(args.source)
    from hedgeflow.flows.ingest import ingest

    start_done()
    with ingest_progress(len(symbols) if symbols else None):
        results = ingest(symbols=symbols, days=days, interval=interval, source=args.source, end=end)
    print_ingest_summary(results)
    return 0


def cmd_nightly(args: argparse.Namespace) -> int:
    days = _days_arg(args.days)
    end = _end_arg(args.end)
    settings = settings_for_writing(days)
    from hedgeflow.console import nightly_progress, print_nightly_summary

    prepare_prefect(args.verbose)
    require_token(args.source)
    from hedgeflow.flows.nightly import nightly

    start_done()
    with nightly_progress(len(settings.symbols), len(settings.agents)):
        summary = nightly(
            days=days,
            source=args.source,
            end=end,
            task_runner=None if args.dask is None else "dask",
            dask_address=args.dask or None,
        )
    print_nightly_summary(summary)
    return 0 if summary.status == "completed" else 1


def cmd_backtest(args: argparse.Namespace) -> int:
    from hedgeflow.backtest_io import output_files
    from hedgeflow.console import print_metrics
    from hedgeflow.research import backtest_file, skipped_note

    metrics, skipped = backtest_file(
        bars_path=args.bars,
        strategy=args.strategy,
        params=args.param,
        asset_class=args.asset_class,
        equity=args.equity,
        risk=args.risk,
        stop_pct=args.stop_pct,
        take_profit_pct=args.take_profit_pct,
        max_leverage=args.max_leverage,
        fee_bps=args.fee_bps,
        slippage_bps=args.slippage_bps,
        out_dir=args.out,
        out_format=args.format,
        allow_short=args.allow_short,
        qty_step=args.qty_step,
        min_notional=args.min_notional,
    )
    print_metrics(metrics, title=f"{args.strategy} on {args.bars.name}")
    if not skipped.empty:
        print(skipped_note(skipped).removeprefix(", ").capitalize())
    names = output_files(args.format).values()
    print("wrote " + ", ".join(str(args.out / name) for name in names))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from hedgeflow.sweep import expand_grid, grid_from_strings

    symbols = _symbols_arg(args.symbols)
    days = _days_arg(args.days)
    end = _end_arg(args.end)
    grid = grid_from_strings(args.grid) if args.grid else None
    plan = expand_grid(args.strategy, grid)  # a bad grid fails here, before Prefect starts
    if args.allow_short:
        from hedgeflow.strategies import get_strategy

        get_strategy(plan.strategy).check_shorts(True)
    settings_for_writing(days)
    from hedgeflow.console import print_sweep_summary

    prepare_prefect(args.verbose)
    os.environ.setdefault("PREFECT_LOGGING_LOGGERS_DISTRIBUTED_LEVEL", "WARNING")
    from hedgeflow.flows.sweep import sweep

    start_done()
    params: dict[str, Any] = {
        "symbols": symbols,
        "strategy": args.strategy,
        "grid": grid,
        "days": days,
        "end": end,
        "metric": args.metric,
        "task_runner": "threads" if args.dask is None else "dask",
        "dask_address": args.dask or None,
        "allow_short": args.allow_short,
    }
    summary = sweep(**params)
    print_sweep_summary(summary)
    return 0 if summary.status == "completed" else 1


def cmd_walkforward(args: argparse.Namespace) -> int:
    from hedgeflow.walkforward_cli import cmd_walkforward as run

    return run(args)


def cmd_overfit(args: argparse.Namespace) -> int:
    from hedgeflow.console import print_overfit
    from hedgeflow.overfit_io import overfit_file

    summary, path = overfit_file(args.returns, args.out, args.blocks)
    print_overfit(summary, args.returns.name)
    print(f"wrote {path}")
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    from hedgeflow.config import load_settings

    if not 0 < args.speed <= 1_000_000:
        raise InvalidInputError(f"--speed must be in (0, 1000000], got {args.speed}")
    if args.duration is not None and not 0 < args.duration <= 10_000_000:
        raise InvalidInputError(f"--duration must be a positive number, got {args.duration}")
    if args.max_silence is not None and not 0 <= args.max_silence <= 10_000_000:
        raise InvalidInputError(
            f"--max-silence must be in [0, 10000000] seconds (0: no limit), got {args.max_silence}"
        )
    start = None
    if args.start is not None:
        from hedgeflow.windows import parse_utc

        start = parse_utc(args.start, "--start")
    if start is not None and args.source != "simulator":
        raise InvalidInputError("--start needs --source simulator")
    load_settings()  # a bad setting fails here, before Prefect starts
    from hedgeflow.console import live_status_display, print_live_summary
    from hedgeflow.live.runtime import (
        SHUTDOWN,
        clear_shutdown,
        request_shutdown,
        shutdown_signal,
    )

    prepare_prefect(args.verbose)
    require_token(args.source)
    from hedgeflow.flows.live import live

    start_done()
    clear_shutdown()

    def on_signal(signum: int, frame: Any) -> None:
        if SHUTDOWN.is_set():  # a second Ctrl-C: stop now
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        request_shutdown(f"stopped by {signal_words(signum)}", signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with live_status_display():
            summary = live(
                source=args.source,
                mode=args.mode,
                speed=args.speed,
                duration=args.duration,
                start=start,
                fresh=args.fresh,
                status_every=0.5 if sys.stdout.isatty() else 2.0,
                max_silence=args.max_silence,
            )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print_live_summary(summary)
    signum = shutdown_signal()
    if summary.status == "cancelled" and signum is not None:
        from hedgeflow.tasks.common import cancel_flow_runs

        cancel_flow_runs(str(summary.reason))
        print(f"hedgeflow: {summary.reason}; run {summary.run_id} cancelled", file=sys.stderr)
        return 128 + signum
    return 0 if summary.status == "completed" else 1


def cmd_reconcile(args: argparse.Namespace) -> int:
    """0: every difference explained (or none); 1: unexplained differences; 2: bad input
    (no warehouse, no live run, an unknown --run), before Prefect starts."""
    from hedgeflow.config import load_settings
    from hedgeflow.warehouse import Warehouse

    settings = load_settings()
    Warehouse(settings.home).find_live_run(args.run)  # creates nothing
    prepare_prefect(args.verbose)
    from hedgeflow.flows.reconcile import reconcile

    start_done()
    summary = reconcile(run=args.run)
    for line in summary.lines:
        print(line)
    return 0 if summary.unexplained == 0 else 1


def cmd_sql(args: argparse.Namespace) -> int:
    from hedgeflow.config import load_settings

    if not 1 <= args.max_rows <= MAX_SQL_ROWS:
        raise InvalidInputError(f"--max-rows must be in [1, {MAX_SQL_ROWS}], got {args.max_rows}")
    if not 0 < args.timeout <= 86_400:
        raise InvalidInputError(f"--timeout must be in (0, 86400] seconds, got {args.timeout:g}")
    memory_limit = _memory_limit_arg(args.memory_limit)
    settings = load_settings()
    _check_read_only_sql(args.query)
    from hedgeflow.warehouse import Warehouse

    warehouse = Warehouse(settings.home)
    if not (warehouse.db_path.is_file() or warehouse.paths.lake.is_dir()):
        # a read-only command creates nothing (a typo in --home made an empty warehouse)
        raise InvalidInputError(
            f"no warehouse at {settings.home}: check --home / HEDGEFLOW_HOME, or run "
            "`hedgeflow ingest` or `hedgeflow nightly` first"
        )
    try:
        _sql_once(warehouse, args, memory_limit)
    except _LakeFileBroken as broken:
        # A lake file that cannot be read: move it to the quarantine folder (with a
        # record in lake_quarantine) and run the query again on the rest of the lake.
        healed = warehouse.heal_lake(
            full=broken.file is None, suspects=() if broken.file is None else (broken.file,)
        )
        moved = ", ".join(str(h.file) for h in healed) or "none"
        if not healed or broken.printed:
            raise InvalidInputError(
                f"query failed: a lake file could not be read ({broken.message}); moved to "
                f"the lake's quarantine: {moved}; run the query again, and re-ingest that range"
            ) from None
        print(
            f"hedgeflow: moved unreadable lake file(s) to the quarantine folder: {moved} "
            "(see lake_quarantine; re-ingest to restore them); the query ran without them",
            file=sys.stderr,
        )
        _sql_once(warehouse, args, memory_limit)
    return 0


class _LakeFileBroken(Exception):
    def __init__(self, file: Path | None, message: str, printed: bool) -> None:
        super().__init__(message)
        self.file, self.message, self.printed = file, message, printed


def _sql_once(warehouse: Any, args: argparse.Namespace, memory_limit: str) -> None:
    import itertools

    import duckdb

    from hedgeflow.console import print_query_result

    printed = False
    with (
        warehouse.snapshot(args.query, memory_limit=memory_limit) as con,
        _deadline(con, args.timeout) as timer,
        _interrupt_on_signal(con),
    ):
        try:
            cursor = con.execute(args.query)
            columns = [d[0] for d in cursor.description or []]
            first = cursor.fetchmany(SQL_BATCH_ROWS)  # errors up to here print nothing
            printed = True
            rest = iter(lambda: cursor.fetchmany(SQL_BATCH_ROWS), [])
            print_query_result(columns, itertools.chain([first], rest), args.format, args.max_rows)
        except (duckdb.InterruptException, RuntimeError) as exc:
            # Ctrl-C inside a query reaches Python as DuckDB's RuntimeError("Query
            # interrupted") (it printed a traceback and exited 1); --timeout as an
            # InterruptException.
            if not isinstance(exc, duckdb.InterruptException) and "interrupted" not in str(exc):
                raise
            if not timer.fired:
                raise KeyboardInterrupt from None
            raise InvalidInputError(
                f"query stopped after {args.timeout:g} s (--timeout): narrow it, or raise --timeout"
            ) from None
        except duckdb.OutOfMemoryException:
            raise InvalidInputError(
                f"query ran out of memory (--memory-limit {memory_limit}, or the process's "
                "own limit): narrow it (fewer columns, a LIMIT, an aggregate), or raise "
                "--memory-limit"
            ) from None
        except duckdb.Error as exc:  # the database's own message, on one line
            broken = warehouse.lake_read_error(exc)
            if broken is not None:
                raise _LakeFileBroken(broken.file, _one_line(exc), printed) from None
            raise InvalidInputError(f"query failed: {_one_line(exc)}") from None


MAX_SQL_ROWS = 100_000  # rows a table can show; csv and json stream every row
SQL_BATCH_ROWS = 2_048
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.I)


def _memory_limit_arg(text: str) -> str:
    found = _MEMORY_RE.match(text)
    if not found or float(found.group(1)) <= 0:
        raise InvalidInputError(f"--memory-limit must be a size such as 512MB or 4GB, got {text!r}")
    return f"{found.group(1)}{found.group(2)}"


def _one_line(exc: BaseException) -> str:
    """DuckDB's message without the caret lines under the query."""
    return " ".join(str(exc).split("\nLINE ")[0].split())


class _Timer:
    fired = False


@contextlib.contextmanager
def _interrupt_on_signal(con: Any) -> Iterator[None]:
    """Interrupt ``con``'s running query as soon as Ctrl-C (or SIGTERM) arrives.

    Python runs its signal handlers in the main thread between bytecodes, and the main
    thread is inside DuckDB until the query yields, which a large join does only every
    tens of seconds. The signal's wakeup byte (``signal.set_wakeup_fd``, written by the
    C-level handler at once) reaches a watcher thread instead, which interrupts the
    query (DuckDB's interrupt is thread-safe: ``--timeout`` uses it); the handler then
    raises KeyboardInterrupt as before."""
    import socket
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    try:
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except ValueError:  # pragma: no cover - not the main thread of the main interpreter
        reader.close()
        writer.close()
        yield
        return

    def watch() -> None:
        with contextlib.suppress(OSError):
            while reader.recv(64):  # a signal's number; b"" once the writer is closed
                con.interrupt()

    watcher = threading.Thread(target=watch, name="sql-interrupt", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        writer.shutdown(socket.SHUT_RDWR)
        writer.close()
        watcher.join(timeout=1.0)
        reader.close()


@contextlib.contextmanager
def _deadline(con: Any, seconds: float) -> Iterator[_Timer]:
    """Interrupt ``con``'s running query after ``seconds``."""
    import threading

    state = _Timer()

    def fire() -> None:
        state.fired = True
        con.interrupt()

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield state
    finally:
        timer.cancel()


# Statement kinds `hedgeflow sql` runs. The database is opened read-only, but DuckDB
# still lets a read-only session write files (COPY ... TO, EXPORT), attach other
# databases, install extensions or change settings: those are refused.
_SQL_STATEMENTS = frozenset({"SELECT", "EXPLAIN", "PRAGMA", "CALL"})


def _check_read_only_sql(query: str) -> None:
    import duckdb

    with duckdb.connect(":memory:") as parser:
        try:
            kinds = [s.type.name for s in parser.extract_statements(query)]
        except duckdb.Error as exc:
            raise InvalidInputError(f"query failed: {_one_line(exc)}") from None
    refused = sorted({k for k in kinds if k not in _SQL_STATEMENTS})
    if refused:
        raise InvalidInputError(
            f"hedgeflow sql is read-only: {', '.join(refused)} statements are not allowed "
            "(only SELECT, EXPLAIN, PRAGMA and CALL)"
        )


def cmd_runs(args: argparse.Namespace) -> int:
    from hedgeflow.config import load_settings
    from hedgeflow.console import print_runs
    from hedgeflow.warehouse import Warehouse

    if not 1 <= args.limit <= 10_000:
        raise InvalidInputError(f"--limit must be in [1, 10000], got {args.limit}")
    settings = load_settings()
    if not (settings.home / "hedgeflow.duckdb").exists():
        print(f"no runs yet in {settings.home}")
        return 0
    print_runs(Warehouse(settings.home).list_runs(args.limit))
    return 0


# Runs that publish a tearsheet (HOME/reports/<run_id>/report.html).
REPORTING_FLOWS = ("nightly", "sweep", "walkforward")


def cmd_report(args: argparse.Namespace) -> int:
    """The absolute path of a nightly or sweep run's report.html (0); a short account
    of a live or ingest run, which have no tearsheet (0); a known run whose report is
    missing (1); an unknown or ambiguous id (2)."""
    import webbrowser

    from hedgeflow.config import load_settings
    from hedgeflow.console import print_run_card
    from hedgeflow.warehouse import Warehouse
    from hedgeflow.warehouse.paths import check_run_id

    check_run_id(args.run_id)  # before any I/O
    settings = load_settings()
    warehouse = Warehouse(settings.home)
    runs = warehouse.find_runs(args.run_id) if warehouse.db_path.exists() else None
    if runs is None or runs.empty:
        raise InvalidInputError(
            f"no report for run {args.run_id!r}: no such run in {settings.home.resolve()} "
            "(`hedgeflow runs` lists them)"
        )
    if len(runs) > 1:
        names = ", ".join(str(r) for r in runs["run_id"])
        raise InvalidInputError(f"run id prefix {args.run_id!r} is ambiguous: {names}")
    run = runs.iloc[0].to_dict()
    run_id, flow = str(run["run_id"]), str(run["flow"])
    if flow not in REPORTING_FLOWS:
        print_run_card(run)
        if args.open:
            print(f"hedgeflow: {flow} runs have no HTML report to open", file=sys.stderr)
            return 1
        return 0
    target = warehouse.report_file(run_id)
    if not target.is_file():
        print(
            f"hedgeflow: {flow} run {run_id} ({run['status']}) has no report: {target} "
            "was not written (the run failed or is still running)",
            file=sys.stderr,
        )
        return 1
    print(target)
    if args.open:
        webbrowser.open(target.as_uri())
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    from hedgeflow.strategies import resolve_strategy, strategy_names

    if args.strategies_command == "check":
        from hedgeflow.strategies import params_from_strings
        from hedgeflow.strategies.check import check_strategy

        params = params_from_strings(args.ref, args.param) if args.param else None
        result = check_strategy(args.ref, params)
        for line in result.lines():
            print(line)
        return 0 if result.ok else 1
    import dataclasses

    for name in strategy_names():
        spec = resolve_strategy(name)
        defaults = spec.params()
        fields = ", ".join(
            f"{f.name}={getattr(defaults, f.name)!r}" for f in dataclasses.fields(defaults)
        )
        print(f"{name}  ({spec.source})")
        if spec.description:
            print(f"    {spec.description}")
        print(f"    parameters: {fields}")
        print(
            f"    warm-up: {spec.warmup(defaults)} bars; indicators: {', '.join(spec.indicators)}"
        )
    print("also: package.module:Name or path/to/file.py:Name (README: Writing a strategy)")
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    """``status``: where the resident Prefect server runs (0), or that none runs (1);
    ``stop``: stop it (0, also when none was running)."""
    from hedgeflow.prefect_server import configured_api_url, server_status, stop_server

    if args.action == "stop":
        stopped = stop_server()
        if stopped is None:
            print("no hedgeflow Prefect server is running")
        else:
            print(f"stopped the Prefect server at {stopped.url} (pid {stopped.pid})")
        return 0
    state, ok = server_status()
    own = configured_api_url()
    if own is not None:
        print(f"PREFECT_API_URL is set ({own}): hedgeflow's flows report there")
    if state is None:
        print("no hedgeflow Prefect server is running (the next flow command starts one)")
        return 1
    import datetime as dt

    since = dt.datetime.fromtimestamp(state.started_at, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    health = "healthy" if ok else "NOT answering"
    print(f"Prefect server at {state.url} (UI), pid {state.pid}, since {since}, {health}")
    return 0 if ok else 1


_COMMANDS = {
    "ingest": cmd_ingest,
    "nightly": cmd_nightly,
    "backtest": cmd_backtest,
    "sweep": cmd_sweep,
    "overfit": cmd_overfit,
    "walkforward": cmd_walkforward,
    "live": cmd_live,
    "reconcile": cmd_reconcile,
    "sql": cmd_sql,
    "strategies": cmd_strategies,
    "runs": cmd_runs,
    "report": cmd_report,
    "server": cmd_server,
}


def require_token(source: str | None) -> None:
    """For the real EODHD source, find the token (environment or Prefect Secret block)
    before any flow starts, so a missing token is one clear error, not a failed run."""
    from hedgeflow.config import load_settings

    settings = load_settings()
    if (source or settings.source) != "eodhd":
        return
    from hedgeflow.tasks.secrets import eodhd_token

    eodhd_token(settings.network)


def prepare_prefect(verbose: bool) -> None:
    """Environment for a quiet, offline Prefect before it is imported."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_UI_ENABLED", "false")
    if not verbose:
        # Failures reach the user as hedgeflow's own one-line errors and summaries;
        # Prefect's run logs (tracebacks included) stay in the API / UI, and -v shows them.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    logging.getLogger("hedgeflow").setLevel(logging.INFO)
    # A write waiting for another process's lock on the warehouse says so (and for
    # whom) on the terminal and in the flow run's log.
    from hedgeflow.warehouse.db import LOCK_LOGGER

    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", LOCK_LOGGER)
    waits = logging.getLogger(LOCK_LOGGER)
    if not any(getattr(h, "hedgeflow_cli", False) for h in waits.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("hedgeflow: %(message)s"))
        handler.hedgeflow_cli = True  # type: ignore[attr-defined]
        waits.addHandler(handler)
        waits.propagate = False
    _use_resident_server()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    if "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" not in os.environ:
        # A command's flow runs live in this process, which hedgeflow itself watches (the
        # runs row names it; the next command marks a dead one crashed, Prefect's flow
        # run included). Prefect's heartbeat thread would only add its join at the end of
        # every flow and subflow run, up to 1 s each.
        _COMMAND_SCOPE.enter_context(temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}))
    if _CRASHED_RUNS:
        from hedgeflow.tasks.common import crash_flow_runs

        crash_flow_runs(list(_CRASHED_RUNS))
        _CRASHED_RUNS.clear()


def _use_resident_server() -> None:
    """Point Prefect at hedgeflow's resident local server (started on first use), unless
    the user has a server of their own (PREFECT_API_URL, in the environment or the active
    profile) or chose Prefect's ephemeral mode (``prefect_server = "ephemeral"``)."""
    from hedgeflow.config import load_settings
    from hedgeflow.prefect_server import configured_api_url, ensure_server

    if load_settings().prefect_server != "resident" or configured_api_url() is not None:
        return
    if "prefect" in sys.modules:  # imported already (a notebook, a test harness): its
        from prefect.settings import PREFECT_API_URL  # settings may name a server

        if PREFECT_API_URL.value():
            return
    ensure_server(announce=sys.stderr)
    # ensure_server reuses a server only when it runs this very Prefect version (and
    # starts one with it otherwise): Prefect's own version handshake (a GET of
    # /admin/version by the first client of each thread, each with a new TLS context)
    # would only repeat that check.
    os.environ.setdefault("PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED", "false")


if __name__ == "__main__":
    run()
