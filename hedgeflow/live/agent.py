"""The live agent: one configured agent's streaming strategy plus its paper broker.

Per closed bar, :meth:`LiveAgent.on_bar` makes one compiled call (the strategy's
generated ``live_bar``, :mod:`hedgeflow.strategies.compiled`) on the agent's buffer
(:mod:`hedgeflow.live.buffer`): the strategy's update (O(1), identical to the batch
signals on every bar), then the engine's rules on the
:class:`~hedgeflow.live.broker.PaperBroker`'s state, then the bar's record. The
returned :class:`LiveStep` reads its numbers, and builds its orders and fills, from
that record when asked; no DataFrame is built.
A bar whose ``ts`` is not after the last processed bar is refused and counted
(``duplicate`` when equal, ``out_of_order`` when older), never processed twice.

Warm-up (:meth:`LiveAgent.warm_up`) replays stored history bars before the first
live bar, so the strategy's indicators and its in-position state (RSI, Donchian)
are those the backtest has at the same bar. Two modes, both exact:

* ``"shadow"`` (default): the history also goes through the broker (events
  discarded). The agent is then the continuation of the backtest that starts at
  the first history bar: warm-up on bars ``[0, K)`` + live on ``[K, N)`` gives the
  signals, trades and equity of ``engine.backtest`` over ``[0, N)``, bar for bar
  (a position opened during the history is carried into live).
* ``"flat"``: only the strategy and the ATR stream see the history; the broker
  starts flat with the initial equity and the last history signal as its
  "previous signal", so a signal already 1 at the switch does not enter - live
  waits for a fresh 0 -> 1 change. Live on ``[K, N)`` then equals the engine on
  ``[K, N)`` fed the full-history signals with their leading run of 1s set to 0
  (the engine counts the signal before its first bar as 0).

In both modes the signals of the live bars equal the batch signals over
``[0, N)``: live must replay history from the backtest's starting bar to agree.
"""

from __future__ import annotations

import bisect
import functools
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal, NamedTuple, Protocol
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from hedgeflow import columns as C
from hedgeflow.config import AgentSettings, CostSettings, OrderMinimums
from hedgeflow.engine import EngineConfig
from hedgeflow.errors import InvalidInputError
from hedgeflow.indicators import ATR_STATE_SIZE
from hedgeflow.live import buffer as B
from hedgeflow.live.broker import (
    BrokerState,
    Event,
    Fill,
    OrderCreated,
    PaperBroker,
    key_ts,
    state_from,
)
from hedgeflow.market import asset_class_of, validate_interval
from hedgeflow.splits import EXCHANGE_TZ, Split
from hedgeflow.strategies import get_strategy, parse_params
from hedgeflow.strategies.base import one_line

log = logging.getLogger(__name__)

__all__ = ["BarLike", "LiveAgent", "LiveStep", "WarmUpReport"]

WarmUpMode = Literal["shadow", "flat"]
REFUSAL_REASONS: tuple[str, ...] = ("duplicate", "out_of_order", "bad_prices", "other_symbol")


class BarLike(Protocol):
    """What the agent reads from a bar (``hedgeflow.live.aggregator.Bar`` fits)."""

    @property
    def ts(self) -> pd.Timestamp: ...
    @property
    def open(self) -> float: ...
    @property
    def high(self) -> float: ...
    @property
    def low(self) -> float: ...
    @property
    def close(self) -> float: ...


