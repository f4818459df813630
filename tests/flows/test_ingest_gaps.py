"""Convention 8 through real ingest runs: `hedgeflow ingest --source eodhd` (the real
EODHD client, in a subprocess, against the session's Prefect server) reads the local
EODHD simulator. A second run whose vendor answers `[]` for open sessions keeps the
stored bars as they were and reports the sessions in the `data_gaps` view."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hedgeflow.sources.simulator import Simulator
from tests.e2e_helpers import assert_clean, query_frame
from tests.flows.harness_cli import harness_api_url, run_cli_on

__all__ = ["harness_api_url"]

pytestmark = [pytest.mark.flow, pytest.mark.slow]  # ~16 s: two CLI runs (CI runs it)

TOKEN = "gaps-test-token"
# Mon 24 .. Sat 29 Nov 2025: four XNYS sessions (Thanksgiving on the 27th, the 28th
# closes at 13:00 ET)
ARGS = ("ingest", "--source", "eodhd", "--symbols", "AAPL.US", "--days", "5", "--end", "2025-11-29")
BARS = "select ts, open, high, low, close, volume from bars order by ts"


def test_an_empty_vendor_answer_is_reported_and_never_replaces_stored_bars(
    harness_api_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "data"
    with Simulator(seed=7, tokens=(TOKEN,)) as sim:
        env = {"EODHD_API_TOKEN": TOKEN, "HEDGEFLOW_NETWORK__BASE_URL": sim.base_url}
        assert_clean(run_cli_on(harness_api_url, home, *ARGS, **env))
        stored = query_frame(home, BARS)
        assert query_frame(home, "select * from data_gaps").empty  # nothing missing
        sim.faults.inject("empty")  # the next answer: HTTP 200 with []
        second = run_cli_on(harness_api_url, home, *ARGS, **env)
        served = [r.status for r in sim.request_log if r.path.startswith("/api/intraday/")]
        faulted = [r.path for r in sim.request_log if r.fault]
    assert_clean(second)
    assert served == [200, 200]  # (each ingest also asked for the stock's splits)
    assert len(faulted) == 1 and faulted[0].startswith("/api/intraday/")
    # the stored bars are exactly as they were
    assert len(stored) == 3 * 78 + 42
    pd.testing.assert_frame_equal(query_frame(home, BARS), stored)
    # every open session of the empty answer is reported, with the bars kept there
    gaps = query_frame(home, "select * from data_gaps order by start")
    assert set(gaps["kind"]) == {"vendor_empty"} and set(gaps["symbol"]) == {"AAPL.US"}
    assert [str(t) for t in gaps["start"].dt.date] == [
        "2025-11-24", "2025-11-25", "2025-11-26", "2025-11-28"
    ]  # fmt: skip
    assert gaps["end"].iloc[-1] == pd.Timestamp("2025-11-28 18:00", tz="UTC")
    assert list(gaps["stored_bars"]) == [78, 78, 78, 42]
    runs = query_frame(home, "select run_id, summary from runs order by started_at")
    assert set(gaps["run_id"]) == {runs["run_id"].iloc[-1]}
    assert json.loads(runs["summary"].iloc[-1])["empty_ranges"] == 1  # and the run counts it
