"""Prefect's retry-on-transient path, for real: the ``ingest`` flow (a Prefect flow run
against the session's test server) reads a local EODHD-compatible simulator with the
client's own retries off, so a failed request fails the task attempt and Prefect's
retry policy (``hedgeflow.tasks.common.retry_on_transient``) decides:

* an HTTP 500 (``TransientSourceError``) is retried, and the second attempt succeeds;
* an HTTP 401 (``PermanentSourceError``) is not retried: one attempt, the flow fails.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from hedgeflow.errors import SourceError
from hedgeflow.sources.simulator import Simulator
from tests.e2e_helpers import query

pytestmark = pytest.mark.flow

SYMBOL = "BTC-USD.CC"
TOKEN = "retry-test-token"
END = "2026-11-20"


@pytest.fixture
def simulator(prefect_harness: None, hedgeflow_home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    with Simulator(seed=7, tokens=(TOKEN,)) as sim:
        monkeypatch.setenv("EODHD_API_TOKEN", TOKEN)
        monkeypatch.setenv("HEDGEFLOW_NETWORK__BASE_URL", sim.base_url)
        monkeypatch.setenv("HEDGEFLOW_NETWORK__MAX_RETRIES", "0")  # the client gives up at once
        yield sim


def ingest_task_run(flow_run_id: UUID) -> Any:
    """The flow run's one ingest task run, once the server has recorded its final state."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            if len(runs) == 1 and runs[0].state is not None and runs[0].state.is_final():
                states = client.read_task_run_states(runs[0].id)
                return runs[0], [s.name for s in states]
            assert time.monotonic() < deadline, f"task runs not recorded: {runs}"
            time.sleep(0.2)


def test_a_transient_error_is_retried_by_prefect_and_the_retry_succeeds(
    simulator: Simulator, hedgeflow_home: Path
) -> None:
    from hedgeflow.flows.ingest import ingest

    simulator.faults.inject("500")
    state = ingest(symbols=[SYMBOL], days=1, source="eodhd", end=END, return_state=True)

    assert state.is_completed()
    (result,) = state.result()
    assert (result.symbol, result.fetched, result.stored) == (SYMBOL, 288, 288)
    served = [(r.fault, r.status) for r in simulator.request_log]
    assert served == [("500", 500), (None, 200)]
    task_run, states = ingest_task_run(state.state_details.flow_run_id)
    assert task_run.run_count == 2
    assert task_run.state.is_completed()
    assert "AwaitingRetry" in states and states[-1] == "Completed"
    assert query(hedgeflow_home, "select flow, status from runs") == [("ingest", "completed")]
    assert query(hedgeflow_home, "select count(*) from bars") == [(288,)]


def test_a_permanent_error_is_not_retried(simulator: Simulator, hedgeflow_home: Path) -> None:
    from hedgeflow.flows.ingest import ingest

    simulator.faults.inject("401")
    state = ingest(symbols=[SYMBOL], days=1, source="eodhd", end=END, return_state=True)

    assert state.is_failed()
    with pytest.raises(SourceError, match=r"PermanentSourceError: EODHD rejected the API token"):
        state.result()
    served = [(r.fault, r.status) for r in simulator.request_log]
    assert served == [("401", 401)]
    task_run, states = ingest_task_run(state.state_details.flow_run_id)
    assert task_run.run_count == 1
    assert task_run.state.is_failed()
    assert "AwaitingRetry" not in states
    assert query(hedgeflow_home, "select flow, status from runs") == [("ingest", "failed")]
