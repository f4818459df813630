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

from collections import deque

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


# --------------------------------------------------------------------------- kernels


@numba.njit(cache=True)
def _sma_kernel(close: np.ndarray, n: int) -> np.ndarray:
    m = close.shape[0]
    out = np.empty(m, dtype=np.float64)
    s = 0.0
    for i in range(m):
        if i >= n:
            s -= close[i - n]
        s += close[i]
        if (i + 1) % n == 0:
            # exact re-sum of the window (oldest to newest) bounds the drift
            t = 0.0
            for k in range(i + 1 - n, i + 1):
                t += close[k]
            s = t
        out[i] = s / n if i >= n - 1 else np.nan
    return out


@numba.njit(cache=True)
def _rsi_value(avg_gain: float, avg_loss: float) -> float:
    if avg_loss == 0.0:
        return 50.0 if avg_gain == 0.0 else 100.0
    rs = avg_gain / avg_loss
    return 100.0 - 100.0 / (1.0 + rs)


@numba.njit(cache=True)
def _rsi_kernel(close: np.ndarray, n: int) -> np.ndarray:
    m = close.shape[0]
    out = np.full(m, np.nan)
    alpha = 1.0 / n
    beta = 1.0 - alpha
    ag = 0.0
    al = 0.0
    for i in range(1, m):
        d = close[i] - close[i - 1]
        g = d if d > 0.0 else 0.0
        lo = -d if d < 0.0 else 0.0
        if i == 1:
            ag = g
            al = lo
        else:
            ag = beta * ag + alpha * g
            al = beta * al + alpha * lo
        if i >= n:
            out[i] = _rsi_value(ag, al)
    return out


@numba.njit(cache=True)
def _donchian_kernel(
    high: np.ndarray, low: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = high.shape[0]
    upper = np.full(m, np.nan)
    lower = np.full(m, np.nan)
    mid = np.full(m, np.nan)
    # monotonic deques of indices (no wrap-around needed: at most m pushes)
    qmax = np.empty(m, dtype=np.int64)
    qmin = np.empty(m, dtype=np.int64)
    hmax = 0
    tmax = 0
    hmin = 0
    tmin = 0
    for i in range(m):
        if i >= n:
            u = high[qmax[hmax]]
            lo = low[qmin[hmin]]
            upper[i] = u
            lower[i] = lo
            mid[i] = (u + lo) / 2.0
        # push bar i
        h = high[i]
        while tmax > hmax and high[qmax[tmax - 1]] <= h:
            tmax -= 1
        qmax[tmax] = i
        tmax += 1
        lv = low[i]
        while tmin > hmin and low[qmin[tmin - 1]] >= lv:
            tmin -= 1
        qmin[tmin] = i
        tmin += 1
        # evict what leaves the window of the next bar (i + 1 - n .. i)
        while qmax[hmax] <= i - n:
            hmax += 1
        while qmin[hmin] <= i - n:
            hmin += 1
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
    """Streaming ``sma(n)``: O(1) per bar (amortised), identical to :func:`sma`."""

    __slots__ = ("_buf", "_count", "_n", "_pos", "_sum")

    def __init__(self, n: int) -> None:
        self._n = _check_window("sma", n)
        self._buf = [0.0] * self._n
        self._pos = 0
        self._count = 0
        self._sum = 0.0

    def update(self, close: float) -> float:
        x = float(close)
        n = self._n
        if self._count >= n:
            self._sum -= self._buf[self._pos]
        self._sum += x
        self._buf[self._pos] = x
        self._pos += 1
        if self._pos == n:
            self._pos = 0
        self._count += 1
        if self._count % n == 0:
            # the ring holds oldest..newest in index order exactly when pos == 0
            t = 0.0
            for v in self._buf:
                t += v
            self._sum = t
        return self._sum / n if self._count >= n else NAN


class RsiStream:
    """Streaming ``rsi(n)``: O(1) per bar, identical to :func:`rsi`."""

    __slots__ = ("_ag", "_al", "_alpha", "_beta", "_count", "_n", "_prev")

    def __init__(self, n: int = 14) -> None:
        self._n = _check_window("rsi", n)
        self._alpha = 1.0 / self._n
        self._beta = 1.0 - self._alpha
        self._count = 0
        self._prev = NAN
        self._ag = 0.0
        self._al = 0.0

    def update(self, close: float) -> float:
        c = float(close)
        i = self._count
        self._count += 1
        if i == 0:
            self._prev = c
            return NAN
        d = c - self._prev
        self._prev = c
        g = d if d > 0.0 else 0.0
        lo = -d if d < 0.0 else 0.0
        if i == 1:
            self._ag = g
            self._al = lo
        else:
            self._ag = self._beta * self._ag + self._alpha * g
            self._al = self._beta * self._al + self._alpha * lo
        if i < self._n:
            return NAN
        if self._al == 0.0:
            return 50.0 if self._ag == 0.0 else 100.0
        rs = self._ag / self._al
        return 100.0 - 100.0 / (1.0 + rs)


class DonchianStream:
    """Streaming ``donchian(n)`` over the previous ``n`` bars, monotonic deques."""

    __slots__ = ("_count", "_n", "_qmax", "_qmin")

    def __init__(self, n: int = 20) -> None:
        self._n = _check_window("donchian", n)
        self._count = 0
        self._qmax: deque[tuple[int, float]] = deque()
        self._qmin: deque[tuple[int, float]] = deque()

    def update(self, high: float, low: float) -> tuple[float, float, float]:
        i = self._count
        self._count += 1
        n = self._n
        qmax, qmin = self._qmax, self._qmin
        if i >= n:
            u = qmax[0][1]
            lo = qmin[0][1]
            out = (u, lo, (u + lo) / 2.0)
        else:
            out = (NAN, NAN, NAN)
        h = float(high)
        while qmax and qmax[-1][1] <= h:
            qmax.pop()
        qmax.append((i, h))
        lv = float(low)
        while qmin and qmin[-1][1] >= lv:
            qmin.pop()
        qmin.append((i, lv))
        while qmax[0][0] <= i - n:
            qmax.popleft()
        while qmin[0][0] <= i - n:
            qmin.popleft()
        return out


class AtrStream:
    """Streaming Wilder ``atr(n)``: O(1) per bar, identical to :func:`atr`."""

    __slots__ = ("_atr", "_count", "_n", "_prev_close", "_sum")

    def __init__(self, n: int = 14) -> None:
        self._n = _check_window("atr", n)
        self._count = 0
        self._prev_close = NAN
        self._sum = 0.0
        self._atr = NAN

    def update(self, high: float, low: float, close: float) -> float:
        i = self._count
        self._count += 1
        prev = self._prev_close
        self._prev_close = float(close)
        if i == 0:
            return NAN
        h, lo = float(high), float(low)
        tr = h - lo
        a = abs(h - prev)
        if a > tr:
            tr = a
        b = abs(lo - prev)
        if b > tr:
            tr = b
        n = self._n
        if i < n:
            self._sum += tr
            return NAN
        if i == n:
            self._sum += tr
            self._atr = self._sum / n
        else:
            self._atr = (self._atr * (n - 1) + tr) / n
        return self._atr
