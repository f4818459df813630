"""Run the real ``hedgeflow`` command in a subprocess.

Against the session's Prefect test server when it runs (``prefect_harness`` in
tests/conftest.py publishes its URL as ``SHARED_PREFECT_API_ENV``), so a command does
not pay 15-20 s for an ephemeral server of its own; ``ephemeral=True`` runs it the way a
new user does, with Prefect's temporary server.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import duckdb
import numpy as np
import pandas as pd

NOISE_MARKERS = ("ERROR", "Traceback", "CancelledError", "CRITICAL")
# not PREFECT_* (a Prefect setting) nor HEDGEFLOW_* (a hedgeflow setting)
SHARED_PREFECT_API_ENV = "TEST_SHARED_PREFECT_API_URL"


@dataclass(frozen=True)
class Harness:
    """The session's Prefect test server (tests/conftest.py ``prefect_harness``)."""

    api_url: str
    database_files: tuple[Path, ...]  # the server's SQLite file (and its -wal / -shm)
    database_dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a subprocess flow run against the harness server."""
        return {"PREFECT_API_URL": self.api_url, **extra}

    def files(self) -> list[Path]:
        return sorted(p for p in self.database_dir.iterdir() if p.is_file())


def cli_env(home: Path, *, ephemeral: bool = False, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HEDGEFLOW_", "PREFECT_API_URL", SHARED_PREFECT_API_ENV))
    }
    env.update({"HEDGEFLOW_HOME": str(home), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    shared = os.environ.get(SHARED_PREFECT_API_ENV)
    if shared and not ephemeral:
        env["PREFECT_API_URL"] = shared
    if "PREFECT_API_URL" not in env:
        # Prefect's temporary server unless a test asks for hedgeflow's resident one
        # (HEDGEFLOW_PREFECT_SERVER="resident" with its own PREFECT_HOME, stopped after)
        env["HEDGEFLOW_PREFECT_SERVER"] = "ephemeral"
    env.update(extra)
    return env


def run_cli(
    home: Path, *args: str, timeout: float = 240, ephemeral: bool = False, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hedgeflow.cli", *args],
        env=cli_env(home, ephemeral=ephemeral, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=home.parent,
    )


def assert_clean(proc: subprocess.CompletedProcess[str]) -> None:
    """Exit 0 and no ERROR lines or tracebacks anywhere in the output."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    noisy = [line for line in output.splitlines() if any(m in line for m in NOISE_MARKERS)]
    assert not noisy, "\n".join(noisy[:20])


def query(home: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(home / "hedgeflow.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def query_frame(home: Path, sql: str) -> pd.DataFrame:
    """A query on the warehouse as a frame, retrying while a writer holds the file;
    an empty frame when the database or the table does not exist yet."""
    db = home / "hedgeflow.duckdb"
    if not db.exists():
        return pd.DataFrame()
    for _ in range(200):
        try:
            con = duckdb.connect(str(db), read_only=True)
        except duckdb.Error:
            time.sleep(0.05)
            continue
        try:
            return con.execute(sql).df()
        except duckdb.CatalogException:
            return pd.DataFrame()
        finally:
            con.close()
    raise AssertionError("the warehouse stayed locked")


def read_line(stream: IO[str], timeout: float) -> str:
    """The next line of a subprocess's text pipe, or AssertionError after ``timeout``
    seconds (a plain ``readline()`` blocks forever if the child never prints)."""
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"no output line within {timeout:.0f} s")
    # the pipe is readable: a whole line is there (the child flushes per line), or EOF
    return stream.readline()


def stop_group(proc: subprocess.Popen[Any], signals: tuple[int, ...], grace: float) -> int:
    """Stop a process started with ``start_new_session=True`` the way it expects:
    send each signal in turn to its whole process group, waiting up to ``grace``
    seconds after each for the leader to exit. Returns how many signals it took;
    AssertionError (after a SIGKILL of the group) if none was enough."""
    for sent, signum in enumerate(signals, start=1):
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            return sent - 1
        try:
            proc.wait(timeout=grace)
            return sent
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    raise AssertionError(f"pid {proc.pid} ignored {len(signals)} signal(s): killed")


def assert_live_bars_are_the_market(bars: pd.DataFrame, seed: int = 7) -> None:
    """Recorded ``live_bars`` rows are the synthetic market's bars (seed ``seed``): per
    symbol, no bar twice, no gap, no extra bar, the same open/high/low/close."""
    from hedgeflow.sources.synthetic import SyntheticMarket

    dups = bars.duplicated(["symbol", "interval", "ts"])
    assert not dups.any(), f"bars stored twice:\n{bars[dups].head()}"
    market = SyntheticMarket(seed)
    for symbol, got in bars.groupby("symbol"):
        first, last = got["ts"].iloc[0], got["ts"].iloc[-1]
        ref = market.fetch_bars(str(symbol), "5m", first, last + pd.Timedelta(minutes=5))
        assert list(got["ts"]) == list(ref["ts"]), f"{symbol}: gaps or extra bars"
        for col in ("open", "high", "low", "close"):
            np.testing.assert_array_equal(got[col], ref[col], err_msg=f"{symbol} {col}")


# --------------------------------------------------------------------------- headless browser

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)


def run_chromium(
    page: Path, profile: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Debian's ``chromium`` on a local page (offline: nothing else is fetched), with a
    fresh profile; its stderr carries the page's console as ``INFO:CONSOLE`` lines."""
    import shutil

    exe = shutil.which("chromium")
    if exe is None:
        import pytest

        pytest.skip("chromium is not installed (.ci/run installs it: apt-get install chromium)")
    return subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def console_messages(stderr: str) -> list[str]:
    """The page's console output (messages, uncaught errors) from chromium's stderr."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]
