"""Reading user bars files and writing backtest outputs."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from hedgeflow.backtest_io import read_bars_file, write_backtest_outputs
from hedgeflow.engine import EngineConfig, backtest
from hedgeflow.errors import InvalidInputError
from hedgeflow.metrics import METRIC_KEYS, compute_metrics

CSV = """Timestamp,Open,High,Low,Close,Volume
2024-01-02 14:30:00,100,101,99,100.5,10
2024-01-02 14:35:00,100.5,102,100,101.5,12
2024-01-02 14:40:00,101.5,101.5,100.5,101,7
"""


def write(tmp_path, text, name="bars.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_read_csv_any_case_naive_is_utc(tmp_path):
    bars = read_bars_file(write(tmp_path, CSV))
    assert list(bars.columns) == ["ts", "open", "high", "low", "close", "volume"]
    assert str(bars.ts.dtype) == "datetime64[us, UTC]"
    assert bars.ts.iat[0] == pd.Timestamp("2024-01-02 14:30", tz="UTC")
    assert bars.close.tolist() == [100.5, 101.5, 101.0]
    assert bars.volume.dtype == np.float64


def test_tz_aware_converted_and_volume_optional(tmp_path):
    text = (
        "date,open,high,low,close\n"
        "2024-01-02T09:30:00-05:00,1,1,1,1\n2024-01-02T09:35:00-05:00,1,1,1,1\n"
    )
    bars = read_bars_file(write(tmp_path, text))
    assert bars.ts.iat[0] == pd.Timestamp("2024-01-02 14:30", tz="UTC")
    assert bars.volume.isna().all()


@pytest.mark.parametrize(
    ("values", "unit"), [([1704205800, 1704206100], "s"), ([1704205800000, 1704206100000], "ms")]
)
def test_epoch_numbers(tmp_path, values, unit):
    text = "time,open,high,low,close\n" + "".join(f"{v},1,2,0.5,1.5\n" for v in values)
    bars = read_bars_file(write(tmp_path, text))
    assert bars.ts.iat[0] == pd.Timestamp("2024-01-02 14:30", tz="UTC")
    assert bars.ts.iat[1] - bars.ts.iat[0] == pd.Timedelta(minutes=5)


def test_parquet_with_datetime_index(tmp_path):
    idx = pd.date_range("2024-01-02 14:30", periods=3, freq="5min", tz="America/New_York")
    df = pd.DataFrame(
        {
            "OPEN": [1.0, 1, 1],
            "HIGH": [2.0, 2, 2],
            "LOW": [0.5, 0.5, 0.5],
            "CLOSE": [1.5, 1.5, 1.5],
        },
        index=idx,
    )
    p = tmp_path / "bars.parquet"
    df.to_parquet(p)
    bars = read_bars_file(p)
    assert bars.ts.iat[0] == pd.Timestamp("2024-01-02 19:30", tz="UTC")
    assert str(bars.ts.dtype) == "datetime64[us, UTC]"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ts,open,high,low\n2024-01-02,1,1,1\n", "missing column(s) close"),
        ("when,open,high,low,close\n2024-01-02,1,1,1,1\n", "no time column"),
        (
            "ts,open,high,low,close\n2024-01-02,1,1,1,1\nnot-a-date,1,1,1,1\n",
            "unparsable time 'not-a-date' in row 2",
        ),
        (
            "ts,open,high,low,close\n2024-01-02 10:00,1,1,1,1\n2024-01-02 10:00,1,1,1,1\n",
            "duplicate time 2024-01-02 10:00:00+00:00 in row 2",
        ),
        (
            "ts,open,high,low,close\n2024-01-02 10:05,1,1,1,1\n2024-01-02 10:00,1,1,1,1\n",
            "not sorted ascending",
        ),
        (
            "ts,open,high,low,close\n2024-01-02 10:00,1,1,1,1\n2024-01-02 10:05,1,1,1,0\n",
            "close must be a positive number, got 0 in row 2",
        ),
        (
            "ts,open,high,low,close\n2024-01-02 10:00,1,1,1,\n",
            "close must be a positive number, got an empty value",
        ),
        ("ts,open,high,low,close\n2024-01-02 10:00,1,1.5,0.5,2\n", "high 1.5 is below"),
        ("ts,open,high,low,close\n2024-01-02 10:00,1,2,1.2,1.5\n", "low 1.2 is above"),
        ("ts,open,high,low,close,volume\n2024-01-02 10:00,1,2,1,1.5,-3\n", "negative volume"),
        ("ts,open,high,low,close\n", "no rows"),
    ],
)
def test_bad_files_name_file_and_problem(tmp_path, text, fragment):
    p = write(tmp_path, text)
    with pytest.raises(InvalidInputError) as info:
        read_bars_file(p)
    assert str(p) in str(info.value)
    assert fragment in str(info.value)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_bars_file(tmp_path / "nope.csv")
    with pytest.raises(InvalidInputError, match="unknown format"):
        read_bars_file(write(tmp_path, "x", "bars.xlsx"))


def test_write_outputs_roundtrip(tmp_path):
    bars = read_bars_file(write(tmp_path, CSV))
    res = backtest(bars, np.array([1, 1, 1], dtype=np.int8), EngineConfig())
    m = compute_metrics(res.equity.equity, res.equity.ts, res.trades, "stock", res.equity.position)
    paths = write_backtest_outputs(res, m, tmp_path / "out" / "run1")
    trades = pd.read_csv(paths["trades"])
    assert list(trades.columns) == [
        "trade_id",
        "side",
        "qty",
        "entry_ts",
        "entry_price",
        "exit_ts",
        "exit_price",
        "exit_reason",
        "fees",
        "pnl",
        "return_pct",
    ]
    assert trades.exit_reason.tolist() == ["end"]
    assert pd.Timestamp(trades.entry_ts.iat[0]) == bars.ts.iat[1]
    equity = pd.read_csv(paths["equity"])
    assert list(equity.columns) == ["ts", "equity", "drawdown"]
    np.testing.assert_array_equal(equity.equity.to_numpy(), res.equity.equity.to_numpy())
    text = paths["metrics"].read_text()
    assert "NaN" not in text and "Infinity" not in text
    loaded = json.loads(text)
    assert list(loaded) == list(METRIC_KEYS)
    assert loaded["n_trades"] == 1
    assert not [p for p in paths["metrics"].parent.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- epoch units, ceilings


@pytest.mark.parametrize(
    ("magnitude", "unit"),
    [
        (0.0, "s"),
        (1.7e9, "s"),
        (7.25e9, "s"),
        (7.3e9, None),  # seconds after 2200
        (5e10, None),  # between seconds and milliseconds
        (1e11, "ms"),
        (1.7e12, "ms"),
        (1.7e15, "us"),
        (1.7e18, "ns"),
        (7.3e18, None),  # nanoseconds after 2200
    ],
)
def test_epoch_unit_by_magnitude(magnitude: float, unit: str | None) -> None:
    from hedgeflow.backtest_io import epoch_unit

    assert epoch_unit(magnitude) == unit


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_epoch_integers_in_every_unit_parquet(tmp_path, unit):
    per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    start = 1704205800  # 2024-01-02 14:30 UTC
    ts = [(start + 300 * i) * per_second for i in range(3)]
    p = tmp_path / "bars.parquet"
    pd.DataFrame({"ts": ts, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5}).to_parquet(p)
    bars = read_bars_file(p)
    assert str(bars.ts.dtype) == "datetime64[us, UTC]"
    assert bars.ts.tolist() == list(
        pd.date_range("2024-01-02 14:30", periods=3, freq="5min", tz="UTC")
    )


def test_nanoseconds_keep_microsecond_precision(tmp_path):
    ns = 1704205800_123456_789  # exact in int64, not in float64
    p = tmp_path / "bars.parquet"
    pd.DataFrame({"ts": [ns], "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5}).to_parquet(p)
    assert read_bars_file(p).ts.iat[0] == pd.Timestamp("2024-01-02 14:30:00.123456", tz="UTC")


def test_ceilings(tmp_path, monkeypatch):
    import gzip

    import hedgeflow.backtest_io as bio
    from hedgeflow.table_files import Limits

    rows = "".join(f"{1704205800 + 300 * i},1,2,0.5,1.5\n" for i in range(50))
    csv = tmp_path / "bars.csv"
    csv.write_text("ts,open,high,low,close\n" + rows)
    pq_path = tmp_path / "bars.parquet"
    read_bars_file(csv).to_parquet(pq_path)
    gz = tmp_path / "bars.csv.gz"
    gz.write_bytes(gzip.compress(csv.read_bytes()))
    assert len(read_bars_file(gz)) == 50
    monkeypatch.setattr(bio, "BARS_LIMITS", Limits(max_bytes=1 << 30, max_rows=49))
    for path in (csv, pq_path):
        with pytest.raises(InvalidInputError, match="rows, more than the limit of 49"):
            read_bars_file(path)
    monkeypatch.setattr(bio, "BARS_LIMITS", Limits(max_bytes=1 << 20, max_rows=10_000))
    bomb = tmp_path / "bomb.csv.gz"  # 2 MiB of text in a few KiB
    bomb.write_bytes(gzip.compress(csv.read_bytes() + b"\n" * (2 << 20)))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(InvalidInputError, match="decompresses to more than 1 MiB"):
        read_bars_file(bomb)
    big = tmp_path / "big.csv"
    big.write_bytes(csv.read_bytes() + b"\n" * (1 << 20))
    with pytest.raises(InvalidInputError, match="larger than the 1 MiB limit"):
        read_bars_file(big)


def test_devices_and_fifos_are_not_read(tmp_path):
    import os

    fifo = tmp_path / "bars.csv"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        with pytest.raises(InvalidInputError, match="is not a file"):
            read_bars_file(path)


def test_outputs_get_the_users_umask(tmp_path):
    """trades.csv, equity.csv and metrics.json are created as any file would be (they
    were 0600 whatever the umask), and no temporary file is left behind."""
    import os
    import stat

    bars = read_bars_file(write(tmp_path, CSV))
    res = backtest(bars, np.array([1, 1, 1], dtype=np.int8), EngineConfig())
    m = compute_metrics(res.equity.equity, res.equity.ts, res.trades, "stock", res.equity.position)
    for umask, mode in ((0o022, 0o644), (0o002, 0o664)):
        old = os.umask(umask)
        try:
            paths = write_backtest_outputs(res, m, tmp_path / f"out{umask:o}")
        finally:
            os.umask(old)
        for path in paths.values():
            assert stat.S_IMODE(path.stat().st_mode) == mode, (path, oct(path.stat().st_mode))
        assert sorted(p.name for p in (tmp_path / f"out{umask:o}").iterdir()) == sorted(
            p.name for p in paths.values()
        )


@pytest.mark.parametrize(
    "times",
    [
        ["2024-01-02 14:30:00", "2024-01-02 14:35:00", "2024-01-02 14:40:00"],
        ["2024-01-02T14:30:00.000000+00:00", "2024-01-02T14:35:00.000000+00:00",
         "2024-01-02T14:40:00.000000+00:00"],
        ["2024-01-02T15:30:00+01:00", "2024-01-02 14:35:00Z", "2024-01-02 14:40:00.5"],
        ["2024-01-02", "2024-01-03", "2024-01-04"],
        [" 2024-01-02 14:30", "2024-01-02 14:35", "2024-01-02 14:40"],  # general path
        ["01/02/2024 14:30", "01/02/2024 14:35", "01/02/2024 14:40"],  # general path
    ],
)  # fmt: skip
def test_iso_text_fast_path_reads_like_the_general_path(tmp_path, monkeypatch, times):
    """All-ISO time text is parsed in one vectorized pass (a 1M-row CSV: ~10x faster);
    the bars equal the general, format-by-format path's."""
    import hedgeflow.backtest_io as bio

    rows = "\n".join(f"{t},100,101,99,100.5,10" for t in times)
    path = write(tmp_path, "ts,open,high,low,close,volume\n" + rows + "\n")
    fast = read_bars_file(path)
    monkeypatch.setattr(bio, "_iso_times", lambda raw: None)
    general = read_bars_file(path)
    pd.testing.assert_frame_equal(fast, general)
    assert str(fast.ts.dtype) == "datetime64[us, UTC]"


