"""split_valid_bars / ensure_valid_bars and the bars models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hedgeflow.columns import BAR_COLUMNS, STORED_BAR_COLUMNS, TS_DTYPE
from hedgeflow.errors import DataValidationError, InvalidInputError
from hedgeflow.schemas import BarsFrame, StoredBars, validate_frame
from hedgeflow.schemas.bars import (
    QUARANTINE_COLUMNS,
    REASON_DUPLICATE,
    REASON_HIGH,
    REASON_LOW,
    REASON_TS,
    REASON_UNSORTED,
    REASON_VOLUME,
    ensure_valid_bars,
    split_valid_bars,
)


def make_bars(n: int = 10, start: str = "2026-11-02 14:30", freq: str = "5min") -> pd.DataFrame:
    close = 100 + np.arange(n, dtype=float)
    return pd.DataFrame(
        {
            "ts": pd.date_range(start, periods=n, freq=freq, tz="UTC"),
            "open": close - 0.5,
            "high": close + 1.0,
            "low": close - 1.0,
            "close": close,
            "volume": np.full(n, 1000.0),
        }
    )


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return split_valid_bars(frame, "AAPL.US", "5m", "run-1")


def test_valid_frame_passes_unchanged() -> None:
    bars = make_bars()
    valid, quarantine = split(bars)
    pd.testing.assert_frame_equal(valid, bars)
    assert str(valid["ts"].dtype) == TS_DTYPE
    assert quarantine.empty
    assert tuple(quarantine.columns) == QUARANTINE_COLUMNS
    assert str(quarantine["ts"].dtype) == TS_DTYPE


def test_forex_null_volume_is_valid() -> None:
    bars = make_bars().assign(volume=np.nan)
    valid, quarantine = split(bars)
    assert len(valid) == len(bars) and quarantine.empty


def _set(col: str, value: object, row: int = 3):
    def mutate(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        if col == "ts":
            ts = frame["ts"].astype("object")
            ts.iloc[row] = value
            frame["ts"] = ts
        else:
            frame[col] = frame[col].astype("object")
            frame.loc[row, col] = value
        return frame

    return mutate


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (_set("open", np.nan), "open is NaN, infinite or <= 0"),
        (_set("close", 0.0), "close is NaN, infinite or <= 0"),
        (_set("low", -5.0), "low is NaN, infinite or <= 0"),
        (_set("high", np.inf), "high is NaN, infinite or <= 0"),
        (_set("open", "abc"), "open is NaN, infinite or <= 0"),
        (_set("high", 100.0), REASON_HIGH),  # row 3: close 103 > high 100
        (_set("low", 103.0), REASON_LOW),  # open 102.5 < low 103
        (_set("volume", -1.0), REASON_VOLUME),
        (_set("volume", np.inf), REASON_VOLUME),
        (_set("ts", None), REASON_TS),
        (_set("ts", "not a date"), REASON_TS),
    ],
)
def test_each_bad_row_kind_is_quarantined_with_its_reason(mutate, reason: str) -> None:
    bars = make_bars()
    valid, quarantine = split(mutate(bars))
    assert len(valid) == len(bars) - 1
    assert len(quarantine) == 1
    row = quarantine.iloc[0]
    assert row["reason"] == reason
    assert (row["run_id"], row["symbol"], row["interval"]) == ("run-1", "AAPL.US", "5m")
    assert bars["ts"].iloc[3] not in set(valid["ts"])


def test_several_reasons_are_joined() -> None:
    bars = make_bars()
    bars.loc[2, "open"] = -1.0
    bars.loc[2, "volume"] = -3.0
    _, quarantine = split(bars)
    assert quarantine["reason"].tolist() == ["open is NaN, infinite or <= 0; " + REASON_VOLUME]


def test_duplicates_keep_the_first_copy() -> None:
    bars = make_bars(5)
    dup = pd.concat([bars.iloc[:3], bars.iloc[[2]].assign(close=999.0, high=1000.0), bars.iloc[3:]])
    valid, quarantine = split(dup.reset_index(drop=True))
    pd.testing.assert_frame_equal(valid, bars)
    assert quarantine["reason"].tolist() == [REASON_DUPLICATE]
    assert quarantine["close"].tolist() == [999.0]


def test_unsorted_rows_are_quarantined() -> None:
    bars = make_bars(6)
    shuffled = bars.iloc[[0, 1, 4, 2, 3, 5]].reset_index(drop=True)
    valid, quarantine = split(shuffled)
    assert valid["ts"].is_monotonic_increasing and valid["ts"].is_unique
    assert len(valid) + len(quarantine) == 6
    assert set(quarantine["reason"]) == {REASON_UNSORTED}
    assert sorted(quarantine["ts"]) == sorted(bars["ts"].iloc[[2, 3]])


def test_a_bad_row_does_not_make_a_good_one_a_duplicate() -> None:
    bars = make_bars(4)
    broken_first = pd.concat([bars.iloc[[1]].assign(open=-1.0), bars.iloc[1:]])
    valid, quarantine = split(broken_first.reset_index(drop=True))
    assert valid["ts"].tolist() == bars["ts"].iloc[1:].tolist()
    assert quarantine["reason"].tolist() == ["open is NaN, infinite or <= 0"]


@pytest.mark.parametrize(
    "convert",
    [
        lambda s: s.dt.as_unit("ns"),
        lambda s: s.dt.tz_convert("America/New_York"),
        lambda s: s.dt.tz_localize(None),  # naive = UTC
        lambda s: s.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
    ],
)
def test_timestamps_are_normalised_to_us_utc(convert) -> None:
    bars = make_bars()
    valid, quarantine = split(bars.assign(ts=convert(bars["ts"])))
    assert quarantine.empty
    assert str(valid["ts"].dtype) == TS_DTYPE
    assert valid["ts"].tolist() == bars["ts"].tolist()


def test_numeric_ts_and_wrong_columns_raise() -> None:
    bars = make_bars()
    with pytest.raises(DataValidationError, match="ts must be datetimes"):
        split(bars.assign(ts=np.arange(len(bars))))
    with pytest.raises(DataValidationError, match="missing"):
        split(bars.drop(columns="volume"))
    with pytest.raises(DataValidationError, match="unexpected"):
        split(bars.assign(extra=1))


@pytest.mark.parametrize("symbol", ["../x", "A;DROP TABLE bars", "", "aapl"])
def test_bad_symbol_is_refused(symbol: str) -> None:
    with pytest.raises(InvalidInputError):
        split_valid_bars(make_bars(), symbol, "5m", "run-1")


def test_bad_interval_and_run_id_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        split_valid_bars(make_bars(), "AAPL.US", "7m", "run-1")
    with pytest.raises(InvalidInputError):
        split_valid_bars(make_bars(), "AAPL.US", "5m", "../run")


def test_model_authority_catches_what_row_checks_cannot(monkeypatch) -> None:
    # If a row check were missing, the pandera pass on the valid part still refuses.
    import hedgeflow.schemas.bars as bars_mod

    monkeypatch.setattr(bars_mod, "_row_checks", lambda ts, v: [])
    bars = make_bars()
    bars.loc[3, "high"] = 1.0
    with pytest.raises(DataValidationError, match="bars"):
        split(bars)


def test_ensure_valid_bars() -> None:
    bars = make_bars()
    pd.testing.assert_frame_equal(ensure_valid_bars(bars), bars)
    bad = bars.copy()
    bad.loc[1, "close"] = -1.0
    with pytest.raises(DataValidationError, match="close is NaN"):
        ensure_valid_bars(bad)
    with pytest.raises(DataValidationError, match="duplicate"):
        ensure_valid_bars(pd.concat([bars, bars.iloc[[-1]]]).reset_index(drop=True))


_NAT = np.iinfo(np.int64).min
_VALUES = st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 0.0, 1.0, 2.0, 2.0, 3.0, 1e308])


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_the_quick_all_pass_agrees_with_the_rules(data) -> None:
    """_all_rows_pass (a few reductions) is True exactly when no row or order rule
    fails anywhere (split_valid_bars and ensure_valid_bars then skip the masks)."""
    import hedgeflow.schemas.bars as bars_mod

    n = data.draw(st.integers(0, 5))
    cols = ("open", "high", "low", "close", "volume")
    v = {c: np.array(data.draw(st.lists(_VALUES, min_size=n, max_size=n))) for c in cols}
    ts_values = st.sampled_from([_NAT, -1, 0, 1, 2, 60])
    ts = np.array(data.draw(st.lists(ts_values, min_size=n, max_size=n)), dtype=np.int64)
    if n and data.draw(st.booleans()):  # valid bars, then at most one value changed
        usable = st.lists(st.sampled_from([1.0, 2.0, 3.0]), min_size=n, max_size=n)
        v["open"], v["close"] = np.array(data.draw(usable)), np.array(data.draw(usable))
        v["high"] = np.maximum(v["open"], v["close"])
        v["low"] = np.minimum(v["open"], v["close"])
        v["volume"] = np.array(data.draw(usable))
        ts = np.arange(n, dtype=np.int64) * 60
        col = data.draw(st.sampled_from([*cols, "ts", None]))
        row = data.draw(st.integers(0, n - 1))
        if col == "ts":
            ts[row] = data.draw(ts_values)
        elif col is not None:
            v[col][row] = data.draw(_VALUES)
    assert bars_mod._all_rows_pass(ts, v) != _rules_fail(ts, v)


def _rules_fail(ts: np.ndarray, v: dict[str, np.ndarray]) -> bool:
    import hedgeflow.schemas.bars as bars_mod

    checks = bars_mod._row_checks(ts, v)
    row_bad = np.zeros(len(ts), dtype=bool)
    for _, mask in checks:
        row_bad |= mask
    return bool(checks or bars_mod._order_checks(ts, ~row_bad))


def test_the_quick_all_pass_sees_every_rule_at_every_row() -> None:
    """Valid bars with one value changed, every column, row and kind of value."""
    import hedgeflow.schemas.bars as bars_mod

    specials = [np.nan, np.inf, -np.inf, -1.0, 0.0, 1.0, 2.5, 10.0, 1e308]
    for col in ("ts", "open", "high", "low", "close", "volume"):
        for row in range(3):
            for value in [_NAT, -60, 0, 60, 120, 180] if col == "ts" else specials:
                ts = np.arange(3, dtype=np.int64) * 60
                v = {
                    "open": np.array([2.0, 3.0, 4.0]),
                    "high": np.array([3.0, 4.0, 5.0]),
                    "low": np.array([1.0, 2.0, 3.0]),
                    "close": np.array([2.5, 3.5, 4.5]),
                    "volume": np.array([5.0, np.nan, 0.0]),
                }
                if col == "ts":
                    ts[row] = value
                else:
                    v[col][row] = value
                assert bars_mod._all_rows_pass(ts, v) != _rules_fail(ts, v), (col, row, value)


def _count_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the row and order checks (and still run them)."""
    import hedgeflow.schemas.bars as bars_mod

    calls: list[int] = []
    real = bars_mod._failing_checks

    def counted(ts: np.ndarray, v: dict[str, np.ndarray]) -> object:
        calls.append(len(ts))
        return real(ts, v)

    monkeypatch.setattr(bars_mod, "_failing_checks", counted)
    return calls


