"""Sweep: hedgeflow's compiled grid batch vs vectorbt's broadcast sweep, same run.

The grid is ``sma_cross`` fast x slow (40 x 25 = 1,000 combinations, every one
valid) on ~100k synthetic 5-minute crypto bars. Both contestants go from prices
to per-combination metrics (total return, Sharpe, max drawdown, trade count):

* hedgeflow ``sweep_arrays``: one SMA per distinct window, then one parallel
  numba kernel running the strategy's signal kernel, the engine's event loop and
  the metric reductions per combination (all 11 metrics of convention 6);
* vectorbt: ``vbt.MA.run(close, window=[...])`` for the fast and the slow leg
  (one column per combination), the same signal (``fast > slow and close >
  fast``) with entries / exits on its 0 -> 1 / 1 -> 0 changes shifted one bar,
  ``Portfolio.from_signals`` over the 1,000 columns with the engine benchmark's
  settings (fill at the next open, stops from the fill price, same fees and
  slippage; one unit per trade, see ``benchmarks.engine.vbt_kwargs``), then
  ``total_return``, ``sharpe_ratio``, ``max_drawdown`` and ``trades.count``.

Throughput = combinations x bars / wall time. Both are warmed up on a small input
first, so JIT compilation is outside every timing; hedgeflow's compile time is
measured on its own in fresh processes (empty, then warm numba cache). Before
timing, the batch is checked against the normal path (``signals`` ->
``run_arrays`` -> ``compute_metrics``) on a sample of combinations: equal, exactly.

``python -m benchmarks sweep`` (or ``python -m benchmarks.sweep``).
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._common import (
    REPO,
    fmt_ratio,
    fmt_seconds,
    machine_info,
    machine_line,
    synthetic_bars,
    table,
    utc,
)

NAME = "sweep"
SYMBOL = "BTC-USD.CC"
START = utc(2024, 1, 1)
FULL_DAYS = 348  # 100,224 five-minute crypto bars
QUICK_DAYS = 14
FAST = tuple(range(2, 42))  # 40 windows
SLOW = tuple(range(50, 300, 10))  # 25 windows
QUICK_FAST = tuple(range(2, 12))
QUICK_SLOW = tuple(range(50, 150, 10))
TARGET_RATIO = 100.0  # issue "each strategy and each trading rule written once": >= 100x vectorbt
CHECK_SAMPLE = 8  # combinations checked against the normal path
HF = "hedgeflow sweep_arrays"
VBT = "vectorbt MA.run + from_signals"


@dataclass
class SweepBenchResult:
    command: str
    quick: bool
    n_bars: int
    n_combos: int
    hf_times: list[float]
    vbt_times: list[float]
    vbt_stages: dict[str, float]  # of the last vectorbt run
    checked: int
    exact: bool
    compile_cold: float | None
    compile_cached: float | None
    machine: dict[str, str] = field(default_factory=dict)

    @property
    def work(self) -> float:
        return float(self.n_combos) * self.n_bars

    @property
    def hf_rate(self) -> float:
        return self.work / min(self.hf_times)

    @property
    def vbt_rate(self) -> float:
        return self.work / min(self.vbt_times)

    @property
    def ratio(self) -> float:
        return self.hf_rate / self.vbt_rate


def _arrays(days: int) -> tuple[np.ndarray, ...]:
    bars = synthetic_bars(SYMBOL, "5m", START, days)
    return tuple(bars[c].to_numpy(np.float64) for c in ("open", "high", "low", "close"))


def _config() -> Any:
    from benchmarks.engine import engine_config

    return engine_config()


def _grid(fast: tuple[int, ...], slow: tuple[int, ...]) -> Any:
    from hedgeflow.sweep import expand_grid

    return expand_grid("sma_cross", {"fast": list(fast), "slow": list(slow)})


def run_hedgeflow(arrays: tuple[np.ndarray, ...], params: Any, cfg: Any) -> list[dict[str, Any]]:
    from hedgeflow.market import bars_per_year
    from hedgeflow.sweep import sweep_arrays

    o, h, lo, c = arrays
    return sweep_arrays(o, h, lo, c, "sma_cross", params, cfg, bars_per_year("crypto", 300))


def run_vectorbt(
    arrays: tuple[np.ndarray, ...], fast: np.ndarray, slow: np.ndarray, cfg: Any
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    import vectorbt as vbt

    from benchmarks.engine import vbt_kwargs

    o, h, lo, c = arrays
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    close = pd.Series(c)
    f = vbt.MA.run(close, window=list(fast), short_name="fast").ma.to_numpy()
    s = vbt.MA.run(close, window=list(slow), short_name="slow").ma.to_numpy()
    t1 = time.perf_counter()
    sig = (f > s) & (c[:, None] > f)
    prev = np.zeros_like(sig)
    prev[1:] = sig[:-1]
    entries = np.zeros_like(sig)
    exits = np.zeros_like(sig)
    entries[1:] = (sig & ~prev)[:-1]
    exits[1:] = (~sig & prev)[:-1]
    del f, s, sig, prev
    t2 = time.perf_counter()
    col = (o[:, None], h[:, None], lo[:, None], c[:, None])
    pf = vbt.Portfolio.from_signals(
        col[3], entries, exits, price=col[0], open=col[0], high=col[1], low=col[2],
        freq="5min", **vbt_kwargs(cfg),
    )  # fmt: skip
    t3 = time.perf_counter()
    out = {
        "total_return": np.asarray(pf.total_return()),
        "sharpe": np.asarray(pf.sharpe_ratio()),
        "max_drawdown": np.asarray(pf.max_drawdown()),
        "n_trades": np.asarray(pf.trades.count()),
    }
    t4 = time.perf_counter()
    stages.update(
        {
            "moving averages": t1 - t0,
            "signals": t2 - t1,
            "from_signals": t3 - t2,
            "metrics": t4 - t3,
        }
    )
    return out, stages


def check_exact(arrays: tuple[np.ndarray, ...], grid: Any, cfg: Any, sample: int) -> int:
    """The batch equals signals -> run_arrays -> compute_metrics on ``sample`` combinations."""
    from hedgeflow.engine import run_arrays
    from hedgeflow.metrics import METRIC_KEYS, compute_metrics
    from hedgeflow.strategies import get_strategy

    spec = get_strategy("sma_cross")
    picks = np.linspace(0, grid.size - 1, min(sample, grid.size)).astype(int)
    params = [grid.params[i] for i in picks]
    got = run_hedgeflow(arrays, params, cfg)
    for p, row in zip(params, got, strict=True):
        o, h, lo, c = arrays
        signal, _ = spec.signals(o, h, lo, c, p)
        out = run_arrays(o, h, lo, c, signal, cfg)
        ref = compute_metrics(
            out["equity"], None, pd.DataFrame({"pnl": out["pnl"]}), "crypto", out["position"],
            bar_seconds=300,
        )  # fmt: skip
        for k in METRIC_KEYS:
            a, b = float(ref[k]), float(row[k])
            if not (a == b or (a != a and b != b)):
                raise AssertionError(f"{p} {k}: normal path {a!r} != batch {b!r}")
    return len(params)


_PROBE = """
import json, sys, time
import numpy as np
t0 = time.perf_counter()
from benchmarks.sweep import _config, _grid, run_hedgeflow
rng = np.random.default_rng(1)
c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 400)))
o = np.r_[c[0], c[:-1]]
arrays = (o, np.maximum(o, c) * 1.002, np.minimum(o, c) * 0.998, c)
grid = _grid((2, 3), (10, 20))
cfg = _config()
t1 = time.perf_counter()
run_hedgeflow(arrays, grid.params, cfg)
t2 = time.perf_counter()
print(json.dumps({"first": t2 - t1}))
"""


def compile_times() -> tuple[float, float]:
    """First call (tiny input) in a fresh process: empty numba cache, then warm cache."""
    out = []
    with tempfile.TemporaryDirectory(prefix="hfbench-sweep-cache-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for _ in range(2):
            proc = subprocess.run(
                [sys.executable, "-c", _PROBE], cwd=REPO, env=env, capture_output=True,
                text=True, timeout=900,
            )  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(f"compile probe failed:\n{proc.stderr[-2000:]}")
            out.append(json.loads(proc.stdout.strip().splitlines()[-1])["first"])
    return out[0], out[1]


def _timed(fn: Any) -> tuple[float, Any]:
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        ret = fn()
        return time.perf_counter() - t0, ret
    finally:
        gc.enable()


def run(
    days: int = FULL_DAYS,
    fast: tuple[int, ...] = FAST,
    slow: tuple[int, ...] = SLOW,
    repeat: int = 5,
    vbt_repeat: int = 1,
    command: str = "python -m benchmarks sweep",
    quick: bool = False,
    measure_compile: bool = True,
) -> SweepBenchResult:
    warnings.filterwarnings("ignore", module="vectorbt")
    arrays = _arrays(days)
    cfg = _config()
    grid = _grid(fast, slow)
    f = np.array([p.fast for p in grid.params])
    s = np.array([p.slow for p in grid.params])
    # warm-up on a small input: JIT compilation stays outside the timings
    small = tuple(a[:2_000] for a in arrays)
    run_hedgeflow(small, grid.params[:4], cfg)
    run_vectorbt(small, f[:4], s[:4], cfg)
    checked = check_exact(arrays, grid, cfg, CHECK_SAMPLE)
    hf_times = [_timed(lambda: run_hedgeflow(arrays, grid.params, cfg))[0] for _ in range(repeat)]
    vbt_times = []
    stages: dict[str, float] = {}
    for _ in range(vbt_repeat):
        elapsed, (_, stages) = _timed(lambda: run_vectorbt(arrays, f, s, cfg))
        vbt_times.append(elapsed)
    cold = cached = None
    if measure_compile:
        cold, cached = compile_times()
    return SweepBenchResult(
        command=command,
        quick=quick,
        n_bars=int(arrays[0].shape[0]),
        n_combos=grid.size,
        hf_times=hf_times,
        vbt_times=vbt_times,
        vbt_stages=stages,
        checked=checked,
        exact=True,
        compile_cold=cold,
        compile_cached=cached,
        machine=machine_info(("vectorbt", "numba", "numpy")),
    )


def _rate(x: float) -> str:
    return f"{x / 1e6:,.1f} M"


def render(res: SweepBenchResult) -> str:
    rows = [
        [
            HF,
            fmt_seconds(min(res.hf_times)),
            fmt_seconds(statistics.median(res.hf_times)),
            str(len(res.hf_times)),
            _rate(res.hf_rate),
            fmt_ratio(res.ratio),
        ],
        [
            VBT,
            fmt_seconds(min(res.vbt_times)),
            fmt_seconds(statistics.median(res.vbt_times)),
            str(len(res.vbt_times)),
            _rate(res.vbt_rate),
            "1x",
        ],
    ]
    verdict = "meets" if res.ratio >= TARGET_RATIO else "MISSES"
    lines = [
        "## Parameter sweep: hedgeflow vs vectorbt" + (" (quick run)" if res.quick else ""),
        "",
        f"{res.n_combos:,} `sma_cross` combinations (fast x slow) x {res.n_bars:,} five-minute "
        "bars, prices in, per-combination metrics out; both warmed up (no JIT in the timings).",
        "",
        table(
            ["contestant", "best", "median", "runs", "combination-bars / s", "speed-up"],
            rows,
            "lrrrrr",
        ),
        "",
        f"hedgeflow is **{fmt_ratio(res.ratio)}** vectorbt's throughput (target >= "
        f"{TARGET_RATIO:.0f}x: {verdict}). vectorbt stages of its last run: "
        + ", ".join(f"{k} {fmt_seconds(v)}" for k, v in res.vbt_stages.items())
        + ".",
        "",
        f"Exactness: on {res.checked} sampled combinations the batch's 11 metrics equal "
        "`signals` -> `run_arrays` -> `compute_metrics` bit for bit.",
    ]
    if res.compile_cold is not None and res.compile_cached is not None:
        lines += [
            "",
            "Compile (first call on a tiny input, fresh process): "
            f"{fmt_seconds(res.compile_cold)} with an empty numba cache, "
            f"{fmt_seconds(res.compile_cached)} from the on-disk cache.",
        ]
    lines += [
        "",
        "Method: vectorbt sizes one unit per trade (the engine benchmark's settings) while "
        "hedgeflow sizes by risk, so the metric values differ; the work per combination "
        "(indicators, signals, fills with stops, metrics) is the same.",
        "",
        machine_line(res.machine),
        "",
        f"Reproduce: `{res.command}`",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Standalone: ``python -m benchmarks.sweep [--quick]`` prints the section."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m benchmarks.sweep")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeat", type=int, default=None)
    args = p.parse_args(argv)
    repeat = args.repeat or (2 if args.quick else 5)
    command = "python -m benchmarks.sweep" + (" --quick" if args.quick else "")
    if args.quick:
        res = run(QUICK_DAYS, QUICK_FAST, QUICK_SLOW, repeat, command=command, quick=True)
    else:
        res = run(repeat=repeat, command=command)
    print(render(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
