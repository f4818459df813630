"""Shared pieces of the table models: the base config, field helpers, validation."""

from __future__ import annotations

import copy
import functools
import json
from typing import Any, TypeVar

import pandas as pd
import pandera.errors
import pandera.pandas as pa

from hedgeflow.errors import DataValidationError
from hedgeflow.market import _SYMBOL_RE

# Keyword arguments of a ``pd.DatetimeTZDtype`` field: microseconds, UTC (never ns).
UTC_US: dict[str, Any] = {"unit": "us", "tz": "UTC"}
TS_PANDAS_DTYPE = pd.DatetimeTZDtype(unit="us", tz="UTC")
# The canonical symbol pattern of hedgeflow.market (one source of truth).
SYMBOL_PATTERN: str = _SYMBOL_RE.pattern


class TableModel(pa.DataFrameModel):
    """Base of every warehouse table model: exact columns, dtypes coerced."""

    class Config:
        strict = True
        coerce = True


def ts_field(*, nullable: bool = False, **kwargs: Any) -> Any:
    """A ``datetime64[us, UTC]`` column (annotate it ``Series[pd.DatetimeTZDtype]``)."""
    return pa.Field(dtype_kwargs=UTC_US, nullable=nullable, **kwargs)


def name_field() -> Any:
    """A non-empty name of at most 128 characters (agent, strategy, order id...)."""
    return pa.Field(str_length={"min_value": 1, "max_value": 128})


def _is_json(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def json_text_check(series: pd.Series) -> pd.Series:
    """Element-wise: the value is valid JSON text (nulls pass; nullability is separate)."""
    return series.isna() | series.map(_is_json, na_action="ignore").fillna(False).astype(bool)


M = TypeVar("M", bound=pa.DataFrameModel)


@functools.cache
def _without_unique(model: type[pa.DataFrameModel]) -> Any:
    schema = copy.deepcopy(model.to_schema())
    schema.unique = None
    return schema


def validate_frame(
    model: type[pa.DataFrameModel],
    frame: pd.DataFrame,
    table: str,
    *,
    unique: bool = True,
    inplace: bool = False,
) -> pd.DataFrame:
    """Validate (and coerce) ``frame`` with ``model``; any failure is a DataValidationError.

    The message names the table and summarises pandera's failure cases (a few
    rows at most), so a bad frame is never silently stored. ``unique=False`` skips the
    model's key uniqueness (rows of several upserts, later ones replacing earlier).
    ``inplace=True`` spares pandera's copy of the frame (coercion then replaces
    columns of ``frame`` itself): for a frame the caller has just built.
    """
    if not isinstance(frame, pd.DataFrame):
        kind = type(frame).__name__
        raise DataValidationError(f"{table}: expected a pandas DataFrame, got {kind}")
    if not frame.index.is_unique:
        # pandera's failure report cannot reshape cases of a duplicated index.
        frame = frame.reset_index(drop=True)
    try:
        validator = model if unique else _without_unique(model)
        out = validator.validate(frame, lazy=True, inplace=inplace)
    except pandera.errors.SchemaErrors as exc:
        raise DataValidationError(f"{table}: {_summarise(exc)}") from exc
    except pandera.errors.SchemaError as exc:  # pragma: no cover - lazy=True collects
        raise DataValidationError(f"{table}: {exc}") from exc
    except (ValueError, TypeError, KeyError) as exc:  # pragma: no cover - pandera internals
        raise DataValidationError(f"{table}: validation failed: {exc}") from exc
    return out


def _summarise(exc: pandera.errors.SchemaErrors, max_cases: int = 5) -> str:
    cases = exc.failure_cases
    try:
        lines = []
        for row in cases.head(max_cases).itertuples(index=False):
            column = getattr(row, "column", None)
            check = getattr(row, "check", None)
            value = getattr(row, "failure_case", None)
            index = getattr(row, "index", None)
            lines.append(f"column={column!s} check={check!s} value={value!r} index={index!s}")
        more = len(cases) - max_cases
        if more > 0:
            lines.append(f"... and {more} more failure case(s)")
        return f"{len(cases)} schema failure(s): " + "; ".join(lines)
    except Exception:  # pragma: no cover - defensive: never hide the original error
        return str(exc)[:2000]