def test_ensure_valid_bars_passes_splits_valid_frame_unchecked(monkeypatch) -> None:
    """The valid frame as split_valid_bars returned it was checked there: the writer's
    gate does not check it again; a frame derived from it is checked."""
    import pickle

    valid, _ = split(make_bars())
    calls = _count_checks(monkeypatch)
    assert ensure_valid_bars(valid) is valid
    assert calls == []
    derived = [
        valid.copy(),
        valid.copy(deep=False),
        valid.iloc[:5],
        valid[list(BAR_COLUMNS)],
        valid.reset_index(drop=True),
        pickle.loads(pickle.dumps(valid)),
        pd.DataFrame(valid),
    ]
    for frame in derived:
        pd.testing.assert_frame_equal(ensure_valid_bars(frame), frame)
    assert len(calls) == len(derived)
    # the input frame changed after the split: copy-on-write keeps the valid frame as it was
    bars = make_bars()
    valid, _ = split(bars)
    bars.loc[1, "high"] = 1.0
    bars["low"] = -1.0
    assert ensure_valid_bars(valid) is valid
    pd.testing.assert_frame_equal(valid, make_bars())


def _set_high(df: pd.DataFrame) -> None:
    df.loc[3, "high"] = 1.0


def _iloc_high(df: pd.DataFrame) -> None:
    df.iloc[3, 2] = 1.0


