"""Crash safety of ``hedgeflow live``: SIGKILL the real CLI at seeded random times while
it streams from the simulator, restart it (same HEDGEFLOW_HOME: it continues the same
run) for a few seconds, and check the record after every restart:

- the DuckDB file opens; the restarted run exits 0 with no ERROR line / traceback;
- ``live_bars`` has every (symbol, interval, ts) once and its bars are the synthetic
  bars of those timestamps, with no gap in a symbol's span (catch-up refilled it);
- every fill stored before the kill is still there, unchanged; each agent's position
  (``live_positions``, one row per agent) never goes back in time, and its quantity
  is the one before the kill plus the net quantity of the fills after it;
- the run id is the one before the kill (the restart continued it) and it ends
  ``completed``.

The trials of one campaign chain on one home: trial k kills a run that continues the
record of trial k-1. A kill may land anywhere: before the first bar, during the
lookback ingest, mid-stream. By default 3 trials run; the full campaign (20) runs
under ``-m slow`` and from ``python -m tests.reliability.report``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from tests.e2e_helpers import NOISE_MARKERS, assert_live_bars_are_the_market, query_frame
from tests.reliability.conftest import Harness, Tally

pytestmark = [pytest.mark.reliability, pytest.mark.flow]

REPO = Path(__file__).resolve().parents[2]
SPEED = "1500"  # 25 minutes of market time per wall second
LONG = "600"  # the killed run would stream this long
RESTART = "3"  # the restarted run streams this long, then stops cleanly
KILL_AFTER = (0.5, 9.0)  # seconds after the launch (startup included)
QUICK_TRIALS = 3
FULL_TRIALS = 20
FILL_COLS = ["fill_id", "order_id", "side", "qty", "price", "fee", "ts", "reason"]


def _env(harness: Harness, home: Path, prefect_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEDGEFLOW_", "PREFECT_"))}
    env.update(
        HEDGEFLOW_HOME=str(home),
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONUNBUFFERED="1",
        COLUMNS="200",
        **harness.env(),
    )
    return env


def _argv(duration: str) -> list[str]:
    return [sys.executable, "-m", "hedgeflow.cli", "live", "--speed", SPEED, "--duration", duration]


def _check_bars(home: Path) -> pd.DataFrame:
    bars = query_frame(home, "SELECT * FROM live_bars ORDER BY symbol, ts")
    if not bars.empty:
        assert_live_bars_are_the_market(bars)
    return bars


def _snapshot(home: Path) -> dict[str, pd.DataFrame]:
    return {
        t: query_frame(home, f"SELECT * FROM {t}")
        for t in ("live_bars", "live_fills", "live_positions", "runs")
    }


def _net_qty(fills: pd.DataFrame) -> float:
    if fills.empty:
        return 0.0
    sign = np.where(fills["side"].astype(str).str.lower().isin(["buy", "long", "1"]), 1.0, -1.0)
    return float((sign * fills["qty"].astype(float)).sum())


def _check_record(before: dict[str, pd.DataFrame], home: Path, tally: Tally) -> None:
    after = _snapshot(home)
    # fills stored before the kill are all there, unchanged
    if not before["live_fills"].empty:
        old = before["live_fills"]
        kept = after["live_fills"][after["live_fills"]["fill_id"].isin(old["fill_id"])]
        assert len(kept) == len(old), "a fill stored before the kill is gone"
        pd.testing.assert_frame_equal(
            kept.sort_values("fill_id")[FILL_COLS].reset_index(drop=True),
            old.sort_values("fill_id")[FILL_COLS].reset_index(drop=True),
        )
        tally.outcome("fills kept", len(old))
    # positions continue from where the kill left them
    pos_before = before["live_positions"]
    if not pos_before.empty:
        fills = after["live_fills"]
        now = after["live_positions"].set_index("agent")
        for row in pos_before.itertuples(index=False):
            assert row.agent in now.index, f"{row.agent}: position row gone"
            cur = now.loc[row.agent]
            last = row.last_bar_ts
            assert cur["last_bar_ts"] >= last, f"{row.agent}: position went back in time"
            new = fills[(fills["agent"] == row.agent) & (fills["ts"] > last)]
            expected = float(row.qty) + _net_qty(new)
            assert np.isclose(float(cur["qty"]), expected, rtol=0, atol=1e-9), (
                row.agent,
                float(row.qty),
                float(cur["qty"]),
                expected,
            )
        tally.outcome("positions continued", len(pos_before))


def _campaign(trials: int, seed: int, harness: Harness, tmp: Path, tally: Tally) -> None:
    rng = random.Random(seed)
    home = tmp / "home"
    prefect_home = tmp / "prefect-home"
    env = _env(harness, home, prefect_home)
    delays: list[float] = []
    run_id: str | None = None
    tally.note("command", f"hedgeflow live --speed {SPEED} --duration {LONG}, SIGKILL, "
               f"restart --duration {RESTART}")  # fmt: skip
    for trial in range(trials):
        tally.trial()
        delay = round(rng.uniform(*KILL_AFTER), 2)
        delays.append(delay)
        log = tmp / f"killed-{trial}.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                _argv(LONG), env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            time.sleep(delay)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                tally.fault("SIGKILL")
            proc.wait(30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        assert proc.returncode == -signal.SIGKILL, log.read_text(errors="replace")[-3000:]
        # the state the kill left: opens, every bar once and synthetic
        if (home / "hedgeflow.duckdb").exists():
            duckdb.connect(str(home / "hedgeflow.duckdb"), read_only=True).close()
        _check_bars(home)
        before = _snapshot(home)
        if not before["live_bars"].empty:
            tally.outcome("killed mid-stream")
        else:
            tally.outcome("killed before the first bar")
        killed_run = None
        if not before["runs"].empty:
            live_runs = before["runs"][before["runs"]["flow"] == "live"]
            if not live_runs.empty:
                killed_run = str(live_runs.sort_values("started_at")["run_id"].iloc[-1])
        if run_id is not None:
            assert killed_run == run_id, "the killed process did not continue the run"

        restart_log = tmp / f"restart-{trial}.log"
        with restart_log.open("wb") as fh:
            again = subprocess.run(
                _argv(RESTART), env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
                timeout=240, check=False,
            )  # fmt: skip
        output = restart_log.read_text(errors="replace")
        assert again.returncode == 0, output[-4000:]
        noisy = [line for line in output.splitlines() if any(m in line for m in NOISE_MARKERS)]
        assert not noisy, "\n".join(noisy[:20])
        assert "status: completed" in output, output[-3000:]
        duckdb.connect(str(home / "hedgeflow.duckdb"), read_only=True).close()
        bars = _check_bars(home)
        assert len(bars) >= len(before["live_bars"])
        _check_record(before, home, tally)
        runs = query_frame(home, "SELECT run_id, status FROM runs WHERE flow = 'live'")
        assert len(runs) == 1, runs  # one live run, continued by every process
        if killed_run is not None:
            assert str(runs["run_id"].iloc[0]) == killed_run
        if not before["live_positions"].empty:  # agents with a record are restored
            assert "continue live run" in output and "carried over" in output
        run_id = str(runs["run_id"].iloc[0])
        assert runs["status"].iloc[0] == "completed"
        tally.outcome("restart clean")
    bars = query_frame(home, "SELECT symbol, count(*) AS n FROM live_bars GROUP BY 1")
    fills = query_frame(home, "SELECT count(*) AS n FROM live_fills")
    tally.note("kill delays (s)", delays)
    tally.note("bars at the end", dict(zip(bars["symbol"], bars["n"].astype(int), strict=True)))
    tally.note("fills at the end", int(fills["n"].iloc[0]) if not fills.empty else 0)


@pytest.mark.slow  # ~45 s: out of the default suite's 10 minutes; .ci/run runs it every time
def test_live_sigkill_and_restart_quick(
    prefect_harness: Harness, tmp_path: Path, tally: Tally
) -> None:
    tally.describe("crash", f"hedgeflow live: SIGKILL + restart ({QUICK_TRIALS} trials)")
    _campaign(QUICK_TRIALS, 11, prefect_harness, tmp_path, tally)


@pytest.mark.slow
def test_live_sigkill_and_restart_full(
    prefect_harness: Harness, tmp_path: Path, tally: Tally
) -> None:
    tally.describe("crash", f"hedgeflow live: SIGKILL + restart ({FULL_TRIALS} trials)")
    _campaign(FULL_TRIALS, 2027, prefect_harness, tmp_path, tally)
