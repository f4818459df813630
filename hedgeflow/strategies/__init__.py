"""Strategy registry: built-ins, strategies imported by reference, entry points.

A strategy (:class:`hedgeflow.strategies.base.Strategy`) is one definition: its
parameters and a compiled per-bar update. Wherever a strategy is named it may be

- a built-in name (``sma_cross``, ``rsi_mean_revert``, ``donchian_breakout``);
- the name of a strategy an installed package registers under the entry-point
  group ``hedgeflow.strategies``;
- ``package.module:Name`` (an importable module's attribute);
- ``path/to/file.py:Name`` (a file, relative to the working directory or absolute).

:func:`resolve_strategy` turns any of these into the strategy, with its ``ref`` (what
names it again, stored with results) and ``source``. Broken user code gives one
:class:`~hedgeflow.errors.InvalidInputError` line naming the reference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import sys
import typing
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from hedgeflow.errors import InvalidInputError
from hedgeflow.strategies.base import Strategy

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "Strategy",
    "get_strategy",
    "parse_params",
    "resolve_strategy",
    "strategy_names",
]

ENTRY_POINT_GROUP = "hedgeflow.strategies"
BUILTIN: tuple[str, ...] = ("donchian_breakout", "rsi_mean_revert", "sma_cross")
_RESOLVED: dict[str, Strategy] = {}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # numba's messages carry ANSI colours and many lines: the first real one names it
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _entry_point_names() -> dict[str, Any]:
    try:
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # pragma: no cover - a broken installed distribution
        return {}


def strategy_names() -> tuple[str, ...]:
    """Built-in and entry-point strategy names (references are open-ended)."""
    return tuple(sorted({*BUILTIN, *_entry_point_names()}))


def _load_file(path_text: str, ref: str) -> Any:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise InvalidInputError(f"strategy {ref}: no such file {path_text}")
    resolved = path.resolve()
    # one module name per file (numba's caches refer to it); an edited file is
    # executed again under the same name
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    name = f"hedgeflow_user_{resolved.stem}_{digest}"
    stamp = (resolved.stat().st_mtime_ns, resolved.stat().st_size)
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__hedgeflow_stamp__", None) == stamp:
        return loaded
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise InvalidInputError(f"strategy {ref}: cannot load {path_text} as Python")
    module = importlib.util.module_from_spec(spec)
    module.__hedgeflow_stamp__ = stamp  # type: ignore[attr-defined]
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise InvalidInputError(
            f"strategy {ref}: importing {path_text} failed: {type(exc).__name__}: "
            f"{_first_line(exc)}"
        ) from None
    return module


def _load(ref: str) -> tuple[Any, str]:
    """The object a reference names and its source description."""
    if ref in BUILTIN:
        module = importlib.import_module(f"hedgeflow.strategies.{ref}")
        return module.STRATEGY, "built-in"
    eps = _entry_point_names()
    if ref in eps:
        try:
            return eps[ref].load(), f"entry point {eps[ref].value}"
        except Exception as exc:
            raise InvalidInputError(
                f"strategy {ref}: loading entry point {eps[ref].value} failed: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            ) from None
    where, sep, attr = ref.rpartition(":")
    if not sep or not where or not attr.isidentifier():
        raise InvalidInputError(
            f"unknown strategy {ref!r}: expected one of {', '.join(strategy_names())}, "
            "package.module:Name or path/to/file.py:Name"
        )
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _load_file(where, ref)
        source = f"file {where}"
    else:
        try:
            module = importlib.import_module(where)
        except Exception as exc:
            raise InvalidInputError(
                f"strategy {ref}: importing {where} failed: {type(exc).__name__}: "
                f"{_first_line(exc)}"
            ) from None
        source = f"module {where}"
    if not hasattr(module, attr):
        raise InvalidInputError(f"strategy {ref}: {where} has no attribute {attr}")
    return getattr(module, attr), source


def resolve_strategy(ref: str) -> Strategy:
    """The strategy a reference names (see the module docstring)."""
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInputError(f"a strategy must be named, got {ref!r}")
    ref = ref.strip()
    key = _cache_key(ref)
    if key in _RESOLVED:
        return _RESOLVED[key]
    obj, source = _load(ref)
    if not isinstance(obj, Strategy):
        raise InvalidInputError(
            f"strategy {ref}: {type(obj).__name__} is not a hedgeflow Strategy "
            "(build it with hedgeflow.strategies.base.Strategy(...))"
        )
    strategy = dataclasses.replace(obj, source=source, ref=ref)
    _RESOLVED[key] = strategy
    return strategy


def _cache_key(ref: str) -> str:
    """A file reference is the file as it is now (path, mtime, size): the same text in
    another folder, or an edited file, is another strategy."""
    where, sep, attr = ref.rpartition(":")
    if sep and (where.endswith(".py") or "/" in where or "\\" in where):
        path = Path(where).expanduser()
        try:
            st = path.stat()
        except OSError:
            return ref
        return f"{path.resolve()}:{st.st_mtime_ns}:{st.st_size}:{attr}"
    return ref


def get_strategy(name: str) -> Strategy:
    """Alias of :func:`resolve_strategy`."""
    return resolve_strategy(name)


def parse_params(strategy: str, raw: Mapping[str, Any]) -> Any:
    """Build the strategy's parameter dataclass from a mapping, checking every key and type."""
    spec = get_strategy(strategy)
    hints = typing.get_type_hints(spec.params_type)
    names = {f.name for f in dataclasses.fields(spec.params_type)}
    strategy = spec.ref
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
