"""Runs that always end: Ctrl-C (SIGINT to the whole process group, as a terminal sends
it) and SIGTERM stop ``hedgeflow nightly`` and ``hedgeflow live`` within seconds with
exit 130 / 143 and one line; the ``runs`` row and the Prefect flow run end
``cancelled`` with the reason, and no process of the command is left. A SIGKILLed run
shows ``crashed`` after the next command, in the warehouse and in Prefect.

The commands report to the session's Prefect server (as to hedgeflow's resident one: a
server outside the command's process group).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e_helpers import NOISE_MARKERS, Harness, cli_env, query, read_line, run_cli
from tests.reliability.conftest import Tally

pytestmark = [pytest.mark.flow, pytest.mark.reliability, pytest.mark.slow]

CATEGORY = "runs that always end"
END = "2026-11-20"
STOP_WITHIN = 10.0  # seconds from the signal to the exit
WORDS = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM"}


def _start(home: Path, *args: str) -> subprocess.Popen[str]:
    home.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "hedgeflow.cli", *args],
        env=cli_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=home.parent,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def _wait_for(stream: object, marker: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = read_line(stream, deadline - time.monotonic())  # type: ignore[arg-type]
        if not line:
            raise AssertionError(f"the command ended before {marker!r}")
        if marker in line:
            return
    raise AssertionError(f"no {marker!r} within {timeout:.0f} s")


def _group_members(pgid: int) -> list[int]:
    out = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.info["pid"] != pgid and os.getpgid(proc.info["pid"]) == pgid:
                out.append(proc.info["pid"])
        except (ProcessLookupError, psutil.Error):
            continue
    return out


def _interrupt(proc: subprocess.Popen[str], signum: int) -> tuple[float, str, str]:
    """Send ``signum`` to the command's whole process group; (seconds to exit, out, err)."""
    t0 = time.monotonic()
    os.killpg(proc.pid, signum)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return time.monotonic() - t0, out, err


def _flow_run_states(harness: Harness, run_id: str) -> list[tuple[str, str | None]]:
    """(state name, message) of the flow run ``run_id`` and of its subflow runs."""
    top = httpx.get(f"{harness.api_url}/flow_runs/{run_id}", timeout=10).json()
    children = httpx.post(
        f"{harness.api_url}/flow_runs/filter",
        json={"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}},
        timeout=10,
    ).json()
    return [(r["state"]["name"], r["state"]["message"]) for r in [top, *children]]


def _check_ended(
    home: Path,
    harness: Harness,
    proc: subprocess.Popen[str],
    signum: int,
    took: float,
    err: str,
    flow: str,
) -> str:
    """The command stopped as promised; the cancelled run's id."""
    assert proc.returncode == 128 + signum, err[-3000:]
    assert took <= STOP_WITHIN, f"took {took:.1f} s to stop"
    noisy = [line for line in err.splitlines() if any(m in line for m in NOISE_MARKERS)]
    assert not noisy, noisy
    told = [line for line in err.splitlines() if line.startswith("hedgeflow:")]
    rows = query(home, "select run_id, status, reason from runs")
    assert len(rows) == 1, rows
    run_id, status, reason = rows[0]
    reason_text = f"stopped by {WORDS[signal.Signals(signum)]}"
    assert told == [f"hedgeflow: {reason_text}; run {run_id} cancelled"], err[-2000:]
    assert (status, reason) == ("cancelled", reason_text)
    states = _flow_run_states(harness, run_id)
    assert states and all(s == ("Cancelled", reason_text) for s in states), states
    assert not _group_members(proc.pid), "processes of the command were left behind"
    assert query(home, f"select count(*) from runs where flow = '{flow}'") == [(1,)]
    return str(run_id)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_nightly_within_seconds(
    tmp_path: Path, prefect_harness: Harness, tally: Tally, signum: int
) -> None:
    tally.describe(CATEGORY, "SIGINT / SIGTERM to the process group of `hedgeflow nightly`")
    home = tmp_path / "data"
    proc = _start(home, "nightly", "--end", END, "--days", "400")
    assert proc.stderr is not None
    _wait_for(proc.stderr, "bars stored")  # the flow runs: the window is being ingested
    took, _, err = _interrupt(proc, signum)
    _check_ended(home, prefect_harness, proc, signum, took, err, "nightly")
    # its results stay hidden (the finished-only views)
    assert query(home, "select count(*) from agent_metrics") == [(0,)]
    tally.trial()
    tally.fault(signal.Signals(signum).name)
    tally.outcome(f"nightly stopped in {took:.1f} s, exit {128 + signum}, run cancelled")
    tally.note(f"nightly {signal.Signals(signum).name} seconds", round(took, 2))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_live_within_seconds(
    tmp_path: Path, prefect_harness: Harness, tally: Tally, signum: int
) -> None:
    tally.describe(CATEGORY, "SIGINT / SIGTERM to the process group of `hedgeflow live`")
    home = tmp_path / "data"
    proc = _start(home, "live", "--speed", "600", "--duration", "600")
    assert proc.stdout is not None
    _wait_for(proc.stdout, "UTC")  # the first status line: it streams
    time.sleep(2)
    took, out, err = _interrupt(proc, signum)
    run_id = _check_ended(home, prefect_harness, proc, signum, took, err, "live")
    assert f"live run {run_id}" in out and "status: cancelled" in out, out[-2000:]
    # the final flush: every bar it built is stored
    assert query(home, "select count(*) > 0 from live_bars") == [(True,)]
    open_now = query(home, "select count(*) from live_positions where qty <> 0")[0][0]
    assert ("open positions stay open" in out) == (open_now > 0), out[-1500:]
    tally.trial()
    tally.fault(signal.Signals(signum).name)
    tally.outcome(f"live stopped in {took:.1f} s, exit {128 + signum}, run cancelled")
    tally.note(f"live {signal.Signals(signum).name} seconds", round(took, 2))


def test_a_killed_run_shows_crashed_after_the_next_command(
    tmp_path: Path, prefect_harness: Harness, tally: Tally
) -> None:
    tally.describe(CATEGORY, "SIGKILL of `hedgeflow nightly`, then any command")
    home = tmp_path / "data"
    proc = _start(home, "nightly", "--end", END, "--days", "400")
    assert proc.stderr is not None
    _wait_for(proc.stderr, "bars stored")
    _interrupt(proc, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert query(home, "select status from runs") == [("running",)]  # as the kill left it
    # sql reads a snapshot: it shows the run crashed without writing the warehouse
    seen = run_cli(home, "sql", "select status, reason from runs", "--format", "csv")
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.splitlines()[1].startswith('crashed,"its process (')
    assert query(home, "select status from runs") == [("running",)]
    listed = run_cli(home, "runs")
    assert listed.returncode == 0, listed.stderr
    (run_id, status, reason, process) = query(
        home, "select run_id, status, reason, process from runs"
    )[0]
    assert status == "crashed"
    assert process.endswith(f":{proc.pid}") and process in reason
    assert f"marked 1 run(s) whose process died as crashed: {run_id}" in listed.stderr
    assert "crashed" in listed.stdout and "ended without finishing" in listed.stdout
    # and so are its Prefect flow run and subflow runs (the server was up: no waiting for a
    # command that uses Prefect)
    states = _flow_run_states(prefect_harness, str(run_id))
    assert states and all(
        s == ("Crashed", "the process running it died (found by hedgeflow)") for s in states
    ), states
    # once: the next command has nothing left to mark
    again = run_cli(home, "runs")
    assert "crashed:" not in again.stderr
    tally.trial()
    tally.fault("SIGKILL")
    tally.outcome("crashed after the next command")