def _iat_low(df: pd.DataFrame) -> None:
    df.iat[3, 3] = 1e9


def _new_column(df: pd.DataFrame) -> None:
    df["close"] = -df["close"]


def _inplace_op(df: pd.DataFrame) -> None:
    df["high"] *= 0.5


def _mask_set(df: pd.DataFrame) -> None:
    df.loc[df["close"] > 105, "low"] = 1e9


def _update(df: pd.DataFrame) -> None:
    df.update(pd.DataFrame({"open": [1e9]}, index=[2]))


def _reverse(df: pd.DataFrame) -> None:
    df["ts"] = df["ts"].iloc[::-1].to_numpy()


def _duplicate(df: pd.DataFrame) -> None:
    df.loc[4, "ts"] = df.loc[3, "ts"]


def _swap_names(df: pd.DataFrame) -> None:
    df.columns = ["ts", "open", "low", "high", "close", "volume"]


def _nan_volume_dtype(df: pd.DataFrame) -> None:
    df["volume"] = df["volume"].astype("float32") * -1


@pytest.mark.parametrize(
    "change",
    [
        _set_high,
        _iloc_high,
        _iat_low,
        _new_column,
        _inplace_op,
        _mask_set,
        _update,
        _reverse,
        _duplicate,
        _swap_names,
        _nan_volume_dtype,
    ],
)
def test_a_changed_valid_frame_is_checked_again(change) -> None:
    valid, _ = split(make_bars())
    change(valid)
    with pytest.raises(DataValidationError):
        ensure_valid_bars(valid)


