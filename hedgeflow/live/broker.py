"""Paper broker: the backtest engine's rules, one bar at a time.

:class:`PaperBroker` calls the engine's own rule functions once per bar
(:func:`hedgeflow.rules.step_bar`, through :func:`hedgeflow.live.buffer.rules_bar`, or
the agent's compiled bar; :meth:`PaperBroker.close_out` is
:func:`hedgeflow.rules.end_close`) on its state in one float64 array
(:mod:`hedgeflow.live.buffer`) and turns what they report, each bar's record, into
orders and fills. It does none of the arithmetic itself: fills,
sizing, fees, stops, take-profit, the trailing stop and pnl are the engine's, so
the same bars and signals give bit-identical fills, fees, pnl and equity (the
parity tests check it against :func:`hedgeflow.engine.run_arrays`).

There is no separate "waiting for a fresh entry" flag in the engine: after a stop
or take-profit exit the previous signal is unchanged, so only a later change
queues an entry. :attr:`PaperBroker.waiting_for_fresh_entry` exposes it.

Orders have deterministic ids ``<agent>-<bar ts>-<kind>`` (kind ``entry``: buy to
open a long, ``short``: sell to open a short, ``exit``: sell a long or buy to cover
a short, ``stop``, ``take_profit``, ``end``): a bar replayed after a restart
produces the same ids, so the durable record upserts instead of duplicating.
A fill's id is its order id + ``-f`` (one fill per order). A reversal queues two
orders at one close, the ``exit`` and then the ``entry`` (or ``short``); the
pending exit carries the entry as :attr:`PendingOrder.then`.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from hedgeflow import rules
from hedgeflow.engine import EngineConfig, engine_settings
from hedgeflow.errors import InvalidInputError
from hedgeflow.live import buffer as B
from hedgeflow.market import interval_seconds

__all__ = [
    "BrokerState",
    "Fill",
    "OrderCreated",
    "OrderUpdated",
    "PaperBroker",
    "PendingOrder",
    "Trade",
]

Side = Literal["buy", "sell"]


def order_id_for(agent: str, ts: pd.Timestamp, kind: str) -> str:
    """Deterministic order id: ``<agent>-<YYYYmmddTHHMMSSZ>-<kind>``."""
    if ts.utcoffset() == _ZERO:  # UTC: from the epoch seconds (a third of strftime's)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ts.value // 1_000_000_000))
    else:
        stamp = ts.strftime("%Y%m%dT%H%M%SZ")
    return f"{agent}-{stamp}-{kind}"


_ZERO = datetime.timedelta(0)


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class PendingOrder:
    """An order queued at the close of bar ``created_ts`` for the next bar's open;
    ``then`` is the entry that follows a pending exit at the same open (a reversal)."""

    order_id: str
    side: Side
    created_ts: pd.Timestamp
    fill_after_ts: pd.Timestamp
    reason: str  # "signal"
    then: PendingOrder | None = None

    @property
    def kind(self) -> str:
        """``entry``, ``short`` or ``exit`` (the last part of the order id)."""
        return self.order_id.rsplit("-", 1)[-1]

    def code(self) -> int:
        """The rules' ``Q_*`` code of this order (and the entry that follows it)."""
        kind = self.kind
        if kind == "exit":
            if self.then is None:
                return rules.Q_EXIT
            return rules.Q_EXIT_SHORT if self.then.kind == "short" else rules.Q_EXIT_LONG
        if kind == "short":
            return rules.Q_SHORT
        if kind == "entry":
            return rules.Q_LONG
        return rules.Q_LONG if self.side == "buy" else rules.Q_EXIT


@dataclass(frozen=True, slots=True)
class OrderCreated:
    """A new pending order (status ``pending``, qty sized at the fill)."""

    order: PendingOrder

    @property
    def status(self) -> str:
        return "pending"


@dataclass(frozen=True, slots=True)
class OrderUpdated:
    """An order's final state: ``filled`` (with qty), ``rejected`` (skipped by the
    order minimums; ``reason`` is which, one of ``rules.SKIP_REASONS``) or
    ``cancelled``. Protective exits (stop, take-profit, end) are created filled."""

    order_id: str
    side: Side
    created_ts: pd.Timestamp
    fill_after_ts: pd.Timestamp
    status: str
    reason: str
    qty: float | None


