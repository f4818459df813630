"""`hedgeflow overfit --returns FILE --out DIR [--blocks S]`: a returns matrix in,
overfit.json out; bad input is one line, exit 2, and nothing written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hedgeflow.cli import main
from hedgeflow.overfit import overfit_stats

KEYS = [
    "n_trials", "n_obs", "best_trial", "sharpe_best", "psr", "sr0", "dsr", "pbo",
    "n_splits", "prob_oos_loss", "degradation_slope", "degradation_intercept",
]  # fmt: skip


def _frame(rows: int = 300, trials: int = 6, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, 0.01, size=(rows, trials))
    data[:, 2] += 0.002
    frame = pd.DataFrame(data, columns=[f"fast={5 + i} [x]" for i in range(trials)])
    frame.insert(0, "Timestamp", pd.date_range("2026-01-05", periods=rows, freq="1h", tz="UTC"))
    return frame


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_writes_overfit_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    frame = _frame()
    src = tmp_path / f"returns{suffix}"
    frame.to_csv(src, index=False) if suffix == ".csv" else frame.to_parquet(src)
    out = tmp_path / "out"
    assert main(["overfit", "--returns", str(src), "--out", str(out), "--blocks", "8"]) == 0
    written = json.loads((out / "overfit.json").read_text())
    assert list(written) == KEYS
    want = overfit_stats(frame.drop(columns="Timestamp").to_numpy(), 8)
    assert written["best_trial"] == "fast=7 [x]"  # the column name, brackets and all
    assert (written["n_trials"], written["n_obs"], written["n_splits"]) == (6, 300, 70)
    for key in KEYS[3:]:
        assert written[key] == pytest.approx(getattr(want, key), abs=1e-12), key
    printed = capsys.readouterr().out
    assert "fast=7 [x]" in printed  # not swallowed as rich markup
    assert "No sign of overfitting" in printed or "Probably overfit" in printed
    assert [p.name for p in out.iterdir()] == ["overfit.json"]  # no temp file left


def _bad(tmp_path: Path, name: str, write) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / name
    write(path)
    return path


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("nan", "column 'fast=8 [x]' has NaN (an empty or missing value) in row 41"),
        ("text", "column 'fast=5 [x]' has 'oops' in row 3"),
        ("short", "10 rows of returns, fewer than the 16 blocks"),
        ("single", "1 trial: overfitting statistics compare at least 2 trials"),
        ("no-time", "no time column: expected one named ts, timestamp"),
        ("unsorted", "rows must be in time order: row 6"),
        ("garbled", "cannot be read"),
        ("missing", "does not exist"),
        ("odd", "--blocks must be an even number from 2 to 24, got 15"),
        ("huge", "--blocks must be an even number from 2 to 24, got 1000"),
        ("directory", "is not a file"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, problem: str
) -> None:
    frame = _frame(rows=60)
    blocks = "16"
    if case == "nan":
        frame.iloc[40, 4] = np.nan
    elif case == "text":
        frame = frame.astype({frame.columns[1]: object})
        frame.iloc[2, 1] = "oops"
    elif case == "short":
        frame = frame.head(10)
    elif case == "single":
        frame = frame.iloc[:, :2]
    elif case == "no-time":
        frame = frame.drop(columns="Timestamp")
    elif case == "unsorted":
        frame.iloc[5, 0] = frame.iloc[1, 0]
    elif case == "odd":
        blocks = "15"
    elif case == "huge":
        blocks = "1000"
    src = tmp_path / ("returns.parquet" if case == "garbled" else "returns.csv")
    if case == "garbled":
        src.write_bytes(b"PAR1 this is not parquet")
    elif case == "directory":
        src.mkdir()
    elif case != "missing":
        frame.to_csv(src, index=False)
    out = tmp_path / "out"
    code = main(["overfit", "--returns", str(src), "--out", str(out), "--blocks", blocks])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("hedgeflow: error: ") and err.count("\n") == 1, err
    assert problem in err, err
    assert not out.exists()


def test_a_failed_run_keeps_the_previous_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "overfit.json").write_text('{"kept": true}\n')
    frame = _frame()
    frame.iloc[7, 3] = math.inf
    src = tmp_path / "returns.csv"
    frame.to_csv(src, index=False)
    assert main(["overfit", "--returns", str(src), "--out", str(out)]) == 2
    assert "column 'fast=7 [x]' has inf in row 8" in capsys.readouterr().err
    assert (out / "overfit.json").read_text() == '{"kept": true}\n'
    assert [p.name for p in out.iterdir()] == ["overfit.json"]


def test_out_must_be_a_directory_checked_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.write_text("a file")
    src = tmp_path / "missing.csv"  # never read: --out is refused first
    assert main(["overfit", "--returns", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"hedgeflow: error: --out {str(out)!r} is a regular file, not a directory\n"
    assert out.read_text() == "a file"
