"""Flow tests run real Prefect flow runs against one test server per session."""

from __future__ import annotations

import os
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
