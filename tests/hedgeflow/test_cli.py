"""CLI input handling: refused before any I/O, with a clear message."""

from pathlib import Path

import pytest

from hedgeflow.cli import main


@pytest.mark.parametrize("symbol", ["../x", "A;DROP TABLE bars", "AAPL", "x/../../etc.US"])
def test_invalid_symbol_refused_before_io(
    symbol: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    code = main(["--home", str(home), "ingest", "--symbols", symbol])
    err = capsys.readouterr().err
    assert code == 2
    assert "invalid symbol" in err and repr(symbol) in err
    assert not home.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "--days", "0"], "--days must be in [1, 20000]"),
        (["ingest", "--end", "yesterday-ish"], "invalid --end"),
        (["nightly", "--days", "-3"], "--days must be in [1, 20000]"),
    ],
)
def test_bad_arguments_are_clear_errors(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    assert main(["--home", str(home), *args]) == 2
    assert message in capsys.readouterr().err
    assert not home.exists()


def test_bad_setting_is_reported_with_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEDGEFLOW_LOOKBACK_DAYS", "many")
    assert main(["--home", str(tmp_path / "h"), "ingest"]) == 2
    assert "lookback_days" in capsys.readouterr().err


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("ingest", "nightly", "backtest", "sql"):
        assert command in out


def test_a_run_without_a_tearsheet_gets_an_account_of_itself(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import pandas as pd

    from hedgeflow.console import print_run_card

    run = {
        "run_id": "0f0f0f0f-1111-2222-3333-444455556666",
        "flow": "live",
        "status": "completed",
        "started_at": pd.Timestamp("2026-11-20 14:30:00"),
        "finished_at": pd.NaT,
        "summary": None,
    }
    print_run_card(run)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"run {run['run_id']} (live): completed"
    assert out[1] == "started 2026-11-20 14:30:00 UTC"
    assert len(out) == 3  # not finished: no finish line, no headline
    assert out[2].startswith("no HTML report (only nightly and sweep runs have one)")
    assert f"select * from live_fills where run_id = '{run['run_id']}'" in out[2]


def test_the_command_does_not_import_dask_to_validate_pandas(tmp_path: Path) -> None:
    """pandera's Dask probe (it imports dask.dataframe at the first schema, 0.4-0.7 s)
    is skipped in the hedgeflow process; the command still validates and answers."""
    import subprocess
    import sys

    from tests.e2e_helpers import cli_env

    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "hedgeflow.cli", "runs"],
        env=cli_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "pandera.typing.pandas" in imported  # the schemas were built
    assert "dask.dataframe" not in imported and "dask" not in imported


def test_a_flow_command_starts_without_the_collector_then_freezes_its_start() -> None:
    """The collector is off while a flow command starts, then what the start built is
    frozen and the collector is back on; a command that ends before its flow only turns
    it back on; a collector someone else turned off is left alone."""
    import gc

    from hedgeflow import cli

    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    try:
        cli.gc_off_for_start()
        assert not gc.isenabled()
        cli.start_done()
        assert gc.isenabled() and gc.get_freeze_count() > frozen
        cli.start_done()  # once only
        assert gc.isenabled()
        gc.unfreeze()

        cli.gc_off_for_start()
        cli._gc_back_on()
        assert gc.isenabled() and gc.get_freeze_count() == 0

        gc.disable()
        cli.gc_off_for_start()
        cli.start_done()
        assert not gc.isenabled() and gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
        gc.enable()
