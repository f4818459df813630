"""Paper broker: the backtest engine's rules, one bar at a time.

:class:`PaperBroker` calls the engine's own rule functions once per bar
(:func:`hedgeflow.rules.step_bar`, through :func:`hedgeflow.rules.step_bar_vector`;
:meth:`PaperBroker.close_out` is :func:`hedgeflow.rules.end_close`) and turns what
they report into orders and fills. It does none of the arithmetic itself: fills,
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
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from hedgeflow import rules
from hedgeflow.engine import EngineConfig, engine_settings
from hedgeflow.errors import InvalidInputError
from hedgeflow.indicators import AtrStream
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
    return f"{agent}-{ts.strftime('%Y%m%dT%H%M%SZ')}-{kind}"


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


@dataclass
class PaperBroker:
    """One agent's paper account under the engine's rules (shorts with
    ``config.allow_short``)."""

    config: EngineConfig
    agent: str
    symbol: str
    interval: str = "5m"
    state: BrokerState = field(init=False)

    def __post_init__(self) -> None:
        c = self.config
        self._settings = rules.settings_vector(engine_settings(c))
        self._v = np.zeros(rules.N_VECTOR, dtype=np.float64)  # the rules' state, per bar
        # row 0: the round trip the pending order's exit closed; row 1: a protective exit
        self._trade = np.zeros((2, rules.N_TRADE), dtype=np.float64)
        self._step = pd.Timedelta(seconds=interval_seconds(self.interval))
        self._atr = AtrStream(c.atr_period)
        self._trailing = bool(c.use_trailing_atr)
        self.atr = math.nan
        self.held = 0.0  # quantity held through the last bar's close (engine `position`)
        e0 = float(c.initial_equity)
        self.state = BrokerState(cash=e0, equity=e0)

    # -- state ------------------------------------------------------------------------

    @property
    def waiting_for_fresh_entry(self) -> bool:
        """Flat, nothing pending, signal still long or short: only a new change enters."""
        s = self.state
        return s.qty == 0.0 and s.pending is None and s.prev_signal != 0

    def snapshot(self) -> BrokerState:
        return self.state.copy()

    def restore_state(self, state: BrokerState) -> None:
        """Adopt a saved state (the ATR stream is rebuilt separately by ``observe``)."""
        self.state = state.copy()
        self.held = state.qty

    def apply_split(
        self, ratio: float, high: list[float], low: list[float], close: list[float]
    ) -> None:
        """A split of ``ratio`` new shares per old one: quantity x ratio, price levels /
        ratio (cash and equity unchanged); the ATR stream rebuilt from the bars seen, on
        the new basis."""
        st = self.state
        st.qty *= ratio
        self.held *= ratio
        st.entry_price /= ratio
        st.stop /= ratio
        st.take_profit /= ratio
        st.last_close /= ratio
        if self._trailing:
            self._atr = AtrStream(self.config.atr_period)
            for h, lo, c in zip(high, low, close, strict=True):
                self.atr = self._atr.update(h, lo, c)

    def observe(self, high: float, low: float, close: float) -> None:
        """Feed a bar to the ATR stream only (warm-up without trading, restore)."""
        if self._trailing:  # the ATR only moves the trailing stop
            self.atr = self._atr.update(high, low, close)
        self.state.last_close = float(close)

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
        st = self.state
        c = float(close)
        a = self._atr.update(high, low, c) if self._trailing else math.nan
        self.atr = a
        order = st.pending
        v = self._load(st)
        filled, skip, equity = rules.step_bar_vector(
            v, self._settings, 0, float(open_), float(high), float(low), c, int(signal), a,
            self._trade,
        )  # fmt: skip
        return self._events(ts, c, order, v, filled, skip, equity)

    def on_bar_with(
        self, ts: pd.Timestamp, o: float, h: float, lo: float, c: float, stream: Any
    ) -> tuple[int, list[Event]]:
        """:meth:`on_bar` with the signal of ``stream`` (a strategy's
        :class:`~hedgeflow.strategies.base.Streaming`) computed in the same compiled
        call as the rules. Returns (signal, events)."""
        st = self.state
        a = self._atr.update(h, lo, c) if self._trailing else math.nan
        self.atr = a
        order = st.pending
        v = self._load(st)
        sig, filled, skip, equity = stream.step_with_rules(
            o, h, lo, c, v, self._settings, a, self._trade
        )
        return sig, self._events(ts, c, order, v, filled, skip, equity)

    def _events(
        self,
        ts: pd.Timestamp,
        c: float,
        order: PendingOrder | None,
        v: np.ndarray,
        filled: int,
        skip: int,
        equity: float,
    ) -> list[Event]:
        """What the rules did in this bar, as orders and fills; the state after it."""
        st = self.state
        vals = v.tolist()  # one conversion, then plain Python floats
        trade = self._trade
        second = int(trade[1, rules.T_REASON])  # a protective exit's
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
                    events.append(_order_done(order, "filled", abs(float(closed[rules.T_QTY]))))
                    events.append(self._exit(order.order_id, ts, closed))
                else:  # pragma: no cover - an exit is only queued while a position is open
                    events.append(_order_done(order, "cancelled", None))
            if entry is not None:
                if filled == rules.P_ENTRY_FILLED or filled == rules.P_REVERSED:
                    q = abs(vals[rules.V_QTY])
                    if second == rules.R_STOP or second == rules.R_TAKE_PROFIT:
                        # closed again inside its fill bar: the position is flat now, the
                        # quantity opened is the closed trade's
                        q = abs(float(trade[1, rules.T_QTY]))
                    fill, fee = vals[rules.V_ENTRY_PX], vals[rules.V_ENTRY_FEE]
                    st.entry_ts = ts
                    st.entry_order_id = entry.order_id
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
            qty = float(closed[rules.T_QTY])
            side: Side = "sell" if qty > 0.0 else "buy"
            events.append(OrderUpdated(oid, side, ts, ts, "filled", name, abs(qty)))
            events.append(self._exit(oid, ts, closed))
        # 3. the order(s) queued at the close
        queued = int(vals[rules.V_PENDING])
        st.pending = None
        if queued != rules.Q_NONE:
            st.pending = self._queue(ts, queued, vals[rules.V_QTY])
            events.append(OrderCreated(st.pending))
            if st.pending.then is not None:
                events.append(OrderCreated(st.pending.then))
        # 4. the state after the bar; equity at the close
        self._store(vals, st)
        st.equity = equity
        st.last_ts = ts
        st.last_close = c
        self.held = vals[rules.V_HELD]
        return events

    def _queue(self, ts: pd.Timestamp, queued: int, qty: float) -> PendingOrder:
        """The pending order for the rules' ``Q_*`` code ``queued`` (``qty``: the
        signed quantity held at the close)."""
        fill_after = ts + self._step
        entry: PendingOrder | None = None
        if queued in (rules.Q_LONG, rules.Q_EXIT_LONG):
            entry = PendingOrder(
                order_id_for(self.agent, ts, "entry"), "buy", ts, fill_after, "signal"
            )
        elif queued in (rules.Q_SHORT, rules.Q_EXIT_SHORT):
            entry = PendingOrder(
                order_id_for(self.agent, ts, "short"), "sell", ts, fill_after, "signal"
            )
        if queued in (rules.Q_LONG, rules.Q_SHORT):
            assert entry is not None
            return entry
        side: Side = "sell" if qty > 0.0 else "buy"
        return PendingOrder(
            order_id_for(self.agent, ts, "exit"), side, ts, fill_after, "signal", entry
        )

    def close_out(self, reason: str = "end") -> list[Event]:
        """Close at the last bar's close (engine: end of data, :func:`hedgeflow.
        rules.end_close`): cancels a pending order, exits a position (slippage and
        fee apply); equity becomes the cash."""
        st = self.state
        if st.last_ts is None:
            return []
        events: list[Event] = []
        if st.pending is not None:
            events.append(_order_done(st.pending, "cancelled", None))
            if st.pending.then is not None:
                events.append(_order_done(st.pending.then, "cancelled", None))
            st.pending = None
        v = self._load(st)
        rules.end_close_vector(v, self._settings, 0, st.last_close, self._trade)
        closed = self._trade[0]
        if int(closed[rules.T_REASON]) != rules.R_NONE:
            ts = st.last_ts
            oid = order_id_for(self.agent, ts, reason)
            qty = float(closed[rules.T_QTY])
            side: Side = "sell" if qty > 0.0 else "buy"
            events.append(OrderUpdated(oid, side, ts, ts, "filled", reason, abs(qty)))
            events.append(self._exit(oid, ts, closed, reason))
        self._store(v.tolist(), st)
        st.equity = st.cash
        return events

    # -- helpers ----------------------------------------------------------------------

    def _load(self, st: BrokerState) -> np.ndarray:
        """The rules' state vector for ``st`` (``V_*`` order; the entry bar index is
        not used)."""
        pending = st.pending
        v = self._v
        v[:] = (
            st.cash, st.qty, st.entry_price, st.entry_fee, 0.0, st.stop, st.take_profit,
            rules.Q_NONE if pending is None else pending.code(),
            st.prev_signal, self.held,
        )  # fmt: skip
        return v

    def _store(self, vals: list[float], st: BrokerState) -> None:
        st.cash = vals[rules.V_CASH]
        st.qty = vals[rules.V_QTY]
        st.prev_signal = int(vals[rules.V_PREV_SIG])
        if st.qty != 0.0:
            st.entry_price = vals[rules.V_ENTRY_PX]
            st.entry_fee = vals[rules.V_ENTRY_FEE]
            st.stop = vals[rules.V_STOP]
            st.take_profit = vals[rules.V_TP]
        else:
            # flat: the levels are unused until the next entry sets them (the rules keep
            # stale values; clearing them keeps snapshots equal to restored states)
            st.entry_price = 0.0
            st.entry_fee = 0.0
            st.stop = 0.0
            st.take_profit = 0.0
            st.entry_ts = None
            st.entry_order_id = None

    def _exit(
        self, order_id: str, ts: pd.Timestamp, closed: np.ndarray, reason: str | None = None
    ) -> Fill:
        """The exit fill of the round trip the rules closed (a row of the trade record)."""
        st = self.state
        signed = float(closed[rules.T_QTY])
        qty = abs(signed)
        px = float(closed[rules.T_EXIT_PX])
        entry_price = float(closed[rules.T_ENTRY_PX])
        fees = float(closed[rules.T_FEES])
        pnl = float(closed[rules.T_PNL])
        name = reason or rules.EXIT_REASONS[int(closed[rules.T_REASON])]
        trade = Trade(
            qty=qty,
            entry_ts=st.entry_ts if st.entry_ts is not None else ts,
            entry_price=entry_price,
            exit_ts=ts,
            exit_price=px,
            exit_reason=name,
            fees=fees,
            pnl=pnl,
            return_pct=pnl / (qty * entry_price),
            side="long" if signed > 0.0 else "short",
        )
        fee = float(closed[rules.T_EXIT_FEE])
        side: Side = "sell" if signed > 0.0 else "buy"
        return Fill(order_id + "-f", order_id, side, qty, px, fee, ts, name, trade)


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
