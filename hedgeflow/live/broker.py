"""Paper broker: the backtest engine's rules, one bar at a time.

:class:`PaperBroker` applies, for each bar, exactly the steps of the compiled
loop in :mod:`hedgeflow.engine` (DESIGN.md "Order of events in bar i"):

1. a pending order from the previous bar fills at this bar's open (buy at
   ``o * (1 + slip)``, sell at ``o * (1 - slip)``, fee ``fee_rate * qty * fill``;
   an entry is sized at the fill from the cash, which is the equity while flat:
   ``equity * risk / (fill * stop_pct)`` capped at ``equity * max_leverage / fill``,
   ``floor(qty + 1e-9)`` for whole units; ``qty <= 0`` rejects the entry);
2. an open position (also one filled at this open) exits at the open when it
   gaps through the stop or the take-profit, else at the stop if the low reaches
   it, else at the take-profit if the high reaches it (stop first);
3. the signal read at the close queues an entry (0 -> 1 while flat) or an exit
   (1 -> 0 while long) for the next bar; the optional ATR trailing stop moves up;
4. equity = cash + qty x close.

:meth:`PaperBroker.close_out` is the engine's end-of-data close (reason ``end``).

The arithmetic is written operation for operation like the engine's kernel, so
the same bars and signals give bit-identical fills, fees, pnl and equity (the
parity tests check it against :func:`hedgeflow.engine.run_arrays` on random
inputs). The engine's kernel runs over whole arrays and has no per-bar entry
point, so the rules are mirrored here rather than shared; the tests are what
keeps the two in one place.

There is no separate "waiting for a fresh entry" flag in the engine: after a stop
or take-profit exit the previous signal is still 1, so only a later 0 -> 1 change
queues an entry. :attr:`PaperBroker.waiting_for_fresh_entry` exposes it.

Orders have deterministic ids ``<agent>-<bar ts>-<kind>`` (kind ``entry``,
``exit``, ``stop``, ``take_profit``, ``end``): a bar replayed after a restart
produces the same ids, so the durable record upserts instead of duplicating.
A fill's id is its order id + ``-f`` (one fill per order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from hedgeflow.engine import EngineConfig
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
_WHOLE_UNIT_EPS = 1e-9  # engine.py: floor(q + 1e-9)


def order_id_for(agent: str, ts: pd.Timestamp, kind: str) -> str:
    """Deterministic order id: ``<agent>-<YYYYmmddTHHMMSSZ>-<kind>``."""
    return f"{agent}-{ts.strftime('%Y%m%dT%H%M%SZ')}-{kind}"


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class PendingOrder:
    """An order queued at the close of bar ``created_ts`` for the next bar's open."""

    order_id: str
    side: Side
    created_ts: pd.Timestamp
    fill_after_ts: pd.Timestamp
    reason: str  # "signal"


@dataclass(frozen=True, slots=True)
class OrderCreated:
    """A new pending order (status ``pending``, qty sized at the fill)."""

    order: PendingOrder

    @property
    def status(self) -> str:
        return "pending"


@dataclass(frozen=True, slots=True)
class OrderUpdated:
    """An order's final state: ``filled`` (with qty), ``rejected`` (sized to 0) or
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
        return self.side == "buy"


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
        """The ``live_positions`` row (flat: qty 0, levels null)."""
        long = self.qty > 0.0
        return {
            "agent": agent,
            "symbol": symbol,
            "qty": self.qty,
            "entry_price": self.entry_price if long else None,
            "stop": self.stop if long else None,
            "take_profit": self.take_profit if long else None,
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
        close, and (while long) the entry fill (ts, fee, order id)."""
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
        if qty > 0.0:
            if entry_fill is None:
                raise InvalidInputError("a long position needs its entry fill to be restored")
            if float(entry_fill["qty"]) != qty:
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


@dataclass(slots=True)
class _Rates:
    risk: float
    stop_pct: float
    tp_pct: float
    max_leverage: float
    fee_rate: float
    buy_mult: float
    sell_mult: float
    whole_units: bool
    trailing: bool
    atr_mult: float


