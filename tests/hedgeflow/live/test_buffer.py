"""The live agent's buffer (hedgeflow.live.buffer): every bar's record is written by the
compiled bar and read by its LiveStep when asked; when the records are full the agent
moves to a fresh buffer and the old steps keep theirs, unchanged.

Each case runs the same bars twice: with the default number of records per buffer
and with 3 (a rotation every third bar, the split's rebuild from several buffers'
records), and compares everything a step reports, bit for bit, with what the agent
reported right after that bar."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from hedgeflow.config import DEFAULT_COSTS, AgentSettings, load_settings
from hedgeflow.live import buffer as B
from hedgeflow.live.agent import LiveAgent
from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.splits import Split

START = pd.Timestamp("2024-03-04", tz="UTC")


def _bars(symbol: str, start: Any, end: Any) -> pd.DataFrame:
    return SyntheticMarket(7).fetch_bars(symbol, "5m", start, end)


def _bar(row: Any) -> SimpleNamespace:
    return SimpleNamespace(ts=row.ts, open=row.open, high=row.high, low=row.low, close=row.close)


def _run(agent: LiveAgent, bars: pd.DataFrame) -> tuple[list[Any], list[tuple[Any, ...]]]:
    """Steps, and what the agent says right after each bar (before any later bar)."""
    steps, now = [], []
    for row in bars.itertuples(index=False):
        step = agent.on_bar(_bar(row))
        assert step is not None
        steps.append(step)
        now.append((agent.broker.state, agent.indicators(), agent.equity, agent.broker.held))
    final = agent.close_out()
    assert final is not None
    steps.append(final)
    now.append((agent.broker.state, {}, agent.equity, agent.broker.held))
    return steps, now


def _seen(steps: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (s.ts, s.signal, s.events, s.state, s.indicators, s.equity, s.position, s.close, s.qty)
        for s in steps
    ]


def _same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        # NaN indicators (warm-up) compare by their text
        assert repr(x) == repr(y)


@pytest.mark.parametrize("name", ["stocks", "forex", "crypto"])
def test_records_survive_rotation_and_equal_the_agent_after_each_bar(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    settings = load_settings(env={})
    a = next(x for x in settings.agents if x.name == name)
    bars = _bars(a.symbol, START, START + pd.Timedelta(days=6))
    history, live = bars.iloc[:300], bars.iloc[300:]

    def run(rows: int) -> tuple[list[Any], list[tuple[Any, ...]]]:
        monkeypatch.setattr(B, "ROWS", rows)
        agent = LiveAgent.from_settings(a, settings.costs_for(a), 100_000.0)
        agent.warm_up(history)
        return _run(agent, live)

    steps, now = run(B.ROWS)
    small, small_now = run(3)
    assert len(steps) > 2 * 3 + 1
    assert sum(bool(s.events) for s in steps) >= 4  # orders and fills too
    # read after the whole run: each step still tells what was true after its bar
    for step, (state, indicators, equity, held) in zip(steps, now, strict=True):
        assert step.state == state and step.equity == equity and step.position == held
        assert repr(step.indicators) == repr(indicators)
    assert math.isfinite(steps[-2].indicators[next(iter(steps[-2].indicators))])
    # many small buffers: the same steps, bit for bit
    _same(_seen(steps), _seen(small))
    _same(
        [(s, i, e, h) for s, i, e, h in now],
        [(s, i, e, h) for s, i, e, h in small_now],
    )
    assert len({id(s.record) for s in small}) > len(small) // 3 - 1


def test_a_split_rebuilds_from_the_records_of_every_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The split's indicator rebuild reads the live bars back from the records: with a
    buffer of 3 records the bars before the split lie in many of them."""
    symbol = "S152.US"
    split = Split(date(2021, 1, 20), 4.0, 1.0)
    raw = _bars(symbol, datetime(2021, 1, 4, tzinfo=UTC), datetime(2021, 1, 27, tzinfo=UTC))
    agent_settings = AgentSettings(name="stocks", symbol=symbol, strategy="sma_cross")

    def run(rows: int) -> list[Any]:
        monkeypatch.setattr(B, "ROWS", rows)
        agent = LiveAgent.from_settings(agent_settings, DEFAULT_COSTS["stock"], 100_000.0)
        agent.warm_up(raw.iloc[:200])
        agent.splits_ahead = [split]
        steps, _ = _run(agent, raw.iloc[200:])
        assert agent.splits_applied == [split]
        return steps

    default, small = run(B.ROWS), run(3)
    ex = pd.Timestamp(split.ex_date, tz="UTC")
    assert sum(s.ts < ex for s in default if s.bar is not None) > 3 * 10
    _same(_seen(default), _seen(small))


