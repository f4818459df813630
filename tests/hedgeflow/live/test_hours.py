"""Regular-session hours on the live path (DESIGN.md convention 8), through real sockets:
the WsSimulator streams AAPL's pre-market and after-hours trades with EODHD's ``ms``
field; the runtime keeps them out of the bars unless ``extended_hours`` is on, and no
bar opens after the close (2025-11-28 closes early, 13:00 ET = 18:00 UTC)."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from hedgeflow.config import Settings, load_settings
from hedgeflow.live.agent import LiveAgent, LiveStep
from hedgeflow.live.hours import SessionFilter
from hedgeflow.live.rest import rest_fetcher
from hedgeflow.live.runtime import LiveRuntime
from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.sources.tick import Tick
from hedgeflow.sources.ws_format import parse_frame, render_tick
from hedgeflow.sources.ws_simulator import WsSimulator

MARKET = SyntheticMarket(7)
START = datetime(2025, 11, 28, 17, 0, tzinfo=UTC)  # an hour before the early close
CLOSE = pd.Timestamp("2025-11-28 18:00", tz="UTC")
END = datetime(2025, 11, 29, 1, 0, tzinfo=UTC)  # 20:00 ET: the end of after-hours
SPEED = 12000.0  # the 8 hours from START to END in 2.4 s


def test_ms_round_trips_through_the_us_frame() -> None:
    tick = Tick("AAPL.US", 1_764_352_800_000, 227.5, 10.0, math.nan, math.nan, "us", "after-hours")
    frame = render_tick("us", tick)
    assert json.loads(frame)["ms"] == "after-hours"
    parsed = parse_frame("us", frame, {"AAPL": "AAPL.US"})
    assert isinstance(parsed, Tick) and parsed.ms == "after-hours"
    # a frame without ms parses with no status; a regular tick renders as "market"
    bare = parse_frame(
        "us", '{"s": "AAPL", "p": 1.5, "v": 1, "t": 1764352800000}', {"AAPL": "AAPL.US"}
    )
    assert isinstance(bare, Tick) and bare.ms == ""
    assert json.loads(render_tick("us", bare))["ms"] == "market"


def test_the_session_filter_uses_ms_and_the_calendar() -> None:
    f = SessionFilter(["AAPL.US", "BTC-USD.CC"])
    in_session = int(pd.Timestamp("2025-11-28 17:30", tz="UTC").value // 10**6)
    after_close = int(pd.Timestamp("2025-11-28 18:10", tz="UTC").value // 10**6)
    christmas = int(pd.Timestamp("2025-12-25 15:00", tz="UTC").value // 10**6)
    assert f.admit(Tick("AAPL.US", in_session, 1.0, 1.0, feed="us", ms="market"))
    assert f.admit(Tick("AAPL.US", in_session, 1.0, 1.0, feed="us"))  # no ms: the calendar
    assert not f.admit(Tick("AAPL.US", in_session, 1.0, 1.0, feed="us", ms="pre-market"))
    # after the (early) close and on a holiday, even when the feed says "market"
    assert not f.admit(Tick("AAPL.US", after_close, 1.0, 1.0, feed="us", ms="market"))
    assert not f.admit(Tick("AAPL.US", christmas, 1.0, 1.0, feed="us-quote"))
    assert f.admit(Tick("BTC-USD.CC", christmas, 1.0, 1.0, feed="crypto"))
    assert f.dropped == 3 and f.dropped_by_symbol == {"AAPL.US": 3}
    assert SessionFilter(["AAPL.US"], extended_hours=True).admit(
        Tick("AAPL.US", after_close, 1.0, 1.0, feed="us", ms="after-hours")
    )


def test_the_simulator_streams_extended_hours_with_ms() -> None:
    ticks, status = MARKET.extended_ticks("AAPL.US", START - timedelta(hours=12), END)
    ts = pd.to_datetime(ticks.ts_ms, unit="ms", utc=True)
    assert set(status) == {"pre-market", "after-hours"}
    assert all(ts[status == "after-hours"] >= CLOSE)
    assert all(ts[status == "pre-market"] < pd.Timestamp("2025-11-28 14:30", tz="UTC"))
    assert all(ts[status == "pre-market"] >= pd.Timestamp("2025-11-27 09:00", tz="UTC"))
    # none on a holiday, none for crypto
    # (24 Dec's after-hours end at 01:00 UTC on the 25th, 26 Dec's pre-market opens at 09:00)
    christmas = datetime(2025, 12, 25, 2, tzinfo=UTC)
    assert len(MARKET.extended_ticks("AAPL.US", christmas, christmas + timedelta(days=1))[0]) == 0
    assert len(MARKET.extended_ticks("BTC-USD.CC", START, END)[0]) == 0


@pytest.fixture(scope="module")
def settings_() -> Settings:
    return load_settings(env={})


def _run(
    settings_: Settings, extended_hours: bool
) -> tuple[list[LiveStep], LiveRuntime, WsSimulator]:
    spec = next(a for a in settings_.agents if a.symbol == "AAPL.US")
    agent = LiveAgent.from_settings(spec, settings_.costs_for(spec), 100_000.0, "5m")
    agent.warm_up(MARKET.fetch_bars("AAPL.US", "5m", START - timedelta(days=10), START))
    steps: list[LiveStep] = []
    # paced (not speed 0): at speed 0 the simulator's clock is the latest tick *sent*,
    # which runs minutes ahead of the ticks still in the socket, and the time flush then
    # closes bars before their last ticks arrive
    sim = WsSimulator(seed=7, speed=SPEED, start=START, end=END, tokens=["demo-sim"])
    with sim:
        runtime = LiveRuntime(
            [agent],
            interval="5m",
            sink=lambda _agent, step: steps.append(step),
            ws_url=sim.ws_url,
            token="demo-sim",
            clock_ms=sim.now_ms,
            clock_rate=sim.speed,
            grace_seconds=0.75 * sim.speed,  # 0.75 wall seconds, as the runtime tests
            extended_hours=extended_hours,
            # a reconnect on a loaded machine is repaired from REST (regular-session bars)
            fetch_bars=rest_fetcher(MARKET, "5m"),
        )

        async def main() -> None:
            async def watch() -> None:
                # every tick sent has reached the runtime (into bars or dropped)
                while not (
                    sim.exhausted("AAPL.US")
                    and runtime.status().ticks + runtime.hours.dropped
                    == len(sim.sent_ticks("AAPL.US"))
                    and runtime.gaps.pending == 0  # the connect's repair is over
                ):
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.2)  # time flushes every 0.02 s
                runtime.stop()

            watcher = asyncio.create_task(watch())
            await runtime.run(duration=60.0)
            watcher.cancel()

        asyncio.run(main())
    return steps, runtime, sim


def test_no_live_bar_after_the_close_and_extended_trades_kept_out(settings_: Settings) -> None:
    steps, runtime, sim = _run(settings_, extended_hours=False)
    sent = sim.sent_ticks("AAPL.US")
    after = [t for t in sent if t.ms == "after-hours"]
    assert len(after) > 50, "the simulator streamed after-hours trades"
    assert all(pd.Timestamp(t.ts_ms, unit="ms", tz="UTC") >= CLOSE for t in after)
    got = pd.DatetimeIndex([s.ts for s in steps if s.bar is not None])
    # every regular bar of the last session hour, the last one at 17:55, none after
    expected = MARKET.fetch_bars("AAPL.US", "5m", START, END)
    assert list(got) == list(expected["ts"]), runtime.status()
    assert got.max() == pd.Timestamp("2025-11-28 17:55", tz="UTC")
    closes = [s.close for s in steps if s.bar is not None]
    assert closes == list(expected["close"])
    assert runtime.hours.dropped >= len(after)  # (a resend after a reconnect counts twice)


def test_extended_hours_setting_includes_them(settings_: Settings) -> None:
    steps, runtime, _ = _run(settings_, extended_hours=True)
    got = pd.DatetimeIndex([s.ts for s in steps if s.bar is not None])
    assert got.max() > CLOSE + pd.Timedelta(hours=6)
    assert (got >= CLOSE).sum() > 30
    assert runtime.hours.dropped == 0


def test_the_extended_hours_setting() -> None:
    from hedgeflow.config import ConfigError

    assert load_settings(env={}).live.extended_hours is False
    on = load_settings(env={"HEDGEFLOW_LIVE__EXTENDED_HOURS": "true"})
    assert on.live.extended_hours is True
    with pytest.raises(ConfigError, match=r"live\.extended_hours"):
        load_settings(env={"HEDGEFLOW_LIVE__EXTENDED_HOURS": "maybe"})
