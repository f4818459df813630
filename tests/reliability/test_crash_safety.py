"""Crash safety: SIGKILL ``hedgeflow ingest`` / ``hedgeflow nightly`` at seeded random
points of their lifetime, check the warehouse as the crash left it, restart (re-run to
completion) and check again.

After every kill:
- every Parquet file of the lake opens with pyarrow; temp files a killed writer left are
  invisible to the ``bars`` view (and cleaned by the next write);
- the DuckDB file opens; the ``bars`` view has no duplicate (symbol, interval, ts) and
  each symbol has either none or all of its bars (a partition is replaced atomically);
- result views (agent_metrics, trades, equity, signals, portfolio_metrics, quarantine)
  show rows of completed/partial runs only: the killed run's rows stay hidden.
After every restart: exit 0 with clean output, every bar exactly once with the counts of
the synthetic source, and (nightly) the new run's metrics equal an uninterrupted run's.

The subprocesses run against the session's Prefect test server (``PREFECT_API_URL``),
so no process pays for an ephemeral server. By default a few trials run; the full
campaign (20 + 20) runs under ``-m slow`` and from ``python -m tests.reliability.report``.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from hedgeflow.sources.synthetic import SyntheticMarket
from tests.e2e_helpers import NOISE_MARKERS
from tests.reliability.conftest import Harness, Tally, full_campaign
from warehouse import Warehouse

pytestmark = [pytest.mark.reliability, pytest.mark.flow]

REPO = Path(__file__).resolve().parents[2]
SYMBOLS = ("AAPL.US", "EURUSD.FOREX", "BTC-USD.CC")
END = "2026-11-20"
DAYS = 2
RESULT_VIEWS = ("agent_metrics", "trades", "equity", "signals", "portfolio_metrics", "quarantine")
QUICK_TRIALS = {"ingest": 2, "nightly": 1}
FULL_TRIALS = 20


def _expected_counts() -> dict[str, int]:
    end = datetime(2026, 11, 20, tzinfo=UTC)
    market = SyntheticMarket(7)
    return {s: len(market.fetch_bars(s, "5m", end - timedelta(days=DAYS), end)) for s in SYMBOLS}


EXPECTED = _expected_counts()


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


def _argv(command: str) -> list[str]:
    return [sys.executable, "-m", "hedgeflow.cli", command, "--days", str(DAYS), "--end", END]


def _start(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen(
            _argv(command),
            env=env,
            cwd=REPO,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _run_to_completion(command: str, env: dict[str, str], log: Path) -> float:
    began = time.monotonic()
    proc = _start(command, env, log)
    code = proc.wait(timeout=300)
    took = time.monotonic() - began
    output = log.read_text(errors="replace")
    assert code == 0, output[-4000:]
    noisy = [line for line in output.splitlines() if any(m in line for m in NOISE_MARKERS)]
    assert not noisy, "\n".join(noisy[:20])
    return took


def _check_lake(home: Path) -> int:
    """Every Parquet file reads; returns how many temp files a killed writer left."""
    lake = home / "lake" / "bars"
    temps = 0
    if lake.is_dir():
        for path in lake.rglob("*"):
            if not path.is_file():
                continue
            if path.name.endswith(".tmp"):
                temps += 1
                continue
            assert path.name == "part.parquet", path
            pq.read_table(path)  # raises on a torn file
    return temps


def _check_warehouse(home: Path, tally: Tally, complete: bool) -> dict[str, int]:
    """The invariants any state must satisfy; returns bar counts per symbol."""
    tally.notes["leftover temp files seen"] = tally.notes.get(
        "leftover temp files seen", 0
    ) + _check_lake(home)
    db = home / "hedgeflow.duckdb"
    if not db.exists():
        assert complete is False
        return {}
    duckdb.connect(str(db), read_only=True).close()  # the file opens
    wh = Warehouse(home, lock_timeout=60)
    with wh.read() as con:
        dups = con.execute(
            "select count(*) from (select symbol, interval, ts from bars "
            "group by all having count(*) > 1)"
        ).fetchone()
        assert dups == (0,), "duplicate bars"
        counts = dict(con.execute("select symbol, count(*) from bars group by 1").fetchall())
        for symbol, n in counts.items():
            # one month partition per symbol: a symbol has none or all of its bars
            assert n == EXPECTED[symbol], (symbol, n, EXPECTED[symbol])
        for view in RESULT_VIEWS:
            unfinished = con.execute(
                f"select count(*) from {view} where run_id not in (select run_id from "
                "store.runs where status in ('completed', 'partial'))"
            ).fetchone()
            assert unfinished == (0,), f"{view} shows rows of an unfinished run"
        hidden = con.execute(
            "select count(*) from store.agent_metrics where run_id in "
            "(select run_id from store.runs where status = 'running')"
        ).fetchone()
        tally.notes["agent_metrics rows of killed runs (hidden)"] = tally.notes.get(
            "agent_metrics rows of killed runs (hidden)", 0
        ) + int(hidden[0])
    return {s: int(n) for s, n in counts.items()}


def _latest_metrics(home: Path) -> list[tuple[Any, ...]]:
    wh = Warehouse(home, lock_timeout=60)
    with wh.read() as con:
        run = con.execute(
            "select run_id, status from runs where flow = 'nightly' order by started_at desc "
            "limit 1"
        ).fetchone()
        assert run is not None and run[1] == "completed", run
        rows = con.execute(
            "select agent, symbol, strategy, total_return, sharpe, max_drawdown, n_trades "
            "from agent_metrics where run_id = ? order by agent",
            [run[0]],
        ).fetchall()
    assert len(rows) == 3, rows
    return rows


def _campaign(
    command: str,
    trials: int,
    harness: Harness,
    tmp: Path,
    tally: Tally,
    seed: int,
    spread: tuple[float, float],
) -> None:
    rng = random.Random(seed)
    lifetimes: list[float] = []
    reference: list[tuple[Any, ...]] | None = None
    prefect_home = tmp / "prefect-home"
    tally.note("command", " ".join(["hedgeflow", *_argv(command)[3:]]))
    if trials >= 10:  # measure a typical lifetime (and the uninterrupted result) first
        env = _env(harness, tmp / "measure", prefect_home)
        lifetimes.append(_run_to_completion(command, env, tmp / "measure.log"))
        assert _check_warehouse(tmp / "measure", tally, complete=True) == EXPECTED
        if command == "nightly":
            reference = _latest_metrics(tmp / "measure")
    for trial in range(trials):
        # even trials start from an empty warehouse; odd ones kill a re-run over the
        # previous trial's warehouse (complete after its restart)
        home = tmp / f"home-{trial - trial % 2}"
        env = _env(harness, home, prefect_home)
        typical = statistics.median(lifetimes) if lifetimes else 6.0
        delay = rng.uniform(*spread) * typical
        log = tmp / f"trial-{trial}.log"
        proc = _start(command, env, log)
        try:
            proc.wait(timeout=delay)
            tally.outcome("finished before the kill")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            tally.outcome("killed (SIGKILL)")
        tally.trial()
        tally.notes.setdefault("kill delays (s)", []).append(round(delay, 2))
        _check_warehouse(home, tally, complete=False)
        tally.outcome("state after kill consistent")

        lifetimes.append(_run_to_completion(command, env, tmp / f"restart-{trial}.log"))
        counts = _check_warehouse(home, tally, complete=True)
        assert counts == EXPECTED, counts
        if command == "nightly":
            metrics = _latest_metrics(home)
            if reference is None:
                reference = metrics
            assert metrics == reference, "a restarted nightly differs from an uninterrupted one"
        tally.outcome("restart converged (bars exactly once, results complete)")
    tally.note("typical lifetime (s)", round(statistics.median(lifetimes), 2))


@pytest.mark.parametrize("command", ["ingest", "nightly"])
def test_sigkill_then_restart(
    command: str, prefect_harness: Harness, tmp_path: Path, tally: Tally
) -> None:
    if full_campaign():
        pytest.skip("the full campaign runs test_sigkill_campaign")
    tally.describe("crash", f"SIGKILL hedgeflow {command} at a random point, restart (quick)")
    _campaign(
        command,
        QUICK_TRIALS[command],
        prefect_harness,
        tmp_path,
        tally,
        seed=11,
        spread=(0.35, 0.95),
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", ["ingest", "nightly"])
def test_sigkill_campaign(
    command: str, prefect_harness: Harness, tmp_path: Path, tally: Tally
) -> None:
    tally.describe(
        "crash", f"SIGKILL hedgeflow {command} at {FULL_TRIALS} random points, restart each"
    )
    _campaign(
        command, FULL_TRIALS, prefect_harness, tmp_path, tally, seed=2026, spread=(0.02, 1.05)
    )
