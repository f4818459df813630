"""The same nightly on a Dask LocalCluster with 2 workers gives identical results."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e_helpers import query

pytestmark = pytest.mark.flow

METRICS = (
    "select agent, symbol, n_trades, total_return, sharpe, sortino, max_drawdown, exposure "
    "from agent_metrics order by agent"
)
TRADES = "select agent, trade_id, entry_ts, exit_ts, qty, pnl from trades order by agent, trade_id"


@pytest.mark.slow  # .ci/run step 3 runs it; keeps the default suite under 10 min
def test_dask_local_cluster_matches_thread_pool(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hedgeflow.flows.nightly import nightly

    monkeypatch.chdir(tmp_path)
    results = {}
    for runner in ("threads", "dask"):
        home = tmp_path / runner
        monkeypatch.setenv("HEDGEFLOW_HOME", str(home))
        summary = nightly(days=3, end="2026-11-20", task_runner=runner)
        assert summary.status == "completed", summary.failed_agents
        results[runner] = (query(home, METRICS), query(home, TRADES))
    assert len(results["threads"][0]) == 3 and len(results["threads"][1]) > 0
    assert results["dask"] == results["threads"]