def test_a_valid_frames_arrays_are_read_only() -> None:
    """What the mark cannot see (a write through a numpy view) pandas refuses."""
    valid, _ = split(make_bars())
    for values in (valid["high"].to_numpy(), np.asarray(valid["low"])):
        with pytest.raises(ValueError, match="read-only"):
            values[0] = 1.0


def test_stored_bars_model() -> None:
    bars = make_bars()
    stored = bars.assign(
        symbol="AAPL.US",
        interval="5m",
        source="synthetic",
        ingested_at=pd.Timestamp("2026-11-03", tz="UTC"),
    )[list(STORED_BAR_COLUMNS)]
    out = validate_frame(StoredBars, stored, "bars")
    assert str(out["ingested_at"].dtype) == TS_DTYPE
    with pytest.raises(DataValidationError):
        validate_frame(StoredBars, pd.concat([stored, stored.iloc[[0]]]), "bars")
    with pytest.raises(DataValidationError):
        validate_frame(StoredBars, stored.assign(symbol="../x"), "bars")
    assert set(BarsFrame.to_schema().columns) == set(BAR_COLUMNS)


# ---------------------------------------------------------------- properties

_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=90, max_value=110),
    st.just(0.0),
    st.none(),
)
_ts_offsets = st.one_of(st.integers(min_value=0, max_value=30), st.none())


@st.composite
def garbage_bars(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(min_value=0, max_value=40))
    base = pd.Timestamp("2026-11-02", tz="UTC")
    offsets = draw(st.lists(_ts_offsets, min_size=n, max_size=n))
    ts = [None if o is None else base + pd.Timedelta(minutes=5 * o) for o in offsets]
    cols = {c: draw(st.lists(_values, min_size=n, max_size=n)) for c in BAR_COLUMNS[1:]}
    frame = pd.DataFrame({"ts": pd.Series(ts, dtype="object"), **cols})
    if draw(st.booleans()):
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    if draw(st.booleans()) and n:
        frame["close"] = frame["close"].astype("object")
        frame.loc[0, "close"] = draw(st.sampled_from(["x", "1e3", "", "nan"]))
    return frame


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage_bars())
def test_split_never_raises_and_keeps_every_row(frame: pd.DataFrame) -> None:
    valid, quarantine = split(frame)
    assert len(valid) + len(quarantine) == len(frame)
    BarsFrame.validate(valid)
    assert str(valid["ts"].dtype) == TS_DTYPE
    assert valid["ts"].is_monotonic_increasing and valid["ts"].is_unique
    assert (quarantine["reason"].str.len() > 0).all()


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=60), st.randoms(use_true_random=False))
def test_valid_bars_shuffled_keep_the_increasing_subsequence(n: int, rnd) -> None:
    bars = make_bars(n)
    order = list(range(n))
    rnd.shuffle(order)
    valid, quarantine = split(bars.iloc[order].reset_index(drop=True))
    assert len(valid) + len(quarantine) == n
    assert set(quarantine["reason"]) <= {REASON_UNSORTED}
    # The valid part is exactly the running-maximum records of the shuffled order.
    records, best = [], -1
    for i in order:
        if i > best:
            records.append(i)
            best = i
    assert valid["ts"].tolist() == bars["ts"].iloc[records].tolist()


@pytest.mark.slow
def test_split_valid_bars_speed_on_1m_rows() -> None:
    import time

    n = 1_000_000
    bars = make_bars(n, start="2015-01-01")
    split(bars)  # warm up pandera
    t0 = time.perf_counter()
    valid, _ = split(bars)
    elapsed = time.perf_counter() - t0
    assert len(valid) == n
    assert elapsed < 0.3, f"split_valid_bars on 1M rows took {elapsed:.3f} s"


@pytest.mark.parametrize("tz", ["UTC", "dateutil/UTC", "Etc/UTC", "America/New_York"])
def test_the_valid_frame_is_utc_whatever_the_utc(tz: str) -> None:
    """The valid frame's ts is datetime64[us, UTC] with pandas' own UTC, whichever
    time zone object the input had (an input taken without a copy included)."""
    import datetime

    bars = make_bars()
    bars["ts"] = bars["ts"].dt.tz_convert(tz)
    valid, _ = split(bars)
    assert valid["ts"].dt.tz is datetime.UTC
    assert valid["ts"].tolist() == make_bars()["ts"].tolist()
