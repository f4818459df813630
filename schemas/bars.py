"""Bars: the source frame, its stored form, the quarantine, and the row checks.

``split_valid_bars`` is the gate between a source and the lake: every row that
breaks a bar rule goes to the quarantine with a reason, the rest is validated
with ``BarsFrame``. The row checks are plain numpy over the whole frame (they
run on millions of rows per ingest); the pandera models stay the authority for
columns, dtypes and the value rules (the checks below implement exactly the
model's rules, and the valid part is validated with the model afterwards).

Duplicates: the **first** row of a timestamp is kept and every later copy is
quarantined ("duplicate ts"), so a vendor that repeats a bar loses nothing.
Order: a row whose ts is earlier than the latest ts of the valid rows before it
is quarantined ("ts out of order"): the valid part is strictly increasing.
Duplicate and order checks only look at rows that passed the row checks, so a
broken row never makes a good one look like a duplicate.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from hedgeflow.columns import (
    BAR_COLUMNS,
    CLOSE,
    HIGH,
    INTERVAL,
    LOW,
    OPEN,
    PRICE_COLUMNS,
    REASON,
    RUN_ID,
    SYMBOL,
    TS,
    VOLUME,
)
from hedgeflow.errors import DataValidationError, InvalidInputError
from hedgeflow.market import INTERVAL_SECONDS, normalize_symbol, validate_interval
from hedgeflow.schemas._base import (
    SYMBOL_PATTERN,
    TS_PANDAS_DTYPE,
    TableModel,
    ts_field,
    validate_frame,
)
from hedgeflow.schemas.columns import GAP_KINDS, RUN_ID_PATTERN

_RUN_ID_RE = re.compile(RUN_ID_PATTERN)
_NAT = np.iinfo(np.int64).min  # pandas' NaT as int64

# Quarantine reasons (one row may carry several, joined with "; ").
REASON_TS = "ts missing or unparsable"
REASON_PRICE = "{col} is NaN, infinite or <= 0"
REASON_HIGH = "high < max(open, close)"
REASON_LOW = "low > min(open, close)"
REASON_VOLUME = "volume negative or infinite"
REASON_DUPLICATE = "duplicate ts (an earlier row has the same ts)"
REASON_UNSORTED = "ts out of order (earlier than a previous valid bar)"


# The dataframe checks below use ignore_na=False: pandera's default (True) lets a row
# whose every value is null pass them, and finds those rows with a null mask of the
# whole frame per check (a third of the validation's time on a million bars). ts is
# never null in these models, so no row is all null: the outcome is the same.
class _Ohlcv(TableModel):
    open: Series[float] = pa.Field(gt=0)
    high: Series[float] = pa.Field(gt=0)
    low: Series[float] = pa.Field(gt=0)
    close: Series[float] = pa.Field(gt=0)
    # Forex has no volume: null allowed, >= 0 when present.
    volume: Series[float] = pa.Field(ge=0, nullable=True)

    @pa.check("open", "high", "low", "close", name="finite")
    def _finite_prices(cls, s: pd.Series) -> pd.Series:
        return pd.Series(np.isfinite(s.to_numpy(dtype="float64")), index=s.index)

    @pa.check("volume", name="finite_or_null")
    def _finite_volume(cls, s: pd.Series) -> pd.Series:
        v = s.to_numpy(dtype="float64", na_value=np.nan)
        return pd.Series(np.isnan(v) | np.isfinite(v), index=s.index)

    @pa.dataframe_check(name="high >= max(open, close)", ignore_na=False)
    def _high_covers(cls, df: pd.DataFrame) -> pd.Series:
        return df[HIGH] >= np.maximum(df[OPEN], df[CLOSE])

    @pa.dataframe_check(name="low <= min(open, close)", ignore_na=False)
    def _low_covers(cls, df: pd.DataFrame) -> pd.Series:
        return df[LOW] <= np.minimum(df[OPEN], df[CLOSE])


class BarsFrame(_Ohlcv):
    """A bars frame as a source returns it: start-stamped UTC bars, strictly increasing ts."""

    ts: Series[pd.DatetimeTZDtype] = ts_field()

    @pa.dataframe_check(name="ts strictly increasing", ignore_na=False)
    def _ts_increasing(cls, df: pd.DataFrame) -> pd.Series:
        t = df[TS].to_numpy(dtype="datetime64[us]").view("int64")
        ok = np.ones(len(t), dtype=bool)
        if len(t) > 1:
            ok[1:] = t[1:] > t[:-1]
        return pd.Series(ok, index=df.index)


class StoredBars(_Ohlcv):
    """A bars row as stored in the lake (key: symbol, interval, ts)."""

    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    interval: Series[str] = pa.Field(isin=list(INTERVAL_SECONDS))
    ts: Series[pd.DatetimeTZDtype] = ts_field()
    source: Series[str] = pa.Field(str_length={"min_value": 1})
    ingested_at: Series[pd.DatetimeTZDtype] = ts_field()

    class Config:
        unique = (SYMBOL, INTERVAL, TS)


class Quarantine(TableModel):
    """A rejected source row (raw values as far as they parse) and why."""

    run_id: Series[str] = pa.Field(str_matches=RUN_ID_PATTERN)
    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    interval: Series[str] = pa.Field(isin=list(INTERVAL_SECONDS))
    # Null when the source time could not be parsed.
    ts: Series[pd.DatetimeTZDtype] = ts_field(nullable=True)
    open: Series[float] = pa.Field(nullable=True)
    high: Series[float] = pa.Field(nullable=True)
    low: Series[float] = pa.Field(nullable=True)
    close: Series[float] = pa.Field(nullable=True)
    volume: Series[float] = pa.Field(nullable=True)
    reason: Series[str] = pa.Field(str_length={"min_value": 1})


QUARANTINE_COLUMNS: tuple[str, ...] = (RUN_ID, SYMBOL, INTERVAL, *BAR_COLUMNS, REASON)


class LakeQuarantine(TableModel):
    """A lake partition file that could not be read, moved to the quarantine folder
    (``lake/quarantine/...``), and why. Like ``bars`` it lives in the lake (one JSON
    record next to each moved file) and DuckDB shows it as the ``lake_quarantine``
    view: healing never needs the DuckDB file."""

    healed_at: Series[pd.DatetimeTZDtype] = ts_field()
    interval: Series[str] = pa.Field(isin=list(INTERVAL_SECONDS))
    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    month: Series[str] = pa.Field(str_matches=r"^\d{4}-\d{2}$")
    # paths relative to HEDGEFLOW_HOME (posix)
    file: Series[str] = pa.Field(str_length={"min_value": 1})
    quarantined_as: Series[str] = pa.Field(str_length={"min_value": 1})
    bytes: Series[int] = pa.Field(ge=0)
    reason: Series[str] = pa.Field(str_length={"min_value": 1})


class VendorGap(TableModel):
    """A vendor answer with no bars for ``[start, end)`` (DESIGN.md convention 8): the
    ingest kept the stored bars there and recorded it, one JSON record per answer in
    ``lake/vendor_gaps/``. The ``data_gaps`` view reports the open sessions it covers."""

    recorded_at: Series[pd.DatetimeTZDtype] = ts_field()
    run_id: Series[str] = pa.Field(str_matches=RUN_ID_PATTERN)
    source: Series[str] = pa.Field(str_length={"min_value": 1})
    interval: Series[str] = pa.Field(isin=list(INTERVAL_SECONDS))
    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    start: Series[pd.DatetimeTZDtype] = ts_field()
    end: Series[pd.DatetimeTZDtype] = ts_field()


class DataGaps(TableModel):
    """The ``data_gaps`` view (data quality, convention 8), one row per gap:

    * ``missing_session``: a stock session the exchange calendar says was open, between
      a series' first and last stored bar, with no stored bar;
    * ``vendor_empty``: an open session (stocks) or a range (forex, crypto) for which
      the vendor answered with no bars; ``stored_bars`` the bars kept there."""

    kind: Series[str] = pa.Field(isin=list(GAP_KINDS))
    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    interval: Series[str] = pa.Field(isin=list(INTERVAL_SECONDS))
    calendar: Series[str] = pa.Field(nullable=True)  # XNYS; null for forex and crypto
    start: Series[pd.DatetimeTZDtype] = ts_field()  # the session's open, or the range's
    end: Series[pd.DatetimeTZDtype] = ts_field()
    stored_bars: Series[int] = pa.Field(ge=0)
    run_id: Series[str] = pa.Field(nullable=True)


# --------------------------------------------------------------------------
# Conversion of a raw frame to numpy arrays (never raises on bad values)
# --------------------------------------------------------------------------


def _check_columns(frame: object) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise DataValidationError(f"bars: expected a pandas DataFrame, got {type(frame).__name__}")
    cols = [str(c) for c in frame.columns]
    missing = [c for c in BAR_COLUMNS if c not in cols]
    extra = [c for c in cols if c not in BAR_COLUMNS]
    if missing or extra or len(set(cols)) != len(cols):
        raise DataValidationError(
            f"bars: columns must be exactly {list(BAR_COLUMNS)}; "
            f"missing {missing}, unexpected {extra}"
        )
    return frame


def _ts_to_us(col: pd.Series) -> np.ndarray:
    """int64 microseconds since the epoch (UTC), NaT -> int64 min. Raises only on numbers."""
    dtype = col.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        s = col if str(dtype.tz) == "UTC" else col.dt.tz_convert("UTC")
        return _datetime_series_us(s)
    if pd.api.types.is_datetime64_dtype(dtype):
        # Naive datetimes are taken as UTC (the project convention).
        return _datetime_series_us(col)
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        raise DataValidationError(
            "bars: ts must be datetimes or date strings, not numbers "
            "(the epoch unit would be a guess; convert in the source)"
        )
    try:
        parsed = pd.to_datetime(col, errors="coerce", utc=True, format="mixed")
        return _datetime_series_us(parsed)
    except (ValueError, TypeError, OverflowError, pd.errors.OutOfBoundsDatetime):
        out = np.full(len(col), _NAT, dtype=np.int64)
        for i, value in enumerate(col.tolist()):
            try:
                one = pd.Timestamp(value)
                one = one.tz_localize("UTC") if one.tzinfo is None else one.tz_convert("UTC")
                out[i] = int(one.as_unit("us").asm8.astype(np.int64))
            except (ValueError, TypeError, OverflowError, pd.errors.OutOfBoundsDatetime):
                pass
        return out


def _datetime_series_us(s: pd.Series) -> np.ndarray:
    idx = pd.DatetimeIndex(s)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    try:
        idx = idx.as_unit("us")
    except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):  # pragma: no cover
        idx = pd.DatetimeIndex([pd.NaT] * len(idx)).as_unit("us")
    return np.asarray(idx.asi8, dtype=np.int64)


def _to_float(col: pd.Series) -> np.ndarray:
    if col.dtype == np.float64:
        return col.to_numpy()
    try:
        num = pd.to_numeric(col, errors="coerce")
        return np.asarray(num.to_numpy(dtype="float64", na_value=np.nan), dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        out = np.full(len(col), np.nan)
        for i, value in enumerate(col.tolist()):
            with contextlib.suppress(ValueError, TypeError, OverflowError):
                out[i] = float(value)
        return out


def _arrays(frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    ts = _ts_to_us(frame[TS])
    values = {c: _to_float(frame[c]) for c in (*PRICE_COLUMNS, VOLUME)}
    return ts, values


def _row_checks(ts: np.ndarray, v: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """(reason, mask of failing rows) per row rule; only rules that fail somewhere."""
    checks: list[tuple[str, np.ndarray]] = [(REASON_TS, ts == _NAT)]
    with np.errstate(invalid="ignore"):
        prices_bad = np.zeros(len(ts), dtype=bool)
        for c in PRICE_COLUMNS:
            x = v[c]
            bad = ~(np.isfinite(x) & (x > 0))
            checks.append((REASON_PRICE.format(col=c), bad))
            prices_bad |= bad
        # The high/low rules only speak about rows whose four prices are usable.
        o, h, lo, c_ = v[OPEN], v[HIGH], v[LOW], v[CLOSE]
        checks.append((REASON_HIGH, ~prices_bad & (h < np.maximum(o, c_))))
        checks.append((REASON_LOW, ~prices_bad & (lo > np.minimum(o, c_))))
        vol = v[VOLUME]
        checks.append((REASON_VOLUME, (vol < 0) | np.isinf(vol)))
    return [(r, m) for r, m in checks if m.any()]


def _order_checks(ts: np.ndarray, row_ok: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Duplicates (later copies) and out-of-order rows among the rows that passed."""
    if len(ts) < 2:
        return []
    t = np.where(row_ok, ts, _NAT)
    running = np.maximum.accumulate(t)
    prev = np.empty_like(running)
    prev[0] = _NAT
    prev[1:] = running[:-1]
    dup = row_ok & (t == prev)
    unsorted = row_ok & (t < prev)
    return [(r, m) for r, m in ((REASON_DUPLICATE, dup), (REASON_UNSORTED, unsorted)) if m.any()]


