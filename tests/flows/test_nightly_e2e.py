"""`hedgeflow nightly` end to end, as a user runs it, and SQL while it writes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from hedgeflow.prefect_server import healthy, is_running, read_state
from hedgeflow.tearsheet import CHART_LIBRARY_BANNER
from tests.e2e_helpers import assert_clean, cli_env, console_messages, query, run_chromium, run_cli

pytestmark = pytest.mark.flow

END = "2026-11-20"


@dataclass(frozen=True)
class Resident:
    """hedgeflow's resident Prefect server of this module (its own PREFECT_HOME)."""

    prefect_home: Path

    def cli(self, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """The ``hedgeflow`` command with no PREFECT_API_URL, on this server."""
        return run_cli(
            home,
            *args,
            ephemeral=True,
            PREFECT_HOME=str(self.prefect_home),
            HEDGEFLOW_PREFECT_SERVER="resident",
        )


@pytest.fixture(scope="module")
def resident(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Resident]:
    """As a new user runs hedgeflow: no PREFECT_API_URL, so the first flow command starts
    hedgeflow's resident Prefect server and later ones reuse it; stopped at the end
    (``hedgeflow server stop``), and no process of it may remain."""
    prefect_home = tmp_path_factory.mktemp("prefect-home")
    server = Resident(prefect_home)
    yield server
    stop = server.cli(prefect_home / "unused", "server", "stop")
    assert stop.returncode == 0, stop.stderr
    left = [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if "server" in (p.info["cmdline"] or [])
        and any(str(prefect_home) in str(v) for v in _environ(p).values())
    ]
    assert not left, f"Prefect server processes left: {left}"


def _environ(proc: psutil.Process) -> dict[str, str]:
    try:
        return dict(proc.environ())
    except psutil.Error:
        return {}


@pytest.fixture(scope="module")
def nightly_home(
    tmp_path_factory: pytest.TempPathFactory, resident: Resident
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    home = tmp_path_factory.mktemp("nightly") / "data"
    proc = resident.cli(home, "nightly", "--end", END)
    return home, proc


def test_the_resident_prefect_server_starts_once_and_is_reused(
    nightly_home: tuple[Path, subprocess.CompletedProcess[str]], resident: Resident
) -> None:
    """The first command started it (said once, with the UI address), detached in its own
    session; the next command reuses it (faster, silent); ``server status`` shows it."""
    home, first = nightly_home
    started = [line for line in first.stderr.splitlines() if "started a local Prefect" in line]
    assert len(started) == 1, first.stderr[-2000:]
    state = read_state(resident.prefect_home)
    assert state is not None and f"UI at {state.url}" in started[0]
    assert os.getsid(state.pid) == state.pid != os.getsid(0)  # out of the terminal's group
    assert is_running(state) and healthy(state.url)
    other = home.parent / "other"  # not the nightly's warehouse: other tests read its runs
    again = resident.cli(other, "ingest", "--days", "1", "--end", END, "--symbols", "BTC-USD.CC")
    assert_clean(again)
    assert "started a local Prefect" not in again.stderr
    after = read_state(resident.prefect_home)
    assert after is not None and after.pid == state.pid  # the same server, reused
    status = resident.cli(home, "server", "status")
    assert status.returncode == 0, status.stderr
    assert f"Prefect server at {state.url} (UI), pid {state.pid}" in status.stdout
    assert "healthy" in status.stdout
    # the flow runs are on that server, complete
    runs = httpx.post(f"{state.api_url}/flow_runs/filter", json={"limit": 10}, timeout=10)
    states = sorted(
        (r["name"], r["state_type"]) for r in runs.json() if not r["parent_task_run_id"]
    )
    assert len(states) == 2 and {s for _, s in states} == {"COMPLETED"}, states


def test_nightly_output_is_clean_and_prints_metrics(
    nightly_home: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    home, proc = nightly_home
    assert_clean(proc)
    for name in ("stocks", "forex", "crypto", "equal", "inverse_vol", "risk_parity", "sharpe"):
        assert name in proc.stdout
    assert "status: completed" in proc.stdout
    # the last line: the run's tearsheet, absolute
    (run_id,) = query(home, "select run_id from runs")[0]
    last = proc.stdout.strip().splitlines()[-1]
    assert last == f"report: {(home / 'reports' / run_id / 'report.html').resolve()}"


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
    assert "Best agent" in text and "![equity](equity.png)" in text and "file://" not in text
    assert f"`{report.parent.resolve() / 'report.html'}`" in text
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
    nightly_home: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
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
    assert path.is_absolute() and path.is_file()
    html = path.read_text()
    assert html.count(CHART_LIBRARY_BANNER) == 1  # self-contained, the library once
    assert "stocks" in html and "risk parity" in html
    assert path.stat().st_size <= 5_000_000  # the default nightly report
    missing = run_cli(home, "report", "ffffffff")
    assert missing.returncode == 2 and "no report for run" in missing.stderr
    # a run without a tearsheet: an account of it, no traceback; nothing to --open
    other = tmp_path / "data"
    ingest = run_cli(other, "ingest", "--days", "1", "--end", END, "--symbols", "BTC-USD.CC")
    assert ingest.returncode == 0, ingest.stderr
    (ingest_id,) = query(other, "select run_id from runs where flow = 'ingest'")[0]
    card = run_cli(other, "report", ingest_id[:8])
    assert card.returncode == 0 and card.stderr == "", card.stderr
    assert f"run {ingest_id} (ingest): completed" in card.stdout
    assert "no HTML report" in card.stdout and "quarantine" in card.stdout
    opened = run_cli(other, "report", ingest_id, "--open")
    assert opened.returncode == 1 and "no HTML report to open" in opened.stderr
    assert "Traceback" not in opened.stderr
    # a reporting run whose report is gone
    path.rename(path.with_suffix(".bak"))
    try:
        gone = run_cli(home, "report", run_id)
    finally:
        path.with_suffix(".bak").rename(path)
    assert gone.returncode == 1 and "has no report" in gone.stderr


def test_report_renders_in_headless_chromium(
    nightly_home: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """The default nightly tearsheet in a real browser, offline: no JavaScript error,
    every chart drawn (plotly's SVG in each plot div), tables inside a 1,400 px page."""
    home, _ = nightly_home
    (page,) = (home / "reports").glob("*/report.html")
    n_plots = page.read_text().count('<div class="plot"')
    assert n_plots == 3 * 3 + 2  # per agent: price, equity, rolling Sharpe; portfolio: 2
    proc = run_chromium(
        page, tmp_path / "profile", "--window-size=1400,2400", "--virtual-time-budget=30000",
        "--dump-dom",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert console_messages(proc.stderr) == [], console_messages(proc.stderr)
    assert 'class="js-error"' not in dom
    assert f'data-charts-rendered="{n_plots}"' in dom
    plots = re.findall(r'<div class="plot[^"]*" id="plot-\d+"[^>]*>(.*?)<script', dom, re.S)
    assert len(plots) == n_plots
    assert all('class="main-svg"' in p for p in plots)
    # the page fits a 1,400 px window: wide tables scroll inside their box
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.read_text().replace(
            "</body>",
            "<script>setTimeout(function(){document.body.dataset.scrollWidth="
            "document.documentElement.scrollWidth;},3000);</script></body>",
        )
    )
    proc = run_chromium(
        probe, tmp_path / "profile1", "--window-size=1400,2400", "--virtual-time-budget=30000",
        "--dump-dom",
    )  # fmt: skip
    (width,) = re.findall(r'data-scroll-width="(\d+)"', proc.stdout)
    assert int(width) <= 1400, width
    shot = tmp_path / "report.png"
    proc = run_chromium(
        page, tmp_path / "profile2", "--window-size=1400,2400", "--virtual-time-budget=30000",
        f"--screenshot={shot}",
    )  # fmt: skip
    assert proc.returncode == 0 and console_messages(proc.stderr) == []
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 100_000


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
