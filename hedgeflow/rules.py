"""The trading rules, written once (DESIGN.md "Exact rules"): compiled per-bar
functions over an explicit state, called by every driver.

- the batch engine (:func:`hedgeflow.engine.run_arrays`) loops :func:`step_bar`'s two
  halves over the bars (:func:`open_bar`, then :func:`close_bar`, writing each round
  trip as it closes: one four-value ``step_bar`` in the loop costs ~10 % more per bar)
  and calls :func:`end_close` after the last one. Its settings carry
  ``allow_short=None`` with shorts off: :func:`shorts` is then a compile-time False
  and numba compiles a long-only loop without the short paths (the long-only engine
  stays within a few percent of the loop before shorts); with shorts on, or in the
  broker's vector entry points, every path is there;
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
inlines them into the drivers with no reference counting (passing the trade matrix
into an inlined rule costs 3x per bar).

Numba's on-disk cache of a driver does not notice a change of these functions:
after editing this file, delete the ``__pycache__/*.nbi`` / ``*.nbc`` files.

Order of events in bar ``i`` (open ``o``, high ``h``, low ``l``, close ``c``):

1. :func:`fill_pending`: a pending exit fills first (a long sells at
   ``o * (1 - slip)``, a short covers at ``o * (1 + slip)``), then a pending
   entry: a long buys at ``o * (1 + slip)``, a short sells at ``o * (1 - slip)``,
   sized by :func:`entry_size` on the cash after the exit (risk over stop
   distance, leverage cap, floored to the venue's quantity step); an entry below
   one step or the minimum notional is skipped, with its reason (:func:`entry_skip`,
   ``SKIP_REASONS``). Fee = ``fee_rate * qty * price``. An
   entry sets its levels with :func:`entry_levels`. An exit and an entry at one
   open is a reversal.
2. :func:`protective_exit`: an open position (also one filled at this open) exits
   at the level :func:`exit_level` (long) or :func:`exit_level_short` finds: at
   ``o`` on a gap through the stop or the take-profit, else at the stop if the
   bar reaches it, else at the take-profit (the stop wins inside one bar).
3. :func:`read_signal`: when the signal (-1 short, 0 flat, 1 long; -1 reads as 0
   unless ``allow_short``) differs from the previous close's, a held side it no
   longer asks for queues an exit and a side it now asks for queues an entry;
   :func:`trail_stop` then moves the ATR trailing stop.
4. Equity = cash + qty x c with ``qty`` signed (negative while short,
   :func:`equity`); after the last bar :func:`end_close` closes what is still
   open (reason ``end``).

DESIGN.md "Short selling": a short entry adds ``qty x fill - fee`` to the cash, a
cover subtracts ``qty x price + fee``; with the signed quantity both are the long
formulas (``cash - (qty x fill + fee)`` at entry, ``cash + (qty x px - fee)`` at
exit) and pnl = ``qty x (exit - entry) - fees`` is ``side x |qty| x (exit -
entry) - fees``. The long path performs exactly the float operations it did
before shorts existed, so long-only results are bit-identical.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

__all__ = [
    "EXIT_REASONS",
    "N_TRADE",
    "SKIP_REASONS",
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
P_REVERSED = 4  # the exit filled, then the opposite entry
P_EXIT_FILLED_ENTRY_REJECTED = 5  # the exit filled, the opposite entry sized to 0

# The order queued at a close (``State.pending``): an entry, an exit, or both (a
# reversal: the exit first, then the entry, at one open).
Q_NONE, Q_LONG, Q_EXIT, Q_SHORT, Q_EXIT_LONG, Q_EXIT_SHORT = 0, 1, -1, 2, 3, 4

# One trade per row of a float64 matrix (write_trade).
# T_QTY is signed: > 0 a long, < 0 a short (the side of the trade).
T_ENTRY_I, T_EXIT_I, T_QTY, T_ENTRY_PX, T_EXIT_PX, T_REASON, T_FEES, T_PNL, T_EXIT_FEE = range(9)
N_TRADE = 9

STEP_EPS = 1e-9  # floor(q / step + 1e-9): an exact multiple computed as 999.999... stays

# Why an entry was not placed (order minimums: the venue's quantity step and minimum
# notional). ``SKIP_REASONS[k - 1]`` names code k; 0 (S_NONE) is an entry that filled.
SKIP_REASONS: tuple[str, ...] = ("no_equity", "below_qty_step", "below_min_notional")
S_NONE, S_NO_EQUITY, S_BELOW_STEP, S_BELOW_NOTIONAL = 0, 1, 2, 3


class Settings(NamedTuple):
    """The engine settings as the rules read them (rates, not basis points)."""

    initial_equity: float
    risk_per_trade: float
    stop_pct: float
    take_profit_pct: float
    max_leverage: float
    fee_rate: float
    slip_rate: float
    # order minimums: quantities are whole multiples of qty_step (0: any quantity) and
    # an entry's notional (qty x fill) is at least min_notional
    qty_step: float
    min_notional: float
    use_trailing_atr: bool
    atr_mult: float
    # True: shorts; None (not False) with shorts off, so that numba compiles the
    # long-only drivers without the short paths (``shorts`` folds to a constant)
    allow_short: bool | None = None


class State(NamedTuple):
    """One account between two bars (a value: every rule returns a new one)."""

    cash: float
    qty: float  # > 0 while long, < 0 while short, 0 while flat
    entry_px: float
    entry_fee: float
    entry_i: int  # bar index of the entry fill
    stop: float
    tp: float
    pending: int  # Q_*: the order for the next open (Q_NONE: none)
    prev_sig: int  # the signal read at the previous close (0 before the first bar)
    held: float  # signed quantity held through the last bar (the engine's `position`)


class Closed(NamedTuple):
    """A round trip closed in a bar (``reason == R_NONE``: none)."""

    reason: int
    entry_i: int
    qty: float  # signed: < 0 a short
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
def shorts(p: Settings) -> bool:
    """Whether short paths exist in this compilation: a constant False when
    ``p.allow_short`` is None (the long-only drivers), else True."""
    return p.allow_short is not None


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
    to a whole multiple of the quantity step (:func:`floor_to_step`). ``<= 0``: no
    trade."""
    q = eq * p.risk_per_trade / (fill * p.stop_pct)
    q_cap = eq * p.max_leverage / fill
    if q > q_cap:
        q = q_cap
    return floor_to_step(q, p.qty_step)