def _all_rows_pass(ts: np.ndarray, v: dict[str, np.ndarray]) -> bool:
    """True when no row or order rule fails anywhere, found with a few reductions
    instead of a mask per rule (the usual case: a vendor's bars are valid); False
    when some rule may fail (``_row_checks`` and ``_order_checks`` then say which)."""
    if len(ts) == 0:
        return True
    with np.errstate(invalid="ignore"):
        for c in PRICE_COLUMNS:
            x = v[c]
            if not (x.min() > 0 and x.max() < np.inf):  # a NaN makes both False
                return False
        o, h, lo, c_ = v[OPEN], v[HIGH], v[LOW], v[CLOSE]  # no NaN from here
        if not (h >= np.maximum(o, c_)).all() or not (lo <= np.minimum(o, c_)).all():
            return False
        vol = v[VOLUME]
        if (vol < 0).any() or np.isinf(vol).any():
            return False
    # strictly increasing: no duplicate, none out of order, and only ts[0] could be NaT
    return bool(ts[0] != _NAT and (ts[1:] > ts[:-1]).all())


def _failing_checks(
    ts: np.ndarray, v: dict[str, np.ndarray]
) -> tuple[list[tuple[str, np.ndarray]], np.ndarray | None]:
    """(reason, mask of failing rows) of every row and order rule failing somewhere,
    and the mask of the bad rows (None when there is none)."""
    if _all_rows_pass(ts, v):
        return [], None
    checks = _row_checks(ts, v)
    row_bad = np.zeros(len(ts), dtype=bool)
    for _, mask in checks:
        row_bad |= mask
    order = _order_checks(ts, ~row_bad)
    bad = row_bad
    for _, mask in order:
        bad = bad | mask
    return checks + order, bad if bad.any() else None