class LiveStep(NamedTuple):
    """The outcome of one bar (or of :meth:`LiveAgent.close_out`, ``bar`` None); a
    named tuple built in one C call on the per-bar path.

    Everything else is read from the bar's record in the agent's buffer
    (:mod:`hedgeflow.live.buffer`: written by the compiled bar, never changed
    afterwards) when asked: ``signal`` and ``indicators`` are the strategy's values at
    the bar's close; ``events`` the orders and fills of the bar; ``equity`` is cash +
    qty x close after the bar; ``position`` the quantity held through the close (the
    engine's ``position`` column), ``qty`` after it; ``state`` the broker state after
    the bar (what ``live_positions`` stores)."""

    ts: pd.Timestamp
    bar: Any
    record: Any  # the buffer holding this step's record
    code: int  # the compiled bar's: (record start << 3) | (events << 2) | (signal + 1)
    extra: tuple[Event, ...]  # events before the bar's own (the history's, carried)
    broker: Any  # the PaperBroker that rebuilds orders from the record

    def _value(self) -> tuple[Any, ...]:
        return (
            self.ts, self.bar, self.signal, self.events, self.close, self.equity,
            self.position, self.qty, self.state, self.indicators,
        )  # fmt: skip

    def __eq__(self, other: object) -> bool:
        """Steps are equal when they report the same (not: hold the same buffer)."""
        if not isinstance(other, LiveStep):
            return NotImplemented
        if self.record is other.record and self.code == other.code:
            return tuple.__eq__(self, other)
        return repr(self._value()) == repr(other._value())  # NaN indicators compare equal

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    @property
    def at(self) -> int:
        """Where the record starts in :attr:`record`."""
        return int(self.code >> 3)

    @property
    def signal(self) -> int | None:
        return None if self.bar is None else int(self.code & 3) - 1

    @property
    def events(self) -> tuple[Event, ...]:
        if not self.code & B.EVENTS:
            return self.extra
        return (*self.extra, *self.broker.events_at(self.ts, self.record, self.code >> 3))

    @property
    def close(self) -> float:
        return float(self.record[(self.code >> 3) + B.R_CLOSE])

    @property
    def equity(self) -> float:
        return float(self.record[(self.code >> 3) + B.R_EQUITY])

    @property
    def position(self) -> float:
        return float(self.record[(self.code >> 3) + B.R_HELD])

    @property
    def qty(self) -> float:
        return float(self.record[(self.code >> 3) + B.R_QTY])

    @property
    def indicators(self) -> dict[str, float]:
        if self.bar is None:
            return {}
        columns = self.broker.indicator_columns
        start = (self.code >> 3) + B.R_IND
        return dict(zip(columns, self.record[start : start + len(columns)].tolist(), strict=True))

    @property
    def state(self) -> BrokerState:
        at = self.code >> 3
        r = self.record[at : at + B.R_IND].tolist()
        broker = self.broker
        ib = broker.int_view(self.record)
        vals = [
            r[B.R_CASH], r[B.R_QTY], r[B.R_ENTRY_PX], r[B.R_ENTRY_FEE], 0.0, r[B.R_STOP],
            r[B.R_TP], 0.0, r[B.R_PREV_SIG], r[B.R_HELD],
        ]  # fmt: skip
        qty = r[B.R_QTY]
        pending = broker.pending_order(int(r[B.R_PENDING]), self.ts.value, qty)
        return state_from(
            vals, r[B.R_EQUITY], r[B.R_CLOSE], self.ts, pending,
            broker.ts_of(int(ib[at + B.R_ENTRY_KEY])),
            broker.entry_order_id(int(ib[at + B.R_ENTRY_ORDER_KEY]), qty),
        )  # fmt: skip


_new_step = tuple.__new__
_Timestamp = pd.Timestamp
_EXCHANGE_ZONE = ZoneInfo(EXCHANGE_TZ)
_FIRST_DAY, _LAST_DAY = date(1970, 1, 1), date(2100, 1, 1)


@functools.cache
def _midnights() -> list[int]:
    """Epoch ns of every New York midnight from 1970 to 2100 (built once: about 20 ms)."""
    days = pd.date_range(_FIRST_DAY, _LAST_DAY, freq="D", tz=EXCHANGE_TZ)
    return days.as_unit("ns").asi8.tolist()


