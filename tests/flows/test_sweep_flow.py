"""The sweep flow under Prefect's test harness; the CLI in a subprocess."""

from __future__ import annotations

import base64
import json
import math
import re
from html import escape
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from hedgeflow.overfit import DEFAULT_BLOCKS, overfit_stats, overfit_verdict
from hedgeflow.sweep import params_json
from hedgeflow.tearsheet import CHART_LIBRARY_BANNER
from tests.e2e_helpers import assert_clean, query, query_frame, run_cli

pytestmark = pytest.mark.flow

SYMBOLS = ["BTC-USD.CC", "AAPL.US"]
GRID = {"fast": [5, 10, 20], "slow": [10, 50]}
COLUMNS = (
    "symbol, strategy, params, rank, total_return, cagr, ann_vol, sharpe, sortino, "
    "max_drawdown, calmar, n_trades, win_rate, profit_factor, exposure"
)


def _rows(home: Path, run_id: str) -> list[tuple]:
    return query(
        home,
        f"select {COLUMNS} from sweep_results where run_id = '{run_id}' order by symbol, rank",
    )


def test_sweep_writes_ranked_results_and_artifacts(
    prefect_harness: None, hedgeflow_home: Path
) -> None:
    from hedgeflow.flows.sweep import sweep

    summary = sweep(symbols=SYMBOLS, strategy="sma_cross", grid=GRID, days=3, end="2026-11-20")
    assert summary.status == "completed", summary.failed
    assert (summary.combinations, summary.skipped) == (4, 2)
    home = hedgeflow_home
    rows = _rows(home, summary.run_id)
    assert len(rows) == 2 * 4
    for symbol in SYMBOLS:
        ranks = [r[3] for r in rows if r[0] == symbol]
        assert ranks == [1, 2, 3, 4]
        sharpes = [r[7] for r in rows if r[0] == symbol]
        assert sharpes == sorted(sharpes, reverse=True)
    assert [b["symbol"] for b in summary.best] == sorted(SYMBOLS)
    best_params = {r[0]: r[2] for r in rows if r[3] == 1}
    assert {b["symbol"]: b["params"] for b in summary.best} == best_params
    assert query(home, f"select flow, status from runs where run_id = '{summary.run_id}'") == [
        ("sweep", "completed")
    ]
    report = Path(summary.report_path or "")
    assert report.is_absolute() and report.name == "report.html"
    html = report.read_text()
    assert "Best parameters per symbol" in html and "Risk and costs used" in html
    assert html.count(CHART_LIBRARY_BANNER) == 1 and 'class="heatmap"' in html
    for best in summary.best:
        params = json.loads(str(best["params"]))
        assert ", ".join(f"{k}={params[k]}" for k in GRID) + "</td>" in html  # the grid's
    summary_md = (report.parent / "summary.md").read_text()
    assert "best parameters" in summary_md and "![heatmap of sharpe](heatmap.png)" in summary_md
    heatmap = (report.parent / "heatmap.png").read_bytes()
    assert heatmap[:4] == b"\x89PNG"

    # the Prefect artifacts of this flow run: the summary, its heatmap embedded (no
    # file:// image, no image artifact showing a data URI as text)
    artifacts = _artifacts(summary.run_id)
    assert [(a.key, a.type) for a in artifacts] == [("sweep-summary", "markdown")]
    markdown = artifacts[0].data
    assert isinstance(markdown, str) and "file://" not in markdown
    assert f"`{report}`" in markdown
    (thumbnail,) = re.findall(r"!\[heatmap of sharpe\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)",
                              markdown)  # fmt: skip
    assert base64.b64decode(thumbnail)[:4] == b"\x89PNG"
    assert 2_000 < len(thumbnail) < 200_000
    assert markdown.startswith(f"# Sweep {summary.run_id}\n")
    assert "ranked by **sharpe**" in markdown
    assert "fast(3) x slow(2) = 6 combinations, 4 valid, 2 skipped" in markdown
    # its table is the rank-1 row of each symbol in sweep_results, in symbol order
    header, table = _markdown_table(markdown)
    assert header == ["symbol", "best parameters", *SHOWN, "PBO", "DSR", "overfit?"]
    named = [dict(zip(COLUMNS.split(", "), r, strict=True)) for r in rows]
    overfit = {r["symbol"]: r for r in _overfit_rows(home, summary.run_id)}
    expected = [
        [
            r["symbol"],
            ", ".join(f"{k}={json.loads(r['params'])[k]}" for k in GRID),
            *(_fmt(c, r[c]) for c in SHOWN),
            f"{overfit[r['symbol']]['pbo']:.3f}",
            f"{overfit[r['symbol']]['dsr']:.3f}",
            overfit_verdict(overfit[r["symbol"]]["pbo"], overfit[r["symbol"]]["dsr"])[1],
        ]
        for r in sorted(named, key=lambda r: r["symbol"])
        if r["rank"] == 1
    ]
    assert len(expected) == len(SYMBOLS)
    assert table == expected
    # the report's rank-1 rows say it too, and draw the logits and the degradation
    for symbol in SYMBOLS:
        assert escape(expected[sorted(SYMBOLS).index(symbol)][-1]) in html
    _check_overfit_rows(home, summary.run_id, GRID)
    assert html.count(": CSCV logits, 12,870 splits (PBO") == len(SYMBOLS)
    assert html.count("Sharpe of n*, in vs out of sample") == len(SYMBOLS)