def test_iso_fast_path_leaves_bad_rows_to_the_general_error(tmp_path):
    path = write(tmp_path, "ts,open,high,low,close\n2024-01-02 14:30,1,1,1,1\n2024-13-45,1,1,1,1\n")
    with pytest.raises(InvalidInputError, match="unparsable time '2024-13-45' in row 2"):
        read_bars_file(path)


@pytest.mark.parametrize(
    "header, rows",
    [
        ("ts,open,high,low,close,volume", ["2024-01-02 14:30:00,100,101,99,100.5,10",
                                           "2024-01-02 14:35:00,100.5,102,100,101.5,"]),
        ("Date,Open,High,Low,Close", ["2024-01-02T15:30:00+01:00,1,2,0.5,1.5",
                                     "2024-01-02T15:35:00.123456+01:00,1,2,0.5,1.5"]),
        ("ts,open,high,low,close", ["2024-01-02T14:30:00Z,1,2,0.5,1.5",
                                    "2024-01-02 14:35:00Z,1,2,0.5,1.5"]),
        ("ts,open,high,low,close", ["2024-01-02 14:30,1,2,0.5,1.5",
                                    "2024-01-02T14:35:00Z,1,2,0.5,1.5"]),  # mixed: text
        ("timestamp,open,high,low,close,volume", ["1704205800,1,2,0.5,1.5,NA",
                                                  "1704206100,1,2,0.5,1.5,7"]),
        ("date,open,high,low,close", ["2024-01-02,1,2,0.5,1.5", "2024-01-03,1,2,0.5,1.5"]),
        ('"ts","open","high","low","close"', ['"2024-01-02 14:30:00",1,2,0.5,1.5',
                                              '"2024-01-02 14:35:00",1,2,0.5,1.5']),
        ("\ufeffts,open,high,low,close", ["2024-01-02 14:30:00,1,2,0.5,1.5",
                                          "2024-01-02 14:35:00,1,2,0.5,1.5"]),
    ],
)  # fmt: skip
def test_arrow_csv_reader_reads_like_pandas(tmp_path, monkeypatch, header, rows):
    """A plain CSV goes through pyarrow's reader (times parsed natively: ~4x pandas on a
    1M-row file); the bars equal those of pandas' reader, which the rest falls back to."""
    import hedgeflow.table_files as tf

    path = write(tmp_path, header + "\n" + "\n".join(rows) + "\n")
    assert tf._arrow_csv(path) is not None  # the fast path is the one taken
    fast = read_bars_file(path)
    monkeypatch.setattr(tf, "_arrow_csv", lambda p: None)
    pd.testing.assert_frame_equal(fast, read_bars_file(path))


