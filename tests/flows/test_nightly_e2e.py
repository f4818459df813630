"""`hedgeflow nightly` end to end, as a user runs it, and SQL while it writes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e_helpers import assert_clean, cli_env, query, run_cli

pytestmark = pytest.mark.flow

END = "2026-11-20"


@pytest.fixture(scope="module")
def nightly_home(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    home = tmp_path_factory.mktemp("nightly") / "data"
    # as the Quickstart runs it: Prefect's temporary server, no PREFECT_API_URL
    proc = run_cli(home, "nightly", "--end", END, ephemeral=True)
    return home, proc


def test_nightly_output_is_clean_and_prints_metrics(
    nightly_home: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    _, proc = nightly_home
    assert_clean(proc)
    for name in ("stocks", "forex", "crypto", "equal", "inverse_vol", "risk_parity", "sharpe"):
        assert name in proc.stdout
    assert "status: completed" in proc.stdout


def test_nightly_fills_every_table(
    nightly_home: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    home, _ = nightly_home
    rows = query(home, "select agent, symbol, strategy, n_trades from agent_metrics order by agent")
    assert [(a, s, st) for a, s, st, _ in rows] == [
        ("crypto", "BTC-USD.CC", "donchian_breakout"),
        ("forex", "EURUSD.FOREX", "rsi_mean_revert"),
        ("stocks", "AAPL.US", "sma_cross"),
    ]
    assert all(n >= 1 for *_, n in rows), rows
    assert query(home, "select count(distinct method) from portfolio_metrics") == [(3,)]
    for table in ("trades", "equity", "signals"):
        (count,) = query(home, f"select count(*) from {table}")[0]
        assert count > 0, table
    assert query(home, "select count(*) from equity where agent = 'portfolio'")[0][0] > 0
    assert query(home, "select flow, status, finished_at is not null from runs") == [
        ("nightly", "completed", True)
    ]
    # trades agree with agent_metrics
    assert query(
        home,
        "select count(*) from agent_metrics m where n_trades <> "
        "(select count(*) from trades t where t.agent = m.agent and t.run_id = m.run_id)",
    ) == [(0,)]
    report = next((home / "reports").glob("*/summary.md"))
    text = report.read_text()
    assert "Best agent" in text and "equity.png" in text
    assert (report.parent / "equity.png").stat().st_size > 10_000


def test_sql_works_while_a_nightly_run_writes(tmp_path: Path) -> None:
    """Readers keep getting answers (never a lock error) while a nightly run writes,
    and never see a half-written run."""
    home = tmp_path / "data"
    writer = subprocess.Popen(
        [sys.executable, "-m", "hedgeflow.cli", "nightly", "--end", END, "--days", "10"],
        env=cli_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    answers = 0
    deadline = time.monotonic() + 240
    try:
        while writer.poll() is None and time.monotonic() < deadline:
            if (home / "hedgeflow.duckdb").exists():
                proc = run_cli(
                    home,
                    "sql",
                    "select (select count(*) from agent_metrics), (select count(*) from runs)",
                    "--format",
                    "csv",
                    timeout=60,
                )
                assert proc.returncode == 0, proc.stderr
                n_metrics = int(proc.stdout.splitlines()[1].split(",")[0])
                assert n_metrics in (0, 3)  # all of the run's agents or none of them
                answers += 1
            else:
                time.sleep(0.2)
    finally:
        out, _ = writer.communicate(timeout=240)
    assert writer.returncode == 0, out[-3000:]
    assert answers >= 2
    assert query(home, "select count(*) from agent_metrics") == [(3,)]


def test_runs_and_report_commands(
    nightly_home: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    home, _ = nightly_home
    (run_id,) = query(home, "select run_id from runs")[0]
    listed = run_cli(home, "runs")
    assert listed.returncode == 0, listed.stderr
    assert run_id[:8] in listed.stdout and "completed" in listed.stdout
    assert "portfolio:equal" in listed.stdout
    shown = run_cli(home, "report", run_id[:8])
    assert shown.returncode == 0, shown.stderr
    path = Path(shown.stdout.strip())
    assert path.name == "report.html" and run_id in str(path)
    html = path.read_text()
    assert html.count("data:image/png;base64,") == 2  # self-contained charts
    assert "stocks" in html and "risk_parity" in html
    missing = run_cli(home, "report", "ffffffff")
    assert missing.returncode == 2 and "no report for run" in missing.stderr


def test_readme_sql_examples_run_and_show_the_latest_run(
    nightly_home: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """Every `hedgeflow sql "..."` of the README runs; the agent_metrics example shows one
    row per agent (the latest nightly run), not one per agent per run."""
    import re
    import shutil

    import duckdb

    source, _ = nightly_home
    home = tmp_path / "data"
    shutil.copytree(source, home)
    with duckdb.connect(str(home / "hedgeflow.duckdb")) as con:  # a second, later run
        con.execute(
            "insert into store.runs select * replace ('run-2' as run_id, "
            "started_at + interval 1 day as started_at) from store.runs where flow = 'nightly'"
        )
        con.execute(
            "insert into store.agent_metrics select * replace ('run-2' as run_id) "
            "from store.agent_metrics"
        )
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    examples = re.findall(r'^hedgeflow sql "(.*?)"', readme, flags=re.S | re.M)
    assert len(examples) >= 4
    for sql in examples:
        proc = run_cli(home, "sql", sql, "--format", "csv", timeout=60)
        assert proc.returncode == 0, (sql, proc.stderr)
        if "from agent_metrics" in sql:
            agents = [line.split(",")[0] for line in proc.stdout.splitlines()[1:]]
            assert sorted(agents) == ["crypto", "forex", "stocks"], proc.stdout
