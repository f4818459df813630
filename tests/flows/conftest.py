"""Flow tests run real Prefect flow runs against one test server per session."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(autouse=True)
def _shared_prefect_server(prefect_harness: object) -> None:
    """Every flow test reports to the session's Prefect test server (tests/conftest.py),
    and so does the ``hedgeflow`` CLI it starts, unless run with ``ephemeral=True``."""


@pytest.fixture()
def hedgeflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("HEDGEFLOW_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture(scope="session")
def live_cli_run(
    prefect_harness: object, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """(home, process) of one real ``hedgeflow live --duration 15`` against the local
    simulators, with the lively settings of test_live_cli (every market trades), shared
    by the tests that read a live record: test_live_cli checks its output and record,
    test_reconcile_flow reconciles copies of it. Read-only: copy the home to change it."""
    from tests.e2e_helpers import run_cli
    from tests.flows.test_live_cli import LIVELY, SPEED

    home = tmp_path_factory.mktemp("live-cli") / "home"
    proc = run_cli(home, "live", "--duration", "15", "--speed", SPEED, timeout=180, **LIVELY)
    return home, proc