def test_arrow_csv_refusal_falls_back_to_the_pandas_error(tmp_path, monkeypatch):
    """A file pyarrow refuses (here a row with an extra field) is read by pandas, so
    the user gets pandas' wording, naming the line."""
    import hedgeflow.table_files as tf

    text = "ts,open,high,low,close\n2024-01-02 14:30,1,2,0.5,1.5\n2024-01-02 14:35,1,2,0.5,1.5,9\n"
    path = write(tmp_path, text)
    tried = []
    monkeypatch.setattr(tf, "_arrow_csv", lambda p, real=tf._arrow_csv: tried.append(real(p)))
    with pytest.raises(
        InvalidInputError, match=r"cannot be read .*Expected 5 fields in line 3, saw 6"
    ):
        read_bars_file(path)
    assert tried == [None]


def test_a_bad_value_deep_in_a_large_csv_is_named_by_row(tmp_path):
    n = 60_000  # several of pyarrow's 1 MB blocks
    ts = pd.date_range("2024-01-01", periods=n, freq="1min").strftime("%Y-%m-%d %H:%M:%S")
    lines = [f"{t},100,101,99,100.5,10" for t in ts]
    lines[n - 5] = f"{ts[n - 5]},100,101,99,oops,10"
    path = write(tmp_path, "ts,open,high,low,close,volume\n" + "\n".join(lines) + "\n")
    assert path.stat().st_size > 2 << 20
    with pytest.raises(InvalidInputError, match=f"got 'oops' in row {n - 4}$"):
        read_bars_file(path)


