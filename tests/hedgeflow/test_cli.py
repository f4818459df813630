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
