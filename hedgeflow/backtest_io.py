"""Reading a user's bars file and writing backtest outputs (``hedgeflow backtest --bars``).

``read_bars_file(path)`` accepts CSV (``.csv``, ``.csv.gz``, ``.txt``) or Parquet
(``.parquet``, ``.pq``):

- the time column is the first of ``ts``, ``timestamp``, ``datetime``, ``date``,
  ``time`` (any letter case), else the index (a DatetimeIndex, or an index with
  one of those names);
- text times: naive ones are taken as UTC, offset-aware ones converted to UTC;
  numbers are epoch seconds, or epoch milliseconds when above 1e11 (no date
  before 1973 is expressed in ms, none after 5138 in seconds);
- ``open``, ``high``, ``low``, ``close`` (any letter case) are required,
  ``volume`` is optional (NaN when absent).

Every problem raises ``InvalidInputError`` naming the file and what is wrong;
rows are 1-based data rows (the CSV header is not counted).

``write_backtest_outputs(result, metrics, out_dir)`` writes ``trades.csv``,
``equity.csv`` and ``metrics.json`` (strict JSON: NaN/inf written as ``null``),
each atomically (temporary file in the same directory, then rename).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hedgeflow.columns import BAR_COLUMNS, TS_DTYPE
from hedgeflow.engine import TRADE_COLUMNS, BacktestResult
from hedgeflow.errors import InvalidInputError
from hedgeflow.metrics import METRIC_KEYS, json_safe

__all__ = ["read_bars_file", "write_backtest_outputs"]

TIME_NAMES = ("ts", "timestamp", "datetime", "date", "time")
PRICE_NAMES = ("open", "high", "low", "close")
_MS_THRESHOLD = 1e11


def _fail(path: Path, problem: str) -> InvalidInputError:
    return InvalidInputError(f"bars file {str(path)!r}: {problem}")


def _show(value: Any) -> str:
    """A cell value for an error message: plain Python repr, 'an empty value' for NaN."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and value != value):
        return "an empty value"
    return repr(value)