@dataclass
class PaperBroker:
    """One agent's paper account under the engine's rules (long only)."""

    config: EngineConfig
    agent: str
    symbol: str
    interval: str = "5m"
    state: BrokerState = field(init=False)

    def __post_init__(self) -> None:
        if self.config.allow_short:
            raise NotImplementedError("the paper broker is long only, like the engine")
        c = self.config
        slip = float(c.slippage_bps) / 1e4
        self._r = _Rates(
            risk=float(c.risk_per_trade),
            stop_pct=float(c.stop_pct),
            tp_pct=float(c.take_profit_pct),
            max_leverage=float(c.max_leverage),
            fee_rate=float(c.fee_bps) / 1e4,
            buy_mult=1.0 + slip,
            sell_mult=1.0 - slip,
            whole_units=bool(c.whole_units),
            trailing=bool(c.use_trailing_atr),
            atr_mult=float(c.atr_mult),
        )
        self._step = pd.Timedelta(seconds=interval_seconds(self.interval))
        self._atr = AtrStream(c.atr_period)
        self.atr = math.nan
        self.held = 0.0  # quantity held through the last bar's close (engine `position`)
        e0 = float(c.initial_equity)
        self.state = BrokerState(cash=e0, equity=e0)

    # -- state ------------------------------------------------------------------------

    @property
    def waiting_for_fresh_entry(self) -> bool:
        """Flat, nothing pending, signal still 1: only a new 0 -> 1 change enters."""
        s = self.state
        return s.qty == 0.0 and s.pending is None and s.prev_signal == 1

    def snapshot(self) -> BrokerState:
        return self.state.copy()

    def restore_state(self, state: BrokerState) -> None:
        """Adopt a saved state (the ATR stream is rebuilt separately by ``observe``)."""
        self.state = state.copy()
        self.held = state.qty

    def observe(self, high: float, low: float, close: float) -> None:
        """Feed a bar to the ATR stream only (warm-up without trading, restore)."""
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
        """Apply steps 1-4 of the engine to one bar; returns the events in order."""
        if signal != 0 and signal != 1:
            raise InvalidInputError(f"signal must be 0 or 1 (long only), got {signal!r}")
        st = self.state
        r = self._r
        events: list[Event] = []
        o = float(open_)
        lo = float(low)
        hi = float(high)
        c = float(close)
        # 1. pending order fills at the open
        order = st.pending
        if order is not None:
            st.pending = None
            if order.side == "buy":
                fill = o * r.buy_mult
                eq = st.cash  # flat: equity == cash
                q = eq * r.risk / (fill * r.stop_pct)
                q_cap = eq * r.max_leverage / fill
                if q > q_cap:
                    q = q_cap
                if r.whole_units:
                    q = float(math.floor(q + _WHOLE_UNIT_EPS))
                if q > 0.0:
                    fee = r.fee_rate * q * fill
                    st.cash -= q * fill + fee
                    st.qty = q
                    st.entry_price = fill
                    st.entry_fee = fee
                    st.entry_ts = ts
                    st.entry_order_id = order.order_id
                    st.stop = fill * (1.0 - r.stop_pct)
                    st.take_profit = fill * (1.0 + r.tp_pct)
                    events.append(_order_done(order, "filled", q))
                    events.append(
                        Fill(
                            order.order_id + "-f",
                            order.order_id,
                            "buy",
                            q,
                            fill,
                            fee,
                            ts,
                            order.reason,
                        )
                    )
                else:
                    events.append(_order_done(order, "rejected", None))
            elif st.qty > 0.0:
                px = o * r.sell_mult
                events.append(_order_done(order, "filled", st.qty))
                events.append(self._exit(order.order_id, ts, px, "signal"))
            else:  # pragma: no cover - an exit is only queued while long
                events.append(_order_done(order, "cancelled", None))

        held = st.qty
        # 2. protective exits
        if st.qty > 0.0:
            level = 0.0
            reason = ""
            if o <= st.stop:
                level = o
                reason = "stop"
            elif o >= st.take_profit:
                level = o
                reason = "take_profit"
            elif lo <= st.stop:
                level = st.stop
                reason = "stop"
            elif hi >= st.take_profit:
                level = st.take_profit
                reason = "take_profit"
            if reason:
                oid = order_id_for(self.agent, ts, reason)
                events.append(OrderUpdated(oid, "sell", ts, ts, "filled", reason, st.qty))
                events.append(self._exit(oid, ts, level * r.sell_mult, reason))
                held = 0.0

        # 3. signal at the close
        s = int(signal)
        if s == 1 and st.prev_signal == 0 and st.qty == 0.0:
            st.pending = PendingOrder(
                order_id_for(self.agent, ts, "entry"), "buy", ts, ts + self._step, "signal"
            )
            events.append(OrderCreated(st.pending))
        elif s == 0 and st.prev_signal == 1 and st.qty > 0.0:
            st.pending = PendingOrder(
                order_id_for(self.agent, ts, "exit"), "sell", ts, ts + self._step, "signal"
            )
            events.append(OrderCreated(st.pending))
        st.prev_signal = s
        a = self._atr.update(hi, lo, c)
        self.atr = a
        if r.trailing and st.qty > 0.0 and a == a:
            trail = c - r.atr_mult * a
            if trail > st.stop:
                st.stop = trail

        # 4. equity at the close
        st.equity = st.cash + st.qty * c
        st.last_ts = ts
        st.last_close = c
        self.held = held
        return events

    def close_out(self, reason: str = "end") -> list[Event]:
        """Close at the last bar's close (engine: end of data): cancels a pending
        order, exits a position (slippage and fee apply); equity becomes the cash."""
        st = self.state
        if st.last_ts is None:
            return []
        events: list[Event] = []
        if st.pending is not None:
            events.append(_order_done(st.pending, "cancelled", None))
            st.pending = None
        if st.qty > 0.0:
            ts = st.last_ts
            oid = order_id_for(self.agent, ts, reason)
            events.append(OrderUpdated(oid, "sell", ts, ts, "filled", reason, st.qty))
            events.append(self._exit(oid, ts, st.last_close * self._r.sell_mult, reason))
        st.equity = st.cash + st.qty * st.last_close if st.qty > 0.0 else st.cash
        return events

    # -- helpers ----------------------------------------------------------------------

    def _exit(self, order_id: str, ts: pd.Timestamp, px: float, reason: str) -> Fill:
        st = self.state
        qty = st.qty
        fee = self._r.fee_rate * qty * px
        st.cash += qty * px - fee
        pnl = qty * (px - st.entry_price) - st.entry_fee - fee
        entry_ts = st.entry_ts if st.entry_ts is not None else ts
        trade = Trade(
            qty=qty,
            entry_ts=entry_ts,
            entry_price=st.entry_price,
            exit_ts=ts,
            exit_price=px,
            exit_reason=reason,
            fees=st.entry_fee + fee,
            pnl=pnl,
            return_pct=pnl / (qty * st.entry_price),
        )
        # flat: the levels are unused until the next entry sets them (the engine keeps
        # stale values; clearing them keeps snapshots equal to restored states)
        st.qty = 0.0
        st.entry_price = 0.0
        st.entry_fee = 0.0
        st.stop = 0.0
        st.take_profit = 0.0
        st.entry_ts = None
        st.entry_order_id = None
        return Fill(order_id + "-f", order_id, "sell", qty, px, fee, ts, reason, trade)


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
