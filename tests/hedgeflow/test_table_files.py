"""The one bounded reader of users' table files: each ceiling is checked before the data
is held, for CSV, gzipped CSV and Parquet alike, and the error names the kind of file."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hedgeflow.overfit_io as oio
from hedgeflow.errors import InvalidInputError
from hedgeflow.table_files import Limits, read_table_file


def _returns(tmp_path: Path, rows: int = 40, trials: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        rng.normal(0, 0.01, (rows, trials)), columns=[f"t{i}" for i in range(trials)]
    )
    frame.insert(0, "ts", pd.date_range("2026-01-01", periods=rows, freq="h", tz="UTC"))
    return frame


def test_each_format_reads_within_the_limits(tmp_path: Path) -> None:
    frame = _returns(tmp_path)
    csv = tmp_path / "r.csv"
    frame.to_csv(csv, index=False)
    gz = tmp_path / "r.csv.gz"
    gz.write_bytes(gzip.compress(csv.read_bytes()))
    parquet = tmp_path / "r.parquet"
    frame.to_parquet(parquet)
    exact = Limits(max_bytes=1 << 20, max_rows=40, max_cells=40 * 6)
    for path in (csv, gz, parquet):
        got = read_table_file(path, "returns file", exact)
        assert got.shape == (40, 6)
        np.testing.assert_allclose(got["t3"].to_numpy(), frame["t3"].to_numpy(), rtol=1e-15)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_rows_and_values_over_the_limit_are_refused(tmp_path: Path, suffix: str) -> None:
    frame = _returns(tmp_path)
    path = tmp_path / f"r.{suffix}"
    frame.to_csv(path, index=False) if suffix == "csv" else frame.to_parquet(path)
    with pytest.raises(
        InvalidInputError, match=r"^returns file .*: has (40|more) rows, more than the limit of 39$"
    ):
        read_table_file(path, "returns file", Limits(1 << 20, max_rows=39))
    with pytest.raises(InvalidInputError, match=r"has 240 values, more than the limit of 239$"):
        read_table_file(path, "returns file", Limits(1 << 20, max_rows=40, max_cells=239))


def test_a_returns_gzip_bomb_is_refused_while_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``hedgeflow overfit`` reads through the bounded stream: 2 MiB of text hidden in a
    few KiB stops at the 1 MiB ceiling instead of being inflated whole."""
    frame = _returns(tmp_path)
    bomb = tmp_path / "bomb.csv.gz"
    bomb.write_bytes(gzip.compress(frame.to_csv(index=False).encode() + b"\n" * (2 << 20)))
    assert bomb.stat().st_size < 64 << 10
    monkeypatch.setattr(oio, "RETURNS_LIMITS", Limits(max_bytes=1 << 20, max_rows=1000))
    with pytest.raises(
        InvalidInputError, match=r"^returns file .*bomb.csv.gz': decompresses to more than 1 MiB$"
    ):
        oio.read_returns_file(bomb)


def test_unknown_and_broken_files_name_the_kind(tmp_path: Path) -> None:
    odd = tmp_path / "r.xlsx"
    odd.write_bytes(b"x")
    with pytest.raises(InvalidInputError, match=r"^bars file .*: unknown format"):
        read_table_file(odd, "bars file", Limits(1 << 20, 10))
    broken = tmp_path / "r.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(InvalidInputError, match=r"^returns file .*: cannot be read \(\w+"):
        read_table_file(broken, "returns file", Limits(1 << 20, 10))
    big = tmp_path / "big.csv"
    big.write_bytes(b"ts,a\n" + b"\n" * 2048)
    with pytest.raises(InvalidInputError, match=r": is 2,053 bytes, larger than the "):
        read_table_file(big, "returns file", Limits(2048, 10))
