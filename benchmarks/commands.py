"""Command overhead: a warm ``hedgeflow nightly``'s wall time against its own flow work.

The real command in fresh subprocesses on the default demo (3 agents, 30 days of 5m
bars, a warm lake), as a user runs it twice in a row. The flow work is the ``runs``
row's ``finished_at - started_at``; the rest is the command's own cost (interpreter
and imports, reaching Prefect, creating and finishing the flow run, exiting). Two ways,
in the same run:

- **resident**: hedgeflow's local Prefect server (started by the first command, reused
  by the next ones; ``hedgeflow/prefect_server.py``);
- **ephemeral**: Prefect's temporary server per command (hedgeflow before the resident
  server, and ``prefect_server = "ephemeral"`` now).

Target: a warm nightly at most 1.6x its flow work (resident). The resident server is
stopped at the end (``hedgeflow server stop``).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from benchmarks._common import fmt_seconds, machine_info, machine_line, table

NAME = "commands"
END = "2026-11-20"
TARGET_RATIO = 1.6
WARM_RUNS = 5
QUICK_WARM_RUNS = 2


@dataclass(frozen=True)
class Trial:
    wall: float  # seconds, the whole command
    flow: float  # seconds, the runs row's finished_at - started_at

    @property
    def ratio(self) -> float:
        return self.wall / self.flow


@dataclass(frozen=True)
class Mode:
    name: str
    first: Trial  # the first command (the resident server starts here)
    warm: list[Trial]

    @property
    def median_wall(self) -> float:
        return statistics.median(t.wall for t in self.warm)

    @property
    def median_flow(self) -> float:
        return statistics.median(t.flow for t in self.warm)

    @property
    def median_ratio(self) -> float:
        return statistics.median(t.ratio for t in self.warm)


@dataclass(frozen=True)
class Result:
    modes: list[Mode]
    command: str
    quick: bool


def _env(root: Path, mode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEDGEFLOW_", "PREFECT_"))}
    env.update(
        HEDGEFLOW_HOME=str(root / f"data-{mode}"),
        HEDGEFLOW_PREFECT_SERVER=mode,
        PREFECT_HOME=str(root / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return env


def _nightly(root: Path, mode: str) -> Trial:
    env = _env(root, mode)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "hedgeflow", "nightly", "--end", END],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"hedgeflow nightly ({mode}) failed: {proc.stderr[-2000:]}")
    con = duckdb.connect(str(Path(env["HEDGEFLOW_HOME"]) / "hedgeflow.duckdb"), read_only=True)
    try:
        (flow,) = con.execute(
            "SELECT epoch(finished_at) - epoch(started_at) FROM runs WHERE flow = 'nightly' "
            "ORDER BY started_at DESC LIMIT 1"
        ).fetchone() or (float("nan"),)
    finally:
        con.close()
    return Trial(wall=wall, flow=float(flow))


def _mode(root: Path, mode: str, warm_runs: int) -> Mode:
    first = _nightly(root, mode)
    warm = [_nightly(root, mode) for _ in range(warm_runs)]
    return Mode(mode, first, warm)


def run(*, warm_runs: int = WARM_RUNS, command: str, quick: bool = False) -> Result:
    with tempfile.TemporaryDirectory(prefix="hedgeflow-bench-commands-") as tmp:
        root = Path(tmp)
        try:
            modes = [_mode(root, "resident", warm_runs), _mode(root, "ephemeral", warm_runs)]
        finally:
            subprocess.run(
                [sys.executable, "-m", "hedgeflow", "server", "stop"],
                env=_env(root, "resident"),
                capture_output=True,
                text=True,
                timeout=120,
                cwd=root,
            )
    return Result(modes, command, quick)


HEADER = [
    "Prefect server",
    "first command",
    "warm command",
    "flow work",
    "warm / flow",
    "each warm run (x)",
]


def render(result: Result) -> str:
    resident = next(m for m in result.modes if m.name == "resident")
    ephemeral = next(m for m in result.modes if m.name == "ephemeral")
    rows = []
    for m in result.modes:
        rows.append(
            [
                m.name,
                fmt_seconds(m.first.wall),
                fmt_seconds(m.median_wall),
                fmt_seconds(m.median_flow),
                f"{m.median_ratio:.2f}x",
                ", ".join(f"{t.ratio:.2f}" for t in m.warm),
            ]
        )
    verdict = "met" if resident.median_ratio <= TARGET_RATIO else "NOT met"
    lines = [
        "## Command overhead: a warm `hedgeflow nightly` against its own flow work",
        "",
        f"Reproduce: `{result.command}`. {machine_line(machine_info())}",
        "",
        "`hedgeflow nightly --end 2026-11-20` on the default demo (3 agents, 30 days of 5m "
        "bars), in fresh subprocesses; the first command of each mode, then "
        f"{len(resident.warm)} warm ones (medians). *flow work* is the `runs` row's "
        "`finished_at - started_at`; the rest is the command's own cost.",
        "",
        table(HEADER, rows),
        "",
        f"Target: a warm nightly at most {TARGET_RATIO}x its flow work with the resident "
        f"server: **{verdict}** ({resident.median_ratio:.2f}x). The resident server saves "
        f"{fmt_seconds(ephemeral.median_wall - resident.median_wall)} per warm command "
        f"against Prefect's temporary server ({ephemeral.median_wall / resident.median_wall:.1f}x "
        "faster end to end); the first resident command pays the server's start once.",
    ]
    if result.quick:
        lines += ["", "(quick run: fewer warm commands)"]
    return "\n".join(lines)