@dataclass(frozen=True, slots=True)
class Trade:
    """A closed round trip, as a row of the engine's trades frame (without the id)."""

    qty: float
    entry_ts: pd.Timestamp
    entry_price: float
    exit_ts: pd.Timestamp
    exit_price: float
    exit_reason: str
    fees: float
    pnl: float
    return_pct: float
    side: str = "long"  # or "short"


@dataclass(frozen=True, slots=True)
class Fill:
    """An execution; ``trade`` is set on exits (the round trip it closed)."""

    fill_id: str
    order_id: str
    side: Side
    qty: float
    price: float
    fee: float
    ts: pd.Timestamp
    reason: str
    trade: Trade | None = None

    @property
    def is_entry(self) -> bool:
        """Opens a position (a buy of a long, a sell of a short); exits carry a trade."""
        return self.trade is None


Event = OrderCreated | OrderUpdated | Fill


# --------------------------------------------------------------------------- state


@dataclass(slots=True)
class BrokerState:
    """Everything the broker carries from one bar to the next (but the ATR stream,
    which is rebuilt by replaying bars: :meth:`PaperBroker.observe`)."""

    cash: float
    qty: float = 0.0
    entry_price: float = 0.0
    entry_fee: float = 0.0
    entry_ts: pd.Timestamp | None = None
    entry_order_id: str | None = None
    stop: float = 0.0
    take_profit: float = 0.0
    pending: PendingOrder | None = None
    prev_signal: int = 0
    equity: float = 0.0
    last_ts: pd.Timestamp | None = None
    last_close: float = math.nan

    def copy(self) -> BrokerState:
        """A copy (positional: several times cheaper than ``dataclasses.replace``)."""
        return BrokerState(
            self.cash,
            self.qty,
            self.entry_price,
            self.entry_fee,
            self.entry_ts,
            self.entry_order_id,
            self.stop,
            self.take_profit,
            self.pending,
            self.prev_signal,
            self.equity,
            self.last_ts,
            self.last_close,
        )

    def to_row(self, agent: str, symbol: str, updated_ts: pd.Timestamp) -> dict[str, Any]:
        """The ``live_positions`` row (flat: qty 0, levels null; short: qty < 0)."""
        held = self.qty != 0.0
        return {
            "agent": agent,
            "symbol": symbol,
            "qty": self.qty,
            "entry_price": self.entry_price if held else None,
            "stop": self.stop if held else None,
            "take_profit": self.take_profit if held else None,
            "cash": self.cash,
            "equity": self.equity,
            "updated_ts": updated_ts,
            "last_bar_ts": self.last_ts,
        }

    @classmethod
    def from_row(
        cls,
        position: dict[str, Any],
        *,
        prev_signal: int,
        pending: PendingOrder | None = None,
        entry_fill: dict[str, Any] | None = None,
        last_close: float = math.nan,
    ) -> BrokerState:
        """Rebuild the state from a ``live_positions`` row plus what the other live
        tables hold: the signal of the last bar, the order still pending at its
        close, and (while long or short) the entry fill (ts, fee, order id)."""
        qty = float(position["qty"])
        state = cls(
            cash=float(position["cash"]),
            qty=qty,
            equity=float(position["equity"]),
            prev_signal=int(prev_signal),
            pending=pending,
            last_ts=_ts_or_none(position.get("last_bar_ts")),
            last_close=float(last_close),
        )
        if qty != 0.0:
            if entry_fill is None:
                raise InvalidInputError("an open position needs its entry fill to be restored")
            if float(entry_fill["qty"]) != abs(qty):
                raise InvalidInputError(
                    f"entry fill qty {entry_fill['qty']} differs from the position qty {qty}"
                )
            state.entry_price = float(position["entry_price"])
            state.stop = float(position["stop"])
            state.take_profit = float(position["take_profit"])
            state.entry_fee = float(entry_fill["fee"])
            state.entry_ts = _ts_or_none(entry_fill["ts"])
            state.entry_order_id = str(entry_fill["order_id"])
        return state