def _bars_frame(ts: np.ndarray, v: dict[str, np.ndarray], keep: np.ndarray | None) -> pd.DataFrame:
    def pick(a: np.ndarray) -> np.ndarray:
        return a if keep is None else a[keep]

    data: dict[str, object] = {
        TS: pd.DatetimeIndex(pick(ts).view("datetime64[us]")).tz_localize("UTC"),
    }
    for c in (*PRICE_COLUMNS, VOLUME):
        data[c] = pick(v[c])
    return pd.DataFrame(data, columns=list(BAR_COLUMNS))


def _reasons(checks: list[tuple[str, np.ndarray]], idx: np.ndarray) -> list[str]:
    parts = np.full(len(idx), "", dtype=object)
    for reason, mask in checks:
        sel = mask[idx]
        parts[sel] = parts[sel] + reason + "; "
    return [p[:-2] for p in parts]


def _check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_RE.fullmatch(run_id):
        raise InvalidInputError(
            f"invalid run id {run_id!r}: letters, digits, '_', '.', '-' (max 128, no leading dot)"
        )
    return run_id


def split_valid_bars(
    frame: pd.DataFrame, symbol: str, interval: str, run_id: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a raw bars frame into (valid bars, quarantine rows).

    ``frame`` must have exactly the columns ts, open, high, low, close, volume
    (any dtypes: bad values are quarantined, not raised; a numeric ``ts`` is
    refused because its unit is ambiguous). Returns a ``BarsFrame``-valid frame
    (RangeIndex, ts ``datetime64[us, UTC]``, strictly increasing) and a
    ``Quarantine`` frame; together they hold every input row exactly once.
    A row failing several rules gets the reasons joined with ``"; "``.

    Raises InvalidInputError for a bad symbol/interval/run id and
    DataValidationError when the columns are wrong or the valid part still
    fails the ``BarsFrame`` model (a rule the row checks missed).

    The valid frame carries a mark (``_Checked``): ``ensure_valid_bars`` (the lake
    writer's gate) passes it unchecked while its columns are unchanged. When
    ``frame`` already has the exact dtypes and no row is bad, the valid frame shares
    its columns (copy-on-write: changing either later leaves the other as it was).
    """
    symbol = normalize_symbol(symbol)
    validate_interval(interval)
    _check_run_id(run_id)
    _check_columns(frame)

    ts, values = _arrays(frame)
    checks, bad = _failing_checks(ts, values)

    if bad is None:
        # a frame of the exact dtypes is taken as it is (pandas' copy-on-write keeps
        # the two apart if either is changed later), any other is built anew
        valid = _exact_bars(frame)
        if valid is None:
            valid = _bars_frame(ts, values, None)
        quarantine = _empty_quarantine()
    else:
        bad_idx = np.flatnonzero(bad)
        valid = _bars_frame(ts, values, ~bad)
        q = _bars_frame(ts, values, bad_idx)
        q.insert(0, INTERVAL, interval)
        q.insert(0, SYMBOL, symbol)
        q.insert(0, RUN_ID, run_id)
        q[REASON] = _reasons(checks, bad_idx)
        q[TS] = q[TS].where(ts[bad_idx] != _NAT)
        quarantine = validate_frame(Quarantine, q, "quarantine")

    # inplace: valid is this function's own frame (pandera's copy would cost a fifth)
    valid = validate_frame(BarsFrame, valid, "bars", inplace=True)
    valid = valid[list(BAR_COLUMNS)]
    _mark_checked(valid)
    return valid, quarantine


def _exact_bars(frame: pd.DataFrame) -> pd.DataFrame | None:
    """``frame``'s bar columns in order, without a copy, when their dtypes are exactly
    the bars frame's (ts ``datetime64[us, UTC]``, float64 values); else None."""
    dtypes = frame.dtypes
    ts_dtype = dtypes[TS]
    # the very tz object _bars_frame gives (an equal one, e.g. dateutil's tzutc(), is
    # not the same to a reader of .dt.tz)
    if ts_dtype != TS_PANDAS_DTYPE or ts_dtype.tz is not TS_PANDAS_DTYPE.tz:
        return None
    if any(dtypes[c] != np.float64 for c in (*PRICE_COLUMNS, VOLUME)):
        return None
    out = frame[list(BAR_COLUMNS)]
    if not _default_index(out):
        out = out.reset_index(drop=True)
    return out


def _default_index(frame: pd.DataFrame) -> bool:
    index = frame.index
    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1


# -- the checked mark: write_bars (ensure_valid_bars) does not check them again ----------

_CHECKED = "_hedgeflow_checked_bars"


@dataclass(frozen=True, eq=False)
class _Checked:
    """``split_valid_bars``'s mark on the valid frame it returns: that frame object's
    own attribute (pandas carries none to frames derived from it, nor through a
    pickle). ``pin`` is a shallow copy of the frame as returned: while it lives,
    pandas (copy-on-write) copies any column of the frame before changing it, and the
    memory it had stays allocated, so the frame's columns are still ``memory`` (the
    same dtypes and buffers) exactly when nothing has changed them since."""

    pin: pd.DataFrame
    memory: tuple[tuple[str, int, tuple[int, ...], tuple[int, ...]], ...]


def _column_memory(
    frame: pd.DataFrame,
) -> tuple[tuple[str, int, tuple[int, ...], tuple[int, ...]], ...] | None:
    """(dtype, buffer address, shape, strides) per bar column, None when the columns are
    not the bars frame's exactly."""
    if list(frame.columns) != list(BAR_COLUMNS):
        return None
    out = []
    for c in BAR_COLUMNS:
        col = frame[c]
        if col.dtype != (TS_PANDAS_DTYPE if c == TS else np.float64):
            return None
        values = np.asarray(col.array.asi8 if c == TS else col.to_numpy())
        info = values.__array_interface__
        out.append((str(col.dtype), int(info["data"][0]), values.shape, values.strides))
    return tuple(out)


def _mark_checked(valid: pd.DataFrame) -> None:
    memory = _column_memory(valid)
    if memory is not None and _default_index(valid):
        # object.__setattr__: pandas' own would look for a column of that name first
        object.__setattr__(valid, _CHECKED, _Checked(valid.copy(deep=False), memory))


def _still_checked(frame: object) -> bool:
    """Whether ``frame`` is a valid frame returned by ``split_valid_bars``, unchanged."""
    if not isinstance(frame, pd.DataFrame):
        return False
    mark = frame.__dict__.get(_CHECKED)
    if not isinstance(mark, _Checked) or not _default_index(frame):
        return False
    return len(frame) == len(mark.pin) and _column_memory(frame) == mark.memory


def _empty_quarantine() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            RUN_ID: pd.Series([], dtype="str"),
            SYMBOL: pd.Series([], dtype="str"),
            INTERVAL: pd.Series([], dtype="str"),
            TS: pd.Series([], dtype=TS_PANDAS_DTYPE),
            **{c: pd.Series([], dtype="float64") for c in (*PRICE_COLUMNS, VOLUME)},
            REASON: pd.Series([], dtype="str"),
        }
    )
    return frame[list(QUARANTINE_COLUMNS)]


def ensure_valid_bars(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` as an exact ``BarsFrame`` or raise DataValidationError.

    The fast gate of the lake writer: the same rules as ``split_valid_bars``
    (numpy, no pandera pass), but any failing row is an error, not quarantined.
    A valid frame just as ``split_valid_bars`` returned it (its mark, and its
    columns unchanged since: see ``_Checked``) passed them there: it is returned as
    it is, unchecked.
    """
    if _still_checked(frame):
        return frame
    _check_columns(frame)
    ts, values = _arrays(frame)
    checks, _ = _failing_checks(ts, values)
    if checks:
        summary = ", ".join(f"{int(m.sum())} x {r}" for r, m in checks)
        first = int(np.flatnonzero(np.logical_or.reduce([m for _, m in checks]))[0])
        raise DataValidationError(
            f"bars: {summary} (first bad row at position {first}); "
            "run split_valid_bars first to quarantine bad rows"
        )
    return _bars_frame(ts, values, None)


def empty_bars() -> pd.DataFrame:
    """A zero-row bars frame with the exact dtypes."""
    values = {c: np.empty(0) for c in (*PRICE_COLUMNS, VOLUME)}
    return _bars_frame(np.empty(0, dtype=np.int64), values, None)
