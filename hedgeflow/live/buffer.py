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
ATR stream is :func:`hedgeflow.indicators.atr_step` on the buffer's slots.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from hedgeflow import indicators, rules

__all__ = ["new_buffer", "rotated", "rules_bar"]

# int64 header slots
(
    H_LAST_KEY, H_NEXT_DAY, H_ROW, H_ROWS_END, H_N_BARS, H_FORCE, H_OFF_P, H_OFF_ST,
    H_OFF_OUT, H_K, H_OFF_REC, H_REC_W, H_ATR_N, H_TRAILING, H_LAST_SIG, H_BAD_SIG,
    H_PENDING_KEY, H_ENTRY_KEY, H_ENTRY_ORDER_KEY, H_DAY_I, H_DAY_N, H_WATCH,
) = range(22)  # fmt: skip
# H_NEXT_DAY: the next New York midnight (a stock's); the compiled bar moves it on along
# the N_DAYS midnights that follow it (OFF_DAYS: H_DAY_I the next one, H_DAY_N filled)
# and stops (B_NEW_DAY) when they run out, or at every new day while H_WATCH is set
# (splits ahead: the owner applies them)
# H_PENDING_KEY: the bar whose close queued the pending order; H_ENTRY_KEY: the bar the
# open position's entry filled in; H_ENTRY_ORDER_KEY: the bar that queued that entry
N_HEADER = 24
KEY_NONE = -(2**63)  # no bar yet
KEY_NEVER = 2**63 - 1  # no day check (not a stock)

OFF_V = N_HEADER
N_PV = 16  # room for the settings vector
OFF_PV = OFF_V + rules.N_VECTOR
OFF_ATR = OFF_PV + N_PV  # the ATR stream (indicators.atr_step)
OFF_TRADE = OFF_ATR + indicators.ATR_STATE_SIZE
OFF_EQUITY = OFF_TRADE + 2 * rules.N_TRADE
OFF_LAST_CLOSE = OFF_EQUITY + 1
OFF_FILLED = OFF_EQUITY + 2
OFF_SKIP = OFF_EQUITY + 3
OFF_ATR_VALUE = OFF_EQUITY + 4
OFF_DAYS = OFF_EQUITY + 8
N_DAYS = 64
N_FIXED = OFF_DAYS + N_DAYS

# a record row (then one value per indicator)
(
    R_OPEN, R_HIGH, R_LOW, R_CLOSE, R_SIG, R_EQUITY, R_HELD, R_CASH, R_QTY, R_ENTRY_PX,
    R_ENTRY_FEE, R_STOP, R_TP, R_PREV_SIG, R_PENDING_BEFORE, R_PENDING_BEFORE_KEY,
    R_QTY_BEFORE, R_FILLED, R_SKIP, R_ENTRY_KEY_BEFORE, R_ENTRY_KEY, R_ENTRY_ORDER_KEY,
    R_PENDING,
) = range(23)  # fmt: skip
# what the bar did, for its events: the order pending at its open (Q_* code, the bar
# that queued it, the quantity held then), the P_* / S_* outcome, the entry's bars
# before and after it (the *_KEY slots are int64), the order queued at its close; then
# the two trade rows of the bar (T_*), then one value per indicator
R_TRADES = 23
R_IND = R_TRADES + 2 * rules.N_TRADE

# why a bar was not processed (nothing changed)
B_DUPLICATE, B_OUT_OF_ORDER, B_BAD_PRICES, B_NEW_DAY, B_FULL, B_BAD_SIGNAL, B_FORCED = (
    -1, -2, -3, -4, -5, -6, -7,
)  # fmt: skip
# B_FORCED: the owner has events to add to the next bar's (``H_FORCE``)
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
    ib[H_PENDING_KEY] = ib[H_ENTRY_KEY] = ib[H_ENTRY_ORDER_KEY] = KEY_NONE
    ib[H_ROW] = off_rec
    ib[H_ROWS_END] = buf.shape[0]
    ib[H_OFF_P], ib[H_OFF_ST], ib[H_OFF_OUT], ib[H_K] = off_p, off_st, off_out, n_ind
    ib[H_OFF_REC], ib[H_REC_W] = off_rec, width
    ib[H_ATR_N], ib[H_TRAILING] = atr_period, int(trailing)
    buf[OFF_PV : OFF_PV + settings.shape[0]] = settings
    buf[OFF_V + rules.V_CASH] = cash
    buf[OFF_EQUITY] = cash
    buf[OFF_LAST_CLOSE] = math.nan
    buf[OFF_ATR_VALUE] = math.nan
    buf[off_p:off_st] = pv
    buf[off_out:off_rec] = math.nan
    return buf


