"""A strategy is one definition: its parameters and a compiled per-bar update.

::

    @dataclass(frozen=True)
    class Params:
        window: int = 20

    @numba.njit(cache=True)
    def update(state, p, open, high, low, close, out):
        # state: float64 vector of state_size(params) zeros at the first bar,
        # p: the parameters as a float64 vector (pack), out: one slot per indicator.
        ...
        return signal  # 1 = want long, 0 = want flat, -1 = want short (shorts=True)

    MyStrategy = Strategy(
        name="my_strategy", params=Params, update=update,
        indicators=("x",), state_size=lambda p: ..., warmup=lambda p: ...,
    )

Everything else is derived from it (:mod:`hedgeflow.strategies.compiled`): the
batch signals (a compiled loop over ``update``), the live streaming update (the
same ``update``, one bar at a time) and the sweep kernel (``update`` per
combination, then the engine's rules). Batch, streaming and sweep are therefore
one computation; ``hedgeflow strategies check`` proves it and that the update
never looks ahead.

Parameters are packed into the float64 vector ``p`` field by field, in the
dataclass's order: numbers as they are, booleans as 0/1, a ``Literal`` choice as
its position among the choices (``exit_rule: Literal["midline", "lower"]``:
midline 0.0, lower 1.0). One more value follows the fields: ``p[-1]`` is 1.0
when the run allows short selling, else 0.0.

Short selling: a strategy that can want a short declares ``shorts=True`` and
returns -1 for it, but only while ``p[-1]`` is 1.0; with shorts off it must
compute exactly its long-only signal (a state machine must not enter its short
state). The engine reads a -1 as 0 unless ``allow_short``; ``allow_short`` with a
strategy that does not declare ``shorts`` is an error.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

import numba
import numpy as np

from hedgeflow.errors import InvalidInputError

__all__ = ["Strategy", "pack_params"]

# The state one strategy instance keeps (its windows of past bars): a parameter such as
# ``window=10**9`` would otherwise allocate gigabytes per agent and per sweep combination.
MAX_STATE_FLOATS = 1_000_000


@dataclass(frozen=True)
class Strategy:
    """One strategy definition (see the module docstring)."""

    name: str
    params: type  # a frozen dataclass whose fields all have defaults
    update: Any  # numba-compiled update(state, p, open, high, low, close, out) -> int
    indicators: tuple[str, ...]
    state_size: Callable[[Any], int]  # params -> floats of state
    warmup: Callable[[Any], int]  # params -> index of the first bar that can signal
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)  # default sweep axes
    description: str = ""
    # optional vectorised twin for batch signals (numpy/pandas):
    # batch(open, high, low, close, params) -> (signal array, {indicator: array});
    # `hedgeflow strategies check` proves it equals `update` and never looks ahead
    batch: Callable[..., tuple[Any, Mapping[str, Any]]] | None = None
    shorts: bool = False  # the update can return -1 (want short) when p[-1] is 1.0
    source: str = "built-in"  # where it came from (set by the registry)
    ref: str = ""  # what names it (set by the registry; the name when empty)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidInputError("a strategy needs a non-empty name")
        if not dataclasses.is_dataclass(self.params):
            raise InvalidInputError(f"{self.name}: params must be a dataclass type")
        jit_off = bool(getattr(numba.config, "DISABLE_JIT", 0))  # njit is then a no-op
        if not callable(self.update) or not (jit_off or hasattr(self.update, "py_func")):
            raise InvalidInputError(
                f"{self.name}: update must be a numba.njit function "
                "update(state, p, open, high, low, close, out) -> int"
            )
        if isinstance(self.indicators, str) or not all(isinstance(x, str) for x in self.indicators):
            raise InvalidInputError(f"{self.name}: indicators must be a tuple of names")
        if not isinstance(self.shorts, bool):
            raise InvalidInputError(f"{self.name}: shorts must be true or false")

        if not self.ref:
            object.__setattr__(self, "ref", self.name)

    # -- derived from the definition ---------------------------------------------------

    @property
    def params_type(self) -> type:
        return self.params

    @property
    def indicator_columns(self) -> tuple[str, ...]:
        return tuple(self.indicators)

    def pack(self, params: Any, shorts: bool = False) -> np.ndarray:
        """The parameters as the update's float64 vector, then the shorts flag."""
        if not isinstance(params, self.params):
            raise InvalidInputError(f"expected {self.ref} parameters, got {params!r}")
        self.check_shorts(shorts)
        return np.append(pack_params(params), 1.0 if shorts else 0.0)

    def check_shorts(self, allow_short: bool) -> None:
        """``allow_short`` needs a strategy that can produce a short signal."""
        if allow_short and not self.shorts:
            raise InvalidInputError(
                f"allow_short is on but strategy {self.ref} cannot produce a short signal "
                "(its definition does not declare shorts=True): set allow_short = false"
            )

    def size(self, params: Any) -> int:
        """Floats of state the update needs for ``params``."""
        try:
            n = self.state_size(params)
        except Exception as exc:
            raise InvalidInputError(
                f"strategy {self.ref}: state_size failed: {type(exc).__name__}: {exc}"
            ) from None
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise InvalidInputError(
                f"strategy {self.ref}: state_size must return an integer >= 0, got {n!r}"
            )
        if n > MAX_STATE_FLOATS:
            raise InvalidInputError(
                f"strategy {self.ref}: these parameters need {int(n):,} floats of state, more "
                f"than the limit of {MAX_STATE_FLOATS:,}: use shorter windows"
            )
        return int(n)

    def kernels(self) -> Any:
        """The compiled drivers derived from ``update`` (batch signals, sweep)."""
        from hedgeflow.strategies.compiled import drivers

        return drivers(self.ref, self.update)

    def signals(
        self, open: Any, high: Any, low: Any, close: Any, params: Any, shorts: bool = False
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Batch signals and indicator columns: ``update`` on every bar from a zero state
        (``shorts``: the run allows short selling, see the module docstring)."""
        arrays = [np.ascontiguousarray(np.asarray(x, dtype=np.float64)) for x in (open, high, low, close)]  # fmt: skip  # noqa: E501
        n = arrays[3].shape[0]
        if any(a.ndim != 1 or a.shape[0] != n for a in arrays):
            raise InvalidInputError("open, high, low and close must be 1-D arrays of one length")
        if self.batch is not None and not shorts:
            return self._vectorised(arrays, params)
        p = self.pack(params, shorts=shorts)
        k = len(self.indicators)
        try:
            sig, ind = self.kernels().signals(*arrays, p, self.size(params), k)
        except InvalidInputError:
            raise
        except Exception as exc:
            raise InvalidInputError(
                f"strategy {self.ref}: update failed: {one_line(exc)}"
            ) from None
        return self._checked(sig), {
            col: np.ascontiguousarray(ind[:, j]) for j, col in enumerate(self.indicators)
        }

    def _vectorised(
        self, arrays: list[np.ndarray], params: Any
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        assert self.batch is not None
        n = arrays[3].shape[0]
        try:
            sig, ind = self.batch(*arrays, params)
        except Exception as exc:
            raise InvalidInputError(f"strategy {self.ref}: batch failed: {one_line(exc)}") from None
        sig = np.asarray(sig)
        if sig.shape != (n,):
            raise InvalidInputError(
                f"strategy {self.ref}: batch returned a signal of shape {sig.shape}, "
                f"expected ({n},)"
            )
        cols: dict[str, np.ndarray] = {}
        for col in self.indicators:
            if col not in ind:
                raise InvalidInputError(f"strategy {self.ref}: batch returned no {col!r} column")
            values = np.ascontiguousarray(np.asarray(ind[col], dtype=np.float64))
            if values.shape != (n,):
                raise InvalidInputError(
                    f"strategy {self.ref}: batch column {col!r} has shape {values.shape}, "
                    f"expected ({n},)"
                )
            cols[col] = values
        return self._checked(np.nan_to_num(sig.astype(np.float64)).astype(np.int8)), cols

    def _checked(self, sig: Any) -> np.ndarray:
        sig = np.asarray(sig)
        bad = (sig != 0) & (sig != 1) & (sig != -1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidInputError(
                f"strategy {self.ref}: signal {int(sig[i])} at bar {i}; expected -1, 0 or 1"
            )
        return np.ascontiguousarray(sig.astype(np.int8))

    def streaming(self, params: Any, shorts: bool = False) -> Streaming:
        """The live twin: the same ``update``, one bar at a time."""
        return Streaming(self, params, shorts)


class Streaming:
    """``update`` one bar at a time from a zero state (the live agent's strategy)."""

    __slots__ = (
        "_columns", "_k", "_out", "_p", "_st", "_update", "params", "strategy",
    )  # fmt: skip

    def __init__(self, strategy: Strategy, params: Any, shorts: bool = False) -> None:
        self.strategy = strategy
        self.params = params
        self._p = strategy.pack(params, shorts=shorts)
        self._st = np.zeros(strategy.size(params), dtype=np.float64)
        self._columns = strategy.indicator_columns
        self._k = len(self._columns)
        self._out = np.full(self._k, np.nan)
        self._update = strategy.update

    def indicators(self) -> dict[str, float]:
        """The indicator values of the last bar."""
        return dict(zip(self._columns, self._out.tolist(), strict=True))

    def update(
        self, open: float, high: float, low: float, close: float
    ) -> tuple[int, dict[str, float]]:
        out = self._out
        sig = self._signal(self._call(self._update, self._st, self._p, open, high, low, close, out))
        return sig, dict(zip(self._columns, out.tolist(), strict=True))

    def _call(self, fn: Any, *args: Any) -> Any:
        """Call compiled user code; its failure is one line naming the strategy."""
        try:
            return fn(*args)
        except Exception as exc:
            raise InvalidInputError(
                f"strategy {self.strategy.ref}: update failed: {one_line(exc)}"
            ) from None

    def _signal(self, sig: Any) -> int:
        sig = int(sig)
        if sig != 0 and sig != 1 and sig != -1:
            raise InvalidInputError(
                f"strategy {self.strategy.ref}: update returned {sig}; expected -1, 0 or 1"
            )
        return sig


def one_line(exc: BaseException) -> str:
    """One line for an exception from user code; for numba's many-line messages the
    first line that says what is wrong, and where."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    what = [ln for ln in lines if not ln.startswith(("Failed in", "During:", "File ", "<source"))]
    places = [ln for ln in lines if ln.startswith("File ")]
    # the user's own file rather than the generated kernels or numba's
    where = next(
        (ln for ln in places if "hedgeflow/kernels" not in ln), places[0] if places else ""
    )
    message = what[0] if what else (lines[0] if lines else "")
    out = f"{type(exc).__name__}: {message}".rstrip(": ")
    return f"{out} ({where.rstrip(':')})" if where else out


def _choice_index(value: Any, tp: Any) -> float:
    choices = get_args(tp)
    return float(choices.index(value))


def pack_params(params: Any) -> np.ndarray:
    """The parameters as the update's float64 vector (see the module docstring)."""
    hints = typing.get_type_hints(type(params))
    out = []
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        tp = hints.get(f.name)
        if get_origin(tp) is Literal:
            out.append(_choice_index(value, tp))
        elif isinstance(value, (bool, np.bool_)):
            out.append(1.0 if value else 0.0)
        elif isinstance(value, (int, float, np.integer, np.floating)):
            out.append(float(value))
        else:
            raise InvalidInputError(
                f"parameter {f.name}={value!r} cannot be packed: use numbers, booleans "
                "or Literal choices"
            )
    return np.array(out, dtype=np.float64)


Choice = Literal  # re-exported for strategy authors: ``exit_rule: Choice["a", "b"]``
