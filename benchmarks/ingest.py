"""Ingest: EODHD intraday JSON -> validated bars -> Parquet lake, vs a plain pandas baseline.

hedgeflow's path (what the ingest flow does per chunk):
``parse_intraday_json(body)`` -> ``split_valid_bars`` -> ``Warehouse(home).write_bars``
over the whole range (a fresh lake each time: the write is the first write of the range).

Baseline (plain pandas, no validation): ``json.loads(body)`` -> ``pd.DataFrame(records)``
-> ``pd.to_datetime(timestamp, unit="s", utc=True)`` -> the six bar columns ->
``DataFrame.to_parquet`` (pyarrow, one file).

The payload is the synthetic market's 1-minute bars of one crypto symbol rendered
with ``render_intraday_json`` (the simulator's renderer: EODHD's exact field layout).
A second, full-precision payload has the same bars with every price multiplied by
1 + u * 1e-9 (u uniform in [0, 1), one u per bar: OHLC order kept), so prices print
with 16-17 significant digits (``53897.4400433876``) as computed prices do; both paths
run on both payloads in the same interleaved rounds. Both paths must store every input
bar exactly (checked by reading them back).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks._common import (
    CompileTimes,
    Timing,
    compile_table,
    compile_times,
    fmt_rate,
    fmt_ratio,
    fmt_seconds,
    frame_equal_bars,
    interleaved,
    machine_info,
    machine_line,
    synthetic_bars,
    table,
    utc,
)

NAME = "ingest"
TARGET_BARS_PER_S = 2_000_000
SYMBOL = "BTC-USD.CC"
INTERVAL = "1m"
START = utc(2022, 1, 1)
FULL_DAYS = 708  # ~1.0M one-minute crypto bars (ticks are Poisson: a few minutes are empty)
QUICK_DAYS = 30
RUN_ID = "bench-ingest"
HF = "hedgeflow"
BASE = "pandas baseline"
HF_FP = "hedgeflow, full precision"
BASE_FP = "pandas baseline, full precision"
FP_SEED = 11
HF_STAGES = ("parse_intraday_json", "split_valid_bars", "write_bars")
BASE_STAGES = ("json.loads", "pd.DataFrame(records)", "to_datetime + columns", "to_parquet")


@dataclass
class IngestResult:
    n_bars: int
    days: int
    body_bytes: int
    render_seconds: float
    repeat: int
    timings: dict[str, Timing]
    stages: dict[str, dict[str, list[float]]]
    rows_written: dict[str, int]
    quarantined: int
    stored_equal: dict[str, bool]
    machine: dict[str, str]
    command: str
    fp_body_bytes: int = 0
    fp_digits: float = 0.0  # mean significant digits of the full-precision prices
    compile: CompileTimes | None = None
    notes: list[str] = field(default_factory=list)

    def bars_per_s(self, who: str, stat: str = "median") -> float:
        return self.n_bars / getattr(self.timings[who], stat)

    @property
    def ratio(self) -> float:
        """hedgeflow speed / baseline speed (medians)."""
        return self.timings[BASE].median / self.timings[HF].median

    @property
    def ratio_fp(self) -> float:
        """The same on the full-precision payload."""
        return self.timings[BASE_FP].median / self.timings[HF_FP].median

    @property
    def ratio_best(self) -> float:
        return self.timings[BASE].best / self.timings[HF].best


# ------------------------------------------------------------------ the two paths


def hedgeflow_ingest(body: bytes, home: Path, days: int) -> dict[str, Any]:
    from hedgeflow.schemas.bars import split_valid_bars
    from hedgeflow.sources.eodhd_format import parse_intraday_json
    from hedgeflow.warehouse import Warehouse

    end = START + pd.Timedelta(days=days)
    t0 = time.perf_counter()
    raw = parse_intraday_json(body)
    t1 = time.perf_counter()
    valid, quarantine = split_valid_bars(raw, SYMBOL, INTERVAL, RUN_ID)
    t2 = time.perf_counter()
    report = Warehouse(home).write_bars(valid, SYMBOL, INTERVAL, START, end, source="eodhd")
    t3 = time.perf_counter()
    return {
        "stages": dict(zip(HF_STAGES, (t1 - t0, t2 - t1, t3 - t2), strict=True)),
        "rows": report.rows_written,
        "quarantined": len(quarantine),
    }


def baseline_ingest(body: bytes, home: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    records = json.loads(body)
    t1 = time.perf_counter()
    df = pd.DataFrame(records)
    t2 = time.perf_counter()
    df["ts"] = pd.to_datetime(df["timestamp"], unit="s", utc=True)
    df = df[["ts", "open", "high", "low", "close", "volume"]]
    t3 = time.perf_counter()
    df.to_parquet(home / "bars.parquet", index=False)
    t4 = time.perf_counter()
    return {
        "stages": dict(zip(BASE_STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True)),
        "rows": len(df),
    }


def full_precision(bars: pd.DataFrame, seed: int = FP_SEED) -> pd.DataFrame:
    """The bars with every price of a bar times the same 1 + u * 1e-9: 16-17 digit
    prices (``repr``), high >= open, close >= low still hold."""
    import numpy as np

    factor = 1.0 + np.random.default_rng(seed).random(len(bars)) * 1e-9
    out = bars.copy()
    for col in ("open", "high", "low", "close"):
        out[col] = out[col].to_numpy() * factor
    return out


def _mean_digits(bars: pd.DataFrame) -> float:
    sample = bars["close"].to_numpy()[:: max(len(bars) // 10_000, 1)].tolist()
    digits = [
        len(repr(x).split("e")[0].replace(".", "").replace("-", "").lstrip("0")) for x in sample
    ]
    return sum(digits) / len(digits)


# ------------------------------------------------------------------------ run


def run(
    *,
    days: int = FULL_DAYS,
    repeat: int = 5,
    command: str = "",
    quick: bool = False,
    measure_compile: bool = True,
) -> IngestResult:
    from hedgeflow.sources.eodhd_format import render_intraday_json
    from hedgeflow.warehouse import Warehouse

    compile_res = compile_times(("parse_intraday_json",)) if measure_compile else None

    bars = synthetic_bars(SYMBOL, INTERVAL, START, days)
    t0 = time.perf_counter()
    body = render_intraday_json(bars)
    render_seconds = time.perf_counter() - t0
    n = len(bars)
    fp_bars = full_precision(bars)
    fp_body = render_intraday_json(fp_bars)

    contestants = {
        HF: lambda home: hedgeflow_ingest(body, home, days),
        BASE: lambda home: baseline_ingest(body, home),
        HF_FP: lambda home: hedgeflow_ingest(fp_body, home, days),
        BASE_FP: lambda home: baseline_ingest(fp_body, home),
    }
    timings = interleaved(contestants, repeat=repeat, warmup=1, keep_returns=True)

    hf_paths, base_paths = (HF, HF_FP), (BASE, BASE_FP)
    stages = {
        who: {s: [r["stages"][s] for r in timings[who].returns] for s in names}
        for group, names in ((hf_paths, HF_STAGES), (base_paths, BASE_STAGES))
        for who in group
    }
    rows = {who: timings[who].returns[-1]["rows"] for who in contestants}
    for who in contestants:
        counts = {r["rows"] for r in timings[who].returns}
        assert counts == {n}, f"{who} wrote {counts} rows per run, expected {n}"
    quarantined = max(r["quarantined"] for who in hf_paths for r in timings[who].returns)
    assert quarantined == 0, f"hedgeflow quarantined {quarantined} synthetic bars"
    for t in timings.values():
        t.returns.clear()

    # Equality: one more (untimed) run of each path into a kept directory, read back.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hfbench-verify-") as tmp:
        home = Path(tmp) / "hf"
        hedgeflow_ingest(body, home, days)
        stored_hf = Warehouse(home).read_bars(SYMBOL, INTERVAL)
        base_dir = Path(tmp) / "base"
        base_dir.mkdir()
        baseline_ingest(body, base_dir)
        stored_base = pd.read_parquet(base_dir / "bars.parquet")
        equal = {
            HF: frame_equal_bars(stored_hf, bars),
            BASE: frame_equal_bars(stored_base, bars),
        }
        home = Path(tmp) / "hf-fp"
        hedgeflow_ingest(fp_body, home, days)
        equal[HF_FP] = frame_equal_bars(Warehouse(home).read_bars(SYMBOL, INTERVAL), fp_bars)
        baseline_ingest(fp_body, base_dir)
        equal[BASE_FP] = frame_equal_bars(pd.read_parquet(base_dir / "bars.parquet"), fp_bars)
    for who, same in equal.items():
        assert same, f"{who}: the stored bars differ from the input bars"

    return IngestResult(
        n_bars=n,
        days=days,
        body_bytes=len(body),
        render_seconds=render_seconds,
        repeat=repeat,
        timings=timings,
        stages=stages,
        rows_written=rows,
        quarantined=quarantined,
        stored_equal=equal,
        machine=machine_info(),
        command=command,
        compile=compile_res,
        fp_body_bytes=len(fp_body),
        fp_digits=_mean_digits(fp_bars),
        notes=["quick run (small payload): not the reference numbers"] if quick else [],
    )


# --------------------------------------------------------------------- report


def render(res: IngestResult) -> str:
    import statistics

    rows = []
    for who, t in res.timings.items():
        rows.append(
            [
                who,
                fmt_seconds(t.median),
                fmt_seconds(t.best),
                f"{fmt_rate(res.n_bars / t.median)} bars/s",
                f"{fmt_rate(res.n_bars / t.best)} bars/s",
                fmt_seconds(t.first_call),
            ]
        )
    results = table(
        ["path", "median", "best", "bars/s (median)", "bars/s (best)", "first call"], rows
    )
    target_ok = res.bars_per_s(HF) >= TARGET_BARS_PER_S
    fp_ok = res.bars_per_s(HF_FP) >= TARGET_BARS_PER_S
    stage_rows = []
    for who, names in (
        (HF, HF_STAGES),
        (HF_FP, HF_STAGES),
        (BASE, BASE_STAGES),
        (BASE_FP, BASE_STAGES),
    ):
        total = sum(statistics.median(res.stages[who][s]) for s in names)
        for s in names:
            med = statistics.median(res.stages[who][s])
            stage_rows.append(
                [
                    who,
                    f"`{s}`",
                    fmt_seconds(med),
                    f"{fmt_rate(res.n_bars / med)} bars/s",
                    f"{100 * med / total:.0f}%",
                ]
            )
    stages = table(["path", "stage", "median", "bars/s", "share"], stage_rows, "llrrr")
    compile_lines: list[str] = []
    if res.compile is not None:
        ct = res.compile
        compile_lines = [
            "Compile time (numba; never inside the timings above): the scanner behind "
            "`parse_intraday_json`, first call in a fresh interpreter with a private "
            "`NUMBA_CACHE_DIR`, empty (cold compile) and then warm (load from cache); LLVM's "
            f"one-time start-up ({fmt_seconds(ct.numba_init_cold)}) excluded:",
            "",
            compile_table(ct, {"parse_intraday_json": "`parse_intraday_json` (`_scan`)"}),
            "",
        ]
    mb = res.body_bytes / 1e6
    lines = [
        "## Ingest: EODHD JSON -> validated bars -> Parquet lake",
        "",
        *(f"> {note}" for note in res.notes),
        *([""] if res.notes else []),
        f"**{fmt_rate(res.bars_per_s(HF))} bars/s end to end** for {res.n_bars:,} bars "
        f"({mb:.0f} MB of JSON): **{fmt_ratio(res.ratio)}** the plain pandas baseline's speed "
        f"(best-of: {fmt_ratio(res.ratio_best)}). Target >= {fmt_rate(TARGET_BARS_PER_S)} "
        f"bars/s: **{'met' if target_ok else 'NOT met'}**.",
        "",
        f"**Full precision** (the same bars, prices with {res.fp_digits:.1f} significant "
        f"digits on average, {res.fp_body_bytes / 1e6:.0f} MB): **"
        f"{fmt_rate(res.bars_per_s(HF_FP))} bars/s end to end**, **{fmt_ratio(res.ratio_fp)}** "
        f"the baseline's speed on that payload (stdlib `json`, same rounds). Target >= "
        f"{fmt_rate(TARGET_BARS_PER_S)} bars/s: **{'met' if fp_ok else 'NOT met'}**. The "
        "scanner converts up to 19 significant digits exactly itself (Clinger's fast path, "
        "else Eisel-Lemire); only longer numbers are handed to `float()` semantics "
        "(orjson, in bulk).",
        "",
        results,
        "",
        "Stages (median over the repeats; hedgeflow's stages sum to its end-to-end time):",
        "",
        stages,
        "",
        *compile_lines,
        "Checks (asserted on every run): both paths wrote "
        f"{res.rows_written[HF]:,} / {res.rows_written[BASE]:,} rows (= input bars, every "
        f"repeat, both payloads); hedgeflow quarantined {res.quarantined} rows; the stored "
        "bars read back "
        "(hedgeflow: `Warehouse.read_bars`; baseline: `pd.read_parquet`) equal the input "
        "exactly (ts to the microsecond, prices and volume bit for bit).",
        "",
        "Method:",
        "",
        f"- Payload: synthetic `{SYMBOL}` {INTERVAL} bars, {res.days} days from "
        f"{START:%Y-%m-%d} (seed 7), rendered once with `render_intraday_json` "
        f"({fmt_seconds(res.render_seconds)}, not timed): EODHD's intraday array of "
        "`{timestamp, gmtoffset, datetime, open, high, low, close, volume}` objects.",
        "- hedgeflow: `parse_intraday_json(body)` -> `split_valid_bars(frame, symbol, "
        "'1m', run_id)` -> `Warehouse(fresh_tmp).write_bars(valid, ..., start, end)` for the "
        "whole range (month partitions, atomic renames).",
        "- Baseline (no validation, one file): `json.loads(body)` -> `pd.DataFrame(records)` "
        "-> `pd.to_datetime(df.timestamp, unit='s', utc=True)` -> the six bar columns -> "
        "`df.to_parquet(path)`.",
        f"- One warm-up call each (its time is 'first call': hedgeflow's includes loading the "
        f"cached numba scanner), then {res.repeat} timed repeats, interleaved in rotating "
        "order; a fresh temporary directory per call (created and removed outside the "
        "timer); `gc.collect()` before and the collector disabled during each timed call, "
        "for both. Ratio = baseline median / hedgeflow median.",
        "",
        f"Machine: {machine_line(res.machine)}.",
        "",
        f"Reproduce: `{res.command}`",
    ]
    return "\n".join(lines)