def _exchange_day(key: int) -> tuple[date, int, list[int]]:
    """The New York day of the instant ``key`` (epoch ns), the ns of the next midnight
    there and of up to ``N_DAYS`` midnights after it (a search in the table; zoneinfo
    outside its years)."""
    table = _midnights()
    i = bisect.bisect_right(table, key)
    if 0 < i < len(table):
        return _FIRST_DAY + timedelta(days=i - 1), table[i], table[i + 1 : i + 1 + B.N_DAYS]
    moment = datetime.fromtimestamp(key // 1_000_000_000, tz=_EXCHANGE_ZONE)
    day = moment.date()
    nxt = datetime.combine(day + timedelta(days=1), time(0), tzinfo=_EXCHANGE_ZONE)
    return day, int(nxt.timestamp()) * 1_000_000_000, []


@dataclass(frozen=True, slots=True)
class WarmUpReport:
    mode: str
    bars: int
    first_ts: pd.Timestamp | None
    last_ts: pd.Timestamp | None
    last_signal: int
    ready: bool  # enough bars for every indicator to be defined on the next bar
    shadow_trades: int
    # Events of the history the live record needs (shadow mode): the entry order and
    # fill of a position still open and the order pending at the last history close.
    # The first live step's events start with them.
    carried_events: tuple[Event, ...] = ()


@dataclass
class LiveAgent:
    """One agent, live. Build with :meth:`from_settings`."""

    name: str
    symbol: str
    strategy: str
    params: Any
    config: EngineConfig
    interval: str = "5m"
    broker: PaperBroker = field(init=False)
    refused: Counter[str] = field(init=False)

    def __post_init__(self) -> None:
        validate_interval(self.interval)
        spec = get_strategy(self.strategy)
        self._spec = spec
        self._warmup_bars = int(spec.warmup(self.params))
        self._columns = spec.indicator_columns
        self._p = spec.pack(self.params, shorts=self.config.allow_short)
        self._state_size = spec.size(self.params)
        kernels = spec.kernels()
        self._kernel = kernels.live_bar
        self._observe = kernels.live_observe
        self.broker = PaperBroker(self.config, self.name, self.symbol, self.interval)
        self.broker.indicator_columns = self._columns
        self.broker.buf = self._buf = self.broker.new_buffer(
            self._p, self._state_size, len(self._columns)
        )
        self.refused = Counter()
        self.restore_warnings: list[str] = []
        self._carried: tuple[Event, ...] = ()
        # Stock splits: the bars seen (history included) on the current basis, kept to
        # rebuild the indicators when a split changes it (the live bars' are the records
        # of the buffers since the last split); the splits still ahead. The compiled bar
        # stops at the first bar at or after the next New York day (the only bar that
        # can be an ex-date's first): one integer compare per bar.
        self._splits = asset_class_of(self.symbol) == "stock"
        self._seen: tuple[list[float], list[float], list[float], list[float]] = ([], [], [], [])
        self._old: list[np.ndarray] = []
        self._splits_ahead: list[Split] = []
        self.splits_applied: list[Split] = []
        if self._splits:
            self._header()[B.H_NEXT_DAY] = B.KEY_NONE
            _midnights()  # built once per process, before the first bar

    @property
    def splits_ahead(self) -> list[Split]:
        """The splits still ahead (set by :mod:`hedgeflow.live.corporate`, maybe from
        another thread); while there are some, the compiled bar stops at every new day."""
        return self._splits_ahead

    @splits_ahead.setter
    def splits_ahead(self, splits: list[Split]) -> None:
        self._splits_ahead = splits
        self._header()[B.H_WATCH] = 1 if splits else 0

    def _header(self) -> np.ndarray:
        return self._buf.view(np.int64)

    @classmethod
    def from_settings(
        cls,
        agent: AgentSettings,
        costs: CostSettings,
        initial_equity: float,
        interval: str = "5m",
        minimums: OrderMinimums | None = None,
    ) -> LiveAgent:
        """The live twin of ``research.run_agent(bars, agent, costs, initial_equity,
        minimums)``."""
        return cls(
            name=agent.name,
            symbol=agent.symbol,
            strategy=agent.strategy,
            params=parse_params(agent.strategy, agent.params),
            config=EngineConfig.from_settings(
                agent.risk, costs, agent.asset_class, initial_equity, minimums or agent.minimums
            ),
            interval=interval,
        )

    # -- properties -------------------------------------------------------------------

    @property
    def equity(self) -> float:
        return float(self._buf[B.OFF_EQUITY])

    @property
    def ready(self) -> bool:
        """Every indicator is defined from the next bar on."""
        return self.n_bars >= self._warmup_bars

    @property
    def warmup_bars(self) -> int:
        return self._warmup_bars

    @property
    def n_bars(self) -> int:
        """Bars seen (history included)."""
        return int(self._header()[B.H_N_BARS])

    @property
    def last_ts(self) -> pd.Timestamp | None:
        """The last processed bar's time (UTC)."""
        return key_ts(int(self._header()[B.H_LAST_KEY]))

    @property
    def last_signal(self) -> int:
        return int(self._header()[B.H_LAST_SIG])

    def indicators(self) -> dict[str, float]:
        """The indicator values at the last bar."""
        ib = self._header()
        start = int(ib[B.H_OFF_OUT])
        values = self._buf[start : start + len(self._columns)].tolist()
        return dict(zip(self._columns, values, strict=True))

    # -- history ----------------------------------------------------------------------

    def warm_up(self, bars: pd.DataFrame, mode: WarmUpMode = "shadow") -> WarmUpReport:
        """Replay history bars (sorted, unique ``ts``) before the first live bar."""
        if mode not in ("shadow", "flat"):
            raise InvalidInputError(f"warm-up mode must be 'shadow' or 'flat', got {mode!r}")
        if self.last_ts is not None:
            raise InvalidInputError(f"agent {self.name}: warm up before the first live bar")
        ts, o, h, lo, c = _history_arrays(bars)
        shadow_trades = 0
        broker = self.broker
        entry: list[Event] = []
        self._remember(o, h, lo, c)
        if mode == "shadow":
            ib = self._header()
            next_day = int(ib[B.H_NEXT_DAY])
            ib[B.H_NEXT_DAY] = B.KEY_NEVER  # splits start with the live bars
            for i in range(len(ts)):
                code = self._process(ts[i], o[i], h[i], lo[i], c[i])
                if code < 0:
                    raise InvalidInputError(
                        f"agent {self.name}: history bar {ts[i]} "
                        f"{_REFUSALS.get(code, 'was refused')}"
                    )
                if code & B.EVENTS:
                    events = broker.events_at(ts[i], broker.buf, code >> 3)
                    for j, event in enumerate(events):
                        if isinstance(event, Fill):
                            if event.is_entry:  # a long's buy or a short's sale
                                entry = list(events[j - 1 : j + 1])
                            else:
                                entry = []
                                shadow_trades += 1
            self._buf = broker.buf
            self._header()[B.H_NEXT_DAY] = next_day
            # the history's records are no step's: the live bars' start afresh
            self._header()[B.H_ROW] = self._header()[B.H_OFF_REC]
            self._old.clear()
        else:
            self._replay(o, h, lo, c)
        sig = self.last_signal
        # What the live record must show of the history: the open position's entry
        # (order + fill) and the order pending at the last history close.
        carried = entry if broker.state.qty != 0.0 else []
        pending = broker.pending
        if pending is not None:
            carried.append(OrderCreated(pending))
            if pending.then is not None:  # a reversal: the entry after the exit
                carried.append(OrderCreated(pending.then))
        self._carry(tuple(carried))
        if len(ts) and mode == "flat":
            broker.set_last(ts[-1], prev_signal=sig)
            self._header()[B.H_N_BARS] += len(ts)
        return WarmUpReport(
            mode=mode,
            bars=len(ts),
            first_ts=ts[0] if len(ts) else None,
            last_ts=ts[-1] if len(ts) else None,
            last_signal=sig,
            ready=self.ready,
            shadow_trades=shadow_trades,
            carried_events=self._carried,
        )

    def _carry(self, events: tuple[Event, ...]) -> None:
        """Events the first live step starts with (the compiled bar reports events)."""
        self._carried = events
        self._header()[B.H_FORCE] = 1 if events else 0

    def _replay(self, o: list[float], h: list[float], lo: list[float], c: list[float]) -> None:
        """The strategy and the ATR stream over bars, without trading."""
        if not len(c):
            return
        arrays = [np.asarray(x, dtype=np.float64) for x in (o, h, lo, c)]
        try:
            code = self._observe(self._buf, *arrays)
        except Exception as exc:
            raise InvalidInputError(
                f"strategy {self._spec.ref}: update failed: {one_line(exc)}"
            ) from None
        if code == B.B_BAD_SIGNAL:
            self._bad_signal()

    @classmethod
    def resume(
        cls,
        agent: AgentSettings,
        costs: CostSettings,
        initial_equity: float,
        interval: str,
        replay: pd.DataFrame,
        state: BrokerState,
        minimums: OrderMinimums | None = None,
    ) -> LiveAgent:
        """Rebuild an agent after a restart: the strategy and the ATR stream replay
        ``replay`` (the bars the lost process had seen, ending at the last processed
        bar), the broker adopts ``state`` (rebuilt from the live tables)."""
        self = cls.from_settings(agent, costs, initial_equity, interval, minimums)
        ts, o, h, lo, c = _history_arrays(replay)
        self._remember(o, h, lo, c)
        self._replay(o, h, lo, c)
        sig = self.last_signal
        self._header()[B.H_N_BARS] = len(ts)
        self.broker.restore_state(state)
        self._header()[B.H_LAST_SIG] = state.prev_signal
        if state.last_ts is not None and (not len(ts) or ts[-1] != state.last_ts):
            found = ts[-1] if len(ts) else None
            self.restore_warnings.append(
                f"replayed bars end at {found}, the stored state at {state.last_ts}"
            )
        elif len(ts) and sig != state.prev_signal:
            self.restore_warnings.append(
                f"replayed signal {sig} differs from the stored signal {state.prev_signal} "
                f"at {state.last_ts}: the history is not the one the lost process saw"
            )
        for warning in self.restore_warnings:
            log.warning("agent %s restore: %s", self.name, warning)
        return self

    # -- live -------------------------------------------------------------------------

    def on_bar(self, bar: BarLike) -> LiveStep | None:
        """Process one closed bar; None when it is refused (see ``refused``)."""
        ts = bar.ts
        if type(ts) is not _Timestamp or ts.tzinfo is None:
            ts = self._timestamp(ts)
        symbol = getattr(bar, "symbol", None)
        if symbol is not None and symbol != self.symbol:
            self._refuse("other_symbol", ts)
            return None
        buf = self._buf
        try:
            code = self._kernel(buf, ts.value, bar.open, bar.high, bar.low, bar.close)
        except Exception:  # prices that are not floats, or the strategy's update failed
            code = _RETRY
        if code < 0:
            return self._unusual(bar, ts, code)
        return _new_step(LiveStep, (ts, bar, buf, code, (), self.broker))

    def _timestamp(self, ts: Any) -> pd.Timestamp:
        ts = _Timestamp(ts)
        if ts.tzinfo is None:
            raise InvalidInputError(f"agent {self.name}: bar ts {ts} has no time zone (UTC)")
        return ts

    def _process(self, ts: pd.Timestamp, o: Any, h: Any, lo: Any, c: Any) -> int:
        """The compiled bar with prices as floats; new days and full records handled
        (the code of the processed or refused bar)."""
        try:
            prices = (float(o), float(h), float(lo), float(c))
        except (TypeError, ValueError):
            return B.B_BAD_PRICES
        while True:
            try:
                code = int(self._kernel(self._buf, ts.value, *prices))
            except Exception as exc:
                raise InvalidInputError(
                    f"strategy {self._spec.ref}: update failed: {one_line(exc)}"
                ) from None
            if code == B.B_NEW_DAY:
                self._new_day(ts)
            elif code == B.B_FULL:
                self._rotate()
            elif code == B.B_FORCED:
                self._header()[B.H_FORCE] = 0
            else:
                return code

    def _unusual(self, bar: BarLike, ts: pd.Timestamp, code: int) -> LiveStep | None:
        """The rest of :meth:`on_bar` for a bar not processed at once: a new day, full
        records, events carried from the history, prices to convert, or a refusal."""
        extra, self._carried = self._carried, ()
        if code == B.B_NEW_DAY:
            self._new_day(ts)
        code = self._process(ts, bar.open, bar.high, bar.low, bar.close)
        if code == B.B_BAD_SIGNAL:
            self._bad_signal()
        if code < 0:
            if extra:
                self._carry(extra)
            self._refuse(_REASONS[code], ts)
            return None
        return LiveStep(ts, bar, self._buf, code, extra, self.broker)

    def _rotate(self) -> None:
        old = self.broker.rotate()
        if self._splits:
            self._old.append(old)  # a split rebuilds the indicators from its records
        self._buf = self.broker.buf

    def _bad_signal(self) -> None:
        sig = int(self._header()[B.H_BAD_SIG])
        raise InvalidInputError(
            f"strategy {self._spec.ref}: update returned {sig}; expected -1, 0 or 1"
        )

    # -- splits -----------------------------------------------------------------------

    def _remember(self, o: list[float], h: list[float], lo: list[float], c: list[float]) -> None:
        if self._splits:
            for kept, new in zip(self._seen, (o, h, lo, c), strict=True):
                kept.extend(new)

    def _new_day(self, ts: pd.Timestamp) -> None:
        """The first bar of a New York day: apply the splits whose ex-date has come."""
        day, nxt, after = _exchange_day(ts.value)
        B.set_days(self._buf, nxt, after)
        if not self.splits_ahead:
            return
        # a split is applied once, whatever a refresh of splits_ahead (another thread:
        # hedgeflow.live.corporate.SplitRefresh) put back in the meantime
        due = [s for s in self.splits_ahead if s.ex_date <= day and s not in self.splits_applied]
        if due:
            self.splits_ahead = [s for s in self.splits_ahead if s.ex_date > day]
            for split in sorted(due):
                self.apply_split(split)

    @property
    def processed_day(self) -> date | None:
        """The New York day of the last bar this (stock) agent processed, or None."""
        next_day = int(self._header()[B.H_NEXT_DAY])
        if next_day in (B.KEY_NONE, B.KEY_NEVER):
            return None
        last = pd.Timestamp(next_day - 1, unit="ns", tz="UTC")
        return last.tz_convert(EXCHANGE_TZ).date()

    def _seen_bars(self) -> list[list[float]]:
        """Every bar seen on the current basis: the history's, then the records'."""
        cols = [list(col) for col in self._seen]
        for buf in [*self._old, self._buf]:
            rows = B.records(buf)
            for col, j in zip(cols, (B.R_OPEN, B.R_HIGH, B.R_LOW, B.R_CLOSE), strict=True):
                col.extend(rows[:, j].tolist())
        return cols

    def apply_split(self, split: Split) -> None:
        """A stock split from the next bar on: the position's quantity is multiplied by
        the ratio and its prices (entry, stop, take-profit, last close) divided by it,
        so equity and cash are unchanged and nothing is stopped out by the price jump;
        the strategy's indicators and the ATR are rebuilt from the bars seen, on the new
        basis (as a backtest on the adjusted bars has them)."""
        ratio = split.ratio
        seen = tuple([x / ratio for x in col] for col in self._seen_bars())
        self._seen = seen  # type: ignore[assignment]
        self._old.clear()
        self.broker.rotate()  # the records so far are on the old basis
        self._buf = buf = self.broker.buf
        ib = self._header()
        off_st, off_rec = int(ib[B.H_OFF_ST]), int(ib[B.H_OFF_REC])
        last_sig = int(ib[B.H_LAST_SIG])
        # the strategy and the ATR stream from a zero state, over the bars seen
        buf[off_st : int(ib[B.H_OFF_OUT])] = 0.0
        buf[int(ib[B.H_OFF_OUT]) : off_rec] = math.nan
        buf[B.OFF_ATR : B.OFF_ATR + ATR_STATE_SIZE] = 0.0
        last_close = buf[B.OFF_LAST_CLOSE]
        self._replay(*seen)
        ib[B.H_LAST_SIG] = last_sig
        buf[B.OFF_LAST_CLOSE] = last_close  # the broker's, scaled with its position:
        self.broker.apply_split(ratio)
        self.splits_applied.append(split)
        log.info("agent %s: %s split %s applied", self.name, self.symbol, split.vendor_text())

    def close_out(self, reason: str = "end") -> LiveStep | None:
        """Close any position at the last bar's close (the engine's end of data)."""
        broker = self.broker
        ts = broker.last_ts
        if ts is None:
            return None
        events, at = broker.close_out_at(reason)
        self._buf = broker.buf
        return LiveStep(ts, None, self._buf, at << 3, tuple(events), broker)

    def _refuse(self, reason: str, ts: pd.Timestamp) -> None:
        self.refused[reason] += 1
        log.info("agent %s: bar %s refused (%s, last %s)", self.name, ts, reason, self.last_ts)


_RETRY = -100  # on_bar: process the bar again through _process (converted, or a clear error)
_REASONS = {
    B.B_DUPLICATE: "duplicate",
    B.B_OUT_OF_ORDER: "out_of_order",
    B.B_BAD_PRICES: "bad_prices",
}
_REFUSALS = {
    B.B_DUPLICATE: "repeats the previous bar's time",
    B.B_OUT_OF_ORDER: "is older than the previous bar",
    B.B_BAD_PRICES: "has invalid prices",
}


def _history_arrays(
    bars: pd.DataFrame,
) -> tuple[list[pd.Timestamp], list[float], list[float], list[float], list[float]]:
    missing = [col for col in (C.TS, *C.PRICE_COLUMNS) if col not in bars.columns]
    if missing:
        raise InvalidInputError(f"bars frame is missing columns: {', '.join(missing)}")
    ts_col = bars[C.TS]
    if not (ts_col.is_monotonic_increasing and ts_col.is_unique):
        raise InvalidInputError("history bars must have strictly increasing ts")
    ts = list(ts_col)
    cols = [bars[col].to_numpy(np.float64).tolist() for col in C.PRICE_COLUMNS]
    return ts, cols[0], cols[1], cols[2], cols[3]
