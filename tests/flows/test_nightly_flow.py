"""The nightly flow under Prefect's test harness: failure isolation and batching."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any
from uuid import UUID

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
    assert summary.reconcile is None  # no live record: no reconcile step, no reconcile run
    assert query(home, "select count(*) from equity where agent = 'portfolio'")[0][0] == 288
    report = Path(summary.report_path or "")
    assert report.is_absolute() and report.name == "report.html"
    assert '<h3 id="failed">Failed agents</h3>' in report.read_text()

    # its Prefect artifacts: charts visible in the markdown (embedded, no file://),
    # formatted numbers in the tables, nothing else
    artifacts = {a.key: a for a in _artifacts(summary.run_id)}
    assert sorted((k, a.type) for k, a in artifacts.items()) == [
        ("agent-metrics", "table"),
        ("nightly-summary", "markdown"),
        ("portfolio-metrics", "table"),
    ]
    markdown = artifacts["nightly-summary"].data
    assert "file://" not in markdown and f"`{report}`" in markdown
    images = re.findall(r"!\[(\w+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert [name for name, _ in images] == ["equity", "drawdown"]
    for _, data in images:
        assert base64.b64decode(data)[:4] == b"\x89PNG" and len(data) < 150_000
    rows = artifacts["agent-metrics"].data
    rows = json.loads(rows) if isinstance(rows, str) else rows
    (crypto,) = rows
    assert list(crypto) == ["agent", "return", "cagr", "vol", "sharpe", "max dd", "calmar",
                            "trades", "win", "pf", "exposure"]  # fmt: skip
    metrics = dict(summary.agent_rows)["crypto"]
    assert crypto["return"] == f"{metrics['total_return']:.2%}"
    assert crypto["sharpe"] == f"{metrics['sharpe']:.2f}"
    assert crypto["trades"] == str(metrics["n_trades"])
    methods = artifacts["portfolio-metrics"].data
    methods = json.loads(methods) if isinstance(methods, str) else methods
    assert [m["method"] for m in methods] == ["equal", "inverse_vol", "risk_parity"]
    assert "win" not in methods[0] and "trades" in methods[0]  # no all-empty column
    assert all(re.fullmatch(r"-?\d+\.\d\d%", m["max dd"]) for m in methods)


def test_many_agents_run_one_task_each_on_a_server(
    prefect_harness: None, hedgeflow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client

    from hedgeflow.flows.nightly import nightly
    from hedgeflow.tasks.common import EPHEMERAL_TASKS_PER_STAGE, max_tasks_per_stage

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
    # on a server (this harness, like hedgeflow's resident one) every task run is kept:
    # one per symbol and one per agent, more than ephemeral mode's batches
    assert max_tasks_per_stage() > n_agents + 3 > EPHEMERAL_TASKS_PER_STAGE
    assert len(ingest_tasks) == n_agents + 3
    assert sorted(backtest_tasks) == sorted(
        ["backtest-stocks", "backtest-forex", "backtest-crypto"]
        + [f"backtest-c{i:02d}" for i in range(n_agents)]
    )
    assert query(hedgeflow_home, "select count(*) from agent_metrics") == [(n_agents + 3,)]


def _artifacts(flow_run_id: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    only_this_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]))
    with get_client(sync_client=True) as client:
        return list(client.read_artifacts(artifact_filter=only_this_run))


def test_ephemeral_mode_batches_the_tasks() -> None:
    """Without a server (Prefect's temporary one loses records past about 20 task runs)
    a stage makes at most EPHEMERAL_TASKS_PER_STAGE task runs, each a batch."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from hedgeflow.tasks.common import EPHEMERAL_TASKS_PER_STAGE, batches, max_tasks_per_stage

    with temporary_settings(updates={PREFECT_API_URL: None}):
        assert max_tasks_per_stage() == EPHEMERAL_TASKS_PER_STAGE
        groups = batches(list(range(23)))
    assert len(groups) == EPHEMERAL_TASKS_PER_STAGE
    assert [x for g in groups for x in g] == list(range(23))


@pytest.mark.slow  # ~20 s: a nightly flow run of three agents
def test_allow_short_parameter_stores_short_trades_and_signals(
    prefect_harness: None, hedgeflow_home: Path
) -> None:
    """The flow parameter reaches every agent: short trades (side 'short') and -1
    signals in the warehouse, the run's parameters say so; the same window without
    it is long only."""
    from hedgeflow.flows.nightly import nightly

    summary = nightly(days=2, end="2026-11-20", allow_short=True)
    assert summary.status == "completed", summary.failed_agents
    home = hedgeflow_home
    sides = dict(query(home, "select side, count(*) from trades group by side"))
    assert sides.get("short", 0) > 0 and sides.get("long", 0) > 0
    assert query(home, "select count(*) from signals where signal = -1")[0][0] > 0
    (params,) = query(home, "select params from runs")[0]
    agents = json.loads(params)["agents"]
    assert all(a.get("allow_short") is True for a in agents.values())
    # short pnl: side x qty x (exit - entry) - fees, as stored
    rows = query(
        home,
        "select qty, entry_price, exit_price, fees, pnl from trades where side = 'short'",
    )
    for qty, entry, exit_, fees, pnl in rows:
        assert pnl == pytest.approx(-qty * (exit_ - entry) - fees, rel=1e-9, abs=1e-9)
