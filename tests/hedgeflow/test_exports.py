"""Backtest exports: CSV through pyarrow's writer (same columns, ISO times and values
as the pandas writer it replaced), Parquet, the user's umask, ``--format``."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from hedgeflow.backtest_io import output_files, write_backtest_outputs
from hedgeflow.cli import build_parser, main
from hedgeflow.engine import EngineConfig, backtest
from hedgeflow.exports import EXPORT_FORMATS, iso_utc, write_table
from hedgeflow.metrics import compute_metrics
from hedgeflow.research import compute_signals
from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.strategies import parse_params


def _old_iso(series: pd.Series) -> pd.Series:
    """The ISO formatting of the pandas writer that pyarrow's replaced (verbatim)."""
    return series.dt.strftime("%Y-%m-%dT%H:%M:%S.%f%z").str.replace(
        r"(\d\d)(\d\d)$", r"\1:\2", regex=True
    )


def _old_csv(frame: pd.DataFrame, times: tuple[str, ...], path: Path) -> None:
    """The pandas writer that pyarrow's replaced (backtest_io before this change)."""
    frame = frame.copy()
    for col in times:
        frame[col] = _old_iso(frame[col])
    frame.to_csv(path, index=False, float_format="%.17g")


def _cells(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _assert_same_values(old: Path, new: Path, text_columns: set[str]) -> int:
    """Same header; text columns equal as text; number columns equal bit for bit once
    read (by Python's float and by pandas' reader). Returns the number of number cells
    whose text differs (pyarrow writes the shortest round-trip text, pandas %.17g)."""
    a, b = _cells(old), _cells(new)
    assert old.read_text().splitlines()[0] == new.read_text().splitlines()[0]
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    differing = 0
    for col in a.columns:
        if col in text_columns:
            assert a[col].tolist() == b[col].tolist(), col
            continue
        fa = np.array([float(x) if x else np.nan for x in a[col]])
        fb = np.array([float(x) if x else np.nan for x in b[col]])
        assert np.array_equal(fa.view(np.int64), fb.view(np.int64)), col
        differing += int((a[col] != b[col]).sum())
    pa_old, pa_new = pd.read_csv(old), pd.read_csv(new)
    for col in pa_old.columns:
        if pa_old[col].dtype.kind == "f":
            assert np.array_equal(
                pa_old[col].to_numpy().view(np.int64), pa_new[col].to_numpy().view(np.int64)
            ), col
    return differing


@pytest.fixture(scope="module")
def result():
    bars = SyntheticMarket(11).fetch_bars(
        "BTC-USD.CC", "5m", datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 11, tzinfo=UTC)
    )
    signal = compute_signals(bars, "sma_cross", parse_params("sma_cross", {"fast": 5, "slow": 20}))
    cfg = EngineConfig(fee_bps=3.0, slippage_bps=1.0)
    res = backtest(bars, signal["signal"].to_numpy(), cfg)
    m = compute_metrics(res.equity.equity, res.equity.ts, res.trades, "crypto", res.equity.position)
    assert len(res.trades) > 20  # a sample with many full-precision prices
    return res, m


def test_csv_has_the_old_writers_columns_times_and_values(result, tmp_path: Path) -> None:
    res, m = result
    paths = write_backtest_outputs(res, m, tmp_path / "new")
    old = tmp_path / "old"
    old.mkdir()
    trade_times = ("entry_ts", "exit_ts")
    _old_csv(res.trades, trade_times, old / "trades.csv")
    _old_csv(res.equity.loc[:, ["ts", "equity", "drawdown"]], ("ts",), old / "equity.csv")
    text = {*trade_times, "side", "exit_reason"}
    differing = _assert_same_values(old / "trades.csv", paths["trades"], text)
    differing += _assert_same_values(old / "equity.csv", paths["equity"], {"ts"})
    assert differing > 0  # the sample does exercise full-precision floats
    assert (
        paths["equity"]
        .read_text()
        .splitlines()[1]
        .startswith(res.equity.ts.iat[0].strftime("%Y-%m-%dT%H:%M:%S.000000+00:00,"))
    )


