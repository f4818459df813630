"""The sweep flow under Prefect's test harness; the CLI in a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e_helpers import assert_clean, query, run_cli

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
    from flows.sweep import sweep

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
    assert "best parameters" in report.read_text()
    assert (report.parent / "heatmap.png").read_bytes()[:4] == b"\x89PNG"


def test_unknown_symbol_data_fails_its_branch_only(
    prefect_harness: None, hedgeflow_home: Path
) -> None:
    from flows.sweep import sweep

    # Saturday 21 Nov 2026: no stock session; crypto trades 24x7.
    summary = sweep(symbols=SYMBOLS, strategy="donchian_breakout", days=1, end="2026-11-22")
    assert summary.status == "partial"
    assert set(summary.failed) == {"AAPL.US"} and "no 5m bars" in summary.failed["AAPL.US"]
    assert [b["symbol"] for b in summary.best] == ["BTC-USD.CC"]
    count = query(hedgeflow_home, "select count(*) from sweep_results")[0][0]
    assert count == 12  # the default donchian grid: 6 windows x 2 exit rules


def test_dask_local_cluster_gives_the_thread_runner_results(
    prefect_harness: None, hedgeflow_home: Path
) -> None:
    from flows.sweep import sweep

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