@numba.njit(cache=True, inline="always")
def floor_to_step(q: float, step: float) -> float:
    """``q`` floored to a whole multiple of ``step`` (0: unchanged). A step below 1
    whose inverse is a whole number (1e-5, 0.01) divides by that inverse, so that
    the quantity is the float nearest its decimal (``12345 / 1e5``, not ``12345 *
    1e-5``); ``+ STEP_EPS`` keeps an exact multiple computed as 999.9999999 whole."""
    if step <= 0.0 or q <= 0.0:
        return q
    if step < 1.0:
        inv = 1.0 / step
        whole = math.floor(inv + 0.5)
        if abs(inv - whole) <= 1e-9 * whole:
            return math.floor(q * whole + STEP_EPS) / whole
    return math.floor(q / step + STEP_EPS) * step


@numba.njit(cache=True, inline="always")
def entry_skip(eq: float, q: float, fill: float, p: Settings) -> int:
    """Why an entry of ``q`` (already floored) at ``fill`` is not placed, or
    ``S_NONE``: no equity left, a size below one quantity step, a notional below the
    venue minimum."""
    if not eq > 0.0:
        return S_NO_EQUITY
    if not q > 0.0:
        return S_BELOW_STEP
    if q * fill < p.min_notional:
        return S_BELOW_NOTIONAL
    return S_NONE


@numba.njit(cache=True, inline="always")
def entry_levels(fill: float, p: Settings) -> tuple[float, float]:
    """(stop, take-profit) of a long entered at ``fill``."""
    return fill * (1.0 - p.stop_pct), fill * (1.0 + p.take_profit_pct)


@numba.njit(cache=True, inline="always")
def entry_levels_short(fill: float, p: Settings) -> tuple[float, float]:
    """(stop, take-profit) of a short entered at ``fill``: above and below it."""
    return fill * (1.0 + p.stop_pct), fill * (1.0 - p.take_profit_pct)


