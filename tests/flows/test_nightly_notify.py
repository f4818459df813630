"""A nightly run that does not complete announces itself (one event of kind ``run``) on
the configured webhook before the flow returns; backtests never notify; the URL's token
reaches neither the warehouse nor the Prefect server's database (the subflows and tasks
get the settings without the URLs)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hedgeflow.cli import main
from tests.e2e_helpers import Harness
from tests.flows.test_live_notify import token_files
from tests.webhook_receiver import TOKEN, WebhookReceiver

pytestmark = pytest.mark.flow


@pytest.mark.slow  # ~15 s (a nightly run); .ci/run step 3
def test_a_partial_nightly_notifies_once(
    prefect_harness: Harness, hedgeflow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hedgeflow.flows.nightly import nightly

    with WebhookReceiver() as rx:
        monkeypatch.setenv("HEDGEFLOW_NOTIFY__WEBHOOKS", json.dumps([rx.url]))
        # Saturday 21 Nov 2026: stocks and forex have no bars, crypto trades: partial
        summary = nightly(days=1, end="2026-11-22")
        received = rx.bodies()  # delivered before the flow returned
    assert summary.status == "partial"
    (event,) = received
    assert event["kind"] == "run" and event["status"] == "partial"
    assert event["run_id"] == summary.run_id and event["flow"] == "nightly"
    assert "stocks" in event["reason"] and "forex" in event["reason"]
    assert event["event_id"].startswith("ev-")
    assert token_files(hedgeflow_home, TOKEN) == []
    assert [p for p in prefect_harness.files() if TOKEN.encode() in p.read_bytes()] == []


def test_a_backtest_never_notifies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hedgeflow.sources.synthetic import SyntheticMarket

    start = pd.Timestamp("2026-11-02", tz="UTC")
    bars = SyntheticMarket(7).fetch_bars("BTC-USD.CC", "5m", start, start + pd.Timedelta(days=3))
    path = tmp_path / "bars.csv"
    bars.to_csv(path, index=False)
    with WebhookReceiver() as rx:
        monkeypatch.setenv("HEDGEFLOW_NOTIFY__WEBHOOKS", json.dumps([rx.url]))
        args = ["backtest", "--bars", str(path), "--strategy", "sma_cross"]
        assert main([*args, "--param", "fast=3", "--param", "slow=8", "--out", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "trades" in out
    assert rx.received == []
