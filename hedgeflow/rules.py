"""The trading rules, written once (DESIGN.md "Exact rules"): compiled per-bar
functions over an explicit state, called by every driver.

- the batch engine (:func:`hedgeflow.engine.run_arrays`) loops :func:`step_bar` over
  the bars and calls :func:`end_close` after the last one;
- the sweep kernels (:mod:`hedgeflow.sweep.kernels`) run that same engine loop once
  per combination;
- the live paper broker (:class:`hedgeflow.live.broker.PaperBroker`) calls
  :func:`step_bar` once per closed bar and turns what it reports into orders and
  fills.

No driver does any of the arithmetic itself. The model is vectorbt's
``process_order_nb``: one step over an explicit state, one record writer
(:func:`write_trade`), one small named function per rule.

The state is a value (:class:`State`, a named tuple every rule returns anew, as
vectorbt's ``ExecState``): cash, quantity, entry price and fee, entry bar, stop
and take-profit levels, the pending order, the previous signal and the quantity
held through the bar. The settings are a :class:`Settings` tuple. A closed round
trip is a :class:`Closed` tuple, written as a row of a float64 matrix (``T_*``)
by :func:`write_trade`. Values, not arrays, cross the rule functions: numba then
inlines them into the drivers with no reference counting (the engine's loop stays
within a few percent of a hand-fused one).

Numba's on-disk cache of a driver does not notice a change of these functions:
after editing this file, delete the ``__pycache__/*.nbi`` / ``*.nbc`` files.

Order of events in bar ``i`` (open ``o``, high ``h``, low ``l``, close ``c``):

1. :func:`fill_pending`: a pending entry fills at ``o * (1 + slip)`` sized by
   :func:`entry_size` (risk over stop distance, leverage cap, whole units); a
   pending exit fills at ``o * (1 - slip)``. Fee = ``fee_rate * qty * price``.
   An entry sets its levels with :func:`entry_levels`.
2. :func:`protective_exit`: an open position (also one filled at this open) exits
   at the level :func:`exit_level` finds: at ``o`` on a gap through the stop or
   the take-profit, else at the stop if ``l`` reaches it, else at the
   take-profit if ``h`` reaches it (the stop wins inside one bar).
3. :func:`read_signal`: a 0 -> 1 change while flat queues an entry, a 1 -> 0
   change while long queues an exit; :func:`trail_stop` then moves the ATR
   trailing stop.
4. Equity = cash + qty x c (:func:`equity`); after the last bar
   :func:`end_close` closes what is still open (reason ``end``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

__all__ = [
    "EXIT_REASONS",
    "N_TRADE",
    "Closed",
    "Settings",
    "State",
    "end_close",
    "equity",
    "flat_state",
    "step_bar",
    "write_trade",
]

EXIT_REASONS: tuple[str, ...] = ("signal", "stop", "take_profit", "end")
R_NONE, R_SIGNAL, R_STOP, R_TAKE_PROFIT, R_END = -1, 0, 1, 2, 3

# What step_bar reports about the order pending from the previous close.
P_NONE, P_ENTRY_FILLED, P_ENTRY_REJECTED, P_EXIT_FILLED = 0, 1, 2, 3

# One trade per row of a float64 matrix (write_trade).
T_ENTRY_I, T_EXIT_I, T_QTY, T_ENTRY_PX, T_EXIT_PX, T_REASON, T_FEES, T_PNL, T_EXIT_FEE = range(9)
N_TRADE = 9

WHOLE_UNIT_EPS = 1e-9  # floor(q + 1e-9): an exact integer computed as 999.999... stays


class Settings(NamedTuple):
    """The engine settings as the rules read them (rates, not basis points)."""

    initial_equity: float
    risk_per_trade: float
    stop_pct: float
    take_profit_pct: float
    max_leverage: float
    fee_rate: float
    slip_rate: float
    whole_units: bool
    use_trailing_atr: bool
    atr_mult: float


class State(NamedTuple):
    """One account between two bars (a value: every rule returns a new one)."""

    cash: float
    qty: float  # > 0 while long, 0 while flat
    entry_px: float
    entry_fee: float
    entry_i: int  # bar index of the entry fill
    stop: float
    tp: float
    pending: int  # 1: entry at the next open, -1: exit at the next open, 0: none
    prev_sig: int  # the signal read at the previous close (0 before the first bar)
    held: float  # quantity held through the last bar (the engine's `position`)


class Closed(NamedTuple):
    """A round trip closed in a bar (``reason == R_NONE``: none)."""

    reason: int
    entry_i: int
    qty: float
    entry_px: float
    exit_px: float
    fees: float  # entry fee + exit fee
    pnl: float
    exit_fee: float


@numba.njit(cache=True)
def flat_state(p: Settings) -> State:
    """A flat account holding the initial equity in cash."""
    return State(p.initial_equity, 0.0, 0.0, 0.0, -1, 0.0, 0.0, 0, 0, 0.0)


@numba.njit(cache=True, inline="always")
def no_trade() -> Closed:
    return Closed(R_NONE, -1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


# --------------------------------------------------------------------------- rules


@numba.njit(cache=True, inline="always")
def buy_price(price: float, p: Settings) -> float:
    return price * (1.0 + p.slip_rate)


@numba.njit(cache=True, inline="always")
def sell_price(price: float, p: Settings) -> float:
    return price * (1.0 - p.slip_rate)


@numba.njit(cache=True, inline="always")
def fee(qty: float, price: float, p: Settings) -> float:
    return p.fee_rate * qty * price


@numba.njit(cache=True, inline="always")
def entry_size(eq: float, fill: float, p: Settings) -> float:
    """Risk over the stop distance, capped by leverage (fees not included), floored
    to whole units where the asset trades in them. ``<= 0``: no trade."""
    q = eq * p.risk_per_trade / (fill * p.stop_pct)
    q_cap = eq * p.max_leverage / fill
    if q > q_cap:
        q = q_cap
    if p.whole_units:
        q = float(math.floor(q + WHOLE_UNIT_EPS))
    return q


@numba.njit(cache=True, inline="always")
def entry_levels(fill: float, p: Settings) -> tuple[float, float]:
    """(stop, take-profit) of a long entered at ``fill``."""
    return fill * (1.0 - p.stop_pct), fill * (1.0 + p.take_profit_pct)


@numba.njit(cache=True, inline="always")
def exit_level(o: float, h: float, lo: float, stop: float, tp: float) -> tuple[float, int]:
    """(price before slippage, reason) of a protective exit in this bar, or
    ``(0, R_NONE)``: a gap at the open first, then the stop, then the target."""
    if o <= stop:
        return o, R_STOP
    if o >= tp:
        return o, R_TAKE_PROFIT
    if lo <= stop:
        return stop, R_STOP
    if h >= tp:
        return tp, R_TAKE_PROFIT
    return 0.0, R_NONE


@numba.njit(cache=True, inline="always")
def close_position(st: State, p: Settings, px: float, reason: int) -> tuple[State, Closed]:
    """Sell the whole position at ``px`` (slippage already applied): the new cash,
    a flat state and the closed round trip."""
    qty = st.qty
    f = fee(qty, px, p)
    cash = st.cash + (qty * px - f)
    closed = Closed(
        reason,
        st.entry_i,
        qty,
        st.entry_px,
        px,
        st.entry_fee + f,
        qty * (px - st.entry_px) - st.entry_fee - f,
        f,
    )
    return State(
        cash,
        0.0,
        st.entry_px,
        st.entry_fee,
        st.entry_i,
        st.stop,
        st.tp,
        st.pending,
        st.prev_sig,
        st.held,
    ), closed


@numba.njit(cache=True, inline="always")
def fill_pending(st: State, p: Settings, i: int, o: float) -> tuple[State, int, Closed]:
    """Rule 1: the order queued at the previous close fills at this open.
    Returns (state, ``P_*`` outcome, the round trip an exit closed)."""
    pending = st.pending
    st = State(
        st.cash,
        st.qty,
        st.entry_px,
        st.entry_fee,
        st.entry_i,
        st.stop,
        st.tp,
        0,
        st.prev_sig,
        st.held,
    )
    if pending == 1:
        fill = buy_price(o, p)
        eq = st.cash  # entries fill only while flat: equity == cash
        q = entry_size(eq, fill, p)
        if q > 0.0:
            f = fee(q, fill, p)
            stop, tp = entry_levels(fill, p)
            st = State(st.cash - (q * fill + f), q, fill, f, i, stop, tp, 0, st.prev_sig, st.held)
            return st, P_ENTRY_FILLED, no_trade()
        return st, P_ENTRY_REJECTED, no_trade()
    if pending == -1 and st.qty > 0.0:
        st, closed = close_position(st, p, sell_price(o, p), R_SIGNAL)
        return st, P_EXIT_FILLED, closed
    return st, P_NONE, no_trade()


@numba.njit(cache=True, inline="always")
def protective_exit(st: State, p: Settings, o: float, h: float, lo: float) -> tuple[State, Closed]:
    """Rule 2: stop or take-profit of an open position (``closed.reason`` R_NONE:
    none)."""
    if st.qty <= 0.0:
        return st, no_trade()
    level, reason = exit_level(o, h, lo, st.stop, st.tp)
    if reason == R_NONE:
        return st, no_trade()
    return close_position(st, p, sell_price(level, p), reason)


@numba.njit(cache=True, inline="always")
def read_signal(st: State, s: int) -> State:
    """Rule 3: the signal at the close queues an order (``pending`` 1 entry, -1
    exit). After a protective exit the previous signal is still 1: only a new
    0 -> 1 change enters again."""
    sig = 1 if s == 1 else 0  # an int64 whatever integer type the driver reads
    queued = 0
    if sig == 1 and st.prev_sig == 0 and st.qty == 0.0:
        queued = 1
    elif sig == 0 and st.prev_sig == 1 and st.qty > 0.0:
        queued = -1
    return State(
        st.cash, st.qty, st.entry_px, st.entry_fee, st.entry_i, st.stop, st.tp, queued, sig, st.held
    )


@numba.njit(cache=True, inline="always")
def trail_stop(st: State, p: Settings, c: float, atr: float) -> State:
    """The optional ATR trailing stop: ``max(stop, c - atr_mult * ATR)`` while long
    (no change while the ATR is undefined)."""
    if p.use_trailing_atr and st.qty > 0.0 and atr == atr:
        trail = c - p.atr_mult * atr
        if trail > st.stop:
            return State(
                st.cash,
                st.qty,
                st.entry_px,
                st.entry_fee,
                st.entry_i,
                trail,
                st.tp,
                st.pending,
                st.prev_sig,
                st.held,
            )
    return st


@numba.njit(cache=True, inline="always")
def step_bar(
    st: State, p: Settings, i: int, o: float, h: float, lo: float, c: float, s: int, atr: float
) -> tuple[State, int, Closed]:
    """Rules 1-3 for bar ``i``. Returns (state, ``P_*`` outcome of the pending
    order, the round trip closed in the bar). At most one trade closes per bar: a
    signal exit at the open leaves nothing for the stop. ``state.held`` is the
    quantity held through the bar, ``state.pending`` the order queued at its close."""
    st, filled, closed = fill_pending(st, p, i, o)
    st = State(
        st.cash,
        st.qty,
        st.entry_px,
        st.entry_fee,
        st.entry_i,
        st.stop,
        st.tp,
        st.pending,
        st.prev_sig,
        st.qty,
    )
    if closed.reason == R_NONE:
        st, closed = protective_exit(st, p, o, h, lo)
        if closed.reason != R_NONE:
            st = State(
                st.cash,
                st.qty,
                st.entry_px,
                st.entry_fee,
                st.entry_i,
                st.stop,
                st.tp,
                st.pending,
                st.prev_sig,
                0.0,
            )
    st = read_signal(st, s)
    st = trail_stop(st, p, c, atr)
    return st, filled, closed


@numba.njit(cache=True, inline="always")
def end_close(st: State, p: Settings, c: float) -> tuple[State, Closed]:
    """Rule 4's end of data: a position still open after the last bar closes at
    its close (reason ``end``, slippage and fee apply); a pending order is dropped."""
    st = State(
        st.cash,
        st.qty,
        st.entry_px,
        st.entry_fee,
        st.entry_i,
        st.stop,
        st.tp,
        0,
        st.prev_sig,
        st.held,
    )
    if st.qty > 0.0:
        return close_position(st, p, sell_price(c, p), R_END)
    return st, no_trade()


@numba.njit(cache=True, inline="always")
def equity(st: State, c: float) -> float:
    """Equity at a close: cash + qty x c."""
    return st.cash + st.qty * c


@numba.njit(cache=True)
def write_trade(trades: np.ndarray, nt: int, exit_i: int, t: Closed) -> int:
    """The one trade-record writer: ``t`` closed at bar ``exit_i`` into row ``nt`` of a
    ``(capacity, N_TRADE)`` matrix (one cache line per trade); returns the next row
    (unchanged without a trade)."""
    if t.reason == R_NONE:
        return nt
    trades[nt, T_ENTRY_I] = t.entry_i
    trades[nt, T_EXIT_I] = exit_i
    trades[nt, T_QTY] = t.qty
    trades[nt, T_ENTRY_PX] = t.entry_px
    trades[nt, T_EXIT_PX] = t.exit_px
    trades[nt, T_REASON] = t.reason
    trades[nt, T_FEES] = t.fees
    trades[nt, T_PNL] = t.pnl
    trades[nt, T_EXIT_FEE] = t.exit_fee
    return nt + 1


# --------------------------------------------------------------------------- one bar from Python
# Drivers that run outside numba (the live paper broker) keep the state in a float64
# vector (``V_*``) and call these entry points once per bar: arrays cross the
# boundary cheaply, the rules above do the work.

V_CASH, V_QTY, V_ENTRY_PX, V_ENTRY_FEE, V_ENTRY_I, V_STOP, V_TP, V_PENDING, V_PREV_SIG, V_HELD = (
    range(10)
)
N_VECTOR = 10


def settings_vector(p: Settings) -> np.ndarray:
    """``Settings`` as the float64 vector the entry points take."""
    return np.array([float(x) for x in p], dtype=np.float64)


@numba.njit(cache=True, inline="always")
def _settings(v: np.ndarray) -> Settings:
    return Settings(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7] != 0.0, v[8] != 0.0, v[9])


@numba.njit(cache=True, inline="always")
def _load(v: np.ndarray) -> State:
    return State(
        v[V_CASH],
        v[V_QTY],
        v[V_ENTRY_PX],
        v[V_ENTRY_FEE],
        int(v[V_ENTRY_I]),
        v[V_STOP],
        v[V_TP],
        int(v[V_PENDING]),
        int(v[V_PREV_SIG]),
        v[V_HELD],
    )


@numba.njit(cache=True, inline="always")
def _store(st: State, v: np.ndarray) -> None:
    v[V_CASH] = st.cash
    v[V_QTY] = st.qty
    v[V_ENTRY_PX] = st.entry_px
    v[V_ENTRY_FEE] = st.entry_fee
    v[V_ENTRY_I] = st.entry_i
    v[V_STOP] = st.stop
    v[V_TP] = st.tp
    v[V_PENDING] = st.pending
    v[V_PREV_SIG] = st.prev_sig
    v[V_HELD] = st.held


@numba.njit(cache=True)
def step_bar_vector(
    v: np.ndarray,
    pv: np.ndarray,
    i: int,
    o: float,
    h: float,
    lo: float,
    c: float,
    s: int,
    atr: float,
    trade: np.ndarray,
) -> tuple[int, float]:
    """:func:`step_bar` on a state vector ``v`` (updated in place); a closed round
    trip goes to row 0 of ``trade`` (shape ``(1, N_TRADE)``, reason ``R_NONE``
    when none). Returns the ``P_*`` outcome of the pending order and the equity at
    the close."""
    st, filled, closed = step_bar(_load(v), _settings(pv), i, o, h, lo, c, s, atr)
    _store(st, v)
    trade[0, T_REASON] = R_NONE
    write_trade(trade, 0, i, closed)
    return filled, equity(st, c)


@numba.njit(cache=True)
def end_close_vector(v: np.ndarray, pv: np.ndarray, i: int, c: float, trade: np.ndarray) -> None:
    """:func:`end_close` on a state vector, like :func:`step_bar_vector`."""
    st, closed = end_close(_load(v), _settings(pv), c)
    _store(st, v)
    trade[0, T_REASON] = R_NONE
    write_trade(trade, 0, i, closed)