def test_a_restored_state_keeps_order_ids_the_bars_would_not_give() -> None:
    """The broker rebuilds orders from the bars that queued them; a restored state whose
    ids are not those (another naming, an older version) keeps its own, in its state
    and in the events of the orders it carries."""
    from dataclasses import replace

    from hedgeflow.engine import EngineConfig
    from hedgeflow.live.broker import Fill, OrderUpdated, PaperBroker

    bars = _bars("BTC-USD.CC", START, START + pd.Timedelta(hours=2))
    rows = list(bars.itertuples(index=False))
    config = EngineConfig(initial_equity=100_000.0)
    broker = PaperBroker(config, "c", "BTC-USD.CC")
    for row, sig in zip(rows[:4], (0, 1, 1, 0), strict=True):
        broker.on_bar(row.ts, row.open, row.high, row.low, row.close, sig)
    state = broker.state
    assert state.qty > 0 and state.pending is not None and state.pending.kind == "exit"
    assert state.entry_order_id == broker.entry_order_id(
        rows[1].ts.value, state.qty
    )  # the entry queued at bar 1
    odd = replace(
        state,
        entry_order_id="legacy-entry-1",
        pending=replace(state.pending, order_id="legacy-7-exit"),
    )
    fresh = PaperBroker(config, "c", "BTC-USD.CC")
    fresh.restore_state(odd)
    assert fresh.state == odd
    row = rows[4]
    events = fresh.on_bar(row.ts, row.open, row.high, row.low, row.close, 0)
    done = [e for e in events if isinstance(e, OrderUpdated)]
    fills = [e for e in events if isinstance(e, Fill)]
    assert [e.order_id for e in done] == ["legacy-7-exit"]
    assert [f.order_id for f in fills] == ["legacy-7-exit"] and fills[0].trade is not None
    assert fresh.state.qty == 0.0 and fresh.state.entry_order_id is None
    # and a state with the ids the bars give round-trips without any kept id
    again = PaperBroker(config, "c", "BTC-USD.CC")
    again.restore_state(state)
    assert again.state == state and not again._restored_ids and not again._restored_pending


def test_prices_of_other_number_types_give_the_same_steps() -> None:
    """The compiled bar takes floats; ints, numpy floats, Decimals and numeric text go
    through the converting path and give the same steps; text that is no number is
    refused as bad prices."""
    from decimal import Decimal

    import numpy as np

    settings = load_settings(env={})
    a = next(x for x in settings.agents if x.name == "crypto")
    bars = _bars(a.symbol, START, START + pd.Timedelta(days=2))
    history, live = bars.iloc[:300], bars.iloc[300:340]

    def run(convert: Any) -> list[Any]:
        agent = LiveAgent.from_settings(a, settings.costs_for(a), 100_000.0)
        agent.warm_up(history)
        steps = []
        for row in live.itertuples(index=False):
            bar = SimpleNamespace(
                ts=row.ts, **{k: convert(getattr(row, k)) for k in ("open", "high", "low", "close")}
            )
            steps.append(agent.on_bar(bar))
        return _seen(steps)

    floats = run(float)
    for convert in (np.float64, Decimal, repr):
        _same(run(convert), floats)
    agent = LiveAgent.from_settings(a, settings.costs_for(a), 100_000.0)
    row = live.iloc[0]
    bar = SimpleNamespace(ts=row.ts, open="abc", high=row.high, low=row.low, close=row.close)
    assert agent.on_bar(bar) is None and agent.refused["bad_prices"] == 1 and agent.n_bars == 0


def test_steps_compare_by_what_they_report() -> None:
    """Two agents fed the same bars give equal steps (their buffers differ); a step of
    another bar is not equal."""
    settings = load_settings(env={})
    a = next(x for x in settings.agents if x.name == "forex")
    bars = _bars(a.symbol, START, START + pd.Timedelta(days=1))
    one, two = (LiveAgent.from_settings(a, settings.costs_for(a), 100_000.0) for _ in "ab")
    rows = [_bar(r) for r in bars.itertuples(index=False)]
    first = [one.on_bar(r) for r in rows]
    second = [two.on_bar(r) for r in rows]
    assert first == second and first[0] is not second[0]
    assert first[0] != first[1] and first[-1] == first[-1]
