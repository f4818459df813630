"""The real ``hedgeflow`` CLI in a subprocess, pointed at the session's Prefect test
server (``prefect_harness``) instead of starting an ephemeral server of its own."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e_helpers import run_cli


@pytest.fixture
def harness_api_url(prefect_harness: None) -> str:
    """The API URL of the session's Prefect test server."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the Prefect test harness is not running"
    return str(url)


def run_cli_on(
    api_url: str, home: Path, *args: str, timeout: float = 180, **extra: str
) -> subprocess.CompletedProcess[str]:
    """``run_cli`` with the flow runs reported to the server at ``api_url``."""
    return run_cli(home, *args, timeout=timeout, PREFECT_API_URL=api_url, **extra)
