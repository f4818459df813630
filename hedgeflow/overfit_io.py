"""``hedgeflow overfit --returns FILE --out DIR [--blocks S]``: a returns matrix file in,
``overfit.json`` out (DESIGN.md "Overfitting statistics").

The file is CSV (``.csv``, ``.csv.gz``, ``.txt``) or Parquet (``.parquet``, ``.pq``)
with a time column (the first named ``ts``, ``timestamp``, ``datetime``, ``date`` or
``time``, any letter case; times as ``hedgeflow backtest --bars`` reads them,
strictly ascending) and one numeric column per trial. Every problem is an
``InvalidInputError`` naming the file and what is wrong, raised before anything is
written (a file over the ceilings of ``RETURNS_LIMITS``, a ``.csv.gz`` that inflates
past them included, is refused before it is held in memory); ``overfit.json`` is
written atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hedgeflow.backtest_io import TIME_NAMES, _parse_times
from hedgeflow.errors import InvalidInputError, out_of_space_as
from hedgeflow.fsutil import atomic_write, directory_problem, file_kind
from hedgeflow.metrics import json_safe
from hedgeflow.overfit import (
    DEFAULT_BLOCKS,
    OverfitStats,
    check_blocks,
    check_dimensions,
    overfit_stats,
)
from hedgeflow.table_files import Limits, read_table_file

__all__ = ["OVERFIT_JSON", "overfit_file", "read_returns_file", "write_overfit_json"]

OVERFIT_JSON = "overfit.json"
# The returns file's ceilings: 4 GiB on disk and decompressed, 10 M rows, 500 M values
# (4 GB of float64: the 1,000 trials x 100,000 rows of the benchmark are 100 M).
RETURNS_LIMITS = Limits(max_bytes=4 << 30, max_rows=10_000_000, max_cells=500_000_000)


def _fail(path: Path, problem: str) -> InvalidInputError:
    return InvalidInputError(f"returns file {str(path)!r}: {problem}")


def read_returns_file(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """(trial names, T x N float64 matrix) of a returns file; see the module doc."""
    p = Path(path)
    if not p.exists():
        raise _fail(p, "does not exist")
    if not p.is_file():
        raise _fail(p, "is not a file")
    df = read_table_file(p, "returns file", RETURNS_LIMITS)
    if len(df) == 0:
        raise _fail(p, "has no rows")
    lower = {str(c).lower(): c for c in df.columns}
    time_col = next((lower[n] for n in TIME_NAMES if n in lower), None)
    if time_col is None:
        raise _fail(
            p,
            f"no time column: expected one named {', '.join(TIME_NAMES)} (any case); "
            f"columns are {', '.join(map(str, df.columns))}",
        )
    try:
        ts = _parse_times(p, df[time_col].reset_index(drop=True))
    except InvalidInputError as exc:  # the bars reader's wording, about this file
        raise InvalidInputError(str(exc).replace("bars file", "returns file", 1)) from None
    t = ts.to_numpy(dtype="datetime64[us]").astype(np.int64)
    if t.shape[0] > 1 and (np.diff(t) <= 0).any():
        k = int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1
        raise _fail(
            p,
            f"rows must be in time order: row {k + 1} ({ts.iat[k]}) does not come after "
            f"row {k} ({ts.iat[k - 1]})",
        )
    trials = [c for c in df.columns if c != time_col]
    names = [str(c) for c in trials]
    data = df[trials]
    plain = all(
        pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in data.dtypes
    )
    if plain and len(trials):  # one copy of the numbers, then one finiteness check
        matrix = data.to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isfinite(matrix).all():
            return names, matrix
    matrix = np.empty((len(df), len(trials)), dtype=np.float64, order="F")
    for j in range(len(trials)):
        raw = data.iloc[:, j]
        if pd.api.types.is_bool_dtype(raw.dtype):
            raise _fail(p, f"column {names[j]!r} holds true/false values, not returns")
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            cell = raw.iat[i]
            if isinstance(cell, np.generic):
                cell = cell.item()
            shown = "NaN (an empty or missing value)" if pd.isna(cell) else repr(cell)
            raise _fail(
                p,
                f"column {names[j]!r} has {shown} in row {i + 1}: every return must be a "
                "finite number",
            )
        matrix[:, j] = values
    return names, matrix


def check_overfit_out(out_dir: str | os.PathLike[str]) -> Path:
    """``--out DIR`` must be a directory (or creatable) hedgeflow may write, and
    ``DIR/overfit.json`` a regular file if it exists."""
    out = Path(out_dir)
    problem = directory_problem(out, writable=True)
    if problem is not None:
        raise InvalidInputError(f"--out {str(out)!r} {problem}")
    try:
        mode = (out / OVERFIT_JSON).stat().st_mode
    except OSError:
        return out
    if not stat.S_ISREG(mode):
        raise InvalidInputError(
            f"--out {str(out)!r}: {OVERFIT_JSON} there is {file_kind(mode)}, not a file "
            "hedgeflow can replace"
        )
    return out


def write_overfit_json(
    stats: OverfitStats, names: list[str], out_dir: str | os.PathLike[str]
) -> Path:
    """``DIR/overfit.json`` (strict JSON: NaN written as null), atomically."""
    out = check_overfit_out(out_dir)
    text = json.dumps(json_safe(stats.summary(names)), indent=2, allow_nan=False) + "\n"
    target = out / OVERFIT_JSON
    with out_of_space_as(out):
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return target


def overfit_file(
    returns: str | os.PathLike[str], out_dir: str | os.PathLike[str], blocks: int = DEFAULT_BLOCKS
) -> tuple[dict[str, Any], Path]:
    """Read ``returns``, compute the statistics, write ``DIR/overfit.json``: (its
    fields, its path). Arguments are checked before the file is read."""
    check_blocks(blocks)
    check_overfit_out(out_dir)
    names, matrix = read_returns_file(returns)
    try:
        check_dimensions(matrix.shape[0], matrix.shape[1], blocks)
    except InvalidInputError as exc:
        raise _fail(Path(returns), str(exc)) from None
    stats = overfit_stats(matrix, blocks)
    path = write_overfit_json(stats, names, out_dir)
    return json_safe(stats.summary(names)), path
