from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hedgeflow.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[2]


def bars(start: str, periods: int, freq: str = "5min", close0: float = 100.0) -> pd.DataFrame:
    close = close0 + np.arange(periods, dtype=float) * 0.01
    return pd.DataFrame(
        {
            "ts": pd.date_range(start, periods=periods, freq=freq, tz="UTC"),
            "open": close,
            "high": close + 0.5,
            "low": close - 0.5,
            "close": close,
            "volume": np.full(periods, 10.0),
        }
    )


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "home", lock_timeout=20)


def run_python(code: str, *args: str, wait: bool = True) -> subprocess.Popen[str]:
    """Run ``code`` in a fresh interpreter with the repo importable."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if wait:
        proc.wait(timeout=120)
    return proc
