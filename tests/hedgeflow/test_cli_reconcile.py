"""``hedgeflow reconcile`` on bad input: one line, exit 2, before Prefect starts, and
nothing is created or written."""

from __future__ import annotations

from pathlib import Path

import pytest

from hedgeflow.cli import main
from hedgeflow.warehouse import Warehouse


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["reconcile", *args])
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, captured.err.splitlines()


def test_no_warehouse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HEDGEFLOW_HOME", str(home))
    assert _run(capsys) == (
        2,
        [
            f"hedgeflow: error: no warehouse at {home} (check --home / HEDGEFLOW_HOME): "
            "run hedgeflow live first"
        ],
    )
    assert not home.exists()


def test_no_live_record_and_an_unknown_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HEDGEFLOW_HOME", str(home))
    wh = Warehouse(home)
    wh.start_run("night-1", "nightly", {}, "v")
    wh.finish_run("night-1", "completed", {})
    before = sorted(p.name for p in home.rglob("*"))
    assert _run(capsys) == (
        2,
        [f"hedgeflow: error: no live run recorded in {home}: run hedgeflow live first"],
    )
    code, err = _run(capsys, "--run", "0a1b2c")
    assert code == 2 and len(err) == 1
    assert err[0].startswith("hedgeflow: error: no live run '0a1b2c' in ")
    code, err = _run(capsys, "--run", "../x")
    assert code == 2 and len(err) == 1 and "run id" in err[0]
    assert list(wh.list_runs()["run_id"]) == ["night-1"]  # no reconcile run recorded
    assert sorted(p.name for p in home.rglob("*")) == before
