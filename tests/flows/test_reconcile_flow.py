"""``hedgeflow reconcile`` for real: a live run against the local simulator (the live
e2e tests' lively settings, so that every market trades), then reconciled with real
Prefect flow runs on the session's test server:

* the clean run reconciles with zero differences, every live fill matched by the
  engine's (the CLI: exit 0, a clean summary, a ``reconcile`` run, no ``live_drift``);
* a fill price changed by hand in a copy of the warehouse is one unexplained
  ``fill_price`` difference (exit 1; its row and the artifacts say so);
* a vendor bar in the lake that differs from the live bar a fill was made on is a
  ``vendor_revision``, explained (unexplained stays 0);
* the nightly reconciles the finished live run and reports it (slow).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from uuid import UUID

import duckdb
import pandas as pd
import pytest

from hedgeflow.warehouse import Warehouse
from hedgeflow.warehouse.db import LOCK_LOGGER
from tests.e2e_helpers import assert_clean, query_frame

pytestmark = pytest.mark.flow

MIN_FILLS = 4


@pytest.fixture()
def live_home(live_cli_run: tuple[Path, subprocess.CompletedProcess[str]]) -> Path:
    """The session's live run (tests/flows/conftest.py, test_live_cli's): one finished
    live run with fills in it (read-only: copy it)."""
    home, proc = live_cli_run
    assert_clean(proc)
    n = int(query_frame(home, "SELECT count(*) AS n FROM live_fills")["n"][0])
    assert n >= MIN_FILLS, proc.stdout
    return home


@pytest.fixture()
def home(live_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the live warehouse, as HEDGEFLOW_HOME."""
    copy = tmp_path / "home"
    shutil.copytree(live_home, copy)
    monkeypatch.setenv("HEDGEFLOW_HOME", str(copy))
    monkeypatch.chdir(tmp_path)
    return copy


def live_run_id(home: Path) -> str:
    return str(query_frame(home, "SELECT run_id FROM runs WHERE flow = 'live'")["run_id"][0])


def test_a_clean_live_run_reconciles_with_no_difference(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hedgeflow.cli import main

    # what the command sets up for Prefect's logging, undone after the test
    for name in ("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "PREFECT_SERVER_LOGGING_LEVEL",
                 "PREFECT_LOGGING_EXTRA_LOGGERS", "PREFECT_UI_ENABLED"):  # fmt: skip
        monkeypatch.setenv(name, "-")
        monkeypatch.delenv(name)
    for logger in (logging.getLogger(LOCK_LOGGER), logging.getLogger("hedgeflow")):
        monkeypatch.setattr(logger, "handlers", list(logger.handlers))
        monkeypatch.setattr(logger, "propagate", logger.propagate)
        monkeypatch.setattr(logger, "level", logger.level)
    code = main(["reconcile"])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, captured.err
    assert not [x for x in captured.err.splitlines() if "ERROR" in x or "Traceback" in x]
    assert f"reconciled live run {live_run_id(home)}, completed (reconcile run " in out
    assert "differences: missed_signal 0, extra_signal 0, fill_price 0, qty 0, costs 0, " \
        "vendor_revision 0" in out  # fmt: skip
    assert "unexplained: 0 (within [reconcile] max_unexplained = 0)" in out
    # every agent: the engine made exactly the live fills
    line = r"(\w+) +\S+ +\d+ bars +(\d+) live fills +(\d+) engine fills +(\d+)"
    per_agent = re.findall(line, out)
    assert {a for a, *_ in per_agent} == {"stocks", "forex", "crypto"}
    assert all(live == engine and u == "0" for _, live, engine, u in per_agent), out
    fills = query_frame(home, "SELECT agent, count(*) AS n FROM live_fills GROUP BY agent")
    assert dict(zip(fills["agent"], fills["n"], strict=True)) == {
        a: int(n) for a, n, _, _ in per_agent if int(n)
    }
    runs = query_frame(home, "SELECT status, params, summary FROM runs WHERE flow = 'reconcile'")
    assert list(runs["status"]) == ["completed"]
    assert json.loads(runs["params"][0]) == {"live_run_id": live_run_id(home), "max_unexplained": 0}
    assert json.loads(runs["summary"][0])["unexplained"] == 0
    assert query_frame(home, "SELECT count(*) AS n FROM live_drift")["n"][0] == 0


def _artifacts(flow_run_id: str) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    only = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]))
    with get_client(sync_client=True) as client:
        return {a.key: a for a in client.read_artifacts(artifact_filter=only)}


