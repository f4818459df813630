"""The live runtime through real sockets: WsSimulator -> EodhdWsClient -> BarAggregator ->
LiveAgent -> PaperBroker -> sink, with REST catch-up / backfill from the REST simulator.

* parity: a day of ticks for the three default agents gives the nightly engine's bars,
  signals, indicators, trades and equity, bit for bit (warm-up in shadow mode);
* faults: for each WsSimulator fault the bars the runtime stores in a real warehouse
  are the synthetic bars (or, where the fault really removes ticks - silence - the
  bars of the ticks that were sent), every bar once, in order.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hedgeflow.config import NetworkSettings, Settings, load_settings
from hedgeflow.live.agent import LiveAgent, LiveStep
from hedgeflow.live.broker import Fill
from hedgeflow.live.record import trades_frame
from hedgeflow.live.rest import rest_fetcher
from hedgeflow.live.runtime import SHUTDOWN, LiveRuntime, feed_of
from hedgeflow.live.session import last_session_open
from hedgeflow.research import run_agent
from hedgeflow.sources.simulator_source import SimulatorSource
from hedgeflow.sources.synthetic import SyntheticMarket, aggregate_ticks
from hedgeflow.sources.tick import Tick
from hedgeflow.sources.ws_simulator import WsSimulator
from hedgeflow.tasks.live import open_live_sink
from hedgeflow.warehouse import Warehouse

DAY = datetime(2024, 9, 3, tzinfo=UTC)  # a Tuesday: all three markets trade
OPEN = datetime(2024, 9, 3, 13, 30, tzinfo=UTC)  # the US session open (EDT)
EQUITY0 = 100_000.0
MARKET = SyntheticMarket(7)
RUN = "live-runtime-test"


@pytest.fixture(scope="module")
def settings_() -> Settings:
    return load_settings(env={})


@pytest.fixture(scope="module")
def rest() -> Iterator[SimulatorSource]:
    """The real EODHD REST client against a local REST simulator (seed 7)."""
    source = SimulatorSource(NetworkSettings(), 7)
    try:
        yield source
    finally:
        source.close()


def warmed_agents(settings_: Settings, start: datetime, days: int = 10) -> list[LiveAgent]:
    agents = []
    for a in settings_.agents:
        agent = LiveAgent.from_settings(a, settings_.costs_for(a), EQUITY0, "5m")
        agent.warm_up(MARKET.fetch_bars(a.symbol, "5m", start - timedelta(days=days), start))
        agents.append(agent)
    return agents


@dataclass
class Session:
    runtime: LiveRuntime
    steps: list[tuple[str, LiveStep]] = field(default_factory=list)

    def of(self, name: str) -> list[LiveStep]:
        return [s for n, s in self.steps if n == name]


def run_runtime(
    sim: WsSimulator,
    agents: list[LiveAgent],
    rest: Any,
    *,
    until: Callable[[LiveRuntime], bool] | None = None,
    duration: float = 30.0,
    during: Callable[[LiveRuntime], None] | None = None,
    sink: Callable[[LiveAgent, LiveStep], None] | None = None,
    grace_seconds: float | None = None,
) -> Session:
    steps: list[tuple[str, LiveStep]] = []

    def collect(agent: LiveAgent, step: LiveStep) -> None:
        steps.append((agent.name, step))
        if sink is not None:
            sink(agent, step)

    runtime = LiveRuntime(
        agents,
        interval="5m",
        sink=collect,
        ws_url=sim.ws_url,
        token="demo-sim",
        fetch_bars=rest_fetcher(rest, "5m"),
        clock_ms=sim.now_ms,
        clock_rate=sim.speed,
        grace_seconds=grace_seconds if grace_seconds is not None else 0.75 * sim.speed,
        client_options={"backoff_initial": 0.02, "backoff_max": 0.05},
    )

    async def main() -> None:
        async def watch() -> None:
            while runtime.running or not runtime.clients:
                if until is not None and until(runtime):
                    runtime.stop()
                    return
                if during is not None:
                    during(runtime)
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        await runtime.run(duration=duration)
        watcher.cancel()

    asyncio.run(main())
    return Session(runtime, steps)


# -- parity ---------------------------------------------------------------------------------


def test_a_day_of_ticks_through_the_runtime_equals_the_nightly_engine(
    settings_: Settings, rest: SimulatorSource
) -> None:
    start, end = DAY, DAY + timedelta(days=1)
    agents = warmed_agents(settings_, start)
    histories = {
        a.name: MARKET.fetch_bars(a.symbol, "5m", start - timedelta(days=10), start)
        for a in settings_.agents
    }
    days_bars = {a.name: MARKET.fetch_bars(a.symbol, "5m", start, end) for a in settings_.agents}
    last = {name: bars["ts"].iloc[-1] for name, bars in days_bars.items()}

    def all_done(rt: LiveRuntime) -> bool:
        return all(s.last_ts == last[s.name] for s in rt.router.status.values())

    # 10,000x with a 6-hour grace: a tick may reach the runtime up to ~2 s of wall
    # time late (a loaded CI machine) before the time flush would close its bar.
    with WsSimulator(seed=7, speed=10_000, start=start, end=end, tokens=["demo-sim"]) as sim:
        session = run_runtime(sim, agents, rest, until=all_done, grace_seconds=6 * 3600)
    assert all_done(session.runtime), session.runtime.status()
    status = session.runtime.status()
    assert status.late_ticks == 0 and status.repair_failures == 0
    assert status.ticks > 10_000
    by_tick = 0
    for a, agent in zip(settings_.agents, agents, strict=True):
        steps = session.of(a.name)
        bars = days_bars[a.name]
        # the bars: every bar of the day once, in order, equal to the REST / nightly bars
        got = pd.DataFrame(
            {
                "ts": [s.ts for s in steps],
                "open": [s.bar.open for s in steps],
                "high": [s.bar.high for s in steps],
                "low": [s.bar.low for s in steps],
                "close": [s.bar.close for s in steps],
                "volume": [s.bar.volume for s in steps],
            }
        )
        got["ts"] = got["ts"].astype(bars["ts"].dtype)
        pd.testing.assert_frame_equal(got, bars, check_exact=True)
        by_tick += sum(s.bar.closed_by == "tick" for s in steps)

        # the nightly engine over history + the day (the live agent warmed up in shadow mode)
        final = agent.close_out()
        assert final is not None
        full = pd.concat([histories[a.name], bars], ignore_index=True)
        nightly = run_agent(full, a, settings_.costs_for(a), EQUITY0)
        k = len(histories[a.name])
        signals = nightly.signals.iloc[k:].reset_index(drop=True)
        np.testing.assert_array_equal([s.signal for s in steps], signals["signal"].to_numpy())
        for col in signals.columns.drop(["ts", "close", "signal"]):
            np.testing.assert_array_equal(
                [s.indicators[col] for s in steps], signals[col].to_numpy(), err_msg=col
            )
        equity = nightly.result.equity["equity"].to_numpy()[k:]
        live_equity = np.array([s.equity for s in steps])
        live_equity[-1] = final.equity
        np.testing.assert_array_equal(live_equity, equity)
        fills = [e for s in [*steps, final] for e in s.events if isinstance(e, Fill)]
        live_trades = trades_frame(fills).drop(columns="trade_id")
        trades = nightly.result.trades
        expected = trades[trades["exit_ts"] >= bars["ts"].iloc[0]].drop(columns="trade_id")
        pd.testing.assert_frame_equal(
            live_trades.reset_index(drop=True), expected.reset_index(drop=True), check_exact=True
        )
    assert by_tick > 500  # the bars were built from ticks, not fetched


def test_feeds_and_default_start() -> None:
    assert [feed_of(s) for s in ("AAPL.US", "EURUSD.FOREX", "BTC-USD.CC")] == [
        "us",
        "forex",
        "crypto",
    ]
    assert last_session_open(datetime(2024, 9, 3, 21, tzinfo=UTC)) == OPEN
    # before Tuesday's close: the last session was Friday's, since Monday 2024-09-02 was
    # Labor Day (XNYS closed); on a Monday morning: Friday's
    assert last_session_open(datetime(2024, 9, 3, 15, tzinfo=UTC)) == OPEN - timedelta(days=4)
    assert last_session_open(datetime(2024, 9, 2, 9, tzinfo=UTC)) == OPEN - timedelta(days=4)
    assert last_session_open(datetime(2024, 9, 9, 9, tzinfo=UTC)) == OPEN + timedelta(days=3)


# -- faults ---------------------------------------------------------------------------------


@dataclass
class Stored:
    session: Session
    bars: pd.DataFrame  # live_bars as stored
    sent: dict[str, list[Tick]]


def stream_with_fault(
    tmp_path: Path,
    settings_: Settings,
    rest: Any,
    fault: Callable[[WsSimulator], None] | None,
    *,
    during: Callable[[WsSimulator, LiveRuntime], None] | None = None,
    duration: float = 3.0,
    speed: float = 3000.0,
) -> Stored:
    warehouse = Warehouse(tmp_path / "home")
    agents = warmed_agents(settings_, OPEN, days=3)

    sink = open_live_sink(warehouse, RUN)  # journal + writer thread, as the live flow
    with WsSimulator(seed=7, speed=speed, start=OPEN, tokens=["demo-sim"]) as sim:
        if fault is not None:
            fault(sim)
        session = run_runtime(
            sim,
            agents,
            rest,
            duration=duration,
            sink=sink,
            during=(lambda rt: during(sim, rt)) if during is not None else None,
        )
        sent = {a.symbol: sim.sent_ticks(a.symbol) for a in settings_.agents}
    sink.close()
    bars = warehouse.query("SELECT * FROM live_bars ORDER BY symbol, ts")
    return Stored(session, bars, sent)


def synthetic_span(bars: pd.DataFrame, symbol: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(stored bars of symbol, synthetic bars over the same span)."""
    got = bars[bars["symbol"] == symbol].reset_index(drop=True)
    assert len(got) >= 10, symbol
    first, last = got["ts"].iloc[0], got["ts"].iloc[-1]
    ref = MARKET.fetch_bars(symbol, "5m", first, last + pd.Timedelta(minutes=5))
    return got, ref