def _overfit_rows(home: Path, run_id: str) -> list[dict[str, Any]]:
    frame = query_frame(home, f"select * from sweep_overfit where run_id = '{run_id}'")
    return frame.to_dict("records")


def _check_overfit_rows(home: Path, run_id: str, grid: dict[str, list[int]]) -> None:
    """Each symbol's sweep_overfit row equals hedgeflow.overfit on the combinations'
    per-bar returns recomputed through the normal path (signals -> engine); readers
    see finished runs only."""
    from hedgeflow.config import load_settings
    from hedgeflow.engine import EngineConfig
    from hedgeflow.sweep import expand_grid, sweep_returns
    from hedgeflow.warehouse import Warehouse

    stored = {r["symbol"]: r for r in _overfit_rows(home, run_id)}
    assert sorted(stored) == sorted(SYMBOLS)
    run = query_frame(home, f"select params from runs where run_id = '{run_id}'")
    params = json.loads(run["params"].iloc[0])
    plan = expand_grid("sma_cross", grid)
    for symbol in SYMBOLS:
        settings = load_settings(agents={"a": {"symbol": symbol, "strategy": "sma_cross"}})
        agent = settings.agents[0]
        config = EngineConfig.from_settings(
            agent.risk, settings.costs_for(agent), agent.asset_class,
            settings.portfolio.initial_equity,
        )  # fmt: skip
        bars = Warehouse(settings.home).read_bars(symbol, "5m", params["start"], params["end"])
        returns = sweep_returns(bars, plan, config)
        want = overfit_stats(returns, DEFAULT_BLOCKS)
        row = stored[symbol]
        assert (row["n_trials"], row["n_obs"], row["n_blocks"], row["n_splits"]) == (
            plan.size,
            len(bars) - 1,
            DEFAULT_BLOCKS,
            12_870,
        )
        assert row["best_params"] == params_json(plan.params[want.best])
        for key, value in want.summary().items():
            if isinstance(value, float):
                assert row[key] == pytest.approx(value, abs=1e-12, nan_ok=True), (symbol, key)
        assert row["overfit"] == want.overfit
        assert want.n_trials == plan.size and 0 <= want.pbo <= 1
    # readers see finished runs only: a run still running shows no sweep_overfit rows
    wh = Warehouse(home)
    wh.start_run("unfinished-1", "sweep", {}, "test")
    rows = query_frame(home, f"select * from sweep_overfit where run_id = '{run_id}'")
    wh.write_results("unfinished-1", {"sweep_overfit": rows.assign(run_id="unfinished-1")})
    assert query(home, "select count(*) from sweep_overfit")[0][0] == len(SYMBOLS)
    assert query(home, "select count(*) from store.sweep_overfit")[0][0] == 2 * len(SYMBOLS)


