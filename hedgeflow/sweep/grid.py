"""Parameter grids: a mapping ``{parameter: [values]}`` expanded into valid Params.

Values are converted to the parameter's type (``"10"`` -> 10 for an int) and
de-duplicated in order; a parameter left out keeps the strategy's default. A
combination that the strategy's ``Params`` refuses (e.g. ``fast >= slow``) is
skipped and counted; an unknown parameter, a value of the wrong type or an empty
list is an error.
"""

from __future__ import annotations

import dataclasses
import itertools
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hedgeflow.errors import InvalidInputError
from hedgeflow.strategies import _convert, get_strategy

__all__ = [
    "MAX_COMBINATIONS",
    "SweepGrid",
    "expand_grid",
    "grid_from_strings",
]

# Refuse grids larger than this (results are one warehouse row per combination).
MAX_COMBINATIONS = 100_000


@dataclass(frozen=True)
class SweepGrid:
    """The valid combinations of a grid, in grid order (the last key varies fastest)."""

    strategy: str
    axes: dict[str, tuple[Any, ...]]  # parameter -> its de-duplicated values
    params: tuple[Any, ...]  # the strategy's Params, one per valid combination
    skipped: int  # combinations the strategy refused
    skip_reasons: tuple[str, ...]  # a few distinct reasons

    @property
    def size(self) -> int:
        return len(self.params)

    @property
    def total(self) -> int:
        return self.size + self.skipped

    @property
    def varying(self) -> tuple[str, ...]:
        """Parameters with more than one value (the axes of a heatmap)."""
        return tuple(k for k, v in self.axes.items() if len(v) > 1)

    def describe(self) -> str:
        axes = " x ".join(f"{k}({len(v)})" for k, v in self.axes.items())
        text = f"{self.strategy}: {axes} = {self.total} combinations, {self.size} valid"
        if self.skipped:
            text += f", {self.skipped} skipped ({'; '.join(self.skip_reasons)})"
        return text


def expand_grid(strategy: str, grid: Mapping[str, Sequence[Any]] | None = None) -> SweepGrid:
    """Expand ``grid`` (default: the strategy's own ``grid``) into valid Params."""
    spec = get_strategy(strategy)
    raw = dict(spec.grid) if grid is None else grid
    if not isinstance(raw, Mapping):
        raise InvalidInputError(f"grid must be a mapping of parameter -> values, got {raw!r}")
    hints = typing.get_type_hints(spec.params_type)
    fields = [f.name for f in dataclasses.fields(spec.params_type)]
    axes: dict[str, tuple[Any, ...]] = {}
    for key, values in raw.items():
        if key not in fields:
            raise InvalidInputError(
                f"{key} is not a parameter of {spec.ref} (parameters: {', '.join(fields)})"
            )
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            values = [values]
        if len(values) == 0:
            raise InvalidInputError(f"grid {key}: no values")
        converted = [_convert(key, v, hints[key]) for v in values]
        axes[key] = tuple(dict.fromkeys(converted))
    if not axes:
        raise InvalidInputError(f"grid for {spec.ref} is empty")
    total = 1
    for values in axes.values():
        total *= len(values)
    if total > MAX_COMBINATIONS:
        raise InvalidInputError(
            f"grid has {total:,} combinations; at most {MAX_COMBINATIONS:,} are allowed"
        )
    keys = list(axes)
    params: list[Any] = []
    skipped = 0
    reasons: list[str] = []
    for combo in itertools.product(*(axes[k] for k in keys)):
        try:
            params.append(spec.params_type(**dict(zip(keys, combo, strict=True))))
        except InvalidInputError as exc:
            skipped += 1
            reason = str(exc).split(", got", 1)[0]
            if reason not in reasons and len(reasons) < 3:
                reasons.append(reason)
    if not params:
        raise InvalidInputError(
            f"no valid combination in the {spec.ref} grid ({total} skipped: {'; '.join(reasons)})"
        )
    return SweepGrid(spec.ref, axes, tuple(params), skipped, tuple(reasons))


def grid_from_strings(pairs: Sequence[str]) -> dict[str, list[str]]:
    """CLI ``--grid fast=5,10,20`` pairs -> ``{"fast": ["5", "10", "20"]}``."""
    out: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        key = key.strip()
        parts = [v.strip() for v in values.split(",")]
        if not sep or not key or not values.strip():
            raise InvalidInputError(f"--grid {pair!r} must look like key=v1,v2,...")
        if "" in parts:  # `fast=5,,10` or a trailing comma: a typo, not a value
            raise InvalidInputError(f"--grid {pair!r} has an empty value (two commas in a row?)")
        out.setdefault(key, []).extend(parts)
    return out
