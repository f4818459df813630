"""``hedgeflow live`` under the faults of issue 15, for real, in subprocesses:

* a slow reader (another process holding a read-only DuckDB connection for longer than
  the writers' old 30 s give-up) during a run: the run keeps processing bars, stores
  its backlog from the journal once the file is free, and ends ``completed`` with every
  bar and fill it reported stored exactly once (slow);
* a SIGKILL while the backlog waits in the journal, then a restart: every journaled
  bar and fill is stored, none twice, and the record continues without a gap (slow);
* dead feeds (accepts and never answers, closes at once, one 10 MB frame): the run
  ends ``failed`` with the reason stored and printed, rc 1;
* one live runner per warehouse: a second one is refused (rc 2, naming the first's pid
  and run id); the lock of a SIGKILLed runner is taken over and its run marked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from hedgeflow.live.journal import Journal
from hedgeflow.sources.simulator import Simulator
from hedgeflow.warehouse import WarehousePaths
from tests.e2e_helpers import (
    NOISE_MARKERS,
    assert_live_bars_are_the_market,
    cli_env,
    query_frame,
    read_line,
    run_cli,
    stop_group,
)
from tests.reliability.conftest import Tally

pytestmark = [pytest.mark.flow, pytest.mark.reliability]
CATEGORY = "second campaign"


@pytest.fixture(autouse=True)
def _shared_prefect_server(prefect_harness: object) -> None:
    """The ``hedgeflow`` CLI these tests start reports to the session's Prefect server."""


TOKEN = "live-reliability-token"
# a reader that opens the warehouse read-only (this locks every writer out), says so,
# and holds it for argv[2] seconds or until its stdin closes
READER = """
import sys, time, duckdb, select
deadline = time.monotonic() + 60
while True:  # the live writer holds the file for a moment per bar: retry until it is free
    try:
        con = duckdb.connect(sys.argv[1], read_only=True)
        break
    except duckdb.Error:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.005)
con.execute("SELECT count(*) FROM live_bars").fetchall()
print("open", flush=True)
select.select([sys.stdin], [], [], float(sys.argv[2]))
con.close()
print("closed", flush=True)
"""
CRYPTO_ONLY = {
    "HEDGEFLOW_AGENTS__STOCKS": "false",
    "HEDGEFLOW_AGENTS__FOREX": "false",
    "HEDGEFLOW_LOOKBACK_DAYS": "1",
}


def start_live(home: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    home.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "hedgeflow.cli", "live", *args],
        env=cli_env(home, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=home.parent,
        start_new_session=True,
    )


