"""Hostile input: malformed bars, malformed files, bad arguments, settings and flow
parameters, path traversal, SQL injection, and writes through ``hedgeflow sql``.

The contract: bad input is refused before any I/O (no HEDGEFLOW_HOME created) with a
clear one-line ``hedgeflow: error: ...`` and exit code 2, never a traceback, and never a
wrong number: when a file is accepted, the outputs are consistent with each other and
equal to those of the same bars in any other accepted encoding.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hedgeflow.cli import main
from hedgeflow.columns import BAR_COLUMNS
from hedgeflow.errors import ConfigError, DataValidationError, InvalidInputError
from hedgeflow.metrics import METRIC_KEYS
from hedgeflow.schemas.bars import (
    REASON_DUPLICATE,
    REASON_HIGH,
    REASON_LOW,
    REASON_PRICE,
    REASON_TS,
    REASON_UNSORTED,
    REASON_VOLUME,
    split_valid_bars,
)
from hedgeflow.warehouse import Warehouse
from tests.reliability.conftest import Harness, Tally, full_campaign

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "hedgeflow.cli"]
EXAMPLES = 400 if full_campaign() else 120
FILE_EXAMPLES = 200 if full_campaign() else 60
HYPO = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------- split_valid_bars

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)

_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0.5, max_value=200.0),
    st.sampled_from([0.0, -1.0, 1e308, -1e308, 5e-324, math.inf, -math.inf, math.nan]),
)
_odd_objects = st.sampled_from(
    ["1.5", "abc", "", " 2 ", None, b"3", [1], {"a": 1}, True, "1e999", "nan", "-0"]
)


@st.composite
def _price_column(draw: st.DrawFn, n: int) -> pd.Series:
    mode = draw(st.sampled_from(["float", "float", "object", "int"]))
    if mode == "float":
        return pd.Series(draw(st.lists(_floats, min_size=n, max_size=n)), dtype="float64")
    if mode == "int":
        ints = st.integers(-(2**62), 2**62)
        return pd.Series(draw(st.lists(ints, min_size=n, max_size=n)), dtype="int64")
    values = draw(st.lists(st.one_of(_floats, _odd_objects), min_size=n, max_size=n))
    return pd.Series(values, dtype=object)


@st.composite
def _ts_column(draw: st.DrawFn, n: int) -> pd.Series:
    # minutes from T0 in a small range, so duplicates and disorder are common
    minutes = draw(st.lists(st.integers(-20, 60), min_size=n, max_size=n))
    stamps = [T0 + timedelta(minutes=5 * m) for m in minutes]
    holes = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    mode = draw(st.sampled_from(["utc", "naive", "new_york", "text", "mixed"]))
    if mode in ("utc", "naive", "new_york"):
        s = pd.Series(pd.DatetimeIndex(stamps, tz="UTC").as_unit("us"))
        s[pd.Series(holes)] = pd.NaT
        if mode == "naive":
            return s.dt.tz_localize(None)
        return s.dt.tz_convert("America/New_York") if mode == "new_york" else s
    junk = st.sampled_from(["", "nonsense", "2026-13-45", "NaT", "0", None, "2026-03-02T25:00"])
    out: list[Any] = []
    for stamp, hole in zip(stamps, holes, strict=True):
        if hole:
            out.append(draw(junk))
        elif mode == "text":
            out.append(draw(st.sampled_from([stamp.isoformat(), f"{stamp:%Y-%m-%d %H:%M}"])))
        else:
            out.append(draw(st.sampled_from([stamp, stamp.isoformat(), pd.Timestamp(stamp)])))
    return pd.Series(out, dtype=object)


@st.composite
def raw_bars(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(0, 25))
    frame = {"ts": draw(_ts_column(n))}
    for col in ("open", "high", "low", "close", "volume"):
        frame[col] = draw(_price_column(n))
    # a share of frames get coherent OHLC so that many rows are valid
    if n and draw(st.booleans()):
        base = np.asarray(draw(st.lists(st.floats(1, 500), min_size=n, max_size=n)))
        frame["open"] = pd.Series(base)
        frame["close"] = pd.Series(base * 1.001)
        frame["high"] = pd.Series(base * 1.01)
        frame["low"] = pd.Series(base * 0.99)
    order = draw(st.permutations(list(BAR_COLUMNS)))
    return pd.DataFrame(frame)[list(order)]


def _ref_number(value: Any) -> float:
    """One raw cell as a number: what ``float()`` makes of it; a cell it refuses
    (None, "abc", [1], {...}) is missing (NaN)."""
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _ref_time(value: Any) -> int | None:
    """One raw ts cell as UTC microseconds (naive = UTC); None when missing or unparsable."""
    if value is None:
        return None
    try:
        t = pd.Timestamp(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if pd.isna(t):
        return None
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return int(t.as_unit("us").value)


def _reference_split(raw: pd.DataFrame) -> tuple[list[int], dict[int, set[str]]]:
    """DESIGN "Bad rows never reach bars", one row at a time, in input order: the
    indices of the rows kept, and the reasons of each quarantined row. A row that
    passes every row rule is a duplicate when an earlier kept row has its ts (the
    first copy is kept) and out of order when an earlier kept row is later
    (schemas/bars.py); broken rows never count as earlier rows."""
    cells = {c: raw[c].tolist() for c in BAR_COLUMNS}
    kept: list[int] = []
    quarantined: dict[int, set[str]] = {}
    latest: int | None = None  # ts of the last kept row (the kept rows are increasing)
    for i in range(len(raw)):
        reasons: set[str] = set()
        t = _ref_time(cells["ts"][i])
        if t is None:
            reasons.add(REASON_TS)
        p = {c: _ref_number(cells[c][i]) for c in ("open", "high", "low", "close")}
        broken = [c for c, x in p.items() if not (math.isfinite(x) and x > 0)]
        reasons.update(REASON_PRICE.format(col=c) for c in broken)
        if not broken:
            if p["high"] < max(p["open"], p["close"]):
                reasons.add(REASON_HIGH)
            if p["low"] > min(p["open"], p["close"]):
                reasons.add(REASON_LOW)
        volume = _ref_number(cells["volume"][i])  # missing volume is allowed (forex)
        if volume < 0 or math.isinf(volume):
            reasons.add(REASON_VOLUME)
        if not reasons and latest is not None and t is not None:
            if t == latest:
                reasons.add(REASON_DUPLICATE)
            elif t < latest:
                reasons.add(REASON_UNSORTED)
        if reasons:
            quarantined[i] = reasons
        else:
            kept.append(i)
            latest = t
    return kept, quarantined


def _us(ts: pd.Series) -> list[int | None]:
    return [None if pd.isna(t) else int(pd.Timestamp(t).as_unit("us").value) for t in ts]


def _check_split(raw: pd.DataFrame, counts: Counter[str]) -> None:
    valid, quarantine = split_valid_bars(raw, "AAPL.US", "5m", "run-hostile-1")
    kept, quarantined = _reference_split(raw)
    # exactly the rows the rules keep, in input order, with their values
    assert (len(valid), len(quarantine)) == (len(kept), len(quarantined))
    assert list(valid.columns) == list(BAR_COLUMNS)
    assert str(valid["ts"].dtype) == "datetime64[us, UTC]"
    assert _us(valid["ts"]) == [_ref_time(raw["ts"].iat[i]) for i in kept]
    for col in ("open", "high", "low", "close", "volume"):
        expected = [_ref_number(raw[col].iat[i]) for i in kept]
        np.testing.assert_array_equal(valid[col].to_numpy(dtype="float64"), expected, col)
    # and exactly the others, in input order, each with the reasons that apply to it
    assert _us(quarantine["ts"]) == [_ref_time(raw["ts"].iat[i]) for i in quarantined]
    got_reasons = [set(r.split("; ")) for r in quarantine["reason"]]
    assert got_reasons == list(quarantined.values())
    assert (quarantine["run_id"] == "run-hostile-1").all()
    assert (quarantine["symbol"] == "AAPL.US").all()
    # the invariants of a bars frame still hold on their own
    t = valid["ts"].to_numpy(dtype="datetime64[us]").view("int64")
    assert np.all(np.diff(t) > 0)
    o, h, lo, c, v = (valid[k].to_numpy(dtype="float64") for k in BAR_COLUMNS[1:])
    for x in (o, h, lo, c):
        assert np.all(np.isfinite(x) & (x > 0))
    assert np.all(h >= np.maximum(o, c)) and np.all(lo <= np.minimum(o, c))
    assert np.all(np.isnan(v) | (np.isfinite(v) & (v >= 0)))
    counts["frames"] += 1
    counts["rows"] += len(raw)
    counts["valid rows"] += len(valid)
    counts["quarantined rows"] += len(quarantine)
    for reasons in quarantined.values():
        counts.update(f"reason: {r}" for r in reasons)


def _every_rule_once() -> pd.DataFrame:
    """One frame that breaks each bar rule once (the random frames may not)."""
    good = (10.0, 11.0, 9.0, 10.5, 100.0)
    rows = [
        (0, *good),  # kept
        (5, *good),  # kept
        (5, *good),  # duplicate ts
        (0, *good),  # out of order
        (None, *good),  # no ts
        (10, math.nan, 11.0, 9.0, 10.5, 100.0),  # open NaN
        (15, 10.0, -1.0, 9.0, 10.5, 100.0),  # high negative
        (20, 10.0, 11.0, 0.0, 10.5, 100.0),  # low zero
        (25, 10.0, 11.0, 9.0, math.inf, 100.0),  # close infinite
        (30, 10.0, 10.4, 9.0, 10.5, 100.0),  # high < close
        (35, 10.0, 11.0, 10.2, 10.5, 100.0),  # low > open
        (40, 10.0, 11.0, 9.0, 10.5, -1.0),  # negative volume
        (45, 10.0, 11.0, 9.0, 10.5, math.nan),  # kept: no volume (forex)
    ]
    stamps = [None if r[0] is None else T0 + timedelta(minutes=r[0]) for r in rows]
    frame = pd.DataFrame([r[1:] for r in rows], columns=list(BAR_COLUMNS[1:]))
    frame.insert(0, "ts", pd.Series(pd.to_datetime(stamps, utc=True)).dt.as_unit("us"))
    return frame


def test_split_valid_bars_never_raises_and_partitions_rows(tally: Tally) -> None:
    tally.describe("hostile input", "split_valid_bars on random malformed frames (hypothesis)")
    counts: Counter[str] = Counter()

    @HYPO
    @given(raw_bars())
    @example(_every_rule_once())
    def prop(raw: pd.DataFrame) -> None:
        _check_split(raw, counts)

    prop()
    # both sides and every rule came up (at least in the explicit example), so the
    # exact comparison with the reference covers them all
    assert counts["valid rows"] > 0 and counts["quarantined rows"] > 0, counts
    rules = (REASON_TS, REASON_HIGH, REASON_LOW, REASON_VOLUME, REASON_DUPLICATE, REASON_UNSORTED)
    for reason in (*rules, *(REASON_PRICE.format(col=c) for c in ("open", "high", "low", "close"))):
        assert counts[f"reason: {reason}"] > 0, (reason, counts)
    tally.trial(counts["frames"])
    tally.outcome("partitioned exactly as the per-row reference, invariants hold", counts["frames"])
    tally.note("rows", {k: v for k, v in counts.items() if not k.startswith("reason: ")})


def test_split_valid_bars_refuses_numeric_ts_and_wrong_columns(tally: Tally) -> None:
    tally.describe("hostile input", "split_valid_bars: numeric ts / wrong columns refused clearly")
    frame = pd.DataFrame({c: [1.0] for c in BAR_COLUMNS})
    with pytest.raises(DataValidationError, match="ts must be datetimes"):
        split_valid_bars(frame, "AAPL.US", "5m", "r1")
    for broken in (frame.drop(columns="low"), frame.assign(extra=1), "not a frame"):
        with pytest.raises(DataValidationError, match="bars:"):
            split_valid_bars(broken, "AAPL.US", "5m", "r1")  # type: ignore[arg-type]
    tally.trial(4)
    tally.outcome("refused with DataValidationError", 4)


# --------------------------------------------------------------------------- backtest --bars

STRATEGY = ["--strategy", "sma_cross", "--param", "fast=3", "--param", "slow=8"]
EQUITY = 100_000.0


def _base_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    open_ = np.r_[close[0], close[:-1]]
    spread = np.abs(rng.normal(0, 0.002, n)) * close
    return pd.DataFrame(
        {
            "ts": pd.date_range("2026-03-02 14:30", periods=n, freq="5min", tz="UTC"),
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.integers(0, 10_000, n).astype(float),
        }
    )


# Encodings of the same bars that must give byte-identical outputs.
def _enc_iso(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(ts=df["ts"].dt.strftime("%Y-%m-%d %H:%M:%S"))


def _enc_offset(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(ts=df["ts"].dt.tz_convert("Europe/Berlin").map(lambda t: t.isoformat()))


def _enc_epoch_s(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(ts=df["ts"].astype("int64") // 1_000_000)


def _enc_epoch_ms(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(ts=df["ts"].astype("int64") // 1_000)


def _enc_upper(df: pd.DataFrame) -> pd.DataFrame:
    return df.rename(columns={"ts": "Timestamp", "open": "OPEN", "close": "Close"})


def _enc_index(df: pd.DataFrame) -> pd.DataFrame:
    return df.set_index("ts")


ENCODINGS: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "iso": _enc_iso,
    "offset": _enc_offset,
    "epoch_s": _enc_epoch_s,
    "epoch_ms": _enc_epoch_ms,
    "upper": _enc_upper,
    "index": _enc_index,
    "same": lambda df: df,
}

BAD_TIMES = ["", "nonsense", "2026-13-45", "NaT", 1e200, -1e30, "0x10", float("nan")]
BAD_NUMBERS = [np.nan, -1.0, 0.0, np.inf, -np.inf, 1e308, "abc", "", 1e-320]


def _mutate(df: pd.DataFrame, kind: str, k: int, value: Any) -> pd.DataFrame:
    df = df.copy()
    n = len(df)
    i = k % max(n, 1)
    cols = [str(c) for c in df.columns]
    if kind == "drop_column" and cols:
        return df.drop(columns=[cols[k % len(cols)]])
    tcol = next((c for c in cols if c.lower() in ("ts", "timestamp")), None)
    if kind == "rename_time" and tcol:
        return df.rename(columns={tcol: ["when", "Date", "TIME", "ts2"][k % 4]})
    if kind == "bad_time" and n and tcol:
        df[tcol] = df[tcol].astype(object)
        df.iat[i, cols.index(tcol)] = value
        return df
    if kind == "bad_number" and n:
        col = next(
            c for c in cols if c.lower() == ["open", "high", "low", "close", "volume"][k % 5]
        )
        df[col] = df[col].astype(object)
        df.iat[i, cols.index(col)] = value
        return df
    if kind == "duplicate_row" and n:
        return pd.concat([df.iloc[: i + 1], df.iloc[i:]], ignore_index=True)
    if kind == "swap_rows" and n > 1:
        j = (i + 1 + k // 7) % n
        idx = list(range(n))
        idx[i], idx[j] = idx[j], idx[i]
        return df.iloc[idx].reset_index(drop=True)
    if kind == "truncate":
        return df.iloc[: k % 3]
    prices = [c for c in cols if c.lower() in ("open", "high", "low", "close")]
    if kind == "high_below_low" and n and {"high", "low"} <= set(cols):
        df.iloc[i, [cols.index("high"), cols.index("low")]] = df.iloc[
            i, [cols.index("low"), cols.index("high")]
        ].to_numpy()
        return df
    if kind == "huge_all":
        return df.assign(**{c: pd.to_numeric(df[c], errors="coerce") * 1e300 for c in prices})
    return df


MUTATIONS = [
    "drop_column",
    "rename_time",
    "bad_time",
    "bad_number",
    "duplicate_row",
    "swap_rows",
    "truncate",
    "high_below_low",
    "huge_all",
]
FORMATS = ["csv", "parquet", "txt", "csv.gz", "pq", "json", "", "parquet-named-csv", "junk"]


def _write(df: pd.DataFrame, folder: Path, fmt: str, junk: bytes) -> Path:
    index = isinstance(df.index, pd.DatetimeIndex)
    if fmt == "junk":
        path = folder / "bars.csv"
        path.write_bytes(junk)
        return path
    if fmt in ("parquet", "pq", "parquet-named-csv"):
        path = folder / ("bars.csv" if fmt == "parquet-named-csv" else f"bars.{fmt}")
        buf = io.BytesIO()
        obj_cols = [c for c in df.columns if df[c].dtype == object]
        out = df.copy()
        for c in obj_cols:  # parquet needs one type per column
            out[c] = out[c].map(lambda v: None if v is None else str(v))
        out.to_parquet(buf, index=index)
        path.write_bytes(buf.getvalue())
        return path
    path = folder / (f"bars.{fmt}" if fmt else "bars")
    df.to_csv(path, index=index, compression="gzip" if fmt == "csv.gz" else None)
    return path


def _run_backtest(
    path: Path, out: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    code = main(["backtest", "--bars", str(path), *STRATEGY, "--out", str(out)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_refused(code: int, out: str, err: str) -> None:
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hedgeflow: error: "), err
    assert "Traceback" not in out + err


def _assert_consistent(out_dir: Path, n_bars: int) -> str:
    """The outputs agree with each other; returns metrics.json's text."""
    text = (out_dir / "metrics.json").read_text()
    metrics = json.loads(text)
    assert list(metrics) == list(METRIC_KEYS)
    for key, value in metrics.items():
        assert value is None or (isinstance(value, int | float) and math.isfinite(value)), key
    equity = pd.read_csv(out_dir / "equity.csv")
    trades = pd.read_csv(out_dir / "trades.csv")
    assert len(equity) == n_bars
    assert metrics["n_trades"] == len(trades)
    eq = equity["equity"].to_numpy()
    assert np.all(np.isfinite(eq)) and eq[0] == EQUITY
    assert math.isclose(eq[-1], EQUITY + trades["pnl"].sum(), rel_tol=1e-9, abs_tol=1e-6)
    if metrics["total_return"] is not None:
        assert math.isclose(metrics["total_return"], eq[-1] / eq[0] - 1, abs_tol=1e-12)
    assert (equity["drawdown"] <= 0).all() and (equity["drawdown"] >= -1).all()
    return text


