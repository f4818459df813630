"""Deployments against a real local Prefect server on 127.0.0.1, exactly as the README
says: start a server, create the process work pool, deploy, start a worker, trigger
a nightly run with typed parameters and wait for it to complete."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e_helpers import query, stop_group

pytestmark = pytest.mark.flow

REPO = Path(__file__).resolve().parents[2]
PREFECT = [sys.executable, "-m", "prefect"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp: Path, api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HEDGEFLOW_"))}
    env.update(
        PREFECT_HOME=str(tmp / "prefect"),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        HEDGEFLOW_HOME=str(tmp / "data"),
        PYTHONUNBUFFERED="1",
        PREFECT_WORKER_QUERY_SECONDS="1",  # pick up each triggered run at once
        # The nightly deployment's cron (17:30 New York) must not add a run of its own
        # when the suite happens to run at that time (seen in CI at 22:27 UTC): the
        # schedule is deployed, the server's scheduler service is off.
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
    )
    return env


@pytest.fixture(scope="module")
def prefect_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("deploy")
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = _env(tmp, api_url)
    log = (tmp / "server.log").open("w")
    server = subprocess.Popen(
        [
            *PREFECT,
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--analytics-off",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{api_url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "Prefect server did not start in 90 s"
            time.sleep(0.5)
        yield tmp, env
    finally:
        log.close()
        stop_group(server, (signal.SIGTERM, signal.SIGKILL), grace=30)


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    proc = subprocess.run(
        args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _worker(tmp: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = (tmp / "worker.log").open("w")
    try:
        return subprocess.Popen(
            [*PREFECT, "worker", "start", "--pool", "hedgeflow-pool"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()  # the child has its own descriptor


def _stop_worker(worker: subprocess.Popen[bytes]) -> int:
    """Prefect's worker: the first SIGINT stops polling and lets running flow runs
    finish, a second one makes it SIGKILL itself (processutils.setup_signal_handlers_
    worker). An idle 3.9.1 worker does not always exit on the first, so give it 20 s,
    then escalate the way Prefect documents."""
    return stop_group(worker, (signal.SIGINT, signal.SIGINT), grace=20)


def _run_deployment(name: str, params: dict[str, object], env: dict[str, str]) -> None:
    _run(
        [*PREFECT, "deployment", "run", name, "--params", json.dumps(params),
         "--watch", "--watch-timeout", "240"],
        env,
        timeout=300,
    )  # fmt: skip


# Slow (a server of its own, five deployed runs: ~90 s), so the default suite stays
# under 10 minutes; .ci/run runs it explicitly, every time.
@pytest.mark.slow
@pytest.mark.timeout(900)  # five deployed runs, each a fresh worker subprocess
def test_deploy_start_worker_and_run_every_deployment(
    prefect_server: tuple[Path, dict[str, str]],
) -> None:
    tmp, env = prefect_server
    _run([*PREFECT, "work-pool", "create", "hedgeflow-pool", "--type", "process"], env)
    out = _run([*PREFECT, "--no-prompt", "deploy", "--all"], env)
    assert "nightly/nightly-backtest" in out
    listed = _run([*PREFECT, "deployment", "ls"], env)
    for name in ("nightly-backtest", "backfill", "parameter-sweep", "walk-forward", "live-signals"):
        assert name in listed
    inspected = _run([*PREFECT, "deployment", "inspect", "nightly/nightly-backtest"], env)
    assert "30 17 * * 1-5" in inspected and "America/New_York" in inspected

    worker = _worker(tmp, env)
    try:
        nightly = {
            "days": 2,
            "end": "2026-11-20T00:00:00Z",
            "agents": [
                {"name": "msft", "symbol": "MSFT.US", "strategy": "sma_cross",
                 "params": {"fast": 5, "slow": 20}},
                {"name": "eth", "symbol": "ETH-USD.CC", "strategy": "donchian_breakout",
                 "params": {"window": 10}, "risk": {"stop_pct": 0.02}},
            ],
            "allocation": "inverse_vol",
        }  # fmt: skip
        _run_deployment("nightly/nightly-backtest", nightly, env)
        backfill = {"symbols": ["EURUSD.FOREX"], "days": 1, "end": "2026-11-13T00:00:00Z"}
        _run_deployment("ingest/backfill", backfill, env)
        sweep = {
            "symbols": ["BTC-USD.CC"],
            "strategy": "donchian_breakout",
            "grid": {"window": [10, 20]},
            "days": 2,
            "end": "2026-11-20T00:00:00Z",
        }
        _run_deployment("sweep/parameter-sweep", sweep, env)
        walk = {
            "symbols": ["BTC-USD.CC"],
            "strategy": "donchian_breakout",
            "grid": {"window": [10, 20]},
            "train": "1d",
            "test": "12h",
            "days": 2,
            "end": "2026-11-20T00:00:00Z",
        }
        _run_deployment("walkforward/walk-forward", walk, env)
        # the long-lived deployment, bounded here by its duration parameter
        _run_deployment("live/live-signals", {"duration": 6, "speed": 600}, env)
    finally:
        signals_needed = _stop_worker(worker)
    assert signals_needed in (1, 2)

    home = tmp / "data"
    runs = query(home, "select flow, status from runs order by started_at")
    assert runs == [
        ("nightly", "completed"),
        ("ingest", "completed"),
        ("sweep", "completed"),
        ("walkforward", "completed"),
        ("live", "completed"),
    ], runs
    rows = query(home, "select agent, symbol, strategy, params from agent_metrics order by agent")
    assert [r[:3] for r in rows] == [
        ("eth", "ETH-USD.CC", "donchian_breakout"),
        ("msft", "MSFT.US", "sma_cross"),
    ]
    assert json.loads(rows[1][3])["fast"] == 5
    assert query(home, "select count(*) from portfolio_metrics") == [(3,)]
    # backfill: one forex day (24 h of 5-minute bars on a weekday)
    assert (
        query(
            home,
            "select count(*), min(ts), max(ts) from bars where symbol = 'EURUSD.FOREX' "
            "and ts >= '2026-11-12' and ts < '2026-11-13'",
        )[0][0]
        == 288
    )
    sweep_rows = query(
        home, "select params, rank from sweep_results where symbol = 'BTC-USD.CC' order by rank"
    )
    assert sorted(json.loads(p)["window"] for p, _ in sweep_rows) == [10, 20]
    assert [r for _, r in sweep_rows] == [1, 2]
    # walk-forward over 2 days: train 1 d, test 12 h, stepping 12 h: two folds
    wf = query(home, "select fold, n_train_bars, n_test_bars from walkforward_folds order by fold")
    assert wf == [(0, 288, 144), (1, 288, 144)], wf
    live_bars = query(home, "select count(*) from live_bars")[0][0]
    assert live_bars > 0
    logs = (tmp / "worker.log").read_text()
    assert "Finished in state Completed" in logs
    ended = [ln for ln in logs.splitlines() if "Finished in state" in ln]
    assert all("Completed" in ln for ln in ended), ended
    assert "Received SIGINT" in logs


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_nightly_custom_run_form_in_a_browser(
    prefect_server: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """Issue 14: the nightly-backtest "Custom run" page of the UI (the default, v2), in
    headless chromium: every parameter with its description and its None choice named
    (not a bare "(Optional)" on "None"), from the schema the server stored; and the
    server still refuses a wrong type before a run is created."""
    import html

    from tests.flows.run_form import chromium, deployment, form_problems, run_form_url

    _, env = prefect_server
    api_url = env["PREFECT_API_URL"]
    try:
        nightly = deployment(api_url, "nightly-backtest")  # deployed by the test above
    except ValueError:  # this test alone (-k)
        _run([*PREFECT, "work-pool", "create", "hedgeflow-pool", "--type", "process"], env)
        _run([*PREFECT, "--no-prompt", "deploy", "--all"], env)
        nightly = deployment(api_url, "nightly-backtest")
    schema = nightly["parameter_openapi_schema"]
    assert form_problems(schema) == []
    assert "Scheduled on cron" in nightly["description"]

    proc = chromium(run_form_url(api_url, nightly["id"]), tmp_path / "profile", "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    for name, prop in schema["properties"].items():
        assert f">{name} (Optional)<" in dom, name
        assert html.escape(prop["description"], quote=False) in dom, name
    # the None choices are named for what they mean, and no bare "None" toggle is left
    # all but end and trading_days_only
    assert dom.count(">configured<") == len(schema["properties"]) - 2
    assert ">now<" in dom and ">no<" in dom and ">None<" not in dom
    assert "Set by HEDGEFLOW_LOOKBACK_DAYS or in hedgeflow.toml" in dom

    def runs() -> int:
        answer = urllib.request.urlopen(
            urllib.request.Request(
                f"{api_url}/flow_runs/count", data=b"{}", method="POST",
                headers={"content-type": "application/json"},
            ),
            timeout=30,
        )  # fmt: skip
        return int(json.load(answer))

    before = runs()
    refused = subprocess.run(
        [*PREFECT, "deployment", "run", "nightly/nightly-backtest", "--params", '{"days": "ten"}'],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode != 0, refused.stdout
    assert "days" in refused.stdout + refused.stderr
    assert runs() == before