def wait_streaming(proc: subprocess.Popen[str], timeout: float = 150) -> str:
    """Read stdout until the first status line (the run streams); that line."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = read_line(proc.stdout, deadline - time.monotonic())
        if not line:
            raise AssertionError(f"live exited early: {proc.wait()} {proc.stderr.read()}")  # type: ignore[union-attr]
        if line.startswith("[") and "UTC" in line:
            return line
    raise AssertionError("no status line")


@contextlib.contextmanager
def reader(db: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", READER, str(db), str(seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert read_line(proc.stdout, 60).strip() == "open"
        yield proc
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=60)


def live_run(home: Path) -> dict[str, Any]:
    runs = query_frame(home, "SELECT run_id, status, summary FROM runs WHERE flow = 'live'")
    assert len(runs) >= 1
    row = runs.iloc[-1].to_dict()
    row["summary"] = json.loads(row["summary"] or "{}")
    return row


def reported_agents(stdout: str) -> dict[str, dict[str, int]]:
    """agent -> bars, fills of the final summary table."""
    out = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) >= 8 and cells[3].isdigit():
            out[cells[0]] = {"bars": int(cells[3]), "fills": int(cells[7])}
    return out


def assert_stored_once(home: Path, run_id: str, reported: dict[str, dict[str, int]]) -> None:
    bars = query_frame(home, f"SELECT * FROM live_bars WHERE run_id = '{run_id}'")
    assert not bars.duplicated(["symbol", "interval", "ts"]).any()
    signals = query_frame(home, f"SELECT agent, symbol FROM live_signals WHERE run_id = '{run_id}'")
    fills = query_frame(home, f"SELECT * FROM live_fills WHERE run_id = '{run_id}'")
    assert not fills.duplicated(["fill_id"]).any()
    for agent, numbers in reported.items():
        symbol = signals.loc[signals["agent"] == agent, "symbol"].iloc[0]
        assert (bars["symbol"] == symbol).sum() == numbers["bars"], agent
        assert (fills["agent"] == agent).sum() == numbers["fills"], agent
    assert_live_bars_are_the_market(bars)


def journal_files(home: Path) -> list[Path]:
    return WarehousePaths.at(home).live_journals()


# --------------------------------------------------------------------------- slow reader


@pytest.mark.slow
def test_a_slow_reader_does_not_make_the_live_run_drop_work(tmp_path: Path, tally: Tally) -> None:
    tally.describe(CATEGORY, "`hedgeflow live` while a reader holds the warehouse 38 s")
    home = tmp_path / "home"
    live = start_live(home, "--duration", "75", "--speed", "300")
    try:
        wait_streaming(live)
        assert live.stdout is not None
        time.sleep(3)
        during: list[str] = []
        t0 = time.monotonic()
        with reader(home / "hedgeflow.duckdb", 38):
            # the loop keeps processing bars while the writers are locked out
            while time.monotonic() - t0 < 36:
                line = read_line(live.stdout, 30)
                if line.startswith("["):
                    during.append(line)
            held = time.monotonic() - t0
            # the journal holds the backlog meanwhile
            backlog = sum(len(Journal.peek(p)) for p in journal_files(home))
        out, err = live.communicate(timeout=180)
    finally:
        if live.poll() is None:
            stop_group(live, (signal.SIGINT, signal.SIGKILL), 20)
    assert held > 35
    output = out + err
    assert live.returncode == 0, output[-3000:]
    noisy = [ln for ln in output.splitlines() if any(m in ln for m in NOISE_MARKERS)]
    assert not noisy, noisy
    ticks = [int(re.search(r"([\d,]+) ticks", ln).group(1).replace(",", "")) for ln in during]  # type: ignore[union-attr]
    assert len(ticks) >= 10 and ticks[-1] > ticks[0]  # streaming went on
    # and said that the steps wait in the journal
    assert re.search(r"\d+ steps journaled \(warehouse busy\)", during[-1]), during[-1]
    assert backlog >= 20, backlog
    run = live_run(home)
    print(f"slow reader held {held:.1f} s; backlog seen {backlog}; run summary {run['summary']}")
    assert run["status"] == "completed", run
    assert run["summary"]["journal"]["busy_seconds"] > 30
    assert run["summary"]["journal"]["max_backlog"] >= backlog
    reported = reported_agents(out)
    assert set(reported) == {"stocks", "forex", "crypto"}
    assert_stored_once(home, run["run_id"], reported)
    assert sum(a["bars"] for a in reported.values()) == run["summary"]["bars"]
    assert "locked by another process" in out
    assert journal_files(home) == []  # all stored: nothing left to replay
    tally.trial()
    tally.note("reader held (s)", round(held, 1))
    tally.note("largest journaled backlog (steps)", run["summary"]["journal"]["max_backlog"])
    tally.note("bars stored", run["summary"]["bars"])
    tally.outcome("streamed on; every bar and fill stored once; completed")


# --------------------------------------------------------------------------- SIGKILL


@pytest.mark.slow
def test_a_sigkill_with_a_backlog_loses_nothing_and_stores_nothing_twice(
    tmp_path: Path, tally: Tally
) -> None:
    tally.describe(CATEGORY, "SIGKILL of `hedgeflow live` with a journaled backlog, restart")
    home = tmp_path / "home"
    live = start_live(home, "--duration", "600", "--speed", "1500")
    try:
        wait_streaming(live)
        with reader(home / "hedgeflow.duckdb", 120):
            deadline = time.monotonic() + 60
            pending: list[tuple[int, Any]] = []
            while time.monotonic() < deadline:
                pending = [e for p in journal_files(home) for e in Journal.peek(p)]
                if len(pending) >= 30:
                    break
                time.sleep(0.5)
            os.killpg(live.pid, signal.SIGKILL)
            live.wait(30)
            pending = [e for p in journal_files(home) for e in Journal.peek(p)]
    finally:
        if live.poll() is None:
            os.killpg(live.pid, signal.SIGKILL)
            live.wait(30)
    assert len(pending) >= 30
    journaled_bars = pd.concat([item["live_bars"] for _, item in pending], ignore_index=True)
    fill_frames = [item["live_fills"] for _, item in pending if "live_fills" in item]
    journaled_fills = pd.concat(fill_frames, ignore_index=True) if fill_frames else None
    run_before = live_run(home)
    assert run_before["status"] == "running"
    stored_before = query_frame(home, "SELECT symbol, ts FROM live_bars")
    key = ["symbol", "ts"]
    missing = journaled_bars.merge(stored_before, on=key, how="left", indicator=True)
    assert (missing["_merge"] == "left_only").sum() >= 25  # the backlog was not stored

    proc = run_cli(home, "live", "--duration", "4", "--speed", "1500", timeout=240)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    run = live_run(home)
    assert run["run_id"] == run_before["run_id"] and run["status"] == "completed"
    bars = query_frame(home, "SELECT * FROM live_bars")
    assert_live_bars_are_the_market(bars)  # no bar twice, no gap
    got = journaled_bars.merge(bars[[*key, "close"]], on=key, how="left", suffixes=("", "_db"))
    assert got["close_db"].notna().all()  # every journaled bar is stored
    assert (got["close"] == got["close_db"]).all()
    if journaled_fills is not None and len(journaled_fills):
        fills = query_frame(home, "SELECT * FROM live_fills")
        assert not fills.duplicated(["run_id", "fill_id"]).any()
        assert set(journaled_fills["fill_id"]) <= set(fills["fill_id"])
    assert journal_files(home) == []
    tally.trial()
    tally.fault("SIGKILL")
    tally.note("journaled steps at the kill", len(pending))
    tally.outcome("backlog stored once on restart; run completed")


# --------------------------------------------------------------------------- dead feeds


class DeadFeed:
    """A 'WebSocket feed' on 127.0.0.1 that misbehaves one way, on every connection:
    ``silent`` accepts the TCP connection and never answers; ``close`` closes it at
    once; ``oversized`` completes the handshake, sends the status frame, then one
    10 MB frame. ``close_codes``: what the client closed with (``oversized``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.connections = 0
        self.close_codes: list[int | None] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def __enter__(self) -> DeadFeed:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def _run(self) -> None:
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        held: list[asyncio.StreamWriter] = []
        if self.kind == "oversized":
            from websockets.asyncio.server import ServerConnection, serve

            async def handler(ws: ServerConnection) -> None:
                self.connections += 1
                await ws.send(json.dumps({"status_code": 200, "message": "Authorized"}))
                with contextlib.suppress(Exception):
                    await ws.send("x" * (10 * 1024 * 1024))
                await ws.wait_closed()
                self.close_codes.append(ws.close_code)

            async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
                self.port = next(iter(server.sockets)).getsockname()[1]
                self._ready.set()
                await self._stop.wait()
            return

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            if self.kind == "close":
                writer.close()
            else:
                held.append(writer)  # silent: keep it open, never answer

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0, family=socket.AF_INET)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
        for w in held:
            w.close()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("silent", r"no tick at all for \d+ s \(the silence limit is 4 s\)"),
        pytest.param(
            "close",
            r"\d+ connections in a row to the crypto feed delivered no tick",
            marks=pytest.mark.slow,  # ~7 s each; .ci/run runs them in step 3
        ),
        pytest.param(
            "oversized",
            r"\d+ connections in a row to the crypto feed delivered no tick",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_a_dead_feed_fails_the_run_with_its_reason(
    tmp_path: Path, kind: str, reason: str, tally: Tally
) -> None:
    tally.describe(CATEGORY, f"dead live feed: {kind}")
    home = tmp_path / "home"
    silence = "4" if kind == "silent" else "60"
    with Simulator(seed=7, tokens=(TOKEN,)) as rest, DeadFeed(kind) as feed:
        t0 = time.monotonic()
        proc = run_cli(
            home, "live", "--source", "eodhd", "--duration", "90", "--max-silence", silence,
            EODHD_API_TOKEN=TOKEN,
            HEDGEFLOW_NETWORK__BASE_URL=rest.base_url,
            HEDGEFLOW_NETWORK__WS_URL=feed.ws_url,
            **CRYPTO_ONLY,
            timeout=240,
        )  # fmt: skip
        took = time.monotonic() - t0
        connections, codes = feed.connections, list(feed.close_codes)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert "Traceback" not in output
    assert re.search(r"status: failed \(" + reason, proc.stdout), proc.stdout[-2000:]
    assert took < 80  # stopped on the fault, not by --duration
    run = live_run(home)
    assert run["status"] == "failed"
    assert re.fullmatch(reason, run["summary"]["reason"]), run["summary"]
    assert run["summary"]["ticks"] == 0
    assert connections >= (1 if kind == "silent" else 3)
    if kind == "oversized":
        assert 1009 in codes  # the client refused the frame (message too big) unread
        assert re.search(r"\b[1-9]\d* bad frames", proc.stdout)
    tally.trial()
    tally.fault(kind)
    tally.outcome("run failed with its reason, exit 1")


def test_max_silence_is_checked(tmp_path: Path, tally: Tally) -> None:
    tally.describe(CATEGORY, "`hedgeflow live --max-silence -1`")
    proc = run_cli(tmp_path / "home", "live", "--max-silence", "-1", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "hedgeflow: error: --max-silence must be in [0, 10000000] seconds (0: no limit), got -1.0"
    ]
    tally.trial()
    tally.outcome("refused (exit 2, one line)")


# --------------------------------------------------------------------------- one runner


@pytest.mark.slow  # three CLI runs, ~35 s (tests/tasks/test_live_journal.py has the fast lock test)
def test_a_second_live_runner_is_refused_and_a_dead_ones_lock_taken_over(
    tmp_path: Path, tally: Tally
) -> None:
    tally.describe(CATEGORY, "a second `hedgeflow live` on one warehouse; a dead runner's lock")
    home = tmp_path / "home"
    first = start_live(home, "--duration", "600", "--speed", "1500", **CRYPTO_ONLY)
    try:
        wait_streaming(first)
        run_id = live_run(home)["run_id"]
        second = run_cli(home, "live", "--duration", "5", **CRYPTO_ONLY, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert lines[0].startswith("hedgeflow: error: another `hedgeflow live` is running")
        assert f"pid {first.pid} " in lines[0] and f"run {run_id}," in lines[0]
        assert live_run(home)["status"] == "running"  # the refused one touched nothing
        os.killpg(first.pid, signal.SIGKILL)  # the holder dies: its flock goes with it
        first.wait(30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(30)
    third = run_cli(home, "live", "--fresh", "--duration", "3", **CRYPTO_ONLY, timeout=180)
    assert third.returncode == 0, (third.stdout + third.stderr)[-3000:]
    runs = query_frame(home, "SELECT run_id, status, reason FROM runs ORDER BY started_at")
    dead = runs[runs["run_id"] == run_id].iloc[0]
    # the next command found its process gone: crashed, naming it (before the new runner
    # would have closed it as failed)
    assert dead["status"] == "crashed"
    assert f":{first.pid}) ended without finishing the run" in dead["reason"]
    assert f"marked 1 run(s) whose process died as crashed: {run_id}" in third.stderr
    assert runs.iloc[-1]["status"] == "completed" and runs.iloc[-1]["run_id"] != run_id
    assert (home / "live.lock").read_text() == ""  # released at the end
    tally.trial(2)
    tally.fault("SIGKILL")
    tally.outcome("second runner refused (exit 2) naming the first")
    tally.outcome("dead runner's lock taken over, its run marked crashed")
