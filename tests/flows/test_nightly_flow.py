"""The nightly flow under Prefect's test harness: failure isolation and batching."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e_helpers import query

pytestmark = pytest.mark.flow


def test_failing_agent_fails_its_branch_and_the_rest_publish(
    prefect_harness: None, hedgeflow_home: Path
) -> None:
    from hedgeflow.flows.nightly import nightly

    # Saturday 21 Nov 2026: no stock session, forex closed, crypto trades 24x7.
    summary = nightly(days=1, end="2026-11-22")
    assert summary.status == "partial"
    assert set(summary.failed_agents) == {"stocks", "forex"}
    assert "no bars" in summary.failed_agents["stocks"]
    assert [name for name, _ in summary.agent_rows] == ["crypto"]
    home = hedgeflow_home
    assert query(home, "select agent from agent_metrics") == [("crypto",)]
    assert query(home, "select status from runs") == [("partial",)]
    assert query(home, "select count(*) from equity where agent = 'portfolio'")[0][0] == 288
    assert "Failed agents" in Path(summary.report_path).read_text()


def test_many_agents_run_in_a_bounded_number_of_tasks(
    prefect_harness: None, hedgeflow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client

    from hedgeflow.flows.nightly import nightly
    from hedgeflow.tasks.common import MAX_TASKS_PER_STAGE

    n_agents = 20
    for i in range(n_agents):
        monkeypatch.setenv(f"HEDGEFLOW_AGENTS__C{i:02d}__SYMBOL", f"C{i:02d}-USD.CC")
        monkeypatch.setenv(f"HEDGEFLOW_AGENTS__C{i:02d}__STRATEGY", "donchian_breakout")
    summary = nightly(days=2, end="2026-11-20")
    assert summary.status == "completed"
    assert len(summary.agent_rows) == n_agents + 3

    async def task_run_names() -> list[str]:
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            FlowRunFilterParentFlowRunId,
        )

        async with get_client() as client:
            children = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[summary.run_id])
                )
            )
            ids = [summary.run_id, *(str(c.id) for c in children)]
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))
            )
            return [r.name for r in runs if r.name]

    import asyncio

    names = asyncio.run(task_run_names())
    ingest_tasks = [n for n in names if n.startswith("ingest-")]
    backtest_tasks = [n for n in names if n.startswith("backtest-")]
    assert len(ingest_tasks) == MAX_TASKS_PER_STAGE
    assert len(backtest_tasks) == MAX_TASKS_PER_STAGE
    assert query(hedgeflow_home, "select count(*) from agent_metrics") == [(n_agents + 3,)]