def _read_raw(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        if name.endswith((".csv", ".csv.gz", ".txt")):
            return pd.read_csv(path)
    except Exception as exc:  # any parser failure (pyarrow, csv, gzip, ...) is a bad file
        raise _fail(path, f"cannot be read ({type(exc).__name__}: {exc})") from None
    raise _fail(path, "unknown format: expected a .csv, .csv.gz, .txt, .parquet or .pq file")


def _find_time(path: Path, df: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    lower = {str(c).lower(): c for c in df.columns}
    for name in TIME_NAMES:
        if name in lower:
            col = lower[name]
            return df[col].reset_index(drop=True), df.drop(columns=[col]).reset_index(drop=True)
    index_name = str(df.index.name).lower() if df.index.name is not None else None
    if isinstance(df.index, pd.DatetimeIndex) or index_name in TIME_NAMES:
        return pd.Series(df.index, name="ts"), df.reset_index(drop=True)
    raise _fail(
        path,
        f"no time column: expected one named {', '.join(TIME_NAMES)} (any case) or a "
        f"datetime index; columns are {', '.join(map(str, df.columns))}",
    )


def _parse_times(path: Path, raw: pd.Series) -> pd.Series:
    if raw.isna().any():
        row = int(np.flatnonzero(raw.isna().to_numpy())[0]) + 1
        raise _fail(path, f"missing time in row {row}")
    if isinstance(raw.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(raw.dtype):
        ts = pd.Series(pd.to_datetime(raw, utc=True))
    elif pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        values = raw.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            row = int(np.flatnonzero(~np.isfinite(values))[0]) + 1
            raise _fail(path, f"unparsable time {_show(raw.iat[row - 1])} in row {row}")
        unit = "ms" if np.abs(values).max() > _MS_THRESHOLD else "s"
        try:
            ts = pd.Series(pd.to_datetime(values, unit=unit, utc=True))
        except (ValueError, OverflowError):  # OutOfBoundsDatetime is a ValueError
            row = 1 + next(i for i, v in enumerate(values) if not _epoch_ok(v, unit))
            raise _fail(
                path, f"time {_show(raw.iat[row - 1])} in row {row} is out of range"
            ) from None
    else:
        text = pd.Series([_as_text(v) for v in raw], dtype=object).str.strip()
        with warnings.catch_warnings():  # "Could not infer format": the row error says it
            warnings.simplefilter("ignore", UserWarning)
            ts = pd.Series(pd.to_datetime(text, utc=True, errors="coerce"))
            if ts.isna().any():
                mixed = pd.Series(pd.to_datetime(text, utc=True, errors="coerce", format="mixed"))
                if mixed.isna().sum() < ts.isna().sum():
                    ts = mixed
        if ts.isna().any():
            row = int(np.flatnonzero(ts.isna().to_numpy())[0]) + 1
            raise _fail(path, f"unparsable time {_show(raw.iat[row - 1])} in row {row}")
    return ts.dt.as_unit("us").astype(TS_DTYPE).reset_index(drop=True)


def _as_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _epoch_ok(value: float, unit: str) -> bool:
    try:
        pd.Timestamp(value, unit=unit)
    except (ValueError, OverflowError):
        return False
    return True


def read_bars_file(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate a bars file -> frame ts (datetime64[us, UTC]), open, high, low,
    close, volume (float64), sorted by ts, RangeIndex. See the module doc."""
    p = Path(path)
    if not p.exists():
        raise _fail(p, "does not exist")
    if not p.is_file():
        raise _fail(p, "is not a file")
    df = _read_raw(p)
    if len(df) == 0:
        raise _fail(p, "has no rows")
    raw_ts, rest = _find_time(p, df)
    lower = {str(c).lower(): c for c in rest.columns}
    missing = [name for name in PRICE_NAMES if name not in lower]
    if missing:
        raise _fail(
            p,
            f"missing column(s) {', '.join(missing)}; columns are "
            f"{', '.join(map(str, df.columns))}",
        )
    ts = _parse_times(p, raw_ts)

    t = ts.to_numpy(dtype="datetime64[us]").astype(np.int64)
    if t.shape[0] > 1:
        step = np.diff(t)
        if (step <= 0).any():
            k = int(np.flatnonzero(step <= 0)[0]) + 1  # 0-based index of the offending row
            kind = "duplicate time" if step[k - 1] == 0 else "times not sorted ascending:"
            raise _fail(p, f"{kind} {ts.iat[k]} in row {k + 1} (row {k} has {ts.iat[k - 1]})")

    out = pd.DataFrame({"ts": ts})
    for name in PRICE_NAMES:
        col = rest[lower[name]]
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~(np.isfinite(values) & (values > 0))  # NaN, non-numeric, zero, negative, inf
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + 1
            raise _fail(
                p, f"{name} must be a positive number, got {_show(col.iat[row - 1])} in row {row}"
            )
        out[name] = values
    if "volume" in lower:
        vol_col = rest[lower["volume"]]
        vol = pd.to_numeric(vol_col, errors="coerce").to_numpy(dtype=np.float64)
        neg = vol < 0
        if neg.any():
            row = int(np.flatnonzero(neg)[0]) + 1
            raise _fail(p, f"negative volume {_show(vol_col.iat[row - 1])} in row {row}")
        if np.isinf(vol).any():
            row = int(np.flatnonzero(np.isinf(vol))[0]) + 1
            raise _fail(p, f"infinite volume {_show(vol_col.iat[row - 1])} in row {row}")
        out["volume"] = vol
    else:
        out["volume"] = np.nan

    o, h, lo, c = (out[k].to_numpy() for k in PRICE_NAMES)
    bad_high = h < np.maximum(o, c)
    if bad_high.any():
        row = int(np.flatnonzero(bad_high)[0]) + 1
        raise _fail(
            p,
            f"high {h[row - 1]} is below max(open, close) = {max(o[row - 1], c[row - 1])} "
            f"in row {row}",
        )
    bad_low = lo > np.minimum(o, c)
    if bad_low.any():
        row = int(np.flatnonzero(bad_low)[0]) + 1
        raise _fail(
            p,
            f"low {lo[row - 1]} is above min(open, close) = {min(o[row - 1], c[row - 1])} "
            f"in row {row}",
        )
    return out[list(BAR_COLUMNS)]


# --------------------------------------------------------------------------- outputs


def _atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _iso(series: pd.Series) -> pd.Series:
    return series.dt.strftime("%Y-%m-%dT%H:%M:%S.%f%z").str.replace(
        r"(\d\d)(\d\d)$", r"\1:\2", regex=True
    )


def write_backtest_outputs(
    result: BacktestResult, metrics: Mapping[str, Any], out_dir: str | os.PathLike[str]
) -> dict[str, Path]:
    """Write DIR/trades.csv, DIR/equity.csv and DIR/metrics.json atomically; return the paths.

    Times are ISO 8601 in UTC (``2024-01-02T14:30:00.000000+00:00``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    missing = [k for k in METRIC_KEYS if k not in metrics]
    if missing:
        raise InvalidInputError(f"metrics lack key(s): {', '.join(missing)}")

    trades = result.trades.loc[:, list(TRADE_COLUMNS)].copy()
    for col in ("entry_ts", "exit_ts"):
        trades[col] = _iso(trades[col])
    equity = result.equity.loc[:, ["ts", "equity", "drawdown"]].copy()
    equity["ts"] = _iso(equity["ts"])
    payload = json_safe({k: metrics[k] for k in METRIC_KEYS})
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"

    paths = {
        "trades": out / "trades.csv",
        "equity": out / "equity.csv",
        "metrics": out / "metrics.json",
    }
    _atomic_write(
        paths["trades"], lambda tmp: trades.to_csv(tmp, index=False, float_format="%.17g")
    )
    _atomic_write(
        paths["equity"], lambda tmp: equity.to_csv(tmp, index=False, float_format="%.17g")
    )
    _atomic_write(paths["metrics"], lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return paths