@st.composite
def hostile_files(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "n": draw(st.integers(1, 60)),
        "seed": draw(st.integers(0, 2**16)),
        "encoding": draw(st.sampled_from(sorted(ENCODINGS))),
        "mutations": draw(
            st.lists(
                st.tuples(
                    st.sampled_from(MUTATIONS),
                    st.integers(0, 10_000),
                    st.sampled_from(BAD_TIMES + BAD_NUMBERS),
                ),
                max_size=3,
            )
        ),
        "format": draw(st.sampled_from(FORMATS)),
        "junk": draw(st.binary(min_size=0, max_size=200)),
    }


def test_backtest_cli_on_hostile_files(capsys: pytest.CaptureFixture[str], tally: Tally) -> None:
    tally.describe(
        "hostile input",
        "hedgeflow backtest --bars on random malformed CSV/Parquet (hypothesis, in-process CLI)",
    )
    counts: Counter[str] = Counter()

    @settings(HYPO, max_examples=FILE_EXAMPLES)
    @given(hostile_files())
    def prop(case: dict[str, Any]) -> None:
        base = _base_frame(case["n"], case["seed"])
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            frame = ENCODINGS[case["encoding"]](base)
            for kind, k, value in case["mutations"]:
                frame = _mutate(frame, kind, k, value)
            path = _write(frame, folder, case["format"], case["junk"])
            code, out, err = _run_backtest(path, folder / "out", capsys)
            counts["files"] += 1
            if code != 0:
                _assert_refused(code, out, err)
                counts["refused (exit 2, one line)"] += 1
                return
            counts["accepted, outputs consistent"] += 1
            text = _assert_consistent(folder / "out", len(frame))
            if not case["mutations"]:  # the same bars as the base frame: same numbers
                canon = _write(base, folder, "csv", b"")
                code2, _, err2 = _run_backtest(canon, folder / "canon", capsys)
                assert code2 == 0, err2
                assert (folder / "canon" / "metrics.json").read_text() == text
                for name in ("trades.csv", "equity.csv"):
                    a = (folder / "canon" / name).read_text()
                    assert (folder / "out" / name).read_text() == a
                counts["equivalent encodings, identical outputs"] += 1

    prop()
    tally.trial(counts["files"])
    for key in ("refused (exit 2, one line)", "accepted, outputs consistent"):
        tally.outcome(key, counts[key])
    tally.note(
        "identical outputs across encodings", counts["equivalent encodings, identical outputs"]
    )


