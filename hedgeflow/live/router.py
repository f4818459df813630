"""Closed bars -> the agents of their symbol -> the sink, with the status counts."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from hedgeflow.errors import InvalidInputError
from hedgeflow.live.agent import LiveAgent, LiveStep
from hedgeflow.live.aggregator import Bar
from hedgeflow.live.broker import Fill, OrderUpdated
from hedgeflow.live.sink import Sink
from hedgeflow.live.status import AgentStatus
from hedgeflow.market import interval_seconds

__all__ = ["BarRouter"]


class BarRouter:
    """Closed bars -> the agents of their symbol -> ``sink``; keeps the status.

    A bar an agent has already processed (``ts <= its last bar``) is skipped silently
    (a REST repair may overlap what the agent saw); the agent itself refuses anything
    else that is not new (counted in ``LiveAgent.refused``)."""

    def __init__(self, agents: Sequence[LiveAgent], sink: Sink, interval: str) -> None:
        if not agents:
            raise InvalidInputError("the live runtime needs at least one agent")
        names = [a.name for a in agents]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"agent names must be unique, got {names}")
        self.interval = interval
        self.interval_ms = interval_seconds(interval) * 1000
        for agent in agents:
            if agent.interval != interval:
                raise InvalidInputError(
                    f"agent {agent.name} runs on {agent.interval} bars, the runtime on {interval}"
                )
        self.agents = list(agents)
        self.sink = sink
        self.by_symbol: dict[str, list[LiveAgent]] = {}
        for agent in self.agents:
            self.by_symbol.setdefault(agent.symbol, []).append(agent)
        self._last_ms: dict[str, int] = {
            a.name: (a.last_ts.value // 1_000_000 if a.last_ts is not None else -(2**62))
            for a in self.agents
        }
        self.status = {
            a.name: AgentStatus(
                a.name,
                a.symbol,
                a.strategy,
                signal=a.last_signal,
                equity=a.equity if a.last_ts is not None else a.config.initial_equity,
                position=a.broker.held,
                last_ts=a.last_ts,
            )
            for a in self.agents
        }
        self.bars = 0
        self.rest_bars = 0
        self.steps: list[tuple[LiveAgent, LiveStep]] | None = None  # tests may collect
        self.on_step: Callable[[LiveAgent, LiveStep, Bar], None] | None = None

    @property
    def symbols(self) -> list[str]:
        return list(self.by_symbol)

    def next_needed_ms(self, symbol: str) -> int | None:
        """Start of the first bar some agent of ``symbol`` still needs (None: no
        agent has processed any bar, not even history)."""
        lasts = [self._last_ms[a.name] for a in self.by_symbol[symbol]]
        if all(last < -(2**61) for last in lasts):
            return None
        return min(lasts) + self.interval_ms

    def dispatch(self, bar: Bar) -> None:
        agents = self.by_symbol.get(bar.symbol)
        if not agents:
            return
        self.bars += 1
        if bar.n_ticks == 0:
            self.rest_bars += 1
        for agent in agents:
            if bar.ts_ms <= self._last_ms[agent.name]:
                continue
            step = agent.on_bar(bar)
            st = self.status[agent.name]
            if step is None:
                st.refused += 1
                continue
            self._last_ms[agent.name] = bar.ts_ms
            if self.on_step is not None:
                self.on_step(agent, step, bar)
            self.sink(agent, step)
            self._count(st, step)
            if self.steps is not None:
                self.steps.append((agent, step))

    @staticmethod
    def _count(st: AgentStatus, step: LiveStep) -> None:
        st.bars += 1
        signal = int(step.signal or 0)
        if signal != st.signal:
            st.signals += 1
        st.signal = signal
        for event in step.events:
            if isinstance(event, Fill):
                st.fills += 1
                if event.trade is not None:
                    st.trades += 1
                    st.realized_pnl += event.trade.pnl
            else:
                st.orders += 1
                if isinstance(event, OrderUpdated) and event.status == "rejected":
                    st.skipped += 1
        st.equity = step.equity
        st.position = step.qty
        st.last_ts = step.ts

    def agent_status(self) -> list[AgentStatus]:
        return [dataclasses.replace(s) for s in self.status.values()]
