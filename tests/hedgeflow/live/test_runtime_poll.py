"""REST polling mode: closed bars from REST every bar interval of the feed clock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pandas as pd

from hedgeflow.config import load_settings
from hedgeflow.live.agent import LiveAgent, LiveStep
from hedgeflow.live.aggregator import Bar
from hedgeflow.live.clock import SimulatedClock
from hedgeflow.live.poll import PollRuntime
from hedgeflow.live.rest import rest_fetcher
from hedgeflow.research import run_agent
from hedgeflow.sources.synthetic import SyntheticMarket

OPEN = datetime(2024, 9, 3, 13, 30, tzinfo=UTC)
MARKET = SyntheticMarket(7)


def test_poll_mode_feeds_every_closed_bar_once_in_order() -> None:
    settings = load_settings(env={})
    agents = []
    for a in settings.agents:
        agent = LiveAgent.from_settings(a, settings.costs_for(a), 100_000.0, "5m")
        agent.warm_up(MARKET.fetch_bars(a.symbol, "5m", OPEN - timedelta(days=5), OPEN))
        agents.append(agent)
    steps: list[tuple[str, LiveStep]] = []
    calls: list[tuple[str, int, int]] = []
    fetch = rest_fetcher(MARKET, "5m")

    def counting(symbol: str, start_ms: int, end_ms: int) -> Sequence[Bar]:
        calls.append((symbol, start_ms, end_ms))
        return fetch(symbol, start_ms, end_ms)

    runtime = PollRuntime(
        agents,
        interval="5m",
        sink=lambda agent, step: steps.append((agent.name, step)),
        fetch_bars=counting,
        clock_ms=SimulatedClock(int(OPEN.timestamp() * 1000), 3000),
        clock_rate=3000,
        poll_delay_seconds=30,
    )
    final = asyncio.run(runtime.run(duration=2.0))
    assert {a.name for a in final.agents} == {"stocks", "forex", "crypto"}
    end = final.clock
    for a, agent in zip(settings.agents, agents, strict=True):
        got = [s for n, s in steps if n == a.name]
        # every bar that closed (plus the poll delay) before the end, once, in order
        ref = MARKET.fetch_bars(a.symbol, "5m", OPEN, end.floor("5min"))
        assert len(got) >= len(ref) - 1 >= 10
        assert [s.ts for s in got] == list(ref["ts"])[: len(got)]
        assert [s.bar.close for s in got] == list(ref["close"])[: len(got)]
        # and the signals are the nightly engine's
        hist = MARKET.fetch_bars(a.symbol, "5m", OPEN - timedelta(days=5), OPEN)
        full = pd.concat([hist, ref.iloc[: len(got)]], ignore_index=True)
        nightly = run_agent(full, a, settings.costs_for(a), 100_000.0)
        assert [s.signal for s in got] == nightly.signals["signal"].iloc[len(hist) :].tolist()
        assert agent.refused.total() == 0
    # one request per symbol per poll, never for a bar already processed
    assert runtime.polls >= 10 and len(calls) <= 3 * runtime.polls
