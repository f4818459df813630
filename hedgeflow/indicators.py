"""Indicators: batch numba kernels and their O(1)-per-bar streaming twins.

Every rule here is DESIGN.md "Exact rules". Values are ``NaN`` where an
indicator is undefined. Inputs are float64 price arrays assumed finite (bars are
validated before they reach the core).

Batch and streaming versions perform the *same floating-point operations in the
same order*, so they agree bit for bit on every bar (the tests check equality,
not closeness):

- ``sma(n)``: mean of the last ``n`` closes, defined from bar ``n-1``. A running
  sum (add the new close, subtract the one leaving the window) that is re-summed
  exactly from the window every time ``n`` new values have arrived, so float
  drift is bounded by ``n`` updates and the cost stays amortised O(1).
- ``rsi(n)``: ``ewm(alpha=1/n, adjust=False)`` of close-to-close gains and losses
  seeded at the first change (bar 1); undefined for the first ``n`` bars (bars
  ``0..n-1``); ``avg_loss == 0`` gives 100, 50 when ``avg_gain`` is 0 too.
- ``donchian(n)``: upper/lower = max high / min low of the **previous** ``n``
  bars (bars ``i-n..i-1``), mid = (upper + lower) / 2; defined from bar ``n``.
  Monotonic deques: amortised O(1) per bar.
- ``atr(n)``: Wilder average true range. True range needs the previous close so
  it starts at bar 1: ``TR = max(h - l, |h - c[i-1]|, |l - c[i-1]|)``. ``ATR[n]``
  is the mean of ``TR[1..n]``, then ``ATR[i] = (ATR[i-1] * (n - 1) + TR[i]) / n``
  (TA-Lib's convention); defined from bar ``n``.
"""

from __future__ import annotations

import numba
import numpy as np

from hedgeflow.errors import InvalidInputError

__all__ = [
    "AtrStream",
    "DonchianStream",
    "RsiStream",
    "SmaStream",
    "atr",
    "donchian",
    "rsi",
    "sma",
]

NAN = float("nan")


def _check_window(name: str, n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidInputError(f"{name} window must be an integer >= 1, got {n!r}")
    return int(n)


def _as_f64(x: object) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64))


# --------------------------------------------------------------------------- scalar updates
# One O(1) update per indicator over a slice of a float64 state vector (offset ``k``):
# a strategy's compiled per-bar update calls them; the batch kernels below are loops
# over them, so batch and streaming are one computation. ``*_state_size`` gives the
# floats each needs.


@numba.njit(cache=True)
def sma_state_size(n: int) -> int:
    """Floats of state ``sma_step`` needs (callable in compiled code too)."""
    return n + 3


@numba.njit(cache=True, inline="always")
def sma_step(st: np.ndarray, k: int, n: int, x: float) -> float:
    """``sma(n)`` after value ``x``: a running sum (add the new value, subtract the one
    leaving the window) re-summed exactly from the ring every ``n`` values.
    State: count, ring position, sum, the ring of ``n`` values."""
    count = int(st[k])
    pos = int(st[k + 1])
    s = st[k + 2]
    ring = k + 3
    if count >= n:
        s -= st[ring + pos]
    s += x
    st[ring + pos] = x
    pos += 1
    if pos == n:
        pos = 0
    count += 1
    if pos == 0:
        # every n values (pos == count mod n): the ring then holds oldest..newest in
        # index order, and the exact re-sum bounds the drift
        t = 0.0
        for j in range(n):
            t += st[ring + j]
        s = t
    st[k] = count
    st[k + 1] = pos
    st[k + 2] = s
    return s / n if count >= n else np.nan


@numba.njit(cache=True, inline="always")
def _rsi_value(avg_gain: float, avg_loss: float) -> float:
    if avg_loss == 0.0:
        return 50.0 if avg_gain == 0.0 else 100.0
    rs = avg_gain / avg_loss
    return 100.0 - 100.0 / (1.0 + rs)


RSI_STATE_SIZE = 4


