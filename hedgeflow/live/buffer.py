"""One live agent's whole per-bar state in one float64 array, and the compiled bar.

The live agent's per-bar cost is what crossing from Python into compiled code costs,
so everything a bar changes lives in one array (``buf``) that a single compiled call
(:func:`rules_bar`, or the strategy's generated ``live_bar``) updates in place:

- a header of int64 slots (``H_*``, through ``buf.view(np.int64)``): the last bar's
  time (ns), the next New York day (a stock's split check), the next record, bars
  seen, the last signal and the offsets of the strategy's regions;
- the rules' state vector (:data:`hedgeflow.rules.V_CASH` ... ``V_HELD``) and
  settings vector, the ATR stream, the trade matrix of the bar (two rows), the bar's
  outcome (equity, last close, the pending order's ``P_*`` outcome, ``S_*`` skip);
- the strategy's parameters, state and indicator outputs;
- the records: one row per processed bar (prices, signal, equity, the broker's
  numbers, the indicators), written by the compiled call. A
  :class:`~hedgeflow.live.agent.LiveStep` reads its row when asked, so a bar with
  no orders costs no Python objects but the step itself. When the records are full
  the owner copies everything before them into a fresh array (:func:`rotated`);
  steps keep the old array, whose rows never change again.

:func:`rules_bar` and ``live_bar`` return one integer: ``(row start << 3) |
(events << 2) | (signal + 1)``, or a negative ``B_*`` code when the bar was not
processed (nothing changed): ``events`` is set when an order was pending, filled,
queued or a protective exit closed a trade, i.e. when Python must build events.

The arithmetic is the engine's own (:func:`hedgeflow.rules.step_bar_vector`); the
ATR stream is :class:`hedgeflow.indicators.AtrStream`'s, bit for bit.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from hedgeflow import rules

__all__ = ["new_buffer", "rotated", "rules_bar"]

# int64 header slots
(
    H_LAST_KEY, H_NEXT_DAY, H_ROW, H_ROWS_END, H_N_BARS, H_FORCE, H_OFF_P, H_OFF_ST,
    H_OFF_OUT, H_K, H_OFF_REC, H_REC_W, H_ATR_N, H_TRAILING, H_LAST_SIG, H_BAD_SIG,
) = range(16)  # fmt: skip
N_HEADER = 16
KEY_NONE = -(2**63)  # no bar yet
KEY_NEVER = 2**63 - 1  # no day check (not a stock)

OFF_V = N_HEADER
N_PV = 16  # room for the settings vector
OFF_PV = OFF_V + rules.N_VECTOR
OFF_ATR = OFF_PV + N_PV  # count, previous close, sum, atr
OFF_TRADE = OFF_ATR + 4
OFF_EQUITY = OFF_TRADE + 2 * rules.N_TRADE
OFF_LAST_CLOSE = OFF_EQUITY + 1
OFF_FILLED = OFF_EQUITY + 2
OFF_SKIP = OFF_EQUITY + 3
OFF_ATR_VALUE = OFF_EQUITY + 4
N_FIXED = OFF_EQUITY + 8

# a record row (then one value per indicator)
(
    R_OPEN, R_HIGH, R_LOW, R_CLOSE, R_SIG, R_EQUITY, R_HELD, R_CASH, R_QTY, R_ENTRY_PX,
    R_ENTRY_FEE, R_STOP, R_TP, R_PREV_SIG,
) = range(14)  # fmt: skip
R_IND = 14

# why a bar was not processed (nothing changed)
B_DUPLICATE, B_OUT_OF_ORDER, B_BAD_PRICES, B_NEW_DAY, B_FULL, B_BAD_SIGNAL = (
    -1, -2, -3, -4, -5, -6,
)  # fmt: skip
EVENTS = 4
ROWS = 512  # records per array (about 60 KB: reused heap memory, no page faults)


def new_buffer(
    settings: np.ndarray,
    atr_period: int,
    trailing: bool,
    cash: float,
    p: np.ndarray | None = None,
    state_size: int = 0,
    n_ind: int = 0,
    rows: int | None = None,
) -> np.ndarray:
    """A fresh buffer: flat with ``cash``, no bar seen; the strategy's parameter
    vector ``p``, ``state_size`` zeros of state and ``n_ind`` indicator slots."""
    pv = np.zeros(0) if p is None else p
    off_p = N_FIXED
    off_st = off_p + pv.shape[0]
    off_out = off_st + state_size
    off_rec = off_out + n_ind
    width = R_IND + n_ind
    buf = np.zeros(off_rec + (rows or ROWS) * width, dtype=np.float64)
    ib = buf.view(np.int64)
    ib[H_LAST_KEY] = KEY_NONE
    ib[H_NEXT_DAY] = KEY_NEVER
    ib[H_ROW] = off_rec
    ib[H_ROWS_END] = buf.shape[0]
    ib[H_OFF_P], ib[H_OFF_ST], ib[H_OFF_OUT], ib[H_K] = off_p, off_st, off_out, n_ind
    ib[H_OFF_REC], ib[H_REC_W] = off_rec, width
    ib[H_ATR_N], ib[H_TRAILING] = atr_period, int(trailing)
    buf[OFF_PV : OFF_PV + settings.shape[0]] = settings
    buf[OFF_V + rules.V_CASH] = cash
    buf[OFF_EQUITY] = cash
    buf[OFF_LAST_CLOSE] = math.nan
    buf[OFF_ATR + 1] = math.nan
    buf[OFF_ATR + 3] = math.nan
    buf[OFF_ATR_VALUE] = math.nan
    buf[off_p:off_st] = pv
    buf[off_out:off_rec] = math.nan
    return buf


def rotated(buf: np.ndarray) -> np.ndarray:
    """A fresh array with ``buf``'s state and no records (``buf`` is left as it is:
    the steps that read its rows keep it)."""
    ib = buf.view(np.int64)
    off_rec = int(ib[H_OFF_REC])
    new = np.empty_like(buf)
    new[:off_rec] = buf[:off_rec]
    new.view(np.int64)[H_ROW] = off_rec
    return new


def records(buf: np.ndarray) -> np.ndarray:
    """The rows written so far, as a (rows, width) view."""
    ib = buf.view(np.int64)
    off, width = int(ib[H_OFF_REC]), int(ib[H_REC_W])
    return buf[off : int(ib[H_ROW])].reshape(-1, width)


@numba.njit(cache=True, inline="always")
def precheck(
    buf: np.ndarray, ib: np.ndarray, key: int, o: float, h: float, lo: float, c: float
) -> int:
    """0 when the bar can be processed, else why not (``B_*``); changes nothing."""
    last = ib[H_LAST_KEY]
    if key <= last:
        return B_DUPLICATE if key == last else B_OUT_OF_ORDER
    if not (lo > 0.0 and lo <= o and lo <= c and o <= h and c <= h and h < np.inf):
        return B_BAD_PRICES
    if key >= ib[H_NEXT_DAY]:
        return B_NEW_DAY
    if ib[H_ROW] + ib[H_REC_W] > ib[H_ROWS_END]:
        return B_FULL
    return 0


@numba.njit(cache=True, inline="always")
def atr_step(buf: np.ndarray, ib: np.ndarray, h: float, lo: float, c: float) -> float:
    """The ATR stream (:class:`hedgeflow.indicators.AtrStream`'s arithmetic) when the
    trailing stop is on; NaN otherwise."""
    if ib[H_TRAILING] == 0:
        return np.nan
    n = ib[H_ATR_N]
    i = int(buf[OFF_ATR])
    buf[OFF_ATR] = i + 1
    prev = buf[OFF_ATR + 1]
    buf[OFF_ATR + 1] = c
    if i == 0:
        return np.nan
    tr = h - lo
    a = abs(h - prev)
    if a > tr:
        tr = a
    b = abs(lo - prev)
    if b > tr:
        tr = b
    if i < n:
        buf[OFF_ATR + 2] += tr
        return np.nan
    if i == n:
        buf[OFF_ATR + 2] += tr
        buf[OFF_ATR + 3] = buf[OFF_ATR + 2] / n
    else:
        buf[OFF_ATR + 3] = (buf[OFF_ATR + 3] * (n - 1) + tr) / n
    return buf[OFF_ATR + 3]


@numba.njit(cache=True, inline="always")
def record(
    buf: np.ndarray, ib: np.ndarray, o: float, h: float, lo: float, c: float, sig: int, eq: float
) -> int:
    """Write the next record row (the caller checked there is room); its start."""
    v = buf[OFF_V : OFF_V + rules.N_VECTOR]
    r = ib[H_ROW]
    ib[H_ROW] = r + ib[H_REC_W]
    buf[r + R_OPEN] = o
    buf[r + R_HIGH] = h
    buf[r + R_LOW] = lo
    buf[r + R_CLOSE] = c
    buf[r + R_SIG] = sig
    buf[r + R_EQUITY] = eq
    buf[r + R_HELD] = v[rules.V_HELD]
    buf[r + R_CASH] = v[rules.V_CASH]
    buf[r + R_QTY] = v[rules.V_QTY]
    buf[r + R_ENTRY_PX] = v[rules.V_ENTRY_PX]
    buf[r + R_ENTRY_FEE] = v[rules.V_ENTRY_FEE]
    buf[r + R_STOP] = v[rules.V_STOP]
    buf[r + R_TP] = v[rules.V_TP]
    buf[r + R_PREV_SIG] = v[rules.V_PREV_SIG]
    out = ib[H_OFF_OUT]
    for j in range(ib[H_K]):
        buf[r + R_IND + j] = buf[out + j]
    return r


@numba.njit(cache=True, inline="always")
def apply_rules(
    buf: np.ndarray, ib: np.ndarray, key: int, o: float, h: float, lo: float, c: float, sig: int
) -> int:
    """The engine's rules for one bar on the buffer, the bar's record; the code."""
    atr = atr_step(buf, ib, h, lo, c)
    v = buf[OFF_V : OFF_V + rules.N_VECTOR]
    trade = buf[OFF_TRADE : OFF_TRADE + 2 * rules.N_TRADE].reshape((2, rules.N_TRADE))
    before = v[rules.V_PENDING]
    filled, skip, eq = rules.step_bar_vector(
        v, buf[OFF_PV : OFF_PV + N_PV], 0, o, h, lo, c, sig, atr, trade
    )
    buf[OFF_EQUITY] = eq
    buf[OFF_LAST_CLOSE] = c
    buf[OFF_FILLED] = filled
    buf[OFF_SKIP] = skip
    buf[OFF_ATR_VALUE] = atr
    ib[H_LAST_KEY] = key
    ib[H_N_BARS] += 1
    ib[H_LAST_SIG] = sig
    r = record(buf, ib, o, h, lo, c, sig, eq)
    events = (
        before != rules.Q_NONE
        or trade[1, rules.T_REASON] != rules.R_NONE
        or v[rules.V_PENDING] != rules.Q_NONE
        or ib[H_FORCE] != 0
    )
    return (r << 3) | (EVENTS if events else 0) | (sig + 1)


@numba.njit(cache=True)
def rules_bar(buf: np.ndarray, key: int, o: float, h: float, lo: float, c: float, sig: int) -> int:
    """One bar with a given signal (the broker without a strategy); no checks of
    order or prices (the caller's), only room for the record."""
    ib = buf.view(np.int64)
    if ib[H_ROW] + ib[H_REC_W] > ib[H_ROWS_END]:
        return B_FULL
    return apply_rules(buf, ib, key, o, h, lo, c, sig)


@numba.njit(cache=True)
def observe_bars(buf: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> None:
    """Feed bars to the ATR stream only (warm-up without trading, restore, a split's
    rebuild); the last close is the last bar's."""
    ib = buf.view(np.int64)
    for i in range(close.shape[0]):
        buf[OFF_ATR_VALUE] = atr_step(buf, ib, high[i], low[i], close[i])
        buf[OFF_LAST_CLOSE] = close[i]


@numba.njit(cache=True)
def end_close_buffer(buf: np.ndarray) -> None:
    """:func:`hedgeflow.rules.end_close` at the last close (trade row 0); equity
    becomes the cash."""
    v = buf[OFF_V : OFF_V + rules.N_VECTOR]
    trade = buf[OFF_TRADE : OFF_TRADE + 2 * rules.N_TRADE].reshape((2, rules.N_TRADE))
    rules.end_close_vector(v, buf[OFF_PV : OFF_PV + N_PV], 0, buf[OFF_LAST_CLOSE], trade)
    buf[OFF_EQUITY] = v[rules.V_CASH]


@numba.njit(cache=True)
def record_close(buf: np.ndarray) -> int:
    """The record of a close-out (no bar: the last close, no signal); its start, or
    ``B_FULL``."""
    ib = buf.view(np.int64)
    if ib[H_ROW] + ib[H_REC_W] > ib[H_ROWS_END]:
        return B_FULL
    c = buf[OFF_LAST_CLOSE]
    return record(buf, ib, c, c, c, c, 0, buf[OFF_EQUITY])
