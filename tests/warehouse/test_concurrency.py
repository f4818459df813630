"""Several processes on one DuckDB file: open retries on the lock, readers never see half a run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hedgeflow.warehouse import Warehouse, WarehouseBusyError
from tests.e2e_helpers import read_line

from .conftest import run_python

HOLD_WRITE = """
import sys, time
from hedgeflow.warehouse import Warehouse
wh = Warehouse(sys.argv[1])
with wh.write() as con:
    con.execute("INSERT INTO store.meta VALUES ('holder', 'x')")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
print("released", flush=True)
"""

WRITE_RUNS = """
import sys
import numpy as np, pandas as pd
from hedgeflow.warehouse import Warehouse
wh = Warehouse(sys.argv[1], lock_timeout=60)
n_runs, n_rows = int(sys.argv[2]), int(sys.argv[3])
t0 = pd.Timestamp("2026-11-02", tz="UTC")
for i in range(n_runs):
    run_id = f"run-{i:03d}"
    wh.start_run(run_id, "nightly", {"i": i}, "test")
    for agent in ("stocks", "forex", "crypto"):
        eq = pd.DataFrame({
            "agent": agent,
            "ts": pd.date_range(t0, periods=n_rows, freq="5min"),
            "equity": 100.0 + np.arange(n_rows),
            "drawdown": 0.0,
        })
        wh.write_results(run_id, {"equity": eq})
    wh.finish_run(run_id, "completed", {"i": i})
print("done", flush=True)
"""


def _wait_for_line(proc, expected: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while (left := deadline - time.monotonic()) > 0:
        line = read_line(proc.stdout, timeout=left)
        if line.strip() == expected:
            return
        if not line:  # EOF: the child exited
            break
    raise AssertionError(f"subprocess never printed {expected!r}: {proc.stderr.read()}")


@pytest.fixture
def ready_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    Warehouse(home).list_runs()  # create the schema up front
    return home


def test_reader_retries_while_another_process_writes(ready_home: Path) -> None:
    holder = run_python(HOLD_WRITE, str(ready_home), "1.5", wait=False)
    try:
        _wait_for_line(holder, "locked")
        t0 = time.monotonic()
        got = Warehouse(ready_home, lock_timeout=30).query(
            "SELECT value FROM store.meta WHERE key = 'holder'"
        )
        waited = time.monotonic() - t0
    finally:
        holder.wait(timeout=60)
    assert holder.returncode == 0, holder.stderr.read() if holder.stderr else ""
    assert got["value"].tolist() == ["x"]  # saw the committed write
    assert waited > 0.5  # it really had to wait for the lock


def test_lock_timeout_names_the_file(ready_home: Path) -> None:
    holder = run_python(HOLD_WRITE, str(ready_home), "2", wait=False)
    try:
        _wait_for_line(holder, "locked")
        wh = Warehouse(ready_home, lock_timeout=0.3)
        with pytest.raises(WarehouseBusyError, match=r"hedgeflow\.duckdb.*read-only"):
            wh.query("SELECT 1")
        with pytest.raises(WarehouseBusyError, match="read-write"):
            wh.start_run("r1", "nightly", {}, "v")
    finally:
        holder.wait(timeout=60)
    assert holder.returncode == 0


def test_readers_in_a_loop_never_see_partial_runs(ready_home: Path) -> None:
    n_runs, n_rows = 6, 200
    writer = run_python(WRITE_RUNS, str(ready_home), str(n_runs), str(n_rows), wait=False)
    wh = Warehouse(ready_home, lock_timeout=60)
    queries, seen_max = 0, 0
    try:
        while writer.poll() is None:
            with wh.read() as con:  # one snapshot for both queries
                per_run = con.sql("SELECT run_id, count(*) AS n FROM equity GROUP BY 1").df()
                runs = con.sql("SELECT run_id, status FROM runs").df()
            assert (per_run["n"] == 3 * n_rows).all(), per_run
            finished = runs[runs["status"] == "completed"]
            assert set(per_run["run_id"]) == set(finished["run_id"])
            seen_max = max(seen_max, len(per_run))
            queries += 1
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0, writer.stderr.read() if writer.stderr else ""
    final = wh.query("SELECT count(DISTINCT run_id) AS r, count(*) AS n FROM equity")
    assert final.values.tolist() == [[n_runs, n_runs * 3 * n_rows]]
    print(f"reader queries={queries} max runs seen mid-write={seen_max}")
    assert queries >= 3