def set_days(buf: np.ndarray, next_day: int, after: list[int]) -> None:
    """The next New York midnight (epoch ns) and up to :data:`N_DAYS` that follow it."""
    ib = buf.view(np.int64)
    ahead = after[:N_DAYS]
    ib[H_NEXT_DAY] = next_day
    ib[OFF_DAYS : OFF_DAYS + len(ahead)] = ahead
    ib[H_DAY_I] = 0
    ib[H_DAY_N] = len(ahead)


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
        if ib[H_WATCH] != 0:
            return B_NEW_DAY
        i = ib[H_DAY_I]
        n = ib[H_DAY_N]
        while i < n and key >= ib[OFF_DAYS + i]:
            i += 1
        if i >= n:
            return B_NEW_DAY
        ib[H_DAY_I] = i  # (the same for this key whatever follows: no harm if refused)
        ib[H_NEXT_DAY] = ib[OFF_DAYS + i]
    if ib[H_ROW] + ib[H_REC_W] > ib[H_ROWS_END]:
        return B_FULL
    if ib[H_FORCE] != 0:
        return B_FORCED
    return 0


@numba.njit(cache=True, inline="always")
def atr_step(buf: np.ndarray, ib: np.ndarray, h: float, lo: float, c: float) -> float:
    """The ATR stream (:func:`hedgeflow.indicators.atr_step` on the buffer's slots)
    when the trailing stop is on; NaN otherwise."""
    if ib[H_TRAILING] == 0:
        return np.nan
    return indicators.atr_step(buf, OFF_ATR, ib[H_ATR_N], h, lo, c)


@numba.njit(cache=True, inline="always")
def before_bar(buf: np.ndarray, ib: np.ndarray) -> tuple[float, int, float, int]:
    """What a bar's record keeps of the state before it: the pending order's ``Q_*``
    code and the bar that queued it, the quantity held, the entry's bar."""
    return (
        buf[OFF_V + rules.V_PENDING],
        ib[H_PENDING_KEY],
        buf[OFF_V + rules.V_QTY],
        ib[H_ENTRY_KEY],
    )


@numba.njit(cache=True, inline="always")
def record(
    buf: np.ndarray, ib: np.ndarray, o: float, h: float, lo: float, c: float, sig: int, eq: float
) -> int:
    """Write the next record row's state after the bar (the caller checked there is
    room, and writes what the bar did); its start."""
    v = OFF_V  # the state's slots (no view: see rules.load_at)
    r = ib[H_ROW]
    ib[H_ROW] = r + ib[H_REC_W]
    buf[r + R_OPEN] = o
    buf[r + R_HIGH] = h
    buf[r + R_LOW] = lo
    buf[r + R_CLOSE] = c
    buf[r + R_SIG] = sig
    buf[r + R_EQUITY] = eq
    buf[r + R_HELD] = buf[v + rules.V_HELD]
    buf[r + R_CASH] = buf[v + rules.V_CASH]
    buf[r + R_QTY] = buf[v + rules.V_QTY]
    buf[r + R_ENTRY_PX] = buf[v + rules.V_ENTRY_PX]
    buf[r + R_ENTRY_FEE] = buf[v + rules.V_ENTRY_FEE]
    buf[r + R_STOP] = buf[v + rules.V_STOP]
    buf[r + R_TP] = buf[v + rules.V_TP]
    buf[r + R_PREV_SIG] = buf[v + rules.V_PREV_SIG]
    buf[r + R_PENDING] = buf[v + rules.V_PENDING]
    ib[r + R_ENTRY_KEY] = ib[H_ENTRY_KEY]
    ib[r + R_ENTRY_ORDER_KEY] = ib[H_ENTRY_ORDER_KEY]
    out = ib[H_OFF_OUT]
    for j in range(ib[H_K]):
        buf[r + R_IND + j] = buf[out + j]
    return r


