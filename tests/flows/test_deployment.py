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

from tests.e2e_helpers import query

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
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    proc = subprocess.run(
        args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_deploy_start_worker_and_run_nightly(prefect_server: tuple[Path, dict[str, str]]) -> None:
    tmp, env = prefect_server
    _run([*PREFECT, "work-pool", "create", "hedgeflow-pool", "--type", "process"], env)
    out = _run([*PREFECT, "--no-prompt", "deploy", "--all"], env)
    assert "nightly/nightly-backtest" in out
    listed = _run([*PREFECT, "deployment", "ls"], env)
    for name in ("nightly-backtest", "backfill", "parameter-sweep", "live-signals"):
        assert name in listed

    worker_log = (tmp / "worker.log").open("w")
    worker = subprocess.Popen(
        [*PREFECT, "worker", "start", "--pool", "hedgeflow-pool"],
        env=env,
        cwd=REPO,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        params = {
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
        _run(
            [*PREFECT, "deployment", "run", "nightly/nightly-backtest", "--params",
             json.dumps(params), "--watch", "--watch-timeout", "240"],
            env,
            timeout=300,
        )  # fmt: skip
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
        worker_log.close()

    home = tmp / "data"
    assert query(home, "select flow, status from runs") == [("nightly", "completed")]
    rows = query(home, "select agent, symbol, strategy, params from agent_metrics order by agent")
    assert [r[:3] for r in rows] == [
        ("eth", "ETH-USD.CC", "donchian_breakout"),
        ("msft", "MSFT.US", "sma_cross"),
    ]
    assert json.loads(rows[1][3])["fast"] == 5
    assert query(home, "select count(*) from portfolio_metrics") == [(3,)]
    logs = (tmp / "worker.log").read_text()
    assert "Finished in state Completed" in logs
