"""Crash safety: SIGKILL ``hedgeflow ingest`` / ``hedgeflow nightly`` while they write,
check the warehouse as the crash left it, restart (re-run to completion) and check again.

Before the trials, one run goes to completion in its own home: the uninterrupted
reference. It measures the command's lifetime and its write phase (its ``runs`` row's
started_at -> finished_at), and for ``nightly`` its metrics are what every restarted run
must reproduce.

Each trial kills a run either during its write phase or, in the full campaign,
half of the time at a seeded random point of its whole lifetime (startup included; most
of an ingest's lifetime is startup). What the kill hit is read from the warehouse
afterwards and each kind is counted: the run's ``runs`` row still ``running`` (killed
mid-run: started writing, never finished), no new row (killed before the run began), a
finished row (killed after the run ended), or the process had already exited (finished
before the kill). At least one trial of every campaign, quick ones included, must have
been killed mid-run (up to two extra trials are added while none was).

Aiming at the write phase: the test watches the DuckDB file and its WAL (mtime and
size only: opening the database would block the writer) until the run's first write
connection has closed - its ``runs`` row is then stored - and waits a seeded random share
of the time the reference went on writing after that point.

After every kill:
- every Parquet file of the lake opens with pyarrow; temp files a killed writer left are
  invisible to the ``bars`` view (and cleaned by the next write);
- the DuckDB file opens; the ``bars`` view has no duplicate (symbol, interval, ts) and
  each symbol has either none or all of its bars (a partition is replaced atomically);
- result views (agent_metrics, trades, equity, signals, portfolio_metrics, quarantine)
  show rows of completed/partial runs only: the killed run's rows stay hidden.
After every restart: exit 0 with clean output, every bar exactly once with the counts of
the synthetic source, and (nightly) the new run's metrics equal the reference run's.

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
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.warehouse import Warehouse
from tests.e2e_helpers import NOISE_MARKERS
from tests.reliability.conftest import Harness, Tally, full_campaign

pytestmark = [pytest.mark.reliability, pytest.mark.flow]

REPO = Path(__file__).resolve().parents[2]
SYMBOLS = ("AAPL.US", "EURUSD.FOREX", "BTC-USD.CC")
END = "2026-11-20"
DAYS = 2
RESULT_VIEWS = ("agent_metrics", "trades", "equity", "signals", "portfolio_metrics", "quarantine")
QUICK_TRIALS = {"ingest": 2, "nightly": 1}
FULL_TRIALS = 20
MAX_EXTRA_TRIALS = 2  # added only while no trial has been killed mid-run
# What a kill hit, read from the warehouse after it (see the module docstring).
MID_RUN = "killed mid-run (runs row left 'running')"
BEFORE_RUN = "killed before its runs row was written"
AFTER_RUN = "killed after its run had finished"
FINISHED = "finished before the kill"


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


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)


def _db_state(home: Path) -> tuple[tuple[int, int] | None, ...]:
    """(mtime, size) of the DuckDB file and its WAL: any write changes them."""
    out: list[tuple[int, int] | None] = []
    for name in ("hedgeflow.duckdb", "hedgeflow.duckdb.wal"):
        try:
            st = (home / name).stat()
        except FileNotFoundError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size))
    return tuple(out)


def _wait_for_runs_row(
    proc: subprocess.Popen[bytes], home: Path, before: tuple[Any, ...], timeout: float = 240
) -> bool:
    """Poll the files (never opening the database, which would block the writer) until
    the run's first write connection has closed: the DuckDB file changed and its WAL is
    gone again (DuckDB checkpoints and drops the WAL when the last connection closes).
    That first write is the run's ``runs`` row (in a new warehouse, with the schema).
    False when the process exits first."""
    fresh = before[0] is None
    wal_seen = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db, wal = _db_state(home)
        wal_seen = wal_seen or wal is not None
        if db is not None and db != before[0] and wal is None and (wal_seen or not fresh):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    raise AssertionError(f"no runs row written in {home} in {timeout} s")


def _finish(proc: subprocess.Popen[bytes], log: Path) -> None:
    code = proc.wait(timeout=300)
    output = log.read_text(errors="replace")
    assert code == 0, output[-4000:]
    noisy = [line for line in output.splitlines() if any(m in line for m in NOISE_MARKERS)]
    assert not noisy, "\n".join(noisy[:20])


def _run_to_completion(command: str, env: dict[str, str], log: Path) -> float:
    began = time.monotonic()
    proc = _start(command, env, log)
    try:
        _finish(proc, log)
    finally:
        _kill_group(proc)
    return time.monotonic() - began


@dataclass(frozen=True)
class Reference:
    """The uninterrupted run, in seconds after its launch."""

    lifetime: float
    row_seen: float  # _wait_for_runs_row returned
    started: float  # its runs row's started_at
    finished: float  # and finished_at
    metrics: list[tuple[Any, ...]] | None  # nightly: what a restarted run must give

    @property
    def writing(self) -> float:
        """How long the run goes on writing after its runs row is seen."""
        return self.finished - self.row_seen


def _run_reference(command: str, env: dict[str, str], home: Path, log: Path) -> Reference:
    launched, began = time.time(), time.monotonic()
    proc = _start(command, env, log)
    try:
        assert _wait_for_runs_row(proc, home, _db_state(home)), "exited without a runs row"
        row_seen = time.monotonic() - began
        _finish(proc, log)
    finally:
        _kill_group(proc)
    lifetime = time.monotonic() - began
    with Warehouse(home, lock_timeout=60).read() as con:
        rows = con.execute("select status, started_at, finished_at from store.runs").fetchall()
    assert len(rows) == 1 and rows[0][0] == "completed", rows
    started, finished = (t.timestamp() - launched for t in rows[0][1:])
    # the watch saw the runs row soon after it was written, long before it was finished
    assert started - 0.1 < row_seen < started + 1.0 and row_seen < finished < lifetime, (
        row_seen, started, finished, lifetime,
    )  # fmt: skip
    metrics = _latest_metrics(home) if command == "nightly" else None
    return Reference(lifetime, row_seen, started, finished, metrics)


def _run_statuses(home: Path) -> dict[str, str]:
    if not (home / "hedgeflow.duckdb").exists():
        return {}
    with Warehouse(home, lock_timeout=60).read() as con:
        return dict(con.execute("select run_id, status from store.runs").fetchall())


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
    anywhere: float,
) -> None:
    """``trials`` kills + restarts. A trial kills at a random point of the run's write
    phase, or with probability ``anywhere`` at a random point of its whole lifetime."""
    rng = random.Random(seed)
    prefect_home = tmp / "prefect-home"
    tally.note("command", " ".join(["hedgeflow", *_argv(command)[3:]]))
    # the uninterrupted reference, in its own home
    ref_home = tmp / "reference"
    ref = _run_reference(command, _env(harness, ref_home, prefect_home), ref_home, tmp / "ref.log")
    assert _check_warehouse(ref_home, tally, complete=True) == EXPECTED
    tally.note("reference run (s after launch)", {
        "runs row started": round(ref.started, 2),
        "runs row seen": round(ref.row_seen, 2),
        "runs row finished": round(ref.finished, 2),
        "exit": round(ref.lifetime, 2),
    })  # fmt: skip
    lifetimes = [ref.lifetime]
    hits: Counter[str] = Counter()
    trial = 0
    while trial < trials or (hits[MID_RUN] == 0 and trial < trials + MAX_EXTRA_TRIALS):
        if trial >= trials:
            tally.outcome("extra trial (no mid-run kill yet)")
        # even trials start from an empty warehouse; odd ones kill a re-run over the
        # previous trial's warehouse (complete after its restart)
        home = tmp / f"home-{trial - trial % 2}"
        env = _env(harness, home, prefect_home)
        before = _run_statuses(home)
        db_before = _db_state(home)
        log = tmp / f"trial-{trial}.log"
        aim_anywhere = trial < trials and rng.random() < anywhere
        share = rng.uniform(0.02, 1.05) if aim_anywhere else rng.uniform(0.05, 0.6)
        proc = _start(command, env, log)
        try:
            if aim_anywhere:
                delay = share * statistics.median(lifetimes)
            elif _wait_for_runs_row(proc, home, db_before):
                # in the write phase: a share of what the reference wrote after its row
                delay = share * ref.writing
            else:
                delay = 0.0  # exited before writing anything
            tally.notes.setdefault("kill delays (s)", []).append(
                f"{delay:.2f} after {'launch' if aim_anywhere else 'the runs row'}"
            )
            proc.wait(timeout=delay)
            hit = FINISHED
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            hit = ""
        finally:
            _kill_group(proc)
        tally.trial()
        counts = _check_warehouse(home, tally, complete=False)
        tally.outcome("state after kill consistent")
        new = {r: st for r, st in _run_statuses(home).items() if r not in before}
        assert len(new) <= 1, new
        if not hit:
            status = next(iter(new.values()), None)
            hit = BEFORE_RUN if status is None else MID_RUN if status == "running" else AFTER_RUN
        hits[hit] += 1
        tally.outcome(hit)
        if hit == MID_RUN and not before:  # a fresh warehouse: how far the lake got
            tally.notes.setdefault("symbols in the lake at a mid-run kill", []).append(len(counts))

        lifetimes.append(_run_to_completion(command, env, tmp / f"restart-{trial}.log"))
        counts = _check_warehouse(home, tally, complete=True)
        assert counts == EXPECTED, counts
        if command == "nightly":
            assert _latest_metrics(home) == ref.metrics, (
                "a restarted nightly differs from the uninterrupted reference run"
            )
        tally.outcome("restart converged (bars exactly once, results complete)")
        trial += 1
    tally.note("typical lifetime (s)", round(statistics.median(lifetimes), 2))
    # the trials tested crash recovery only if some kill really interrupted a run
    assert hits[MID_RUN] >= 1, f"no trial was killed mid-run: {dict(hits)}"


@pytest.mark.slow  # .ci/run step 3 runs it; keeps the default suite under 10 min
@pytest.mark.parametrize("command", ["ingest", "nightly"])
def test_sigkill_then_restart(
    command: str, prefect_harness: Harness, tmp_path: Path, tally: Tally
) -> None:
    if full_campaign():
        pytest.skip("the full campaign runs test_sigkill_campaign")
    tally.describe(
        "crash", f"SIGKILL hedgeflow {command} at a random point of its writes, restart (quick)"
    )
    _campaign(
        command,
        QUICK_TRIALS[command],
        prefect_harness,
        tmp_path,
        tally,
        seed=11,
        anywhere=0.0,
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", ["ingest", "nightly"])
def test_sigkill_campaign(
    command: str, prefect_harness: Harness, tmp_path: Path, tally: Tally
) -> None:
    tally.describe(
        "crash", f"SIGKILL hedgeflow {command} at {FULL_TRIALS} random points, restart each"
    )
    _campaign(command, FULL_TRIALS, prefect_harness, tmp_path, tally, seed=2026, anywhere=0.5)