def test_a_fill_price_changed_by_hand_is_an_unexplained_difference(home: Path) -> None:
    from hedgeflow.flows.reconcile import reconcile

    con = duckdb.connect(str(home / "hedgeflow.duckdb"))
    try:
        (fill_id, agent, ts, price) = con.execute(
            "SELECT fill_id, agent, ts, price FROM store.live_fills ORDER BY ts, fill_id LIMIT 1"
        ).fetchone()
        con.execute(
            "UPDATE store.live_fills SET price = price * 1.001 WHERE fill_id = ?", [fill_id]
        )
    finally:
        con.close()
    summary = reconcile()
    assert (summary.unexplained, summary.explained) == (1, 0)
    assert summary.counts["fill_price"] == 1 and sum(summary.counts.values()) == 1
    assert summary.notify  # over the default threshold of 0
    # the signals live recorded are the engine's on the same bars, for every agent
    assert [a["signal_mismatches"] for a in summary.agents] == [0, 0, 0]
    assert all(a["bars"] >= 20 for a in summary.agents)
    drift = query_frame(home, "SELECT * FROM live_drift")
    assert len(drift) == 1
    row = drift.iloc[0]
    assert (row["run_id"], row["live_run_id"], row["agent"], row["kind"]) == (
        summary.run_id, live_run_id(home), agent, "fill_price"
    )  # fmt: skip
    assert not row["explained"] and pd.Timestamp(row["ts"]) == pd.Timestamp(ts)
    assert row["live_value"] == pytest.approx(price * 1.001, rel=1e-12)
    assert row["engine_value"] == price
    artifacts = _artifacts(summary.run_id)
    assert sorted((k, a.type) for k, a in artifacts.items()) == [
        ("live-drift", "table"),
        ("reconcile-summary", "markdown"),
    ]
    assert "**1 unexplained**" in artifacts["reconcile-summary"].data
    assert "| fill_price | 1 |" in artifacts["reconcile-summary"].data


def test_a_vendor_bar_that_differs_from_the_live_one_is_explained(home: Path) -> None:
    from hedgeflow.flows.reconcile import reconcile

    fill = query_frame(
        home,
        "SELECT f.agent, f.symbol, f.ts, f.price FROM live_fills f WHERE f.side = 'buy' "
        "ORDER BY f.ts LIMIT 1",
    ).iloc[0]
    ts = pd.Timestamp(fill["ts"])
    bar = query_frame(
        home,
        f"SELECT ts, open, high, low, close, volume FROM live_bars WHERE symbol = "
        f"'{fill['symbol']}' AND ts = '{ts.isoformat()}'",
    )
    assert len(bar) == 1
    revised = bar.assign(open=bar["open"] * 1.002)
    revised["high"] = revised[["high", "open"]].max(axis=1)
    revised["volume"] = revised["volume"].fillna(1.0)
    revised["ts"] = pd.to_datetime(revised["ts"], utc=True).dt.as_unit("us")
    Warehouse(home).write_bars(
        revised, fill["symbol"], "5m", ts, ts + pd.Timedelta(minutes=5), "eodhd"
    )
    summary = reconcile()
    assert summary.unexplained == 0 and summary.explained >= 1
    assert summary.counts["vendor_revision"] == summary.explained
    drift = query_frame(home, "SELECT * FROM live_drift ORDER BY ts")
    assert set(drift["kind"]) == {"vendor_revision"} and drift["explained"].all()
    first = drift[drift["trade_key"] == f"{fill['agent']}-{ts:%Y%m%dT%H%M%SZ}-buy"].iloc[0]
    assert first["live_value"] == fill["price"]
    assert first["engine_value"] == pytest.approx(fill["price"] * 1.002, rel=1e-9)
    assert f"bar {ts.isoformat()} revised by the vendor (open" in first["detail"]
    agents = {a["agent"]: a for a in summary.agents}
    assert agents[fill["agent"]]["revised_bars"] == 1


@pytest.mark.slow  # a whole nightly (~20 s); .ci/run runs it in step 3
def test_the_nightly_reconciles_a_finished_live_run(home: Path) -> None:
    from hedgeflow.flows.nightly import nightly

    summary = nightly(days=2)
    assert summary.reconcile is not None
    assert summary.reconcile["live_run_id"] == live_run_id(home)
    assert summary.reconcile["unexplained"] == 0
    runs = query_frame(home, "SELECT flow, status, summary FROM runs ORDER BY started_at")
    assert list(runs["flow"]) == ["live", "nightly", "reconcile"]
    assert set(runs["status"]) == {"completed"}
    night = json.loads(runs["summary"][1])
    assert night["reconcile"]["unexplained"] == 0
    # the next night has nothing new to reconcile
    assert nightly(days=2).reconcile is None