def test_duplicate_column_names_are_left_to_pandas(tmp_path):
    import hedgeflow.table_files as tf

    path = write(tmp_path, "ts,open,high,low,close,close\n2024-01-02 14:30,1,2,0.5,1.5,1.5\n")
    assert tf._arrow_csv(path) is None
    assert list(read_bars_file(path).columns) == ["ts", "open", "high", "low", "close", "volume"]


def _bars_frame(n: int = 500, unit: str = "us", tz: str | None = "UTC") -> pd.DataFrame:
    rng = np.random.default_rng(9)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[close[:1], close[:-1]]
    ts = pd.date_range("2024-03-01 09:30", periods=n, freq="5min", tz=tz).as_unit(unit)
    return pd.DataFrame(
        {
            "ts": ts,
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": rng.integers(0, 1000, n).astype(np.float64),
        }
    )


@pytest.mark.parametrize(
    "unit, tz, volume",
    [("s", "UTC", True), ("ms", None, True), ("us", "America/New_York", False),
     ("ns", "UTC", True)],
)  # fmt: skip
def test_one_pass_check_reads_like_the_general_path(tmp_path, monkeypatch, unit, tz, volume):
    """A file of datetime64 times and numeric prices is checked and copied in one
    compiled pass; the bars equal the general path's (each check a column pass)."""
    import hedgeflow.backtest_io as bio

    frame = _bars_frame(unit=unit, tz=tz)
    if not volume:
        frame = frame.drop(columns=["volume"])
    path = tmp_path / "bars.parquet"
    frame.to_parquet(path)
    taken = []
    real = bio._valid_bars_at_once
    monkeypatch.setattr(bio, "_valid_bars_at_once", lambda *a: taken.append(r := real(*a)) or r)
    fast = read_bars_file(path)
    assert taken[0] is not None  # the one-pass check was the one taken
    monkeypatch.setattr(bio, "_valid_bars_at_once", lambda *a: None)
    pd.testing.assert_frame_equal(fast, read_bars_file(path))
    fast.loc[0, "close"] = 1.0  # a frame of its own: writable
    assert fast["close"].iat[0] == 1.0


