"""``hedgeflow walkforward``: bad input is one line, exit 2, before any I/O (nothing
stored: the home is not even created)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hedgeflow.cli import main

BASE = ["walkforward", "--strategy", "sma_cross", "--symbols", "BTC-USD.CC", "--days", "5"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--train", "60x"], "--train '60x' is not a duration"),
        (["--train", "2d", "--test=-1d"], "--test '-1d' is not a duration"),
        (["--train", "2d", "--test", "1d", "--step", "12h"], "--step 12h is shorter than --test"),
        (["--train", "500", "--test", "1d"], "must all be bar counts or all be durations"),
        # the default grid's slow SMA of 200 bars needs more than 10 h of 5-minute bars
        (["--train", "10h", "--test", "1h"], "not more than the sma_cross grid's warm-up of 199"),
        (["--train", "4d", "--test", "2d"], "no fold fits: --train 4d plus --test 2d is longer"),
        (["--cpcv", "--groups", "1"], "--groups must be an integer >= 2"),
        (["--cpcv", "--groups", "4", "--test-groups", "4"], "--test-groups must be an integer"),
        (["--cpcv", "--purge", "-2"], "--purge must be a whole number of bars >= 0"),
        (["--cpcv", "--embargo", "-1"], "--embargo must be >= 0"),
        (["--cpcv", "--anchored"], "--anchored and --cpcv exclude each other"),
        (["--grid", "fast=50", "--grid", "slow=5"], "no valid combination"),
    ],
)
def test_bad_walkforward_input_is_one_line_exit_2_and_stores_nothing(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    assert main(["--home", str(home), *BASE, *extra]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hedgeflow: error: "), err
    assert message in lines[0]
    assert "Traceback" not in err
    assert not home.exists()