@numba.njit(cache=True, inline="always")
def rsi_step(st: np.ndarray, k: int, n: int, x: float) -> float:
    """``rsi(n)`` after close ``x``. State: count, previous close, average gain and
    average loss (``ewm(alpha=1/n, adjust=False)`` seeded at the first change)."""
    i = int(st[k])
    st[k] = i + 1
    if i == 0:
        st[k + 1] = x
        return np.nan
    d = x - st[k + 1]
    st[k + 1] = x
    g = d if d > 0.0 else 0.0
    lo = -d if d < 0.0 else 0.0
    if i == 1:
        ag = g
        al = lo
    else:
        alpha = 1.0 / n
        beta = 1.0 - alpha
        ag = beta * st[k + 2] + alpha * g
        al = beta * st[k + 3] + alpha * lo
    st[k + 2] = ag
    st[k + 3] = al
    if i < n:
        return np.nan
    return _rsi_value(ag, al)


@numba.njit(cache=True)
def donchian_state_size(n: int) -> int:
    """Floats of state ``donchian_step`` needs (callable in compiled code too)."""
    return 5 + 4 * (n + 1)


@numba.njit(cache=True, inline="always")
def donchian_step(
    st: np.ndarray, k: int, n: int, h: float, lo: float
) -> tuple[float, float, float]:
    """(upper, lower, mid) over the ``n`` bars before this one, then this bar joins
    the window. Monotonic deques in two rings of ``n + 1`` (index, value) pairs.
    State: count, head and tail of the max deque, of the min deque, the rings."""
    cap = n + 1
    i = int(st[k])
    hmax = int(st[k + 1])
    tmax = int(st[k + 2])
    hmin = int(st[k + 3])
    tmin = int(st[k + 4])
    max_i = k + 5
    max_v = max_i + cap
    min_i = max_v + cap
    min_v = min_i + cap
    if i >= n:
        u = st[max_v + hmax % cap]
        low = st[min_v + hmin % cap]
        out = (u, low, (u + low) / 2.0)
    else:
        out = (np.nan, np.nan, np.nan)
    while tmax > hmax and st[max_v + (tmax - 1) % cap] <= h:
        tmax -= 1
    st[max_i + tmax % cap] = i
    st[max_v + tmax % cap] = h
    tmax += 1
    while tmin > hmin and st[min_v + (tmin - 1) % cap] >= lo:
        tmin -= 1
    st[min_i + tmin % cap] = i
    st[min_v + tmin % cap] = lo
    tmin += 1
    # evict what leaves the window of the next bar (i + 1 - n .. i)
    while st[max_i + hmax % cap] <= i - n:
        hmax += 1
    while st[min_i + hmin % cap] <= i - n:
        hmin += 1
    st[k] = i + 1
    st[k + 1] = hmax
    st[k + 2] = tmax
    st[k + 3] = hmin
    st[k + 4] = tmin
    return out


# --------------------------------------------------------------------------- kernels


@numba.njit(cache=True)
def _sma_kernel(close: np.ndarray, n: int) -> np.ndarray:
    m = close.shape[0]
    out = np.empty(m, dtype=np.float64)
    st = np.zeros(n + 3, dtype=np.float64)
    for i in range(m):
        out[i] = sma_step(st, 0, n, close[i])
    return out


@numba.njit(cache=True)
def _rsi_kernel(close: np.ndarray, n: int) -> np.ndarray:
    m = close.shape[0]
    out = np.empty(m, dtype=np.float64)
    st = np.zeros(RSI_STATE_SIZE, dtype=np.float64)
    for i in range(m):
        out[i] = rsi_step(st, 0, n, close[i])
    return out