def test_nan_nat_and_odd_floats_like_the_old_writer(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "ts": pd.Series(
                ["1900-01-01 00:00:00", None, "2199-12-31 23:59:59.999999", "1969-12-31 23:59:59"],
                dtype="datetime64[us]",
            ).dt.tz_localize("UTC"),
            "x": [0.1, np.nan, 1e-300, -123456789.12345678],
            "y": [np.inf, -np.inf, 5e-324, 1.7976931348623157e308],
            "n": np.array([1, -2, 0, 2**53 + 1], dtype=np.int64),
            "s": ["long", "short", "stop", "end"],
        }
    )
    write_table(frame, tmp_path / "new.csv", "csv", ("ts",))
    _old_csv(frame, ("ts",), tmp_path / "old.csv")
    assert _cells(tmp_path / "new.csv")["n"].tolist() == ["1", "-2", "0", str(2**53 + 1)]
    _assert_same_values(tmp_path / "old.csv", tmp_path / "new.csv", {"ts", "s", "n"})


def test_iso_text_equals_pandas_strftime_over_the_allowed_years() -> None:
    rng = np.random.default_rng(3)
    low = np.datetime64("1900-01-01", "us").astype(np.int64)
    high = np.datetime64("2200-01-01", "us").astype(np.int64)
    us = np.sort(rng.integers(low, high, 20_000))
    edges = [f"{y}-{md}" for y in (1900, 1969, 1970, 2000, 2024, 2100, 2199) for md in
             ("01-01", "02-28 23:59:59.999999", "03-01", "12-31 23:59:59.999999")]  # fmt: skip
    edge_us = pd.to_datetime(edges, format="ISO8601").as_unit("us").asi8
    times = pd.Series(np.r_[us, edge_us].astype("datetime64[us]")).dt.tz_localize("UTC")
    times.iloc[5] = pd.NaT
    ours = iso_utc(times).to_pylist()
    theirs = _old_iso(times).tolist()
    assert ours[5] is None and pd.isna(theirs[5])
    assert ours[:5] + ours[6:] == theirs[:5] + theirs[6:]


def test_iso_text_of_dense_intraday_times_reuses_each_days_date_exactly() -> None:
    """The date text is made once per day and copied to the day's other times: minute
    bars across midnights and a month end, a NaT inside a day, then out of order."""
    times = pd.Series(
        pd.date_range("2024-02-28 23:00", "2024-03-02 01:00", freq="7min", tz="UTC").as_unit("us")
    )
    times.iloc[40] = pd.NaT
    shuffled = times.sample(frac=1.0, random_state=5).reset_index(drop=True)
    for series in (times, shuffled):
        ours = iso_utc(series).to_pylist()
        theirs = _old_iso(series).tolist()
        assert [o is None for o in ours] == [pd.isna(t) for t in theirs]
        assert [o for o in ours if o is not None] == [t for t in theirs if not pd.isna(t)]


def test_iso_refuses_naive_times() -> None:
    with pytest.raises(TypeError, match="tz-aware"):
        iso_utc(pd.Series(pd.to_datetime(["2024-01-01"])))


