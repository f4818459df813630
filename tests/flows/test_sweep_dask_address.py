"""``hedgeflow sweep --dask tcp://HOST:PORT``: the backtests run on an existing Dask
scheduler (a real ``distributed`` cluster the test starts on 127.0.0.1) and give
exactly the thread pool's results.

The cluster lives in the test process (2 worker threads behind a TCP scheduler), the
``hedgeflow`` command in another: the sweep tasks, their inputs and their results
cross process boundaries over TCP, as with workers on other machines, without paying
for two more Python processes importing hedgeflow (and without a multiprocessing
resource tracker that would outlive the test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e_helpers import assert_clean, query
from tests.flows.harness_cli import harness_api_url, run_cli_on

__all__ = ["harness_api_url"]

pytestmark = pytest.mark.flow

SYMBOLS = ["AAPL.US", "BTC-USD.CC"]
GRID = {"fast": [5, 10, 20], "slow": [10, 50]}
END = "2026-11-20"
COLUMNS = (
    "symbol, strategy, params, rank, total_return, cagr, ann_vol, sharpe, sortino, "
    "max_drawdown, calmar, n_trades, win_rate, profit_factor, exposure"
)


def _rows(home: Path, run_id: str) -> list[tuple]:
    return query(
        home,
        f"select {COLUMNS} from sweep_results where run_id = '{run_id}' order by symbol, rank",
    )


@pytest.fixture
def dask_cluster() -> Any:
    """A TCP scheduler on 127.0.0.1 with 2 single-thread workers, closed after."""
    from distributed import LocalCluster
    from distributed.diagnostics.plugin import SchedulerPlugin

    class Finished(SchedulerPlugin):
        """Keys of the tasks the scheduler saw finish."""

        def __init__(self) -> None:
            self.keys: list[str] = []

        def transition(self, key: Any, start: str, finish: str, *args: Any, **kw: Any) -> None:
            if finish == "memory":
                self.keys.append(str(key))

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address=None,
        silence_logs=40,
    )
    try:
        finished = Finished()
        cluster.scheduler.add_plugin(finished, name="hedgeflow-test-finished")
        yield cluster, finished
    finally:
        cluster.close(timeout=30)
    assert cluster.status.name == "closed"


@pytest.mark.slow  # .ci/run step 3 runs it; keeps the default suite under 10 min
def test_sweep_on_an_existing_dask_scheduler_matches_the_thread_pool(
    harness_api_url: str, hedgeflow_home: Path, dask_cluster: Any
) -> None:
    from hedgeflow.flows.sweep import sweep

    cluster, finished = dask_cluster
    address = cluster.scheduler_address
    assert address.startswith("tcp://127.0.0.1:")

    threads = sweep(symbols=SYMBOLS, strategy="sma_cross", grid=GRID, days=3, end=END)
    assert threads.status == "completed" and threads.task_runner == "threads"
    assert finished.keys == []

    grid_args: list[str] = []
    for key, values in GRID.items():
        grid_args += ["--grid", f"{key}={','.join(map(str, values))}"]
    proc = run_cli_on(
        harness_api_url,
        hedgeflow_home,
        "sweep", "--strategy", "sma_cross", "--symbols", *SYMBOLS, *grid_args,
        "--days", "3", "--end", END, "--dask", address,
    )  # fmt: skip
    assert_clean(proc)
    assert f"task runner: dask {address}" in proc.stdout
    assert "status: completed" in proc.stdout

    (dask_run,) = query(
        hedgeflow_home,
        f"select run_id from runs where flow = 'sweep' and run_id != '{threads.run_id}'",
    )
    dask_run_id = dask_run[0]
    (params,) = query(
        hedgeflow_home, f"select params ->> 'task_runner' from runs where run_id = '{dask_run_id}'"
    )
    assert params == (f"dask {address}",)
    # the backtest tasks ran on this cluster: one per symbol batch
    assert len(finished.keys) == len(SYMBOLS), finished.keys
    expected = _rows(hedgeflow_home, threads.run_id)
    assert len(expected) == len(SYMBOLS) * 4  # fast < slow: 4 valid combinations
    assert _rows(hedgeflow_home, dask_run_id) == expected
