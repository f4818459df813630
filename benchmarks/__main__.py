"""``python -m benchmarks [ingest|engine|backtest|...|all] [--quick] [--repeat N] [--output PATH]``.

Runs the chosen benchmarks in this one process, prints each section, and rewrites
only those sections of BENCHMARKS.md (``--quick`` runs small sizes and writes
nothing unless ``--output`` is given, so the reference numbers are not replaced by
quick ones).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks import BENCHMARKS
from benchmarks._common import REPO
from benchmarks.report import write_section
from hedgeflow.stdio import line_buffered


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("which", nargs="?", default="all", choices=[*BENCHMARKS, "all"])
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    p.add_argument("--repeat", type=int, default=None, help="timed repeats (default 5; quick 2)")
    p.add_argument("--output", type=Path, default=None, help="markdown file to update")
    return p


def _command(name: str, args: argparse.Namespace) -> str:
    parts = ["python -m benchmarks", name]
    if args.quick:
        parts.append("--quick")
    if args.repeat is not None:
        parts.append(f"--repeat {args.repeat}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    line_buffered()
    args = _parser().parse_args(argv)
    repeat = args.repeat if args.repeat is not None else (2 if args.quick else 5)
    if repeat < 1:
        raise SystemExit("--repeat must be >= 1")
    output = args.output
    if output is None and not args.quick:
        output = REPO / "BENCHMARKS.md"
    names = BENCHMARKS if args.which == "all" else (args.which,)
    t_all = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        command = _command(name, args)
        if name == "ingest":
            from benchmarks import ingest

            days = ingest.QUICK_DAYS if args.quick else ingest.FULL_DAYS
            body = ingest.render(
                ingest.run(days=days, repeat=repeat, command=command, quick=args.quick)
            )
        elif name == "engine":
            from benchmarks import engine

            body = engine.render(
                engine.run(
                    days=engine.QUICK_DAYS if args.quick else engine.FULL_DAYS,
                    bt_bars=engine.QUICK_BT_BARS if args.quick else engine.BT_BARS,
                    repeat=repeat,
                    command=command,
                    quick=args.quick,
                )
            )
        elif name == "backtest":
            from benchmarks import backtest

            body = backtest.render(
                backtest.run(
                    days=backtest.QUICK_DAYS if args.quick else backtest.FULL_DAYS,
                    repeat=min(repeat, 5),
                    command=command,
                    quick=args.quick,
                )
            )
        elif name == "sweep":
            from benchmarks import sweep

            days, fast, slow = (
                (sweep.QUICK_DAYS, sweep.QUICK_FAST, sweep.QUICK_SLOW)
                if args.quick
                else (sweep.FULL_DAYS, sweep.FAST, sweep.SLOW)
            )
            body = sweep.render(
                sweep.run(days, fast, slow, repeat=repeat, command=command, quick=args.quick)
            )
        elif name == "universe":
            from benchmarks import universe

            body = universe.render(
                universe.run(
                    universe.QUICK_SYMBOLS if args.quick else universe.N_SYMBOLS,
                    universe.QUICK_DAYS if args.quick else universe.DAYS,
                    dask=True,
                    command=command,
                    quick=args.quick,
                )
            )
        elif name == "live":
            from benchmarks import live

            body = live.render(
                live.run(
                    live.QUICK_TICKS if args.quick else live.FULL_TICKS,
                    live.QUICK_HOURS if args.quick else live.FULL_HOURS,
                    command=command,
                    quick=args.quick,
                )
            )
        elif name == "commands":
            from benchmarks import commands

            body = commands.render(
                commands.run(
                    warm_runs=commands.QUICK_WARM_RUNS if args.quick else commands.WARM_RUNS,
                    command=command,
                    quick=args.quick,
                )
            )
        elif name == "notify":
            from benchmarks import notify

            body = notify.render(
                notify.run(
                    notify.QUICK_BARS if args.quick else notify.FULL_BARS,
                    command=command,
                    quick=args.quick,
                )
            )
        elif name == "overfit":
            from benchmarks import overfit

            rows, trials = overfit.QUICK if args.quick else overfit.FULL
            body = overfit.render(
                overfit.run(rows, trials, repeat=repeat, command=command, quick=args.quick)
            )
        elif name == "walkforward":
            from benchmarks import walkforward

            days, fast, slow, train, test = walkforward.QUICK if args.quick else walkforward.FULL
            body = walkforward.render(
                walkforward.run(
                    days,
                    fast,
                    slow,
                    train,
                    test,
                    repeat=min(repeat, 3),
                    command=command,
                    quick=args.quick,
                )
            )
        else:  # pragma: no cover - argparse choices
            raise SystemExit(f"unknown benchmark {name}")
        print(body, flush=True)
        print(f"\n[{name}: {time.perf_counter() - t0:.0f} s]\n", file=sys.stderr, flush=True)
        if output is not None:
            write_section(output, name, body)
            print(f"[{name}: section written to {output}]", file=sys.stderr, flush=True)
    print(f"[total {time.perf_counter() - t_all:.0f} s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
