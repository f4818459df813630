"""A live position held across a stock split: its quantity is multiplied by the ratio
and its prices divided (no stop-out at the raw price jump), and the indicators go on
from the bars seen on the new basis.

The case: S152.US of the synthetic market (seed 7) splits 4-for-1 on 2021-01-20; the
default stock agent is long over the split (on raw bars a backtest is stopped out at
its first bar: tests/warehouse/test_splits.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from hedgeflow.config import DEFAULT_COSTS, AgentSettings
from hedgeflow.errors import SourceError
from hedgeflow.live.agent import LiveAgent
from hedgeflow.live.corporate import announce_splits
from hedgeflow.research import compute_signals
from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.splits import Split, adjust_bars
from hedgeflow.strategies import parse_params

SYMBOL = "S152.US"
SPLIT = Split(date(2021, 1, 20), 4.0, 1.0)
START, END = datetime(2020, 12, 31, tzinfo=UTC), datetime(2021, 2, 9, tzinfo=UTC)
AGENT = AgentSettings(name="stocks", symbol=SYMBOL, strategy="sma_cross")


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return SyntheticMarket(7).fetch_bars(SYMBOL, "5m", START, END)


def _agent() -> LiveAgent:
    return LiveAgent.from_settings(AGENT, DEFAULT_COSTS["stock"], 100_000.0)


def _bar(row: object) -> SimpleNamespace:
    return SimpleNamespace(
        ts=row.ts,
        open=row.open,
        high=row.high,
        low=row.low,
        close=row.close,  # type: ignore[attr-defined]
    )


def test_a_position_over_the_split_is_rescaled_not_stopped_out(raw: pd.DataFrame) -> None:
    ex = pd.Timestamp(SPLIT.ex_date, tz="UTC")
    history, live = raw.iloc[:600], raw.iloc[600:]
    assert history["ts"].iloc[-1] < ex
    agent = _agent()
    agent.warm_up(history)
    agent.splits_ahead = [SPLIT]
    steps = []
    for row in live.itertuples(index=False):
        before = agent.broker.snapshot()
        step = agent.on_bar(_bar(row))
        assert step is not None
        steps.append((before, step))
        if row.ts >= ex:
            break
    before, first = steps[-1]  # the split day's first bar
    assert agent.splits_applied == [SPLIT] and agent.splits_ahead == []
    assert before.qty > 0, "the case needs a position held over the split"
    after = first.state
    assert after.qty == before.qty * 4
    assert after.entry_price == before.entry_price / 4
    assert after.stop == before.stop / 4 and after.take_profit == before.take_profit / 4
    assert after.cash == before.cash
    assert not [e for e in first.events if getattr(e, "reason", None) == "stop"]
    # equity goes on from the last pre-split close, on the new basis: no 75% crash
    assert abs(first.equity / before.equity - 1) < 0.05


def test_indicators_and_signals_go_on_as_on_the_adjusted_bars(raw: pd.DataFrame) -> None:
    """After the split the agent's signals and indicators are those of the batch
    strategy over the adjusted bars (its history rebuilt on the new basis)."""
    agent = _agent()
    agent.warm_up(raw.iloc[:600])
    agent.splits_ahead = [SPLIT]
    got = {}
    for row in raw.iloc[600:].itertuples(index=False):
        step = agent.on_bar(_bar(row))
        assert step is not None
        got[row.ts] = (step.signal, step.indicators)
    adjusted = adjust_bars(raw, [SPLIT])
    batch = compute_signals(adjusted, "sma_cross", parse_params("sma_cross", {}))
    batch = batch.set_index(adjusted["ts"])
    ex = pd.Timestamp(SPLIT.ex_date, tz="UTC")
    after = [ts for ts in got if ts >= ex]
    assert len(after) > 500
    assert [got[t][0] for t in after] == batch.loc[after, "signal"].tolist()
    for name in ("sma_fast", "sma_slow"):
        live_values = np.array([got[t][1][name] for t in after])
        np.testing.assert_allclose(live_values, batch.loc[after, name].to_numpy(), rtol=1e-12)


def test_splits_ahead_come_from_the_vendor_for_stocks_only() -> None:
    asked = []

    def fetch(symbol: str, first: date, last: date) -> list[Split]:
        asked.append((symbol, first, last))
        if symbol == "BAD.US":
            raise SourceError("HTTP 500")
        return [Split(date(2021, 1, 19), 2.0, 1.0), SPLIT]  # the first is not ahead

    stocks = _agent()
    crypto = LiveAgent.from_settings(
        AgentSettings(name="crypto", symbol="BTC-USD.CC", strategy="donchian_breakout"),
        DEFAULT_COSTS["crypto"],
        100_000.0,
    )
    bad = LiveAgent.from_settings(
        AgentSettings(name="bad", symbol="BAD.US", strategy="sma_cross"),
        DEFAULT_COSTS["stock"],
        100_000.0,
    )
    # 2021-01-19 15:00 UTC is the 19th in New York: splits from the 20th on are ahead
    warnings = announce_splits(
        [stocks, crypto, bad], fetch, datetime(2021, 1, 19, 15, tzinfo=UTC), horizon_days=30
    )
    assert asked == [
        (SYMBOL, date(2021, 1, 20), date(2021, 2, 18)),
        ("BAD.US", date(2021, 1, 20), date(2021, 2, 18)),
    ]
    assert stocks.splits_ahead == [SPLIT] and crypto.splits_ahead == [] and bad.splits_ahead == []
    assert warnings == ["BAD.US: splits ahead unknown (HTTP 500)"]


def test_a_split_announced_after_the_start_reaches_the_agent_the_next_day(
    raw: pd.DataFrame,
) -> None:
    """The run starts on 2021-01-15 with no split known; the vendor announces the
    4-for-1 on the 19th. The refresh on the clock's new New York day (in a thread) puts
    it ahead of the agent, which rescales its position at the ex-date's first bar, once,
    even though later refreshes keep answering with it."""
    from hedgeflow.live.corporate import SplitRefresh

    answers: list[tuple[str, date, date]] = []

    def fetch(symbol: str, first: date, last: date) -> list[Split]:
        answers.append((symbol, first, last))
        return [SPLIT] if first >= date(2021, 1, 19) else []

    agent = _agent()
    start = pd.Timestamp("2021-01-15 14:30", tz="UTC")
    agent.warm_up(raw[raw["ts"] < start])
    assert announce_splits([agent], fetch, start) == [] and agent.splits_ahead == []
    warned: list[str] = []
    refresh = SplitRefresh([agent], fetch, start, warned.append)
    assert not refresh.on_clock(start + pd.Timedelta(hours=6))  # the same New York day
    ex = pd.Timestamp(SPLIT.ex_date, tz="UTC")
    rescaled = []
    for row in raw[raw["ts"] >= start].itertuples(index=False):
        if refresh.on_clock(row.ts):  # the status callback sees the live clock
            refresh.join(5)
        before = agent.broker.snapshot()
        step = agent.on_bar(_bar(row))
        assert step is not None
        if step.state.qty != before.qty and before.qty != 0 and step.state.qty == 4 * before.qty:
            rescaled.append(row.ts)
    assert agent.splits_applied == [SPLIT] and agent.splits_ahead == []
    assert rescaled == [raw.loc[raw["ts"] >= ex, "ts"].iloc[0]]
    # asked once per new New York day the clock reached (here the bars' days: the
    # first after the start is Tuesday the 19th, Monday being a holiday), for the
    # splits from that day on
    days = [first for _, first, _ in answers[1:]]
    assert days[0] == date(2021, 1, 19) and len(days) == len(set(days)) >= 14
    assert days == sorted(days)
    assert warned == [] and refresh.refreshes == len(answers) - 1


def test_a_refresh_that_fails_keeps_the_known_splits_and_warns() -> None:
    from hedgeflow.live.corporate import SplitRefresh

    calls = []

    def fetch(symbol: str, first: date, last: date) -> list[Split]:
        calls.append(first)
        if len(calls) > 1:
            raise SourceError("HTTP 503")
        return [SPLIT]

    agent = _agent()
    start = datetime(2021, 1, 15, 15, tzinfo=UTC)
    announce_splits([agent], fetch, start)
    warned: list[str] = []
    refresh = SplitRefresh([agent], fetch, start, warned.append)
    assert refresh.on_clock(datetime(2021, 1, 16, 15, tzinfo=UTC))
    refresh.join(5)
    assert agent.splits_ahead == [SPLIT]
    assert warned == [f"{SYMBOL}: splits ahead unknown (HTTP 503)"]
