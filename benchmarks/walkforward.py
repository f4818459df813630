"""Walk-forward: throughput of ``hedgeflow walkforward`` against the plain sweep, same run.

The sweep benchmark's grid (``sma_cross`` fast x slow, 40 x 25 = 1,000 combinations)
on the same ~100k synthetic 5-minute crypto bars, with the engine benchmark's
settings:

* the plain sweep: ``sweep_bars`` over all the bars (one compiled batch, every
  combination's 11 metrics, ranked);
* rolling walk-forward (``walkforward_bars``): 60-day train, 10-day test windows
  stepping 10 days; per fold the whole grid on the train bars in the same sweep
  kernel, the winner chosen by Sharpe, then its out-of-sample run (warm-up + test
  bars) and the stitched curve's metrics;
* combinatorial purged cross-validation: 6 groups, 2 tested (15 splits, 5 paths),
  purge 288 bars (a day), embargo 1%.

Throughput = combination-bars evaluated per second of wall time: combinations x
bars for the sweep; for the walk-forward every fold's combinations x train bars plus
its out-of-sample runs' warm-up and test bars (``WalkForwardResult.combination_bars``).
Target (issue 12): walk-forward >= 80% of the sweep's throughput. The contestants
alternate (sweep, walk-forward, CPCV, sweep, ...), each warmed up first so JIT
compilation is outside the timings.

``python -m benchmarks walkforward`` (or ``python -m benchmarks.walkforward``).
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

from benchmarks._common import (
    fmt_rate,
    fmt_seconds,
    machine_info,
    machine_line,
    synthetic_bars,
    table,
    utc,
)

NAME = "walkforward"
SYMBOL = "BTC-USD.CC"
START = utc(2024, 1, 1)
FULL = (348, tuple(range(2, 42)), tuple(range(50, 300, 10)), "60d", "10d")
QUICK = (20, tuple(range(2, 12)), tuple(range(50, 150, 10)), "5d", "2d")
CPCV = (6, 2, 288, 0.01)  # groups, tested, purge bars, embargo share
TARGET = 0.80  # walk-forward throughput / the sweep's
HEAD = ["run", "combination-bars", "median wall", "per second", "vs sweep",
        "median CPU", "per CPU second", "vs sweep"]  # fmt: skip


@dataclass
class WalkForwardBenchResult:
    command: str
    quick: bool
    n_bars: int
    n_combos: int
    train: str
    test: str
    sweep_times: list[float]
    wf_times: list[float]
    cpcv_times: list[float]
    sweep_cpu: list[float]  # process CPU seconds (all threads) of each timed run
    wf_cpu: list[float]
    cpcv_cpu: list[float]
    wf_work: int  # combination-bars of one walk-forward run
    cpcv_work: int
    wf_folds: int
    cpcv_splits: int
    wf_summary: dict[str, Any]
    cpcv_summary: dict[str, Any]
    machine: dict[str, str]
    load_start: str = ""  # load average (1/5/15 min) when the timed runs began

    @property
    def sweep_rate(self) -> float:
        return self.n_combos * self.n_bars / statistics.median(self.sweep_times)

    @property
    def wf_rate(self) -> float:
        return self.wf_work / statistics.median(self.wf_times)

    @property
    def cpcv_rate(self) -> float:
        return self.cpcv_work / statistics.median(self.cpcv_times)

    def cpu_rate(self, which: str) -> float:
        """Combination-bars per CPU second (less sensitive to other processes' load)."""
        work = {"sweep": self.n_combos * self.n_bars, "wf": self.wf_work,
                "cpcv": self.cpcv_work}[which]  # fmt: skip
        return work / statistics.median(getattr(self, f"{which}_cpu"))


def run(
    days: int,
    fast: tuple[int, ...],
    slow: tuple[int, ...],
    train: str,
    test: str,
    repeat: int,
    command: str,
    quick: bool,
) -> WalkForwardBenchResult:
    from benchmarks.engine import engine_config
    from hedgeflow.sweep import expand_grid, sweep_bars
    from hedgeflow.walkforward import fold_spec, fold_summary, walkforward_bars

    bars = synthetic_bars(SYMBOL, "5m", START, days).reset_index(drop=True)
    grid = expand_grid("sma_cross", {"fast": list(fast), "slow": list(slow)})
    cfg = engine_config()
    rolling = fold_spec(train, test)
    groups, tested, purge, embargo = CPCV
    cpcv = fold_spec(cpcv=True, groups=groups, test_groups=tested, purge=purge, embargo=embargo)
    # warm-up: compile every kernel on a small input
    small = bars.iloc[: min(len(bars), 3_000)].reset_index(drop=True)
    small_grid = expand_grid("sma_cross", {"fast": [5, 10], "slow": [50, 60]})
    sweep_bars(small, small_grid, cfg, "crypto")
    walkforward_bars(small, small_grid, cfg, "crypto", fold_spec("1000", "500"))
    walkforward_bars(small, small_grid, cfg, "crypto", fold_spec(cpcv=True, groups=4))

    load_start = "/".join(f"{x:.1f}" for x in os.getloadavg())
    times: dict[str, list[float]] = {"sweep": [], "wf": [], "cpcv": []}
    cpu: dict[str, list[float]] = {"sweep": [], "wf": [], "cpcv": []}
    results: dict[str, Any] = {}
    calls = {
        "sweep": lambda: sweep_bars(bars, grid, cfg, "crypto"),
        "wf": lambda: walkforward_bars(bars, grid, cfg, "crypto", rolling),
        "cpcv": lambda: walkforward_bars(bars, grid, cfg, "crypto", cpcv),
    }
    for _ in range(repeat):
        for key, call in calls.items():
            gc.collect()
            w, c = time.perf_counter(), time.process_time()
            results[key] = call()
            times[key].append(time.perf_counter() - w)
            cpu[key].append(time.process_time() - c)
    wf, cp = results["wf"], results["cpcv"]
    return WalkForwardBenchResult(
        command=command,
        quick=quick,
        n_bars=len(bars),
        n_combos=grid.size,
        train=train,
        test=test,
        sweep_times=times["sweep"],
        wf_times=times["wf"],
        cpcv_times=times["cpcv"],
        sweep_cpu=cpu["sweep"],
        wf_cpu=cpu["wf"],
        cpcv_cpu=cpu["cpcv"],
        wf_work=wf.combination_bars,
        cpcv_work=cp.combination_bars,
        wf_folds=len(wf.folds),
        cpcv_splits=len(cp.folds),
        wf_summary=fold_summary(wf),
        cpcv_summary=fold_summary(cp),
        machine=machine_info(),
        load_start=load_start,
    )


def render(res: WalkForwardBenchResult) -> str:
    groups, tested, purge, embargo = CPCV
    labels = {
        "sweep": "plain sweep (`sweep_bars`, all bars)",
        "wf": f"rolling walk-forward ({res.wf_folds} folds, train {res.train}, test {res.test})",
        "cpcv": f"CPCV ({groups} groups, {tested} tested: {res.cpcv_splits} splits; purge "
        f"{purge}, embargo {embargo:g})",
    }
    work = {"sweep": res.n_combos * res.n_bars, "wf": res.wf_work, "cpcv": res.cpcv_work}
    wall = {"sweep": res.sweep_rate, "wf": res.wf_rate, "cpcv": res.cpcv_rate}
    rows = [
        [labels[k], f"{work[k]:,}", fmt_seconds(statistics.median(getattr(res, f"{k}_times"))),
         fmt_rate(wall[k]), f"{wall[k] / res.sweep_rate:.2f}",
         fmt_seconds(statistics.median(getattr(res, f"{k}_cpu"))), fmt_rate(res.cpu_rate(k)),
         f"{res.cpu_rate(k) / res.cpu_rate('sweep'):.2f}"]
        for k in ("sweep", "wf", "cpcv")
    ]  # fmt: skip
    ratio = res.wf_rate / res.sweep_rate
    verdict = "met" if ratio >= TARGET else "NOT met"
    wf, cp = res.wf_summary, res.cpcv_summary
    lines = [
        "## Walk-forward: throughput against the plain sweep",
        "",
        f"`sma_cross` fast x slow = {res.n_combos:,} combinations on {res.n_bars:,} synthetic "
        "5-minute crypto bars, the engine benchmark's settings; median wall time of "
        f"{len(res.sweep_times)} alternating runs each. Throughput = combination-bars "
        "evaluated per second (walk-forward: every fold's combinations x train bars, plus "
        "the winners' warm-up and test bars).",
        "",
        table(HEAD, rows, "lrrrrrrr"),
        "",
        f"Target (issue 12): walk-forward >= {TARGET:.0%} of the sweep's throughput: "
        f"**{ratio:.0%} of it by wall time, {verdict}** "
        f"({res.cpu_rate('wf') / res.cpu_rate('sweep'):.0%} by CPU time: CPU seconds of all "
        "the process's threads, less sensitive to other processes sharing the cores; the "
        "load average below is the machine's at the end).",
        "",
        f"Result (no edge expected: a synthetic market): rolling in-sample Sharpe "
        f"{wf['is_sharpe_mean']:.2f} (mean of the folds' winners), stitched out-of-sample "
        f"{wf['oos_sharpe']:.2f}; CPCV in-sample {cp['is_sharpe_mean']:.2f}, out-of-sample "
        f"{cp['oos_sharpe']:.2f} (mean of {cp['paths']} paths, std {cp['oos_sharpe_std']:.2f}).",
        "",
        f"load avg (1/5/15 min) at the start {res.load_start}; " + machine_line(res.machine),
        "",
        f"Reproduce: `{res.command}`",
    ]
    if res.quick:
        lines.insert(2, "**Quick run (small sizes): not the reference numbers.**\n")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    import sys

    from benchmarks.__main__ import main

    raise SystemExit(main(["walkforward", *sys.argv[1:]]))
