"""Large universe: ``hedgeflow nightly`` for 100 symbols x 1 year of 5m bars (synthetic).

The real command in a fresh subprocess (Prefect ephemeral mode, a new
HEDGEFLOW_HOME): ingest 100 symbols (a third each stocks, forex, crypto), backtest
100 agents, combine them and publish. Measured: wall time of the command, and the
peak resident memory, both of the largest single process and of the whole process
tree (hedgeflow plus Prefect's temporary server), sampled from /proc every 0.2 s.
Targets: at most 60 s and 2 GiB on this 2-core machine. There is no peer: the
targets are absolute.

``--dask`` runs the same nightly on a Dask LocalCluster with 2 workers and checks
that every stored metric equals the thread-pool run's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from benchmarks._common import fmt_seconds, machine_info, machine_line, table

NAME = "universe"
N_SYMBOLS = 100
QUICK_SYMBOLS = 6
DAYS = 365
QUICK_DAYS = 10
END = "2026-11-20"
TARGET_SECONDS = 60.0
TARGET_RSS = 2 * 1024**3
STRATEGIES = (
    ("US", "sma_cross", "{ fast = 20, slow = 50 }"),
    ("FOREX", "rsi_mean_revert", "{ period = 14 }"),
    ("CC", "donchian_breakout", "{ window = 20 }"),
)


def universe_toml(n: int) -> str:
    """``n`` agents, one per symbol, cycling through stocks, forex and crypto."""
    parts = ["[agents]", "stocks = false", "forex = false", "crypto = false", ""]
    for i in range(n):
        exchange, strategy, params = STRATEGIES[i % 3]
        code = {"US": f"S{i:03d}", "FOREX": f"P{i:03d}USD", "CC": f"C{i:03d}-USD"}[exchange]
        parts += [
            f"[agents.a{i:03d}]",
            f'symbol = "{code}.{exchange}"',
            f'strategy = "{strategy}"',
            f"params = {params}",
            "",
        ]
    return "\n".join(parts)


def _tree_rss(root: int) -> tuple[int, int]:
    """(largest process RSS, sum over the process tree) in bytes, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        pid = int(entry)
        children.setdefault(ppid, []).append(pid)
        rss[pid] = pages * os.sysconf("SC_PAGE_SIZE")
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    sizes = [rss.get(pid, 0) for pid in tree]
    return max(sizes, default=0), sum(sizes)


@dataclass
class RunStats:
    seconds: float
    peak_process: int
    peak_tree: int
    n_agents: int
    n_bars: int
    n_signal_rows: int
    metrics: list[tuple]


def run_nightly(n_symbols: int, days: int, *, extra_env: dict[str, str] | None = None) -> RunStats:
    with tempfile.TemporaryDirectory(prefix="hf-universe-") as tmp:
        work = Path(tmp)
        (work / "hedgeflow.toml").write_text(universe_toml(n_symbols))
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEFLOW_")}
        env.update(HEDGEFLOW_HOME=str(work / "data"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        env.update(extra_env or {})
        cmd = [sys.executable, "-m", "hedgeflow.cli", "nightly", "--days", str(days)]
        cmd += ["--end", END]
        began = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        peak_process = peak_tree = 0
        while proc.poll() is None:
            largest, total = _tree_rss(proc.pid)
            peak_process, peak_tree = max(peak_process, largest), max(peak_tree, total)
            time.sleep(0.2)
        seconds = time.perf_counter() - began
        output = proc.stdout.read() if proc.stdout else ""
        if proc.returncode != 0:
            raise RuntimeError(f"nightly failed ({proc.returncode}):\n{output[-3000:]}")
        con = duckdb.connect(str(work / "data" / "hedgeflow.duckdb"), read_only=True)
        try:
            n_agents = con.execute("select count(*) from agent_metrics").fetchone()[0]
            n_bars = con.execute("select count(*) from bars").fetchone()[0]
            n_signals = con.execute("select count(*) from signals").fetchone()[0]
            metrics = con.execute(
                "select agent, n_trades, total_return, sharpe, max_drawdown "
                "from agent_metrics order by agent"
            ).fetchall()
        finally:
            con.close()
    return RunStats(seconds, peak_process, peak_tree, n_agents, n_bars, n_signals, metrics)


@dataclass
class UniverseResult:
    threads: RunStats
    dask: RunStats | None
    n_symbols: int
    days: int
    command: str
    quick: bool
    machine: dict[str, str]


def run(n_symbols: int, days: int, *, dask: bool, command: str, quick: bool) -> UniverseResult:
    threads = run_nightly(n_symbols, days)
    dask_stats = None
    if dask:
        dask_stats = run_nightly(n_symbols, days, extra_env={"HEDGEFLOW_TASK_RUNNER": "dask"})
        if dask_stats.metrics != threads.metrics:
            raise AssertionError("the Dask run's agent metrics differ from the thread run's")
    return UniverseResult(threads, dask_stats, n_symbols, days, command, quick, machine_info())


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"


def render(res: UniverseResult) -> str:
    rows = []
    for label, s in (("thread pool", res.threads), ("Dask LocalCluster (2 workers)", res.dask)):
        if s is None:
            continue
        rows.append(
            [
                label,
                fmt_seconds(s.seconds),
                _gib(s.peak_process),
                _gib(s.peak_tree),
                f"{s.n_agents}",
                f"{s.n_bars:,}",
                f"{s.n_signal_rows:,}",
            ]
        )
    t = res.threads
    ok_time = "met" if t.seconds <= TARGET_SECONDS else "NOT met"
    ok_rss = "met" if t.peak_tree <= TARGET_RSS else "NOT met"
    same = (
        ""
        if res.dask is None
        else "\nThe Dask run stored identical agent metrics (n_trades, total_return, sharpe, "
        "max_drawdown of every agent compared for equality).\n"
    )
    return f"""## Large universe: nightly for {res.n_symbols} symbols x {res.days} days (5m bars)

{machine_line(res.machine)}

The whole `hedgeflow nightly` command in a fresh process and a fresh HEDGEFLOW_HOME
(synthetic source; ingest, {res.n_symbols} agents, portfolio, report), including
Prefect's ephemeral-server start-up. Peak memory sampled from /proc every 0.2 s: the
largest single process and the sum over the process tree.

{
        table(
            [
                "task runner",
                "wall time",
                "peak RSS (largest process)",
                "peak RSS (tree)",
                "agents",
                "bars stored",
                "signal rows",
            ],
            rows,
        )
    }

Targets: wall time <= {TARGET_SECONDS:.0f} s ({ok_time}: {fmt_seconds(t.seconds)}),
peak memory <= 2 GiB ({ok_rss}: {_gib(t.peak_tree)} for the whole tree).
{same}
Reproduce: `{res.command}`
"""