def _ts_or_none(value: Any) -> pd.Timestamp | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return pd.Timestamp(value)


# --------------------------------------------------------------------------- broker


def bar_key(ts: Any) -> int:
    """A bar time as epoch nanoseconds (the buffer's ``H_LAST_KEY``)."""
    return int(ts.value if type(ts) is pd.Timestamp else pd.Timestamp(ts).value)


def key_ts(key: int) -> pd.Timestamp | None:
    """The UTC time of an epoch-ns key (microsecond unit when exact, as bars are)."""
    if key == B.KEY_NONE:
        return None
    ts = pd.Timestamp(key, unit="ns", tz="UTC")
    return ts.as_unit("us") if key % 1000 == 0 else ts


def state_from(
    vals: list[float],
    equity: float,
    last_close: float,
    last_ts: pd.Timestamp | None,
    pending: PendingOrder | None,
    entry_ts: pd.Timestamp | None,
    entry_order_id: str | None,
) -> BrokerState:
    """A :class:`BrokerState` from the rules' numbers (``V_*`` order) and the broker's
    Python values; flat, the entry's levels are cleared (the rules keep stale ones)."""
    qty = vals[rules.V_QTY]
    if qty == 0.0:
        return BrokerState(
            vals[rules.V_CASH], qty, 0.0, 0.0, None, None, 0.0, 0.0, pending,
            int(vals[rules.V_PREV_SIG]), equity, last_ts, last_close,
        )  # fmt: skip
    return BrokerState(
        vals[rules.V_CASH], qty, vals[rules.V_ENTRY_PX], vals[rules.V_ENTRY_FEE], entry_ts,
        entry_order_id, vals[rules.V_STOP], vals[rules.V_TP], pending,
        int(vals[rules.V_PREV_SIG]), equity, last_ts, last_close,
    )  # fmt: skip