SUBPROCESS_FILES: dict[str, Callable[[Path], None]] = {
    "binary junk.csv": lambda p: p.write_bytes(os.urandom(300)),
    "binary junk.parquet": lambda p: p.write_bytes(b"PAR1" + os.urandom(300)),
    "empty.csv": lambda p: p.write_bytes(b""),
    "header only.csv": lambda p: p.write_text("ts,open,high,low,close\n"),
    "epoch 1e200.csv": lambda p: p.write_text("ts,open,high,low,close\n1e200,1,1,1,1\n"),
    "inf prices.csv": lambda p: p.write_text("ts,open,high,low,close\n2026-01-02,inf,inf,1,1\n"),
    "bytes times.parquet": lambda p: pd.DataFrame(
        {"ts": [b"\x00\xff"], "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0]}
    ).to_parquet(p),
    "list times.parquet": lambda p: pd.DataFrame(
        {"ts": [[1, 2]], "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0]}
    ).to_parquet(p),
    "truncated.csv.gz": lambda p: p.write_bytes(b"\x1f\x8b\x08\x00garbage"),
    "wrong extension.xlsx": lambda p: p.write_text("ts,open,high,low,close\n"),
}


def test_backtest_cli_subprocess_never_tracebacks(tmp_path: Path, tally: Tally) -> None:
    """The real command in a fresh interpreter: exit 2, exactly one stderr line."""
    tally.describe("hostile input", "hedgeflow backtest --bars subprocess: junk/edge files")
    for name, make in SUBPROCESS_FILES.items():
        path = tmp_path / name.replace(" ", "_")
        make(path)
        proc = subprocess.run(
            [*CLI, "backtest", "--bars", str(path), *STRATEGY, "--out", str(tmp_path / "out")],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        tally.trial()
        _assert_refused(proc.returncode, proc.stdout, proc.stderr)
        assert not (tmp_path / "out").exists()
        tally.outcome("refused (exit 2, one line)")


# --------------------------------------------------------------------------- CLI, settings

TRAVERSAL = ["../x", "../../etc/passwd.US", "/etc/passwd", "..%2f..%2fetc.US", "AAPL.US/../x"]
INJECTION = ["A;DROP TABLE bars", "' OR 1=1 --", "AAPL.US'; DROP VIEW bars; --", "X.US\x00"]
CLI_CASES: list[tuple[list[str], dict[str, str], str]] = [
    *((["ingest", "--symbols", s], {}, "invalid symbol") for s in TRAVERSAL + INJECTION),
    *(
        (["sweep", "--strategy", "sma_cross", "--symbols", s], {}, "invalid symbol")
        for s in INJECTION
    ),
    (["ingest", "--days", "0"], {}, "--days must be"),
    (["ingest", "--days", "99999999"], {}, "--days must be"),
    (["ingest", "--end", "2026-01-01'; DROP TABLE bars; --"], {}, "invalid --end"),
    (["ingest", "--end", "1066-10-14"], {}, "out of range"),
    (["nightly", "--end", "../../x"], {}, "invalid --end"),
    (["report", "../../etc"], {}, "invalid run id"),
    (["report", "..%2f..%2fetc"], {}, "invalid run id"),
    (["report", "/etc/passwd"], {}, "invalid run id"),
    (["report", "x' OR 1=1 --"], {}, "invalid run id"),
    (["runs", "--limit", "-1"], {}, "--limit must be"),
    (["sweep", "--strategy", "sma_cross", "--grid", "fast=../x"], {}, "fast"),
    (["sweep", "--strategy", "sma_cross", "--grid", "evil=1"], {}, "evil"),
    (["ingest"], {"HEDGEFLOW_LOOKBACK_DAYS": "-3"}, "lookback_days"),
    (["ingest"], {"HEDGEFLOW_INTERVAL": "1s"}, "interval"),
    (["ingest"], {"HEDGEFLOW_SOURCE": "../x"}, "source"),
    (["ingest"], {"HEDGEFLOW_NETWORK__BASE_URL": "file:///etc/passwd"}, "base_url"),
    (["ingest"], {"HEDGEFLOW_NETWORK__REST_TIMEOUT": "nan"}, "rest_timeout"),
    (["nightly"], {"HEDGEFLOW_AGENTS__STOCKS__SYMBOL": "../../x"}, "agents.stocks.symbol"),
    (["nightly"], {"HEDGEFLOW_AGENTS__STOCKS__SYMBOL": "A;DROP TABLE bars"}, "invalid symbol"),
    (["nightly"], {"HEDGEFLOW_AGENTS__STOCKS__STRATEGY": "os.system"}, "unknown strategy"),
    (["nightly"], {"HEDGEFLOW_PORTFOLIO__INITIAL_EQUITY": "-1"}, "initial_equity"),
    (["nightly"], {"HEDGEFLOW_BOGUS": "1"}, "unknown setting"),
]  # fmt: skip
TOML_CASES: list[tuple[bytes, str]] = [
    (b'lookback_days = "many"\n', "lookback_days"),
    (b"garbage [[[\n", "not valid TOML"),
    (b"\xff\xfe\x00binary\x00junk", "not valid TOML"),
    (b'[agents.evil]\nsymbol = "../x"\nstrategy = "sma_cross"\n', "invalid symbol"),
    (b'[network]\nbase_url = "ftp://x"\n', "base_url"),
    (b'interval = ["5m"]\n', "interval"),
]


def _assert_refused_before_io(code: int, err: str, fragment: str, home: Path) -> None:
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line]
    assert lines and lines[-1].startswith("hedgeflow: error:"), err
    assert len(lines) == 1, err
    assert fragment in err, (fragment, err)
    assert not home.exists(), "HEDGEFLOW_HOME created before the input was validated"


@pytest.mark.parametrize(
    ("argv", "env", "fragment"), CLI_CASES, ids=[" ".join(c[0])[:40] for c in CLI_CASES]
)
def test_cli_refuses_bad_input_before_io(
    argv: list[str],
    env: dict[str, str],
    fragment: str,
    hedgeflow_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tally: Tally,
) -> None:
    tally.describe("hostile input", "CLI arguments / HEDGEFLOW_* settings refused before I/O")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = main(argv)
    _assert_refused_before_io(code, capsys.readouterr().err, fragment, hedgeflow_home)
    tally.trial()
    tally.outcome("refused before I/O")


@pytest.mark.parametrize(("content", "fragment"), TOML_CASES)
def test_bad_hedgeflow_toml_refused_before_io(
    content: bytes,
    fragment: str,
    hedgeflow_home: Path,
    capsys: pytest.CaptureFixture[str],
    tally: Tally,
) -> None:
    tally.describe("hostile input", "hedgeflow.toml: malformed / binary / bad values")
    (hedgeflow_home.parent / "hedgeflow.toml").write_bytes(content)
    code = main(["ingest", "--days", "1"])
    _assert_refused_before_io(code, capsys.readouterr().err, fragment, hedgeflow_home)
    tally.trial()
    tally.outcome("refused before I/O")


def test_config_path_that_is_a_directory(
    hedgeflow_home: Path, capsys: pytest.CaptureFixture[str], tally: Tally
) -> None:
    tally.describe("hostile input", "--config pointing at a directory")
    code = main(["--config", str(hedgeflow_home.parent), "ingest"])
    _assert_refused_before_io(code, capsys.readouterr().err, "config", hedgeflow_home)
    tally.trial()
    tally.outcome("refused before I/O")


# --------------------------------------------------------------------------- flow parameters


def _agent(**kw: Any) -> dict[str, Any]:
    return {"name": "x", "symbol": "AAPL.US", "strategy": "sma_cross", **kw}


# bad values the flow's own checks refuse raise the project's errors; values outside a
# parameter's declared type (a Literal, a datetime, a name pattern) are refused by Prefect's
# parameter validation (prefect.exceptions.ParameterTypeError, imported in the test so
# that collecting this module does not import Prefect) before the flow body runs
BAD = "InvalidInputError"
SETTING = "ConfigError"
TYPE = "ParameterTypeError"
FLOW_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("ingest", {"symbols": ["../x"]}, "invalid symbol", BAD),
    ("ingest", {"symbols": ["A;DROP TABLE bars"]}, "invalid symbol", BAD),
    ("ingest", {"symbols": ["..%2fetc.US"]}, "invalid symbol", BAD),
    ("ingest", {"days": 0}, "days", BAD),
    ("ingest", {"interval": "7m"}, "interval", TYPE),
    ("ingest", {"source": "../x"}, "source", TYPE),
    ("ingest", {"end": "not a date"}, "end", TYPE),
    ("nightly", {"days": -1}, "days", BAD),
    ("nightly", {"allocation": "evil"}, "allocation", TYPE),
    ("nightly", {"initial_equity": -5.0}, "initial_equity", SETTING),
    ("nightly", {"agents": [_agent(symbol="../x")]}, "symbol", SETTING),
    ("nightly", {"agents": [_agent(symbol="A;DROP TABLE bars")]}, "symbol", SETTING),
    ("nightly", {"agents": [_agent(name="../x")]}, "name", TYPE),
    # a strategy may be a user's reference (package.module:Name, file.py:Name), so
    # the name is refused by the settings loader, still before any I/O
    ("nightly", {"agents": [_agent(strategy="os.system")]}, "agents.x.strategy", SETTING),
    ("nightly", {"agents": [_agent(params={"fast": "../x"})]}, "fast", SETTING),
]  # fmt: skip


@pytest.mark.flow
@pytest.mark.parametrize(
    ("flow_name", "params", "fragment", "error"),
    FLOW_CASES,
    ids=[f"{c[0]}-{next(iter(c[1]))}-{i}" for i, c in enumerate(FLOW_CASES)],
)
def test_flow_parameters_refused_before_io(
    flow_name: str,
    params: dict[str, Any],
    fragment: str,
    error: str,
    prefect_harness: Harness,
    hedgeflow_home: Path,
    tally: Tally,
) -> None:
    from prefect.exceptions import ParameterTypeError

    from hedgeflow.flows.ingest import ingest
    from hedgeflow.flows.nightly import nightly

    expected = {
        "InvalidInputError": InvalidInputError,
        "ConfigError": ConfigError,
        "ParameterTypeError": ParameterTypeError,
    }[error]
    tally.describe("hostile input", "flow parameters (hedgeflow.flows.ingest / .nightly, Prefect)")
    flow = {"ingest": ingest, "nightly": nightly}[flow_name]
    with pytest.raises(expected) as info:
        flow(**params)
    assert type(info.value) is expected, repr(info.value)
    text = str(info.value)
    assert fragment in text, text
    assert "Traceback" not in text
    assert not hedgeflow_home.exists(), "HEDGEFLOW_HOME created before the input was validated"
    tally.trial()
    tally.outcome(f"refused ({type(info.value).__name__})")


# --------------------------------------------------------------------------- hedgeflow sql


def _file_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


@pytest.fixture
def small_warehouse(tmp_path: Path) -> Path:
    home = tmp_path / "wh"
    wh = Warehouse(home)
    bars = _base_frame(30, 1)
    wh.write_bars(
        bars,
        "AAPL.US",
        "5m",
        bars["ts"].iloc[0],
        bars["ts"].iloc[-1] + pd.Timedelta("5min"),
        "test",
    )
    wh.start_run("run-sql-1", "ingest", {}, "test")
    wh.finish_run("run-sql-1", "completed", {})
    return home


SQL_REFUSED = [
    ("DROP VIEW bars", "DROP"),
    ("DROP TABLE store.runs", "DROP"),
    ("CREATE TABLE evil AS SELECT 1", "CREATE"),
    ("CREATE OR REPLACE VIEW bars AS SELECT 1", "CREATE"),
    ("INSERT INTO store.runs SELECT * FROM store.runs", "INSERT"),
    ("UPDATE store.runs SET status = 'failed'", "UPDATE"),
    ("DELETE FROM store.runs", "DELETE"),
    ("COPY (SELECT * FROM bars) TO '{out}/stolen.csv'", "COPY"),
    ("COPY (SELECT 1) TO '{lake}/bars/interval=5m/evil.parquet' (FORMAT parquet)", "COPY"),
    ("EXPORT DATABASE '{out}/dump'", "EXPORT"),
    ("ATTACH '{out}/other.duckdb' AS other", "ATTACH"),
    ("INSTALL httpfs", "LOAD"),
    ("SET enable_external_access = true", "SET"),
    ("PRAGMA profiling_output = '{out}/profile.json'", "SET"),
    ("SELECT count(*) FROM bars; DROP VIEW bars", "DROP"),
    ("SELECT * FROM read_csv('/etc/passwd')", "Permission"),
    ("SELECT * FROM glob('/etc/*')", "Permission"),
    ("SELECT count(*) FROM read_parquet('{out}/elsewhere/*.parquet')", "Permission"),
]


@pytest.mark.parametrize(("sql", "fragment"), SQL_REFUSED, ids=[s[0][:30] for s in SQL_REFUSED])
def test_sql_is_read_only(
    sql: str,
    fragment: str,
    small_warehouse: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tally: Tally,
) -> None:
    tally.describe("hostile input", "hedgeflow sql: writes, file access, settings refused")
    home = small_warehouse
    out = tmp_path / "outside"
    out.mkdir()
    before = _file_digest(home)
    statement = sql.format(out=out.as_posix(), lake=(home / "lake").as_posix())
    code = main(["--home", str(home), "sql", statement])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("hedgeflow: error: ") and fragment in err, err
    assert "Traceback" not in err
    assert _file_digest(home) == before, "hedgeflow sql changed the warehouse"
    assert list(out.iterdir()) == [], "hedgeflow sql wrote a file"
    code = main(["--home", str(home), "sql", "select count(*) as n from bars", "--format", "csv"])
    assert code == 0 and capsys.readouterr().out.splitlines()[1] == "30"
    tally.trial()
    tally.outcome("refused, nothing changed")


def test_sql_refusal_happens_before_io(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tally: Tally
) -> None:
    tally.describe("hostile input", "hedgeflow sql: refused statements never create the home")
    home = tmp_path / "never"
    assert main(["--home", str(home), "sql", "COPY (SELECT 1) TO 'x.csv'"]) == 2
    assert "read-only" in capsys.readouterr().err
    assert not home.exists()
    tally.trial()
    tally.outcome("refused before I/O")


def test_sql_reads_still_work(
    small_warehouse: Path, capsys: pytest.CaptureFixture[str], tally: Tally
) -> None:
    tally.describe("hostile input", "hedgeflow sql: ordinary queries still answer")
    home = small_warehouse
    for sql in (
        "select symbol, count(*) from bars group by 1",
        "with r as (select * from runs) select count(*) from r",
        "show tables",
        "describe bars",
        "explain select * from bars",
        "pragma database_list",
        "call pragma_version()",
    ):
        assert main(["--home", str(home), "sql", sql]) == 0, capsys.readouterr().err
        tally.trial()
        tally.outcome("answered")
    capsys.readouterr()
