"""Shared helpers: interleaved timing, machine info, synthetic bars, number formatting."""

from __future__ import annotations

import gc
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """Wall times (seconds) of one contestant: the untimed warm-up calls and the repeats."""

    name: str
    warmup: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)  # minor page faults per timed call
    returns: list[Any] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def median_faults(self) -> float:
        return statistics.median(self.faults) if self.faults else float("nan")

    @property
    def first_call(self) -> float:
        return self.warmup[0] if self.warmup else float("nan")


def interleaved(
    contestants: Mapping[str, Callable[[Path], Any]],
    repeat: int,
    warmup: int = 1,
    keep_returns: bool = False,
) -> dict[str, Timing]:
    """Time each contestant ``repeat`` times, interleaved and in rotating order.

    A contestant is called with a fresh empty temporary directory (created and
    removed outside the timed region). Before each call the garbage collector
    runs; during the call it is disabled (``timeit``'s convention, applied to every
    contestant alike). ``warmup`` untimed rounds run first (their times are kept
    as ``Timing.warmup``: the first one includes any JIT compilation or cache load).
    """
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    names = list(contestants)
    out = {name: Timing(name) for name in names}
    rounds = [("warmup", r) for r in range(warmup)] + [("timed", r) for r in range(repeat)]
    for k, (kind, _) in enumerate(rounds):
        order = names[k % len(names) :] + names[: k % len(names)]  # rotate who goes first
        for name in order:
            tmp = Path(tempfile.mkdtemp(prefix=f"hfbench-{name}-"))
            try:
                gc.collect()
                gc.disable()
                try:
                    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                    t0 = time.perf_counter()
                    ret = contestants[name](tmp)
                    elapsed = time.perf_counter() - t0
                    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
                finally:
                    gc.enable()
                if kind == "warmup":
                    out[name].warmup.append(elapsed)
                else:
                    out[name].times.append(elapsed)
                    out[name].faults.append(faults)
                    if keep_returns:
                        out[name].returns.append(ret)
                del ret
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return out


# ------------------------------------------------------------------- machine info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha


def machine_info(peers: tuple[str, ...] = ()) -> dict[str, str]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 1
    info = {
        "date (UTC)": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "commit": _git_commit(),
        "CPU": _cpu_model(),
        "cores": f"{os.cpu_count()} logical, {usable} usable",
        "load avg (1/5/15 min) at the end": "/".join(f"{x:.1f}" for x in os.getloadavg()),
        "OS": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    for dist in ("numpy", "pandas", "numba", "pyarrow", *peers):
        info[dist] = _version(dist)
    return info


def machine_line(info: Mapping[str, str]) -> str:
    return "; ".join(f"{k} {v}" for k, v in info.items())


def command_line(argv: list[str] | None = None) -> str:
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python -m benchmarks", *args])


# ------------------------------------------------------------------------ data


def synthetic_bars(symbol: str, interval: str, start: datetime, days: int, seed: int = 7):
    """Bars of the seeded synthetic market (deterministic: same args, same bars)."""
    from hedgeflow.sources.synthetic import SyntheticMarket

    return SyntheticMarket(seed).fetch_bars(symbol, interval, start, start + timedelta(days=days))


def utc(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


# ------------------------------------------------------------------- formatting


def fmt_seconds(s: float) -> str:
    if s != s:
        return "n/a"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


def fmt_rate(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.0f}"


def fmt_ns(ns: float) -> str:
    if ns >= 100:
        return f"{ns:,.0f}"
    if ns >= 10:
        return f"{ns:.1f}"
    return f"{ns:.2f}"


def fmt_ratio(x: float) -> str:
    if x != x:
        return "n/a"
    return f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"


def table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A markdown table; ``align`` is one char per column (l or r), default l then r."""
    align = align or ("l" + "r" * (len(header) - 1))
    seps = [":---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(seps) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def frame_equal_bars(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Exact equality of two bars frames (ts as epoch microseconds, NaN == NaN)."""
    if len(a) != len(b):
        return False
    ta = a["ts"].dt.tz_convert("UTC").dt.as_unit("us").array.asi8
    tb = b["ts"].dt.tz_convert("UTC").dt.as_unit("us").array.asi8
    if not (ta == tb).all():
        return False
    for col in ("open", "high", "low", "close", "volume"):
        x = a[col].to_numpy("float64")
        y = b[col].to_numpy("float64")
        same = (x == y) | ((x != x) & (y != y))
        if not same.all():
            return False
    return True


# ------------------------------------------------------------------ compile time


@dataclass
class CompileTimes:
    """First-call times of numba-backed targets in fresh processes (seconds)."""

    targets: tuple[str, ...]
    cold: dict[str, float]  # empty NUMBA_CACHE_DIR: compile (and write the cache)
    cached: dict[str, float]  # same NUMBA_CACHE_DIR again: load from the on-disk cache
    compiled_call: dict[str, float]  # second call in the cold process (already compiled)
    numba_init_cold: float
    numba_init_cached: float


def compile_times(targets: tuple[str, ...]) -> CompileTimes:
    """Run ``benchmarks._compile_probe`` twice with a private NUMBA_CACHE_DIR."""
    import json

    runs = []
    with tempfile.TemporaryDirectory(prefix="hfbench-numba-cache-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for _ in range(2):
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks._compile_probe", *targets],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"compile probe failed:\n{proc.stderr[-2000:]}")
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        cached_files = [p for p in Path(cache).rglob("*") if p.suffix in (".nbi", ".nbc")]
    if not cached_files:
        raise RuntimeError("NUMBA_CACHE_DIR stayed empty: the cold/cached split is not real")
    cold, warm = runs
    return CompileTimes(
        targets=targets,
        cold={k: v["first"] for k, v in cold["targets"].items()},
        cached={k: v["first"] for k, v in warm["targets"].items()},
        compiled_call={k: v["second"] for k, v in cold["targets"].items()},
        numba_init_cold=cold["numba_init"],
        numba_init_cached=warm["numba_init"],
    )


def compile_table(ct: CompileTimes, labels: Mapping[str, str]) -> str:
    rows = [
        [
            labels.get(name, f"`{name}`"),
            fmt_seconds(ct.cold[name]),
            fmt_seconds(ct.cached[name]),
            fmt_seconds(ct.compiled_call[name]),
        ]
        for name in ct.targets
    ]
    return table(
        ["first call of", "cold compile", "load from cache", "compiled call (tiny input)"], rows
    )
