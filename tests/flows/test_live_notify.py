"""Live notifications end to end: ``hedgeflow live`` for real (simulator source, a
subprocess against the session's Prefect server) with ``[notify]`` pointing at real
receivers on 127.0.0.1:

* a webhook that acknowledges gets every order and fill of the record, at least once,
  under its ``event_id``: the distinct ids are exactly the outbox's, which has one per
  ``live_orders`` row and ``live_fills`` row, and every body is one of those rows
  (none invented);
* an Apprise ``json://`` URL to a second receiver gets the same events as messages;
* a webhook on a closed port ends ``dead`` after ``max_attempts`` with
  ``connection refused``, and ``live_notifications`` shows it;
* the URLs' token is nowhere: not in stdout/stderr, not in any file under
  HEDGEFLOW_HOME (DuckDB file, journal, reports), not in the Prefect server's database;
* bad URLs stop the command with one line, exit 2, before any flow runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e_helpers import Harness, assert_clean, cli_env, query_frame, run_cli
from tests.flows.test_live_cli import LIVELY, SPEED
from tests.webhook_receiver import TOKEN, WebhookReceiver, closed_port

pytestmark = pytest.mark.flow

REQUIRED = {"event_id", "kind", "run_id", "agent", "symbol", "ts", "side", "qty", "price", "reason"}


def token_files(root: Path, token: str) -> list[Path]:
    """Files under ``root`` whose bytes contain ``token``."""
    raw = token.encode()
    return [p for p in root.rglob("*") if p.is_file() and raw in p.read_bytes()]


def test_live_run_notifies_every_order_and_fill(tmp_path: Path, prefect_harness: Harness) -> None:
    home = tmp_path / "home"
    dead_url = f"http://user:{TOKEN}@127.0.0.1:{closed_port()}/hook/{TOKEN}"
    with WebhookReceiver() as hook, WebhookReceiver() as chat:
        env = {
            **LIVELY,
            "HEDGEFLOW_NOTIFY__WEBHOOKS": json.dumps([hook.url, dead_url]),
            "HEDGEFLOW_NOTIFY__APPRISE": json.dumps([f"json://127.0.0.1:{chat.port}/hook/{TOKEN}"]),
            "HEDGEFLOW_NOTIFY__MAX_ATTEMPTS": "2",
            "HEDGEFLOW_NOTIFY__BACKOFF_INITIAL": "0.05",
            "HEDGEFLOW_NOTIFY__DRAIN_SECONDS": "20",
        }
        proc = run_cli(home, "live", "--duration", "15", "--speed", SPEED, timeout=240, **env)
    assert_clean(proc)
    orders = query_frame(home, "SELECT * FROM live_orders")
    fills = query_frame(home, "SELECT * FROM live_fills")
    outbox = query_frame(home, "SELECT * FROM live_outbox")
    assert len(fills) >= 2, proc.stdout[-3000:]
    assert outbox["event_id"].is_unique
    assert len(outbox) == len(orders) + len(fills)
    # the acknowledging webhook: every event at least once, none invented
    bodies = hook.bodies()
    assert {b["event_id"] for b in bodies} == set(outbox["event_id"])
    fill_ids = set(zip(fills["run_id"], fills["agent"], fills["fill_id"], strict=True))
    order_ids = set(zip(orders["run_id"], orders["agent"], orders["order_id"], strict=True))
    seen_fills, seen_orders = set(), set()
    for b in bodies:
        assert set(b) >= REQUIRED
        if b["kind"] == "fill":
            key = (b["run_id"], b["agent"], b["fill_id"])
            assert key in fill_ids, b
            row = fills[fills["fill_id"] == b["fill_id"]].iloc[0]
            assert (b["side"], b["qty"], b["price"]) == (row["side"], row["qty"], row["price"])
            seen_fills.add(key)
        else:
            key = (b["run_id"], b["agent"], b["order_id"])
            assert key in order_ids, b
            seen_orders.add(key)
    assert seen_fills == fill_ids and seen_orders == order_ids
    # Apprise (json://) got the same events as messages
    messages = " ".join(json.dumps(b) for b in chat.bodies())
    assert all(eid in messages for eid in outbox["event_id"])
    # the closed port: dead after 2 attempts, connection refused
    states = query_frame(home, "SELECT * FROM live_deliveries")
    per_channel = states.groupby("channel")["status"].agg(lambda s: set(s)).to_dict()
    assert sorted(map(sorted, per_channel.values())) == [["dead"], ["delivered"], ["delivered"]]
    dead = states[states["status"] == "dead"]
    assert len(dead) == len(outbox) and set(dead["attempts"]) == {2}
    assert set(dead["last_error"]) == {"connection refused"}
    view = query_frame(home, "SELECT * FROM live_notifications")
    assert len(view) == len(outbox) and set(view["status"]) == {"dead"}
    assert set(view["channels"]) == {3}
    summary = query_frame(home, "SELECT summary FROM runs WHERE flow = 'live'")
    notify = json.loads(summary["summary"][0])["notify"]
    assert notify["pending"] == 0 and notify["dead"] == len(outbox)
    # the token: nowhere in the output, the home, the Prefect server's database
    assert TOKEN not in proc.stdout + proc.stderr
    assert token_files(home, TOKEN) == []
    assert [p for p in prefect_harness.files() if TOKEN.encode() in p.read_bytes()] == []


@pytest.mark.parametrize(
    ("command", "setting", "urls", "problem"),
    [
        ("live", "WEBHOOKS", ["https://ok.example/x", f"ftp://u:{TOKEN}@h/x"],
         "webhooks[1]': not an http(s) URL"),
        ("nightly", "WEBHOOKS", [f"http://h:99999/{TOKEN}"], "webhooks[0]': not a valid URL"),
        ("live", "APPRISE", [f"nosuch://{TOKEN}@x"],
         "apprise[0]': Apprise does not know the scheme 'nosuch'"),
    ],
)  # fmt: skip
def test_bad_urls_stop_before_any_flow(
    tmp_path: Path, command: str, setting: str, urls: list[str], problem: str
) -> None:
    home = tmp_path / "home"
    proc = subprocess.run(
        [sys.executable, "-m", "hedgeflow.cli", command],
        env={**cli_env(home), f"HEDGEFLOW_NOTIFY__{setting}": json.dumps(urls)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hedgeflow: error: setting 'notify."), lines
    assert problem in lines[0]
    assert TOKEN not in proc.stderr
    assert not home.exists()  # nothing ran
