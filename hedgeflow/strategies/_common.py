"""Helpers shared by the built-in strategies (validation, array coercion)."""

from __future__ import annotations

import numpy as np

from hedgeflow.errors import InvalidInputError


def check_int(strategy: str, name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"{name} must be an integer, got {value!r} ({strategy})")
    if value < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}, got {value!r} ({strategy})")


def check_float(strategy: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InvalidInputError(f"{name} must be a number, got {value!r} ({strategy})")
    out = float(value)
    if out != out or out in (float("inf"), float("-inf")):
        raise InvalidInputError(f"{name} must be finite, got {value!r} ({strategy})")
    return out


def as_f64(x: object) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64))