def test_parquet_round_trips(result, tmp_path: Path) -> None:
    res, m = result
    paths = write_backtest_outputs(res, m, tmp_path / "out", "parquet")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "equity.parquet",
        "metrics.json",
        "trades.parquet",
    ]
    trades = pq.read_table(paths["trades"]).to_pandas()
    pd.testing.assert_frame_equal(trades, res.trades.reset_index(drop=True), check_exact=True)
    assert str(trades.entry_ts.dtype) == "datetime64[us, UTC]"
    equity = pq.read_table(paths["equity"]).to_pandas()
    pd.testing.assert_frame_equal(
        equity, res.equity.loc[:, ["ts", "equity", "drawdown"]], check_exact=True
    )


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_outputs_get_the_users_umask_in_each_format(result, tmp_path: Path, fmt: str) -> None:
    res, m = result
    for umask, mode in ((0o022, 0o644), (0o007, 0o660)):
        out = tmp_path / f"out{umask:o}"
        old = os.umask(umask)
        try:
            paths = write_backtest_outputs(res, m, out, fmt)  # type: ignore[arg-type]
        finally:
            os.umask(old)
        for path in paths.values():
            assert stat.S_IMODE(path.stat().st_mode) == mode, (path, oct(path.stat().st_mode))
        # no temporary file left behind
        assert sorted(p.name for p in out.iterdir()) == sorted(output_files(fmt).values())  # type: ignore[arg-type]


def test_format_choices_agree_and_bad_format_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    backtest_parser = sub.choices["backtest"]  # type: ignore[index]
    choices = next(a.choices for a in backtest_parser._actions if a.dest == "format")
    assert tuple(choices) == EXPORT_FORMATS
    bars = tmp_path / "bars.csv"
    bars.write_text("ts,open,high,low,close\n2024-01-02 14:30:00,1,1,1,1\n")
    with pytest.raises(SystemExit) as exc:
        main(["backtest", "--bars", str(bars), "--strategy", "sma_cross", "--out",
              str(tmp_path / "out"), "--format", "xlsx"])  # fmt: skip
    assert exc.value.code == 2
    assert "invalid choice: 'xlsx'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_parquet_writes_parquet(tmp_path: Path, capsys) -> None:
    bars = SyntheticMarket(11).fetch_bars(
        "BTC-USD.CC", "5m", datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 2, tzinfo=UTC)
    )
    path = tmp_path / "bars.parquet"
    bars.to_parquet(path)
    out = tmp_path / "out"
    code = main(["backtest", "--bars", str(path), "--strategy", "sma_cross", "--out", str(out),
                 "--format", "parquet"])  # fmt: skip
    assert code == 0
    assert f"wrote {out / 'trades.parquet'}, {out / 'equity.parquet'}" in capsys.readouterr().out
    equity = pq.read_table(out / "equity.parquet").to_pandas()
    assert equity.ts.tolist() == bars.ts.tolist()


def test_out_checks_follow_the_format(result, tmp_path: Path) -> None:
    from hedgeflow.backtest_io import check_out_dir
    from hedgeflow.errors import InvalidInputError

    res, m = result
    (tmp_path / "trades.parquet").mkdir()
    check_out_dir(tmp_path, "csv")  # trades.csv is free
    with pytest.raises(InvalidInputError, match=r"trades.parquet there is a directory"):
        write_backtest_outputs(res, m, tmp_path, "parquet")
    assert not (tmp_path / "equity.parquet").exists()


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_full_disk_leaves_earlier_outputs_and_no_temp_file(
    result, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """pyarrow's own out-of-space error (an ArrowIOError naming errno 28) becomes the
    one-line OutOfSpaceError on --out; the files of the earlier run stay as they were."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    from hedgeflow.errors import NO_SPACE_TEXT, OutOfSpaceError

    res, m = result
    out = tmp_path / "out"
    paths = write_backtest_outputs(res, m, out, fmt)  # type: ignore[arg-type]
    before = {p.name: p.read_bytes() for p in paths.values()}

    def full(*args: object, **kwargs: object) -> None:
        raise pa.lib.ArrowIOError(
            f"error writing bytes to file. Detail: [errno 28] {NO_SPACE_TEXT}"
        )

    monkeypatch.setattr(pa_csv, "write_csv", full)
    monkeypatch.setattr(pq, "write_table", full)
    with pytest.raises(OutOfSpaceError) as exc:
        write_backtest_outputs(res, m, out, fmt)  # type: ignore[arg-type]
    assert str(out) in str(exc.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