@dataclass
class PaperBroker:
    """One agent's paper account under the engine's rules (shorts with
    ``config.allow_short``). All of its state lives in :attr:`buf` (see
    :mod:`hedgeflow.live.buffer`: numbers, and the bars that queued the pending order
    and the entry, from which the orders are rebuilt), which the compiled bar updates
    in place; :attr:`state` is a snapshot of it (change it with :meth:`restore_state`).
    The events of a bar are built from its record (:meth:`events_at`)."""

    config: EngineConfig
    agent: str
    symbol: str
    interval: str = "5m"
    buf: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._settings = rules.settings_vector(engine_settings(self.config))
        self._step = pd.Timedelta(seconds=interval_seconds(self.interval))
        self._trailing = bool(self.config.use_trailing_atr)
        # orders of a restored state whose ids or times are not the ones these bars give
        self._restored_pending: dict[int, PendingOrder] = {}
        self._restored_ids: dict[int, str] = {}
        self.indicator_columns: tuple[str, ...] = ()  # the strategy's (an agent's broker)
        # times, orders and ids rebuilt from bars, kept for the next reads of the same
        # bars (a step's state and events are read by the router, the sink, the notifier)
        self._memo: dict[tuple[Any, ...], Any] = {}
        self._view: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
        self.buf = self.new_buffer()

    def new_buffer(
        self, p: np.ndarray | None = None, state_size: int = 0, n_ind: int = 0
    ) -> np.ndarray:
        """A fresh buffer for this account (with a strategy's regions: the agent's)."""
        c = self.config
        return B.new_buffer(
            self._settings, int(c.atr_period), self._trailing, float(c.initial_equity),
            p, state_size, n_ind,
        )  # fmt: skip

    # -- orders rebuilt from bars -------------------------------------------------------

    def _remember(self, memo_key: tuple[Any, ...], value: Any) -> Any:
        memo = self._memo
        if len(memo) >= 1024:
            memo.clear()
        memo[memo_key] = value
        return value

    def ts_of(self, key: int) -> pd.Timestamp | None:
        """:func:`key_ts`, kept for the next reads."""
        ts = self._memo.get(("ts", key))
        if ts is None and key != B.KEY_NONE:
            ts = self._remember(("ts", key), key_ts(key))
        return ts

    def int_view(self, buf: np.ndarray) -> np.ndarray:
        """``buf`` as int64 (its header and key slots), kept for the last buffer asked."""
        base, view = self._view
        if base is buf and view is not None:
            return view
        view = buf.view(np.int64)
        self._view = (buf, view)
        return view

    def pending_order(self, code: int, key: int, qty: float) -> PendingOrder | None:
        """The order for the rules' ``Q_*`` ``code`` queued at the close of bar ``key``
        while holding ``qty`` (signed)."""
        if code == rules.Q_NONE:
            return None
        restored = self._restored_pending.get(key)
        if restored is not None and restored.code() == code:
            return restored
        memo_key = ("order", code, key, qty > 0.0)
        order = self._memo.get(memo_key)
        if order is not None:
            return order
        ts = self.ts_of(key)
        assert ts is not None
        fill_after = ts + self._step
        entry: PendingOrder | None = None
        if code in (rules.Q_LONG, rules.Q_EXIT_LONG):
            entry = PendingOrder(
                order_id_for(self.agent, ts, "entry"), "buy", ts, fill_after, "signal"
            )
        elif code in (rules.Q_SHORT, rules.Q_EXIT_SHORT):
            entry = PendingOrder(
                order_id_for(self.agent, ts, "short"), "sell", ts, fill_after, "signal"
            )
        if code in (rules.Q_LONG, rules.Q_SHORT):
            assert entry is not None
            return self._remember(memo_key, entry)
        side: Side = "sell" if qty > 0.0 else "buy"
        order = PendingOrder(
            order_id_for(self.agent, ts, "exit"), side, ts, fill_after, "signal", entry
        )
        return self._remember(memo_key, order)

    def entry_order_id(self, key: int, qty: float) -> str | None:
        """The id of the entry order queued at bar ``key`` that opened ``qty``."""
        if key == B.KEY_NONE:
            return None
        restored = self._restored_ids.get(key)
        if restored is not None:
            return restored
        memo_key = ("id", key, qty > 0.0)
        oid = self._memo.get(memo_key)
        if oid is None:
            ts = self.ts_of(key)
            assert ts is not None
            kind = "entry" if qty > 0.0 else "short"
            oid = self._remember(memo_key, order_id_for(self.agent, ts, kind))
        return oid

    # -- state ------------------------------------------------------------------------

    @property
    def state(self) -> BrokerState:
        """The account after the last bar (a snapshot)."""
        b = self.buf
        ib = b.view(np.int64)
        vals = b[B.OFF_V : B.OFF_V + rules.N_VECTOR].tolist()
        qty = vals[rules.V_QTY]
        return state_from(
            vals, float(b[B.OFF_EQUITY]), float(b[B.OFF_LAST_CLOSE]), self.last_ts,
            self.pending_order(int(vals[rules.V_PENDING]), int(ib[B.H_PENDING_KEY]), qty),
            self.ts_of(int(ib[B.H_ENTRY_KEY])),
            self.entry_order_id(int(ib[B.H_ENTRY_ORDER_KEY]), qty),
        )  # fmt: skip

    @property
    def last_ts(self) -> pd.Timestamp | None:
        return key_ts(int(self.buf.view(np.int64)[B.H_LAST_KEY]))

    @property
    def held(self) -> float:
        """Quantity held through the last bar's close (the engine's ``position``)."""
        return float(self.buf[B.OFF_V + rules.V_HELD])

    @property
    def atr(self) -> float:
        """The ATR at the last bar (NaN without the trailing stop)."""
        return float(self.buf[B.OFF_ATR_VALUE])

    @property
    def pending(self) -> PendingOrder | None:
        b = self.buf
        return self.pending_order(
            int(b[B.OFF_V + rules.V_PENDING]),
            int(b.view(np.int64)[B.H_PENDING_KEY]),
            float(b[B.OFF_V + rules.V_QTY]),
        )

    @property
    def waiting_for_fresh_entry(self) -> bool:
        """Flat, nothing pending, signal still long or short: only a new change enters."""
        v = self.buf
        return (
            v[B.OFF_V + rules.V_QTY] == 0.0
            and v[B.OFF_V + rules.V_PENDING] == rules.Q_NONE
            and v[B.OFF_V + rules.V_PREV_SIG] != 0.0
        )

    def snapshot(self) -> BrokerState:
        return self.state

    def restore_state(self, state: BrokerState) -> None:
        """Adopt a saved state (the ATR stream is rebuilt separately by ``observe``)."""
        b = self.buf
        ib = b.view(np.int64)
        pending = state.pending
        b[B.OFF_V : B.OFF_V + rules.N_VECTOR] = (
            state.cash, state.qty, state.entry_price, state.entry_fee, 0.0, state.stop,
            state.take_profit, rules.Q_NONE if pending is None else pending.code(),
            state.prev_signal, state.qty,
        )  # fmt: skip
        b[B.OFF_EQUITY] = state.equity
        b[B.OFF_LAST_CLOSE] = state.last_close
        self.set_last(state.last_ts)
        self._memo.clear()
        self._restored_pending.clear()
        self._restored_ids.clear()
        ib[B.H_PENDING_KEY] = B.KEY_NONE
        if pending is not None:
            key = bar_key(pending.created_ts)
            ib[B.H_PENDING_KEY] = key
            if self.pending_order(pending.code(), key, state.qty) != pending:
                self._restored_pending[key] = pending
        ib[B.H_ENTRY_KEY] = B.KEY_NONE if state.entry_ts is None else bar_key(state.entry_ts)
        ib[B.H_ENTRY_ORDER_KEY] = B.KEY_NONE
        if state.entry_order_id is not None:
            parsed = _stamp_key(state.entry_order_id)
            if parsed is None or self.entry_order_id(parsed, state.qty) != state.entry_order_id:
                # not an id these bars give: kept as it is, under a key no bar has
                parsed = B.KEY_NONE + 1
                self._restored_ids[parsed] = state.entry_order_id
            ib[B.H_ENTRY_ORDER_KEY] = parsed

    def set_last(self, ts: pd.Timestamp | None, prev_signal: int | None = None) -> None:
        """The last bar's time (and the previous signal): a flat start after history."""
        self.buf.view(np.int64)[B.H_LAST_KEY] = B.KEY_NONE if ts is None else bar_key(ts)
        if prev_signal is not None:
            self.buf[B.OFF_V + rules.V_PREV_SIG] = prev_signal

    def apply_split(self, ratio: float) -> None:
        """A split of ``ratio`` new shares per old one: quantity x ratio, price levels and
        the last close / ratio (cash and equity unchanged). The ATR stream is rebuilt by
        the owner replaying the bars seen on the new basis (as after a restore)."""
        b = self.buf
        v = B.OFF_V
        b[v + rules.V_QTY] *= ratio
        b[v + rules.V_HELD] *= ratio
        b[v + rules.V_ENTRY_PX] /= ratio
        b[v + rules.V_STOP] /= ratio
        b[v + rules.V_TP] /= ratio
        b[B.OFF_LAST_CLOSE] /= ratio

    def observe(self, high: float, low: float, close: float) -> None:
        """Feed a bar to the ATR stream only (warm-up without trading, restore)."""
        self.observe_many([high], [low], [close])

    def observe_many(self, high: Any, low: Any, close: Any) -> None:
        """:meth:`observe` for many bars in one call."""
        if len(close):
            B.observe_bars(self.buf, _f64(high), _f64(low), _f64(close))

    # -- the bar ----------------------------------------------------------------------

    def on_bar(
        self,
        ts: pd.Timestamp,
        open_: float,
        high: float,
        low: float,
        close: float,
        signal: int,
    ) -> list[Event]:
        """Apply the engine's rules (:func:`hedgeflow.rules.step_bar`) to one bar;
        returns the events in order: the pending order's outcome and fill, a
        protective exit, the order queued at the close."""
        if signal != 0 and signal != 1 and signal != -1:
            raise InvalidInputError(f"signal must be -1, 0 or 1, got {signal!r}")
        key = bar_key(ts)
        args = (key, float(open_), float(high), float(low), float(close), int(signal))
        code = B.rules_bar(self.buf, *args)
        if code == B.B_FULL:
            self.rotate()
            code = B.rules_bar(self.buf, *args)
        return self.events_at(ts, self.buf, code >> 3) if code & B.EVENTS else []

    def rotate(self) -> np.ndarray:
        """Move to a fresh buffer (the records are full); returns the old one."""
        old = self.buf
        self.buf = B.rotated(old)
        return old

    def events_at(self, ts: pd.Timestamp, rec: np.ndarray, at: int) -> list[Event]:
        """What the rules did in the bar ``ts`` recorded at ``rec[at:]``, as orders and
        fills, in order: the pending order's outcome and fill, a protective exit, the
        order queued at the close."""
        ib = self.int_view(rec)
        row = rec[at : at + B.R_IND].tolist()
        t0 = B.R_TRADES
        trade = (row[t0 : t0 + rules.N_TRADE], row[t0 + rules.N_TRADE : t0 + 2 * rules.N_TRADE])
        filled = int(row[B.R_FILLED])
        skip = int(row[B.R_SKIP])
        second = int(trade[1][rules.T_REASON])  # a protective exit's
        qty_after = row[B.R_QTY]
        order = self.pending_order(
            int(row[B.R_PENDING_BEFORE]), int(ib[at + B.R_PENDING_BEFORE_KEY]),
            row[B.R_QTY_BEFORE],
        )  # fmt: skip
        entry_ts = self.ts_of(int(ib[at + B.R_ENTRY_KEY_BEFORE]))
        events: list[Event] = []
        # 1. the order(s) pending from the previous close, at this open: an exit first
        if order is not None:
            entry: PendingOrder | None = order
            if order.kind == "exit":
                entry = order.then
                if filled in (
                    rules.P_EXIT_FILLED,
                    rules.P_REVERSED,
                    rules.P_EXIT_FILLED_ENTRY_REJECTED,
                ):
                    closed = trade[0]
                    events.append(_order_done(order, "filled", abs(closed[rules.T_QTY])))
                    events.append(self._exit(order.order_id, ts, closed, entry_ts))
                else:  # pragma: no cover - an exit is only queued while a position is open
                    events.append(_order_done(order, "cancelled", None))
            if entry is not None:
                if filled == rules.P_ENTRY_FILLED or filled == rules.P_REVERSED:
                    q = abs(qty_after)
                    if second == rules.R_STOP or second == rules.R_TAKE_PROFIT:
                        # closed again inside its fill bar: the position is flat now, the
                        # quantity opened is the closed trade's
                        q = abs(trade[1][rules.T_QTY])
                    fill, fee = row[B.R_ENTRY_PX], row[B.R_ENTRY_FEE]
                    entry_ts = ts
                    events.append(_order_done(entry, "filled", q))
                    events.append(
                        Fill(
                            entry.order_id + "-f", entry.order_id, entry.side, q, fill, fee, ts,
                            entry.reason,
                        )
                    )  # fmt: skip
                elif (
                    filled == rules.P_ENTRY_REJECTED or filled == rules.P_EXIT_FILLED_ENTRY_REJECTED
                ):
                    # skipped by the order minimums: the reason says which
                    events.append(
                        dataclasses.replace(
                            _order_done(entry, "rejected", None),
                            reason=rules.SKIP_REASONS[skip - 1],
                        )
                    )
                else:  # pragma: no cover - an entry is only queued while flat or exiting
                    events.append(_order_done(entry, "cancelled", None))
        # 2. a protective exit inside the bar
        if second == rules.R_STOP or second == rules.R_TAKE_PROFIT:
            closed = trade[1]
            name = rules.EXIT_REASONS[second]
            oid = order_id_for(self.agent, ts, name)
            qty = closed[rules.T_QTY]
            side: Side = "sell" if qty > 0.0 else "buy"
            events.append(OrderUpdated(oid, side, ts, ts, "filled", name, abs(qty)))
            events.append(self._exit(oid, ts, closed, entry_ts))
        # 3. the order(s) queued at the close
        queued = self.pending_order(int(row[B.R_PENDING]), bar_key(ts), qty_after)
        if queued is not None:
            events.append(OrderCreated(queued))
            if queued.then is not None:
                events.append(OrderCreated(queued.then))
        return events

    def close_out_at(self, reason: str = "end") -> tuple[list[Event], int]:
        """:meth:`close_out`, and where its record starts in :attr:`buf` (-1: no bar
        was ever processed, nothing done)."""
        ts = self.last_ts
        if ts is None:
            return [], -1
        at = B.end_close_record(self.buf)
        if at == B.B_FULL:
            self.rotate()
            at = B.end_close_record(self.buf)
        rec = self.buf
        ib = rec.view(np.int64)
        row = rec[at : at + B.R_IND].tolist()
        events: list[Event] = []
        pending = self.pending_order(
            int(row[B.R_PENDING_BEFORE]), int(ib[at + B.R_PENDING_BEFORE_KEY]),
            row[B.R_QTY_BEFORE],
        )  # fmt: skip
        if pending is not None:
            events.append(_order_done(pending, "cancelled", None))
            if pending.then is not None:
                events.append(_order_done(pending.then, "cancelled", None))
        closed = row[B.R_TRADES : B.R_TRADES + rules.N_TRADE]
        if int(closed[rules.T_REASON]) != rules.R_NONE:
            oid = order_id_for(self.agent, ts, reason)
            qty = closed[rules.T_QTY]
            side: Side = "sell" if qty > 0.0 else "buy"
            events.append(OrderUpdated(oid, side, ts, ts, "filled", reason, abs(qty)))
            events.append(
                self._exit(oid, ts, closed, self.ts_of(int(ib[at + B.R_ENTRY_KEY_BEFORE])), reason)
            )
        return events, at

    def close_out(self, reason: str = "end") -> list[Event]:
        """Close at the last bar's close (engine: end of data, :func:`hedgeflow.
        rules.end_close`): cancels a pending order, exits a position (slippage and
        fee apply); equity becomes the cash."""
        return self.close_out_at(reason)[0]

    # -- helpers ----------------------------------------------------------------------

    def _exit(
        self,
        order_id: str,
        ts: pd.Timestamp,
        closed: list[float],
        entry_ts: pd.Timestamp | None,
        reason: str | None = None,
    ) -> Fill:
        """The exit fill of the round trip the rules closed (a row of the trade record)."""
        signed = closed[rules.T_QTY]
        qty = abs(signed)
        px = closed[rules.T_EXIT_PX]
        entry_price = closed[rules.T_ENTRY_PX]
        fees = closed[rules.T_FEES]
        pnl = closed[rules.T_PNL]
        name = reason or rules.EXIT_REASONS[int(closed[rules.T_REASON])]
        trade = Trade(
            qty=qty,
            entry_ts=entry_ts if entry_ts is not None else ts,
            entry_price=entry_price,
            exit_ts=ts,
            exit_price=px,
            exit_reason=name,
            fees=fees,
            pnl=pnl,
            return_pct=pnl / (qty * entry_price),
            side="long" if signed > 0.0 else "short",
        )
        fee = closed[rules.T_EXIT_FEE]
        side: Side = "sell" if signed > 0.0 else "buy"
        return Fill(order_id + "-f", order_id, side, qty, px, fee, ts, name, trade)


def _stamp_key(order_id: str) -> int | None:
    """The bar of ``<agent>-<YYYYmmddTHHMMSSZ>-<kind>`` as epoch ns, or None."""
    parts = order_id.rsplit("-", 2)
    if len(parts) != 3:
        return None
    try:
        when = datetime.datetime.strptime(parts[1], "%Y%m%dT%H%M%SZ")
    except ValueError:
        return None
    return int(when.replace(tzinfo=datetime.UTC).timestamp()) * 1_000_000_000


def _f64(x: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64))


def _order_done(order: PendingOrder, status: str, qty: float | None) -> OrderUpdated:
    return OrderUpdated(
        order.order_id,
        order.side,
        order.created_ts,
        order.fill_after_ts,
        status,
        order.reason,
        qty,
    )