def assert_synthetic(stored: Stored, skip_ts: dict[str, set[pd.Timestamp]] | None = None) -> None:
    bars = stored.bars
    assert not bars.duplicated(["symbol", "interval", "ts"]).any()
    for symbol in bars["symbol"].unique():
        got, ref = synthetic_span(bars, symbol)
        skip = (skip_ts or {}).get(symbol, set())
        assert list(got["ts"]) == list(ref["ts"]), f"{symbol}: missing or extra bars"
        keep = ~got["ts"].isin(skip)
        cols = ["open", "high", "low", "close"]
        np.testing.assert_array_equal(got.loc[keep, cols], ref.loc[keep, cols], err_msg=symbol)
        np.testing.assert_array_equal(
            got.loc[keep, "volume"].astype(float), ref.loc[keep, "volume"], err_msg=symbol
        )
    assert set(bars["symbol"]) == {"AAPL.US", "EURUSD.FOREX", "BTC-USD.CC"}


def test_no_fault_stores_the_synthetic_bars(tmp_path: Path, settings_: Settings, rest: Any) -> None:
    stored = stream_with_fault(tmp_path, settings_, rest, None)
    assert_synthetic(stored)
    status = stored.session.runtime.status()
    assert status.reconnects == 0 and status.late_ticks == 0
    assert (stored.bars["closed_by"] == "tick").sum() >= 0.8 * len(stored.bars)