@pytest.mark.parametrize(
    "column, row, value, fragment",
    [("high", 7, 50.0, "high 50.0 is below max(open, close)"),
     ("low", 9, 500.0, "low 500.0 is above min(open, close)"),
     ("close", 3, np.nan, "close must be a positive number, got an empty value in row 4"),
     ("open", 0, -1.0, "open must be a positive number, got -1.0 in row 1"),
     ("volume", 5, -2.0, "negative volume -2.0 in row 6"),
     ("volume", 6, np.inf, "infinite volume inf in row 7"),
     ("ts", 4, pd.NaT, "missing time in row 5"),
     ("ts", 8, pd.Timestamp("2024-03-01 09:30", tz="UTC"), "in row 9"),
     ("ts", 2, pd.Timestamp("1899-12-31", tz="UTC"), "outside 1900-2199")],
)  # fmt: skip
def test_what_the_one_pass_check_refuses_gets_the_general_error(
    tmp_path, column, row, value, fragment
):
    import hedgeflow.backtest_io as bio

    frame = _bars_frame()
    frame.loc[row, column] = value
    path = tmp_path / "bars.parquet"
    frame.to_parquet(path)
    raw = pd.read_parquet(path)
    prices = [raw[k] for k in ("open", "high", "low", "close")]
    assert bio._valid_bars_at_once(raw["ts"], prices, raw["volume"]) is None
    with pytest.raises(InvalidInputError, match=re.escape(fragment)):
        read_bars_file(path)


def test_times_finer_than_microseconds_are_left_to_the_general_path(tmp_path):
    import hedgeflow.backtest_io as bio

    frame = _bars_frame(unit="ns")
    frame.loc[3, "ts"] = frame.loc[3, "ts"] + pd.Timedelta(nanoseconds=1)
    raw_ts = frame["ts"]
    prices = [frame[k] for k in ("open", "high", "low", "close")]
    assert bio._valid_bars_at_once(raw_ts, prices, None) is None
    path = tmp_path / "bars.parquet"
    frame.to_parquet(path)
    assert read_bars_file(path)["ts"].iat[3] == frame["ts"].iat[3].floor("us")