@numba.njit(cache=True)
def _donchian_kernel(
    high: np.ndarray, low: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = high.shape[0]
    upper = np.empty(m, dtype=np.float64)
    lower = np.empty(m, dtype=np.float64)
    mid = np.empty(m, dtype=np.float64)
    st = np.zeros(5 + 4 * (n + 1), dtype=np.float64)
    for i in range(m):
        upper[i], lower[i], mid[i] = donchian_step(st, 0, n, high[i], low[i])
    return upper, lower, mid


@numba.njit(cache=True)
def _true_range(h: float, lo: float, prev_close: float) -> float:
    tr = h - lo
    a = abs(h - prev_close)
    if a > tr:
        tr = a
    b = abs(lo - prev_close)
    if b > tr:
        tr = b
    return tr


ATR_STATE_SIZE = 4


@numba.njit(cache=True, inline="always")
def atr_step(st: np.ndarray, k: int, n: int, h: float, lo: float, c: float) -> float:
    """Wilder ``atr(n)`` after the bar (``h``, ``lo``, ``c``); NaN for the first ``n``
    bars. State (zeros at the start): bars seen, previous close, the first ``n`` true
    ranges' sum, the average."""
    i = int(st[k])
    st[k] = i + 1
    prev = st[k + 1]
    st[k + 1] = c
    if i == 0:
        return np.nan
    tr = _true_range(h, lo, prev)
    if i < n:
        st[k + 2] += tr
        return np.nan
    if i == n:
        st[k + 2] += tr
        st[k + 3] = st[k + 2] / n
    else:
        st[k + 3] = (st[k + 3] * (n - 1) + tr) / n
    return st[k + 3]


@numba.njit(cache=True)
def _atr_kernel(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int) -> np.ndarray:
    m = close.shape[0]
    out = np.full(m, np.nan)
    s = 0.0
    a = 0.0
    for i in range(1, m):
        tr = _true_range(high[i], low[i], close[i - 1])
        if i < n:
            s += tr
        elif i == n:
            s += tr
            a = s / n
            out[i] = a
        else:
            a = (a * (n - 1) + tr) / n
            out[i] = a
    return out


# --------------------------------------------------------------------------- batch API


def sma(close: object, n: int) -> np.ndarray:
    """Simple moving average of the last ``n`` values; NaN for the first ``n-1`` bars."""
    return _sma_kernel(_as_f64(close), _check_window("sma", n))


def rsi(close: object, n: int = 14) -> np.ndarray:
    """Wilder RSI (``ewm(alpha=1/n, adjust=False)``); NaN for the first ``n`` bars."""
    return _rsi_kernel(_as_f64(close), _check_window("rsi", n))


def donchian(high: object, low: object, n: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(upper, lower, mid) over the previous ``n`` bars; NaN for the first ``n`` bars."""
    h = _as_f64(high)
    lo = _as_f64(low)
    if h.shape != lo.shape:
        raise InvalidInputError(f"high and low differ in length: {h.shape[0]} != {lo.shape[0]}")
    return _donchian_kernel(h, lo, _check_window("donchian", n))


def atr(high: object, low: object, close: object, n: int = 14) -> np.ndarray:
    """Wilder average true range; NaN for the first ``n`` bars."""
    h, lo, c = _as_f64(high), _as_f64(low), _as_f64(close)
    if not h.shape == lo.shape == c.shape:
        raise InvalidInputError("high, low and close differ in length")
    return _atr_kernel(h, lo, c, _check_window("atr", n))


# --------------------------------------------------------------------------- streaming


class SmaStream:
    """Streaming ``sma(n)``: :func:`sma_step` on its own state, one value at a time."""

    __slots__ = ("_n", "_st")

    def __init__(self, n: int) -> None:
        self._n = _check_window("sma", n)
        self._st = np.zeros(sma_state_size(self._n), dtype=np.float64)

    def update(self, close: float) -> float:
        return float(sma_step(self._st, 0, self._n, float(close)))


class RsiStream:
    """Streaming ``rsi(n)``: :func:`rsi_step` on its own state."""

    __slots__ = ("_n", "_st")

    def __init__(self, n: int = 14) -> None:
        self._n = _check_window("rsi", n)
        self._st = np.zeros(RSI_STATE_SIZE, dtype=np.float64)

    def update(self, close: float) -> float:
        return float(rsi_step(self._st, 0, self._n, float(close)))


class DonchianStream:
    """Streaming ``donchian(n)`` over the previous ``n`` bars: :func:`donchian_step`."""

    __slots__ = ("_n", "_st")

    def __init__(self, n: int = 20) -> None:
        self._n = _check_window("donchian", n)
        self._st = np.zeros(donchian_state_size(self._n), dtype=np.float64)

    def update(self, high: float, low: float) -> tuple[float, float, float]:
        u, lo, m = donchian_step(self._st, 0, self._n, float(high), float(low))
        return float(u), float(lo), float(m)


class AtrStream:
    """Streaming Wilder ``atr(n)``: :func:`atr_step` on its own state, identical to
    :func:`atr`."""

    __slots__ = ("_n", "_st")

    def __init__(self, n: int = 14) -> None:
        self._n = _check_window("atr", n)
        self._st = np.zeros(ATR_STATE_SIZE, dtype=np.float64)

    def update(self, high: float, low: float, close: float) -> float:
        return float(atr_step(self._st, 0, self._n, float(high), float(low), float(close)))