def test_dropped_connections_reconnect_and_rest_backfill_the_bars(
    tmp_path: Path, settings_: Settings, rest: Any
) -> None:
    stored = stream_with_fault(
        tmp_path, settings_, rest, lambda sim: sim.drop_connection(400, every=True)
    )
    status = stored.session.runtime.status()
    assert status.reconnects >= 2, status
    assert status.rest_bars > 3  # the gaps came from REST, as whole bars
    assert status.repair_failures == 0
    assert_synthetic(stored)
    assert (stored.bars["n_ticks"] == 0).sum() > 3


def test_duplicate_ticks_leave_the_bars_unchanged(
    tmp_path: Path, settings_: Settings, rest: Any
) -> None:
    stored = stream_with_fault(tmp_path, settings_, rest, lambda sim: sim.duplicate(0.2))
    assert stored.session.runtime.status().duplicate_ticks > 50
    assert_synthetic(stored)


def test_malformed_frames_leave_the_bars_unchanged(
    tmp_path: Path, settings_: Settings, rest: Any
) -> None:
    stored = stream_with_fault(tmp_path, settings_, rest, lambda sim: sim.malformed(0.1))
    assert stored.session.runtime.status().bad_frames > 50
    assert_synthetic(stored)


def test_out_of_order_ticks_only_lose_the_ticks_that_cross_a_bar(
    tmp_path: Path, settings_: Settings, rest: Any
) -> None:
    stored = stream_with_fault(tmp_path, settings_, rest, lambda sim: sim.out_of_order(0.15))
    bar_ms = 300_000
    touched: dict[str, set[pd.Timestamp]] = {}
    crossing_total = 0
    for symbol, sent in stored.sent.items():
        swaps = [(a, b) for a, b in itertools.pairwise(sent) if b.ts_ms < a.ts_ms]
        crossing = [b for a, b in swaps if a.ts_ms // bar_ms != b.ts_ms // bar_ms]
        crossing_total += len(crossing)
        touched[symbol] = {
            pd.Timestamp(t.ts_ms // bar_ms * bar_ms, unit="ms", tz="UTC") for t in crossing
        }
        # a bar a crossing tick belonged to is the bar of the ticks that were merged
        late = {t.ts_ms for t in crossing}
        got = stored.bars[stored.bars["symbol"] == symbol].set_index("ts")
        kept = sorted((t.ts_ms, t.price, t.size) for t in sent if t.ts_ms not in late)
        expected = aggregate_ticks(
            np.array([k[0] for k in kept]),
            np.array([k[1] for k in kept]),
            np.array([k[2] for k in kept]),
            300,
        ).set_index("ts")
        for ts in touched[symbol] & set(got.index):
            if got.at[ts, "n_ticks"] > 0:
                assert got.loc[ts, "close"] == expected.loc[ts, "close"]
                assert got.loc[ts, "high"] == expected.loc[ts, "high"]
    status = stored.session.runtime.status()
    assert status.late_ticks <= crossing_total
    assert_synthetic(stored, skip_ts=touched)


def test_silence_flushes_the_quiet_bar_and_streaming_resumes(
    tmp_path: Path, settings_: Settings, rest: Any
) -> None:
    state: dict[str, int] = {}

    def during(sim: WsSimulator, rt: LiveRuntime) -> None:
        if rt.router.bars >= 20 and "at" not in state:
            state["at"] = sim.now_ms()
            sim.silence(1.8)  # 90 minutes of market time at x3000 (grace: 0.75 s)

    stored = stream_with_fault(tmp_path, settings_, rest, None, during=during, duration=4.0)
    assert "at" in state
    bars = stored.bars
    assert not bars.duplicated(["symbol", "interval", "ts"]).any()
    # the bars open when the feed went quiet were closed by the time flush
    flushed = bars[(bars["closed_by"] == "flush") & (bars["n_ticks"] > 0)]
    assert len(flushed) >= 2
    assert stored.session.runtime.status().late_ticks == 0
    # every bar built from ticks is the bar of the ticks that were sent (the silence
    # skipped ticks: the market was quiet for the client), streaming resumed after it
    for symbol, sent in stored.sent.items():
        got = bars[(bars["symbol"] == symbol) & (bars["n_ticks"] > 0)].set_index("ts")
        ordered = sorted(sent, key=lambda t: t.ts_ms)
        expected = aggregate_ticks(
            np.array([t.ts_ms for t in ordered]),
            np.array([t.price for t in ordered]),
            np.array([t.size for t in ordered]),
            300,
        ).set_index("ts")
        first_live = got.index.min()
        np.testing.assert_array_equal(
            got[["open", "high", "low", "close"]],
            expected.loc[got.index, ["open", "high", "low", "close"]],
            err_msg=symbol,
        )
        assert first_live is not None
        assert got.index.max() > pd.Timestamp(state["at"] * 1000, unit="us", tz="UTC") + (
            pd.Timedelta(minutes=30)
        )


def test_a_set_shutdown_event_stops_the_runtime(settings_: Settings, rest: Any) -> None:
    agents = warmed_agents(settings_, OPEN, days=3)
    with WsSimulator(seed=7, speed=3000, start=OPEN, tokens=["demo-sim"]) as sim:
        runtime = LiveRuntime(
            agents,
            interval="5m",
            sink=lambda agent, step: None,
            ws_url=sim.ws_url,
            token="demo-sim",
            fetch_bars=rest_fetcher(rest, "5m"),
            clock_ms=sim.now_ms,
            clock_rate=3000,
            grace_seconds=750,
        )

        async def main() -> None:
            asyncio.get_running_loop().call_later(1.0, SHUTDOWN.set)
            await runtime.run(duration=20, stop=SHUTDOWN)

        try:
            began = datetime.now(UTC)
            asyncio.run(main())
            took = (datetime.now(UTC) - began).total_seconds()
        finally:
            SHUTDOWN.clear()
    assert took < 5
    assert not runtime.running and runtime.router.bars > 0
