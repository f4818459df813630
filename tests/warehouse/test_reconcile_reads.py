"""What ``hedgeflow reconcile`` reads from the warehouse: which live run, and when the
nightly has one to reconcile; bad input is one line and creates nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from hedgeflow.errors import InvalidInputError
from hedgeflow.warehouse import Warehouse


def test_no_warehouse_is_said_and_nothing_is_created(tmp_path: Path) -> None:
    home = tmp_path / "nowhere"
    wh = Warehouse(home)
    with pytest.raises(InvalidInputError, match=f"no warehouse at {home} .*run hedgeflow live"):
        wh.find_live_run()
    assert wh.live_runs() == [] and wh.unreconciled_live_run() is None
    assert not home.exists()


def test_the_live_run_to_reconcile(tmp_path: Path) -> None:
    home = tmp_path / "home"
    wh = Warehouse(home)
    wh.start_run("night-1", "nightly", {}, "v")
    with pytest.raises(InvalidInputError) as err:
        wh.find_live_run()
    assert str(err.value) == f"no live run recorded in {home}: run hedgeflow live first"
    wh.start_run("live-a1", "live", {"source": "simulator"}, "v")
    wh.start_run("live-b1", "live", {"source": "eodhd"}, "v")
    latest = wh.find_live_run()
    assert latest["run_id"] == "live-b1" and latest["params"] == {"source": "eodhd"}
    assert wh.find_live_run("live-a1")["run_id"] == "live-a1"
    assert wh.find_live_run("live-a")["run_id"] == "live-a1"  # a unique prefix
    with pytest.raises(InvalidInputError, match="prefix 'live-' is ambiguous: live-b1, live-a1"):
        wh.find_live_run("live-")
    for ref in ("night-1", "nig"):  # an id or a prefix of a run of another flow
        with pytest.raises(InvalidInputError, match="run night-1 is a nightly run, not a live"):
            wh.find_live_run(ref)
    with pytest.raises(InvalidInputError, match=f"no live run 'zzz' in {home} "):
        wh.find_live_run("zzz")


def test_the_nightly_reconciles_each_finished_live_run_once(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "home")
    wh.start_run("live-1", "live", {}, "v")
    assert wh.unreconciled_live_run() is None  # still running
    wh.finish_run("live-1", "completed", {})
    assert wh.unreconciled_live_run()["run_id"] == "live-1"
    wh.start_run("rec-1", "reconcile", {"live_run_id": "live-1"}, "v")
    assert wh.unreconciled_live_run()["run_id"] == "live-1"  # not finished yet
    wh.finish_run("rec-1", "completed", {})
    assert wh.unreconciled_live_run() is None
    # the live run continued (a restart) and stopped again, with Ctrl-C: reconcile it again
    wh.start_run("live-1", "live", {}, "v")
    wh.finish_run("live-1", "cancelled", {}, reason="stopped by SIGINT (Ctrl-C)")
    assert wh.unreconciled_live_run()["run_id"] == "live-1"
