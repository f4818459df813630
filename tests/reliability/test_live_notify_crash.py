"""Notifications across crashes: SIGKILL ``hedgeflow live`` at seeded random times while
it streams (simulator) and notifies a real webhook receiver on 127.0.0.1, restart it,
and check after every restart:

- every event of the outbox arrived at least once, under its ``event_id``; nothing
  arrived that the outbox does not hold (no invented event);
- the outbox has exactly one event per ``live_orders`` row and ``live_fills`` row;
- every duplicate (an event re-sent after the kill) carries the same event id and the
  same body;
- ``live_notifications`` shows every event ``delivered`` once the restarted run ended.

The 3-trial campaign and the 20-trial one both run under ``-m slow`` (each trial is a
killed run plus a restarted one: ~15 s).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.e2e_helpers import NOISE_MARKERS, query_frame
from tests.flows.test_live_cli import LIVELY
from tests.reliability.conftest import Harness, Tally
from tests.reliability.test_live_crash import KILL_AFTER, LONG, REPO, RESTART, _argv, _env
from tests.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.reliability, pytest.mark.flow]

QUICK_TRIALS = 3
FULL_TRIALS = 20


def _check(home: Path, rx: WebhookReceiver, tally: Tally) -> None:
    outbox = query_frame(home, "SELECT event_id, payload FROM live_outbox")
    orders = query_frame(home, "SELECT count(*) AS n FROM live_orders")
    fills = query_frame(home, "SELECT count(*) AS n FROM live_fills")
    n_rows = (int(orders["n"][0]) if not orders.empty else 0) + (
        int(fills["n"][0]) if not fills.empty else 0
    )
    stored = set(outbox["event_id"]) if not outbox.empty else set()
    assert len(stored) == len(outbox) == n_rows
    bodies: dict[str, list[dict]] = defaultdict(list)
    for b in rx.bodies():
        bodies[b["event_id"]].append(b)
    assert set(bodies) == stored, set(bodies) ^ stored
    for eid, seen in bodies.items():  # a duplicate is the same event
        assert all(b == seen[0] for b in seen), eid
    if not outbox.empty:
        payloads = dict(zip(outbox["event_id"], outbox["payload"], strict=True))
        for eid, seen in bodies.items():
            assert seen[0] == json.loads(payloads[eid])
    view = query_frame(home, "SELECT status FROM live_notifications")
    assert view.empty or set(view["status"]) == {"delivered"}
    tally.outcome("events delivered", len(stored))
    tally.note("duplicates so far", sum(len(v) - 1 for v in bodies.values()))


def _campaign(trials: int, seed: int, harness: Harness, tmp: Path, tally: Tally) -> None:
    rng = random.Random(seed)
    home = tmp / "home"
    with WebhookReceiver() as rx:
        env = _env(harness, home, tmp / "prefect-home")
        env.update(LIVELY)
        env.update(
            HEDGEFLOW_NOTIFY__WEBHOOKS=json.dumps([rx.url]),
            HEDGEFLOW_NOTIFY__BACKOFF_INITIAL="0.1",
            HEDGEFLOW_NOTIFY__DRAIN_SECONDS="30",
        )
        for trial in range(trials):
            tally.trial()
            delay = round(rng.uniform(*KILL_AFTER), 2)
            log = tmp / f"killed-{trial}.log"
            with log.open("wb") as fh:
                proc = subprocess.Popen(
                    _argv(LONG), env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            try:
                time.sleep(delay)
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    tally.fault("SIGKILL")
                proc.wait(30)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(30)
            received_before = len(rx.received)
            restart_log = tmp / f"restart-{trial}.log"
            with restart_log.open("wb") as fh:
                again = subprocess.run(
                    _argv(RESTART), env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
                    timeout=240, check=False,
                )  # fmt: skip
            output = restart_log.read_text(errors="replace")
            assert again.returncode == 0, output[-4000:]
            noisy = [ln for ln in output.splitlines() if any(m in ln for m in NOISE_MARKERS)]
            assert not noisy, "\n".join(noisy[:20])
            if len(rx.received) > received_before:
                tally.outcome("restart delivered")
            _check(home, rx, tally)


@pytest.mark.slow  # ~50 s
def test_notifications_survive_sigkill_quick(
    prefect_harness: Harness, tmp_path: Path, tally: Tally
) -> None:
    tally.describe("crash", f"hedgeflow live notifications: SIGKILL + restart ({QUICK_TRIALS})")
    _campaign(QUICK_TRIALS, 13, prefect_harness, tmp_path, tally)


@pytest.mark.slow  # ~5 min
def test_notifications_survive_sigkill_full(
    prefect_harness: Harness, tmp_path: Path, tally: Tally
) -> None:
    tally.describe("crash", f"hedgeflow live notifications: SIGKILL + restart ({FULL_TRIALS})")
    _campaign(FULL_TRIALS, 2029, prefect_harness, tmp_path, tally)
