"""The live agent: one configured agent's streaming strategy plus its paper broker.

Per closed bar, :meth:`LiveAgent.on_bar` updates the strategy's streaming twin
(O(1), identical to the batch signals on every bar) and applies the engine's
rules in the :class:`~hedgeflow.live.broker.PaperBroker`; no DataFrame is built.
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

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import pandas as pd

from hedgeflow import columns as C
from hedgeflow.config import AgentSettings, CostSettings, OrderMinimums
from hedgeflow.engine import EngineConfig
from hedgeflow.errors import InvalidInputError
from hedgeflow.live.broker import BrokerState, Event, Fill, OrderCreated, PaperBroker
from hedgeflow.market import asset_class_of, validate_interval
from hedgeflow.splits import EXCHANGE_TZ, Split
from hedgeflow.strategies import get_strategy, parse_params

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
    named tuple (immutable, three times cheaper to build than a frozen dataclass on
    the per-bar path).

    ``signal`` and ``indicators`` are the strategy's values at the bar's close;
    ``equity`` is cash + qty x close after the bar; ``position`` the quantity held
    through the close (the engine's ``position`` column); ``state`` the broker
    state after the bar (a copy: what ``live_positions`` stores)."""

    ts: pd.Timestamp
    bar: Any
    signal: int | None
    indicators: dict[str, float]
    close: float
    events: tuple[Event, ...]
    equity: float
    position: float
    state: BrokerState


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
        self._stream = spec.streaming(self.params, shorts=self.config.allow_short)
        self._warmup_bars = int(spec.warmup(self.params))
        self.broker = PaperBroker(self.config, self.name, self.symbol, self.interval)
        self.refused = Counter()
        self.n_bars = 0  # bars seen (history included)
        self.last_ts: pd.Timestamp | None = None
        self._last_key = -(2**63)  # last_ts as epoch ns (cheap comparisons)
        self.last_signal = 0
        self.restore_warnings: list[str] = []
        self._carried: tuple[Event, ...] = ()
        # Stock splits: the bars seen (history included) on the current basis, kept to
        # rebuild the indicators when a split changes it; the splits still ahead, and
        # the first ns of the next New York day (the only bar that can be an ex-date's
        # first is the first at or after it: one integer compare per bar).
        self._splits = asset_class_of(self.symbol) == "stock"
        self._seen: tuple[list[float], list[float], list[float], list[float]] = ([], [], [], [])
        self.splits_ahead: list[Split] = []
        self.splits_applied: list[Split] = []
        self._next_day_ns = -(2**63)

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
        return self.broker.state.equity

    @property
    def ready(self) -> bool:
        """Every indicator is defined from the next bar on."""
        return self.n_bars >= self._warmup_bars

    @property
    def warmup_bars(self) -> int:
        return self._warmup_bars

    # -- history ----------------------------------------------------------------------

    def warm_up(self, bars: pd.DataFrame, mode: WarmUpMode = "shadow") -> WarmUpReport:
        """Replay history bars (sorted, unique ``ts``) before the first live bar."""
        if mode not in ("shadow", "flat"):
            raise InvalidInputError(f"warm-up mode must be 'shadow' or 'flat', got {mode!r}")
        if self.last_ts is not None:
            raise InvalidInputError(f"agent {self.name}: warm up before the first live bar")
        ts, o, h, lo, c = _history_arrays(bars)
        shadow_trades = 0
        stream = self._stream
        broker = self.broker
        sig = 0
        entry: list[Event] = []
        self._remember(o, h, lo, c)
        for i in range(len(ts)):
            sig, _ = stream.update(o[i], h[i], lo[i], c[i])
            if mode == "shadow":
                events = broker.on_bar(ts[i], o[i], h[i], lo[i], c[i], sig)
                for j, event in enumerate(events):
                    if isinstance(event, Fill):
                        if event.is_entry:  # a long's buy or a short's sale
                            entry = list(events[j - 1 : j + 1])
                        else:
                            entry = []
                            shadow_trades += 1
            else:
                broker.observe(h[i], lo[i], c[i])
        # What the live record must show of the history: the open position's entry
        # (order + fill) and the order pending at the last history close.
        carried = entry if broker.state.qty != 0.0 else []
        pending = broker.state.pending
        if pending is not None:
            carried.append(OrderCreated(pending))
            if pending.then is not None:  # a reversal: the entry after the exit
                carried.append(OrderCreated(pending.then))
        self._carried = tuple(carried)
        if len(ts):
            if mode == "flat":
                broker.state.prev_signal = sig
                broker.state.last_ts = ts[-1]
            self.last_ts = ts[-1]
            self._last_key = ts[-1].value
            self.last_signal = sig
            self.n_bars += len(ts)
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
        sig = 0
        for i in range(len(ts)):
            sig, _ = self._stream.update(o[i], h[i], lo[i], c[i])
            self.broker.observe(h[i], lo[i], c[i])
        self.n_bars = len(ts)
        self.broker.restore_state(state)
        self.last_ts = state.last_ts
        if state.last_ts is not None:
            self._last_key = pd.Timestamp(state.last_ts).value
        self.last_signal = state.prev_signal
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
        if type(ts) is not pd.Timestamp:
            ts = pd.Timestamp(ts)
        if ts.tzinfo is None:
            raise InvalidInputError(f"agent {self.name}: bar ts {ts} has no time zone (UTC)")
        key = ts.value
        if key <= self._last_key:
            self._refuse("duplicate" if key == self._last_key else "out_of_order", ts)
            return None
        symbol = getattr(bar, "symbol", None)
        if symbol is not None and symbol != self.symbol:
            self._refuse("other_symbol", ts)
            return None
        o, h, lo, c = float(bar.open), float(bar.high), float(bar.low), float(bar.close)
        if not (lo > 0.0 and lo <= o and lo <= c and o <= h and c <= h and h < math.inf):
            self._refuse("bad_prices", ts)
            return None
        if self._splits:
            if key >= self._next_day_ns:
                self._new_day(ts)
            seen = self._seen
            seen[0].append(o)
            seen[1].append(h)
            seen[2].append(lo)
            seen[3].append(c)
        broker = self.broker
        stream = self._stream
        sig, events = broker.on_bar_with(ts, o, h, lo, c, stream)
        indicators = stream.indicators()
        if self._carried:
            events = [*self._carried, *events]
            self._carried = ()
        self.last_ts = ts
        self._last_key = key
        self.last_signal = sig
        self.n_bars += 1
        st = broker.state
        return LiveStep(
            ts, bar, sig, indicators, c, tuple(events), st.equity, broker.held, broker.snapshot()
        )

    # -- splits -----------------------------------------------------------------------

    def _remember(self, o: list[float], h: list[float], lo: list[float], c: list[float]) -> None:
        if self._splits:
            for kept, new in zip(self._seen, (o, h, lo, c), strict=True):
                kept.extend(new)

    def _new_day(self, ts: pd.Timestamp) -> None:
        """The first bar of a New York day: apply the splits whose ex-date has come."""
        local = ts.tz_convert(EXCHANGE_TZ)
        day = local.date()
        nxt = (local.normalize() + pd.Timedelta(days=1)).normalize()
        self._next_day_ns = int(nxt.tz_convert("UTC").value)
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
        if self._next_day_ns == -(2**63):
            return None
        last = pd.Timestamp(self._next_day_ns - 1, unit="ns", tz="UTC")
        return last.tz_convert(EXCHANGE_TZ).date()

    def apply_split(self, split: Split) -> None:
        """A stock split from the next bar on: the position's quantity is multiplied by
        the ratio and its prices (entry, stop, take-profit, last close) divided by it,
        so equity and cash are unchanged and nothing is stopped out by the price jump;
        the strategy's indicators and the ATR are rebuilt from the bars seen, on the new
        basis (as a backtest on the adjusted bars has them)."""
        ratio = split.ratio
        seen = tuple([x / ratio for x in col] for col in self._seen)
        self._seen = seen  # type: ignore[assignment]
        stream = self._spec.streaming(self.params, shorts=self.config.allow_short)
        for o, h, lo, c in zip(*seen, strict=True):
            stream.update(o, h, lo, c)
        self._stream = stream
        self.broker.apply_split(ratio, seen[1], seen[2], seen[3])
        self.splits_applied.append(split)
        log.info("agent %s: %s split %s applied", self.name, self.symbol, split.vendor_text())

    def close_out(self, reason: str = "end") -> LiveStep | None:
        """Close any position at the last bar's close (the engine's end of data)."""
        broker = self.broker
        st = broker.state
        if st.last_ts is None:
            return None
        events = broker.close_out(reason)
        return LiveStep(
            st.last_ts,
            None,
            None,
            {},
            st.last_close,
            tuple(events),
            st.equity,
            broker.held,
            broker.snapshot(),
        )

    def _refuse(self, reason: str, ts: pd.Timestamp) -> None:
        self.refused[reason] += 1
        log.info("agent %s: bar %s refused (%s, last %s)", self.name, ts, reason, self.last_ts)


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