@numba.njit(cache=True, inline="always")
def exit_level(o: float, h: float, lo: float, stop: float, tp: float) -> tuple[float, int]:
    """(price before slippage, reason) of a long's protective exit in this bar, or
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
def exit_level_short(o: float, h: float, lo: float, stop: float, tp: float) -> tuple[float, int]:
    """:func:`exit_level` of a short (stop above, target below): a gap at the open
    first, then the stop if ``h`` reaches it, then the target if ``l`` does."""
    if o >= stop:
        return o, R_STOP
    if o <= tp:
        return o, R_TAKE_PROFIT
    if h >= stop:
        return stop, R_STOP
    if lo <= tp:
        return tp, R_TAKE_PROFIT
    return 0.0, R_NONE


@numba.njit(cache=True, inline="always")
def exit_price(qty: float, price: float, p: Settings) -> float:
    """The fill of an exit at ``price``: a long sells, a short buys to cover."""
    if not shorts(p) or qty > 0.0:
        return sell_price(price, p)
    return buy_price(price, p)


@numba.njit(cache=True, inline="always")
def close_position(st: State, p: Settings, px: float, reason: int) -> tuple[State, Closed]:
    """Close the whole position at ``px`` (slippage already applied): the new cash,
    a flat state and the closed round trip. ``qty`` is signed, so one formula
    sells a long (cash + qty x px - fee) and covers a short (cash - |qty| x px -
    fee)."""
    qty = st.qty
    f = fee(qty if (not shorts(p) or qty > 0.0) else -qty, px, p)
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
def open_position(st: State, p: Settings, i: int, o: float, side: int) -> tuple[State, int]:
    """An entry at the open ``o`` while flat (``side`` 1 long, -1 short), sized on
    the cash (flat: the equity). Returns (state, ``S_*``): ``S_NONE`` filled, else
    why the entry was skipped (:func:`entry_skip`; the state is unchanged)."""
    fill = buy_price(o, p) if side > 0 else sell_price(o, p)
    eq = st.cash  # entries fill only while flat: equity == cash
    q = entry_size(eq, fill, p)
    skip = entry_skip(eq, q, fill, p)
    if skip == S_NONE:
        f = fee(q, fill, p)
        if side > 0:
            stop, tp = entry_levels(fill, p)
        else:
            stop, tp = entry_levels_short(fill, p)
            q = -q
        st = State(st.cash - (q * fill + f), q, fill, f, i, stop, tp, 0, st.prev_sig, st.held)
    return st, skip


@numba.njit(cache=True, inline="always")
def fill_pending(st: State, p: Settings, i: int, o: float) -> tuple[State, int, int, Closed]:
    """Rule 1: the order queued at the previous close fills at this open, the exit
    first, then the entry (sized on the cash after the exit). Returns (state,
    ``P_*`` outcome, ``S_*`` why an entry was skipped, the round trip an exit
    closed)."""
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
    if pending == Q_NONE:
        return st, P_NONE, S_NONE, no_trade()
    closed = no_trade()
    exited = False
    if pending != Q_LONG and pending != Q_SHORT and st.qty != 0.0:
        st, closed = close_position(st, p, exit_price(st.qty, o, p), R_SIGNAL)
        exited = True
    side = 0
    if pending == Q_LONG or pending == Q_EXIT_LONG:  # noqa: SIM109 (numba: no tuple)
        side = 1
    elif shorts(p) and (pending == Q_SHORT or pending == Q_EXIT_SHORT):  # noqa: SIM109
        side = -1
    if side == 0:
        return st, (P_EXIT_FILLED if exited else P_NONE), S_NONE, closed
    st, skip = open_position(st, p, i, o, side)
    ok = skip == S_NONE
    if exited:
        return st, (P_REVERSED if ok else P_EXIT_FILLED_ENTRY_REJECTED), skip, closed
    return st, (P_ENTRY_FILLED if ok else P_ENTRY_REJECTED), skip, closed


@numba.njit(cache=True, inline="always")
def entry_side(pending: int) -> int:
    """The side a queued order enters (``Q_*``): 1 long, -1 short, 0 none."""
    if pending == Q_LONG or pending == Q_EXIT_LONG:  # noqa: SIM109 (numba: no tuple)
        return 1
    if pending == Q_SHORT or pending == Q_EXIT_SHORT:  # noqa: SIM109
        return -1
    return 0


@numba.njit(cache=True, inline="always")
def protective_exit(st: State, p: Settings, o: float, h: float, lo: float) -> tuple[State, Closed]:
    """Rule 2: stop or take-profit of an open position (``closed.reason`` R_NONE:
    none)."""
    qty = st.qty
    if qty == 0.0:
        return st, no_trade()
    if not shorts(p) or qty > 0.0:
        level, reason = exit_level(o, h, lo, st.stop, st.tp)
    else:
        level, reason = exit_level_short(o, h, lo, st.stop, st.tp)
    if reason == R_NONE:
        return st, no_trade()
    return close_position(st, p, exit_price(qty, level, p), reason)


@numba.njit(cache=True, inline="always")
def read_signal(st: State, p: Settings, s: int) -> State:
    """Rule 3: the signal at the close queues an order (``pending``, ``Q_*``). When
    it differs from the previous close's, a held side it no longer asks for is
    exited and a side it now asks for is entered (both: a reversal). -1 reads as 0
    unless shorts are allowed. After a protective exit the previous signal is
    unchanged: only a new change enters again."""
    # an int64 whatever integer type the driver reads
    sig = 1 if s == 1 else 0
    if shorts(p) and s == -1 and p.allow_short:
        sig = -1
    queued = Q_NONE
    if sig != st.prev_sig:
        qty = st.qty
        if qty == 0.0:
            if sig == 1:
                queued = Q_LONG
            elif sig == -1:
                queued = Q_SHORT
        elif not shorts(p) or qty > 0.0:
            if sig != 1:
                queued = Q_EXIT if sig == 0 else Q_EXIT_SHORT
        elif sig != -1:
            queued = Q_EXIT if sig == 0 else Q_EXIT_LONG
    return State(
        st.cash, st.qty, st.entry_px, st.entry_fee, st.entry_i, st.stop, st.tp, queued, sig, st.held
    )


@numba.njit(cache=True, inline="always")
def trail_stop(st: State, p: Settings, c: float, atr: float) -> State:
    """The optional ATR trailing stop: ``max(stop, c - atr_mult * ATR)`` while long,
    ``min(stop, c + atr_mult * ATR)`` while short (no change while the ATR is
    undefined)."""
    if p.use_trailing_atr and st.qty != 0.0 and atr == atr:
        stop = st.stop
        if not shorts(p) or st.qty > 0.0:
            trail = c - p.atr_mult * atr
            if trail > stop:
                stop = trail
        else:
            trail = c + p.atr_mult * atr
            if trail < stop:
                stop = trail
        if stop != st.stop:
            return State(
                st.cash,
                st.qty,
                st.entry_px,
                st.entry_fee,
                st.entry_i,
                stop,
                st.tp,
                st.pending,
                st.prev_sig,
                st.held,
            )
    return st


@numba.njit(cache=True, inline="always")
def open_bar(st: State, p: Settings, i: int, o: float) -> tuple[State, int, int, Closed]:
    """Rule 1 for bar ``i``: the pending order at the open. Returns (state, ``P_*``
    outcome, ``S_*`` why its entry was skipped, the round trip its exit closed);
    ``state.held`` is the quantity held after the open."""
    filled = P_NONE
    skip = S_NONE
    first = no_trade()
    if st.pending != Q_NONE:
        st, filled, skip, first = fill_pending(st, p, i, o)
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
    return st, filled, skip, first


@numba.njit(cache=True, inline="always")
def close_bar(
    st: State, p: Settings, o: float, h: float, lo: float, c: float, s: int, atr: float
) -> tuple[State, Closed]:
    """Rules 2-3 for the rest of the bar after :func:`open_bar`: the protective
    exit, the signal at the close, the trailing stop. Returns (state, the round trip
    the protective exit closed); ``state.held`` is the quantity held through the
    bar, ``state.pending`` the order queued at its close."""
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
    st = read_signal(st, p, s)
    st = trail_stop(st, p, c, atr)
    return st, closed


@numba.njit(cache=True, inline="always")
def step_bar(
    st: State, p: Settings, i: int, o: float, h: float, lo: float, c: float, s: int, atr: float
) -> tuple[State, int, int, Closed, Closed]:
    """Rules 1-3 for bar ``i`` (:func:`open_bar`, then :func:`close_bar`). Returns
    (state, ``P_*`` outcome of the pending order, ``S_*`` why its entry was skipped,
    the round trip its exit closed at the open, the round trip a protective exit
    closed in the bar). Both close only on a reversal whose new position meets its
    stop or target in the fill bar."""
    st, filled, skip, first = open_bar(st, p, i, o)
    st, second = close_bar(st, p, o, h, lo, c, s, atr)
    return st, filled, skip, first, second


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
    if st.qty != 0.0:
        return close_position(st, p, exit_price(st.qty, c, p), R_END)
    return st, no_trade()


@numba.njit(cache=True, inline="always")
def equity(st: State, c: float) -> float:
    """Equity at a close: cash + qty x c (``qty`` signed: side x |qty| x c)."""
    return st.cash + st.qty * c


@numba.njit(cache=True)
def write_trade(trades: np.ndarray, nt: int, exit_i: int, t: Closed) -> int:
    """The one trade-record writer: ``t`` closed at bar ``exit_i`` into row ``nt`` of a
    ``(capacity, N_TRADE)`` matrix (one cache line per trade); returns the next row
    (unchanged without a trade). A full matrix raises: a driver sizes it by a bound
    the rules guarantee, and a write past it is a broken invariant, never unchecked."""
    if t.reason == R_NONE:
        return nt
    if nt >= trades.shape[0]:
        raise RuntimeError("rules: more trades than the driver's bound (a broken invariant)")
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
    return np.array([0.0 if x is None else float(x) for x in p], dtype=np.float64)


@numba.njit(cache=True, inline="always")
def settings_at(v: np.ndarray, off: int) -> Settings:
    """The settings from ``v[off:]`` (:func:`settings_vector`'s order)."""
    return Settings(
        v[off], v[off + 1], v[off + 2], v[off + 3], v[off + 4], v[off + 5], v[off + 6],
        v[off + 7], v[off + 8], v[off + 9] != 0.0, v[off + 10], v[off + 11] != 0.0,
    )  # fmt: skip


@numba.njit(cache=True, inline="always")
def load_at(v: np.ndarray, off: int) -> State:
    """The state from ``v[off:]`` (``V_*`` order): a driver's array holds it at an
    offset without a slice (a view per bar costs reference counting)."""
    return State(
        v[off + V_CASH],
        v[off + V_QTY],
        v[off + V_ENTRY_PX],
        v[off + V_ENTRY_FEE],
        int(v[off + V_ENTRY_I]),
        v[off + V_STOP],
        v[off + V_TP],
        int(v[off + V_PENDING]),
        int(v[off + V_PREV_SIG]),
        v[off + V_HELD],
    )


@numba.njit(cache=True, inline="always")
def store_at(st: State, v: np.ndarray, off: int) -> None:
    """``st`` into ``v[off:]`` (``V_*`` order)."""
    v[off + V_CASH] = st.cash
    v[off + V_QTY] = st.qty
    v[off + V_ENTRY_PX] = st.entry_px
    v[off + V_ENTRY_FEE] = st.entry_fee
    v[off + V_ENTRY_I] = st.entry_i
    v[off + V_STOP] = st.stop
    v[off + V_TP] = st.tp
    v[off + V_PENDING] = st.pending
    v[off + V_PREV_SIG] = st.prev_sig
    v[off + V_HELD] = st.held


@numba.njit(cache=True, inline="always")
def _settings(v: np.ndarray) -> Settings:
    return settings_at(v, 0)


@numba.njit(cache=True, inline="always")
def _load(v: np.ndarray) -> State:
    return load_at(v, 0)


@numba.njit(cache=True, inline="always")
def _store(st: State, v: np.ndarray) -> None:
    store_at(st, v, 0)


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
) -> tuple[int, int, float]:
    """:func:`step_bar` on a state vector ``v`` (updated in place); the round trip the
    pending order's exit closed goes to row 0 of ``trade`` (shape ``(2, N_TRADE)``),
    the one a protective exit closed to row 1 (reason ``R_NONE`` when none).
    Returns the ``P_*`` outcome of the pending order, ``S_*`` why its entry was
    skipped, and the equity at the close."""
    st, filled, skip, first, second = step_bar(_load(v), _settings(pv), i, o, h, lo, c, s, atr)
    _store(st, v)
    trade[0, T_REASON] = R_NONE
    trade[1, T_REASON] = R_NONE
    write_trade(trade, 0, i, first)
    write_trade(trade, 1, i, second)
    return filled, skip, equity(st, c)


@numba.njit(cache=True)
def end_close_vector(v: np.ndarray, pv: np.ndarray, i: int, c: float, trade: np.ndarray) -> None:
    """:func:`end_close` on a state vector, like :func:`step_bar_vector` (row 0)."""
    st, closed = end_close(_load(v), _settings(pv), c)
    _store(st, v)
    trade[0, T_REASON] = R_NONE
    trade[1, T_REASON] = R_NONE
    write_trade(trade, 0, i, closed)
