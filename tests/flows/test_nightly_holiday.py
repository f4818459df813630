"""The scheduled nightly on an XNYS holiday (prefect.yaml: ``trading_days_only: true``):
a real Prefect flow run that completes at once with a one-line message and a
``completed`` runs row, having ingested and backtested nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tests.e2e_helpers import query
from tests.hedgeflow.test_windows import frozen_clock

pytestmark = pytest.mark.flow

CHRISTMAS_EVENING = datetime(2025, 12, 25, 22, 30, tzinfo=UTC)  # 17:30 in New York


# ~7 s: a flow run (CI runs it); the rule is in tests/hedgeflow/test_exchange_calendar.py
@pytest.mark.slow
def test_the_scheduled_nightly_on_a_holiday_completes_with_a_message(
    prefect_harness: None, hedgeflow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hedgeflow.flows.nightly import nightly

    frozen_clock(monkeypatch, CHRISTMAS_EVENING)
    summary = nightly(days=1, trading_days_only=True)
    assert summary.status == "completed"
    assert summary.skipped == (
        "2025-12-25 is not a trading day of XNYS (a holiday): no new session to backtest, "
        "nothing run (pass an end to run anyway)"
    )
    assert summary.agent_rows == [] and summary.report_path is None
    ((status, params, stored),) = query(hedgeflow_home, "select status, params, summary from runs")
    assert status == "completed"
    assert json.loads(stored) == {"skipped": summary.skipped}
    # the window it would have used (convention 9: the last completed bar)
    assert json.loads(params)["end"] == "2025-12-25T22:30:00+00:00"
    assert query(hedgeflow_home, "select count(*) from bars") == [(0,)]


def test_the_deployment_asks_for_trading_days_only() -> None:
    spec = yaml.safe_load((Path(__file__).parents[2] / "prefect.yaml").read_text())
    (nightly,) = [d for d in spec["deployments"] if d["name"] == "nightly-backtest"]
    assert nightly["parameters"] == {"trading_days_only": True}
