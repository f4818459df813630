"""The walk-forward flow under Prefect's test harness; the CLI in a subprocess."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any
from uuid import UUID

import pandas as pd
import pytest

from hedgeflow.tearsheet import CHART_LIBRARY_BANNER
from tests.e2e_helpers import (
    assert_clean,
    console_messages,
    query,
    query_frame,
    run_chromium,
    run_cli,
)

pytestmark = pytest.mark.flow


def _artifacts(flow_run_id: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    only_this_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]))
    with get_client(sync_client=True) as client:
        return list(client.read_artifacts(artifact_filter=only_this_run))


def test_cli_walkforward_writes_the_folds_the_stitched_equity_and_a_report(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    proc = run_cli(
        home, "walkforward", "--strategy", "sma_cross", "--symbols", "BTC-USD.CC",
        "--grid", "fast=5,10", "--grid", "slow=20,50", "--train", "2d", "--test", "1d",
        "--days", "6", "--end", "2026-11-20",
    )  # fmt: skip
    assert_clean(proc)
    assert "walk-forward sma_cross by sharpe" in proc.stdout
    assert "status: completed" in proc.stdout
    (run_id, flow, status, headline) = query(
        home, "select run_id, flow, status, summary from runs"
    )[0]
    assert (flow, status) == ("walkforward", "completed")
    folds = query_frame(home, "select * from walkforward_folds order by fold")
    # 6 days of 5-minute crypto bars (24x7): folds start on days 0, 1, 2, 3
    assert folds["fold"].tolist() == [0, 1, 2, 3]
    assert (folds["mode"] == "rolling").all() and (folds["run_id"] == run_id).all()
    assert (
        folds["n_train_bars"].tolist() == [576] * 4 and folds["n_test_bars"].tolist() == [288] * 4
    )
    day = pd.Timedelta(days=1)
    start = pd.Timestamp("2026-11-14", tz="UTC")
    assert folds["train_start"].tolist() == [start + i * day for i in range(4)]
    assert folds["test_start"].tolist() == [start + (i + 2) * day for i in range(4)]
    assert (folds["test_end"] - folds["test_start"] == day - pd.Timedelta(minutes=5)).all()
    for text in folds["best_params"]:
        assert set(json.loads(text)) == {"fast", "slow", "confirm_above_fast"}
    equity = query_frame(home, "select * from walkforward_equity order by ts")
    assert len(equity) == 4 * 288 and (equity["path"] == 0).all()
    assert equity["fold"].tolist() == [f for f in range(4) for _ in range(288)]
    # the stitched curve's total return is the product of the folds' (each from flat)
    growth = math.prod(1 + r for r in folds["total_return"])
    initial = 100_000.0
    assert equity["equity"].iloc[-1] / initial == pytest.approx(growth, rel=1e-9)
    # the run's headline is the stitched out-of-sample result
    stitched = json.loads(headline)["BTC-USD.CC"]
    assert stitched["total_return"] == pytest.approx(growth - 1, rel=1e-9)
    assert set(stitched) == {"sharpe", "total_return", "is_sharpe_mean", "is_metric_mean"}
    last = proc.stdout.strip().splitlines()[-1]
    report = Path(last.removeprefix("report: "))
    assert report == (home / "reports" / run_id / "report.html").resolve()
    html = report.read_text()
    assert html.count(CHART_LIBRARY_BANNER) == 1
    assert "stitched out-of-sample equity" in html and "in sample (mean of the folds" in html
    assert (report.parent / "summary.md").read_text().startswith("# Walk-forward sma_cross")
    # the Prefect artifacts of the run (the CLI reported to the session's test server)
    artifacts = {a.key: a for a in _artifacts(run_id)}
    assert set(artifacts) == {"walkforward-folds", "walkforward-summary"}
    table = artifacts["walkforward-folds"].data
    table = json.loads(table) if isinstance(table, str) else table
    assert [r["fold"] for r in table] == [0, 1, 2, 3]
    assert [r["best_params"] for r in table] == folds["best_params"].tolist()
    assert "| BTC-USD.CC | rolling: 4 folds |" in artifacts["walkforward-summary"].data


# ~5 s with the browser: slow (the default suite's budget); CI runs it with -m slow
@pytest.mark.slow
def test_walkforward_flow_cpcv_stores_every_path_and_publishes_artifacts(
    hedgeflow_home: Path,
) -> None:
    from hedgeflow.flows.walkforward import walkforward

    summary = walkforward(
        symbols=["ETH-USD.CC"], strategy="donchian_breakout", grid={"window": [10, 20, 40]},
        cpcv=True, groups=5, test_groups=2, purge=12, embargo=0.01, days=3, end="2026-11-20",
        metric="sortino",
    )  # fmt: skip
    assert summary.status == "completed", summary.failed
    (result,) = summary.results
    assert (result["folds"], result["paths"]) == (10, 4)  # C(5, 2); 2 / 5 x 10
    folds = query_frame(hedgeflow_home, "select * from walkforward_folds order by fold")
    assert len(folds) == 10 and (folds["mode"] == "cpcv").all()
    assert (folds["metric"] == "sortino").all()
    n = 3 * 288
    sizes = [173, 173, 173, 173, 172]  # numpy.array_split of 864 bars into 5 groups
    tested = list(itertools.combinations(range(5), 2))
    assert folds["n_test_bars"].tolist() == [sizes[a] + sizes[b] for a, b in tested]
    # purge 12 before and embargo ceil(0.01 x 864) = 9 after each test group
    assert folds["n_train_bars"].iloc[0] == n - 346 - 9  # test groups 0, 1
    assert folds["n_train_bars"].iloc[1] == n - 346 - 9 - 12 - 9  # test groups 0, 2
    rows = query(
        hedgeflow_home,
        "select path, count(*), count(distinct ts) from walkforward_equity group by path "
        "order by path",
    )
    assert rows == [(p, n, n) for p in range(4)]
    sharpes = result["oos_sharpe_paths"]
    assert len(sharpes) == 4 and result["oos_sharpe"] == pytest.approx(sum(sharpes) / 4)
    artifacts = {a.key: a for a in _artifacts(summary.run_id)}
    assert set(artifacts) == {"walkforward-folds", "walkforward-summary"}
    table = artifacts["walkforward-folds"].data
    table = json.loads(table) if isinstance(table, str) else table
    assert [r["fold"] for r in table] == list(range(10))
    assert "OOS Sharpe" in artifacts["walkforward-summary"].data
    # the report in a real browser, offline: no JavaScript error, its chart drawn
    page = Path(summary.report_path or "")
    html = page.read_text()
    assert html.count(CHART_LIBRARY_BANNER) == 1 and html.count('<div class="plot"') == 1
    assert "out of sample (mean of 4 paths)" in html and "Out-of-sample paths" in html
    proc = run_chromium(
        page, hedgeflow_home.parent / "profile", "--window-size=1400,2400",
        "--virtual-time-budget=30000", "--dump-dom",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_messages(proc.stderr) == [], console_messages(proc.stderr)
    assert 'class="js-error"' not in proc.stdout
    assert 'data-charts-rendered="1"' in proc.stdout and 'class="main-svg"' in proc.stdout