SHOWN = ("sharpe", "total_return", "max_drawdown", "n_trades", "win_rate")


def _fmt(name: str, value: object) -> str:
    """A metric as the summary prints it: percentages, counts, 2 decimals, "–" if missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if name == "n_trades":
        return str(int(value))  # type: ignore[call-overload]
    if name in ("total_return", "max_drawdown", "win_rate"):
        return f"{value:.2%}"
    return f"{value:.2f}"


def _markdown_table(text: str) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    assert len(cells) >= 2 and set("".join(cells[1])) <= set("-:"), text
    return cells[0], cells[2:]


def _artifacts(flow_run_id: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    only_this_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]))
    with get_client(sync_client=True) as client:
        return list(client.read_artifacts(artifact_filter=only_this_run))


def test_unknown_symbol_data_fails_its_branch_only(
    prefect_harness: None, hedgeflow_home: Path
) -> None:
    from hedgeflow.flows.sweep import sweep

    # Saturday 21 Nov 2026: no stock session; crypto trades 24x7.
    summary = sweep(symbols=SYMBOLS, strategy="donchian_breakout", days=1, end="2026-11-22")
    assert summary.status == "partial"
    assert set(summary.failed) == {"AAPL.US"} and "no 5m bars" in summary.failed["AAPL.US"]
    assert [b["symbol"] for b in summary.best] == ["BTC-USD.CC"]
    count = query(hedgeflow_home, "select count(*) from sweep_results")[0][0]
    assert count == 12  # the default donchian grid: 6 windows x 2 exit rules


@pytest.mark.slow  # .ci/run step 3 runs it; keeps the default suite under 10 min
def test_dask_local_cluster_gives_the_thread_runner_results(
    prefect_harness: None, hedgeflow_home: Path
) -> None:
    from hedgeflow.flows.sweep import sweep

    kwargs = {"symbols": SYMBOLS, "strategy": "sma_cross", "grid": GRID, "days": 3}
    threads = sweep(**kwargs, end="2026-11-20")
    dask = sweep(**kwargs, end="2026-11-20", task_runner="dask")
    assert threads.status == dask.status == "completed"
    assert dask.task_runner.startswith("dask LocalCluster")
    assert _rows(hedgeflow_home, threads.run_id) == _rows(hedgeflow_home, dask.run_id)
    assert len(_rows(hedgeflow_home, dask.run_id)) == 8


def test_cli_sweep_output_is_clean(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = run_cli(
        home,
        "sweep",
        "--strategy",
        "rsi_mean_revert",
        "--symbols",
        "EURUSD.FOREX",
        "--grid",
        "period=7,14",
        "--grid",
        "entry_rsi=25,30",
        "--days",
        "5",
        "--end",
        "2026-11-20",
    )
    assert_clean(proc)
    assert "best rsi_mean_revert parameters by sharpe" in proc.stdout
    assert "EURUSD.FOREX" in proc.stdout and "status: completed" in proc.stdout
    assert query(home, "select count(*) from sweep_results")[0][0] == 4
    # it ends with the absolute path of the run's tearsheet
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("report: ")
    report = Path(last.removeprefix("report: "))
    assert report.is_absolute() and report.name == "report.html" and report.is_file()
    (run_id,) = query(home, "select run_id from runs")[0]
    assert report == (home / "reports" / run_id / "report.html").resolve()


def test_cli_sweep_refuses_a_bad_grid_before_any_io(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = run_cli(
        home, "sweep", "--strategy", "sma_cross", "--grid", "fast=50", "--grid", "slow=5"
    )
    assert proc.returncode == 2
    assert "no valid combination" in proc.stderr
    assert not home.exists()


@pytest.mark.slow
def test_cli_sweep_on_a_local_dask_cluster_is_clean(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = run_cli(
        home, "sweep", "--strategy", "sma_cross", "--symbols", "BTC-USD.CC", "--days", "2",
        "--end", "2026-11-20", "--dask",
    )  # fmt: skip
    assert_clean(proc)
    assert "dask LocalCluster(2 workers)" in proc.stdout
    assert query(home, "select count(*) from sweep_results")[0][0] == 19
