"""Strategy registry: a strategy is one module plus its parameter dataclass.

Each strategy module defines a frozen ``Params`` dataclass and registers a
``StrategySpec`` with ``register``. ``parse_params`` turns a mapping from
settings, the CLI or a flow parameter into that dataclass, naming a bad key.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

import numpy as np

from hedgeflow.errors import InvalidInputError

# signals(open, high, low, close, params) -> (signal int8 array, {indicator column: float array})
SignalFn = Callable[..., tuple[np.ndarray, dict[str, np.ndarray]]]


@dataclass(frozen=True)
class StrategySpec:
    name: str
    params_type: type
    signals: SignalFn
    indicator_columns: tuple[str, ...]
    # warm-up bars needed before the signal can be 1 (for live warm-up): the
    # index of the first bar whose indicators are all defined
    warmup: Callable[[Any], int]
    # Streaming(params) -> object with .update(open, high, low, close) -> (signal, {column: value});
    # O(1) per bar and identical to ``signals`` on every bar when fed the same bars from the start
    streaming: Callable[[Any], Any] | None = None


_REGISTRY: dict[str, StrategySpec] = {}


def register(spec: StrategySpec) -> StrategySpec:
    _REGISTRY[spec.name] = spec
    return spec


def _load_builtin() -> None:
    # Imported for their registration side effect.
    from hedgeflow.strategies import donchian_breakout, rsi_mean_revert, sma_cross  # noqa: F401


def strategy_names() -> tuple[str, ...]:
    _load_builtin()
    return tuple(sorted(_REGISTRY))


def get_strategy(name: str) -> StrategySpec:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown strategy {name!r}: expected one of {', '.join(sorted(_REGISTRY))}"
        ) from None


def parse_params(strategy: str, raw: Mapping[str, Any]) -> Any:
    """Build the strategy's parameter dataclass from a mapping, checking every key and type."""
    spec = get_strategy(strategy)
    hints = typing.get_type_hints(spec.params_type)
    names = {f.name for f in dataclasses.fields(spec.params_type)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in names:
            raise InvalidInputError(
                f"{key} is not a parameter of {strategy} (parameters: {', '.join(sorted(names))})"
            )
        kwargs[key] = _convert(key, value, hints[key])
    try:
        return spec.params_type(**kwargs)
    except TypeError as exc:
        raise InvalidInputError(f"bad parameters for {strategy}: {exc}") from None


def params_from_strings(strategy: str, pairs: list[str]) -> Any:
    """Parse CLI ``key=value`` pairs into the strategy's parameters."""
    raw: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"parameter {pair!r} must look like key=value")
        raw[key.strip()] = value.strip()
    return parse_params(strategy, raw)


def _convert(key: str, value: Any, tp: Any) -> Any:
    if get_origin(tp) is Literal:
        if value not in get_args(tp):
            raise InvalidInputError(
                f"{key} must be one of {', '.join(map(str, get_args(tp)))}, got {value!r}"
            )
        return value
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            raise ValueError
        if tp is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
            if out != out or out in (float("inf"), float("-inf")):
                raise ValueError
            return out
    except (TypeError, ValueError):
        raise InvalidInputError(f"{key} must be {tp.__name__}, got {value!r}") from None
    return value