@numba.njit(cache=True, inline="always")
def record_before(
    buf: np.ndarray, ib: np.ndarray, r: int, pending: float, pending_key: int, qty: float,
    entry_key: int, filled: int, skip: int,
) -> None:  # fmt: skip
    """What the bar did, into its record ``r``: the order pending at its open, the
    outcome, the entry before it, the trade rows."""
    buf[r + R_PENDING_BEFORE] = pending
    ib[r + R_PENDING_BEFORE_KEY] = pending_key
    buf[r + R_QTY_BEFORE] = qty
    buf[r + R_FILLED] = filled
    buf[r + R_SKIP] = skip
    ib[r + R_ENTRY_KEY_BEFORE] = entry_key
    t = r + R_TRADES
    if (
        buf[OFF_TRADE + rules.T_REASON] == rules.R_NONE
        and buf[OFF_TRADE + rules.N_TRADE + rules.T_REASON] == rules.R_NONE
    ):
        # no trade closed (most bars): only the reasons say so
        buf[t + rules.T_REASON] = rules.R_NONE
        buf[t + rules.N_TRADE + rules.T_REASON] = rules.R_NONE
        return
    for j in range(2 * rules.N_TRADE):
        buf[t + j] = buf[OFF_TRADE + j]


@numba.njit(cache=True, inline="always")
def apply_rules(
    buf: np.ndarray, ib: np.ndarray, key: int, o: float, h: float, lo: float, c: float, sig: int
) -> int:
    """The engine's rules for one bar on the buffer, the bar's record; the code."""
    atr = atr_step(buf, ib, h, lo, c)
    before, before_key, qty_before, entry_before = before_bar(buf, ib)
    # the state and settings read at their offsets (no views: see rules.load_at)
    st, filled, skip, first, second = rules.step_bar(
        rules.load_at(buf, OFF_V), rules.settings_at(buf, OFF_PV), 0, o, h, lo, c, sig, atr
    )
    rules.store_at(st, buf, OFF_V)
    eq = rules.equity(st, c)
    buf[OFF_TRADE + rules.T_REASON] = rules.R_NONE
    buf[OFF_TRADE + rules.N_TRADE + rules.T_REASON] = rules.R_NONE
    if first.reason != rules.R_NONE or second.reason != rules.R_NONE:
        trade = buf[OFF_TRADE : OFF_TRADE + 2 * rules.N_TRADE].reshape((2, rules.N_TRADE))
        rules.write_trade(trade, 0, 0, first)
        rules.write_trade(trade, 1, 0, second)
    buf[OFF_EQUITY] = eq
    buf[OFF_LAST_CLOSE] = c
    buf[OFF_FILLED] = filled
    buf[OFF_SKIP] = skip
    buf[OFF_ATR_VALUE] = atr
    ib[H_LAST_KEY] = key
    ib[H_N_BARS] += 1
    ib[H_LAST_SIG] = sig
    if filled == rules.P_ENTRY_FILLED or filled == rules.P_REVERSED:
        ib[H_ENTRY_KEY] = key
        ib[H_ENTRY_ORDER_KEY] = before_key
    if st.pending != rules.Q_NONE:
        ib[H_PENDING_KEY] = key
    r = record(buf, ib, o, h, lo, c, sig, eq)
    record_before(buf, ib, r, before, before_key, qty_before, entry_before, filled, skip)
    events = before != rules.Q_NONE or second.reason != rules.R_NONE or st.pending != rules.Q_NONE
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
def end_close_record(buf: np.ndarray) -> int:
    """:func:`hedgeflow.rules.end_close` at the last close (trade row 0) and its record
    (no bar: the last close, no signal; the pending order it drops is the record's
    order before); equity becomes the cash. Its start, or ``B_FULL`` (nothing done)."""
    ib = buf.view(np.int64)
    if ib[H_ROW] + ib[H_REC_W] > ib[H_ROWS_END]:
        return B_FULL
    v = buf[OFF_V : OFF_V + rules.N_VECTOR]
    before, before_key, qty_before, entry_before = before_bar(buf, ib)
    trade = buf[OFF_TRADE : OFF_TRADE + 2 * rules.N_TRADE].reshape((2, rules.N_TRADE))
    c = buf[OFF_LAST_CLOSE]
    rules.end_close_vector(v, buf[OFF_PV : OFF_PV + N_PV], 0, c, trade)
    buf[OFF_EQUITY] = v[rules.V_CASH]
    r = record(buf, ib, c, c, c, c, 0, buf[OFF_EQUITY])
    record_before(buf, ib, r, before, before_key, qty_before, entry_before, rules.P_NONE, 0)
    return r
