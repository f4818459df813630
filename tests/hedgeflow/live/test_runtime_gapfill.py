"""The REST gap-fill after a reconnect when REST fails (hedgeflow.live.gapfill,
``GapRepair._fetch`` / ``_repair``), through real sockets: WsSimulator ->
EodhdWsClient -> LiveRuntime, one crypto agent, the connection dropped once; the REST
fetcher (the synthetic market) fails on chosen calls after the reconnect.

* fails once: the same range is fetched again after a backoff, the gap's bars come from
  REST, every bar arrives once, in order; one warning, no repair failure;
* keeps failing: three attempts (three warnings), then "the gap stays" - counted in
  ``repair_failures``, the missing bars are exactly the failed range, the live bars held
  meanwhile are released in order and streaming goes on.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from hedgeflow.config import load_settings
from hedgeflow.errors import PermanentSourceError, TransientSourceError
from hedgeflow.live.agent import LiveAgent, LiveStep
from hedgeflow.live.aggregator import Bar
from hedgeflow.live.rest import rest_fetcher
from hedgeflow.live.runtime import LiveRuntime
from hedgeflow.live.status import RuntimeStatus
from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.sources.tick import Tick
from hedgeflow.sources.ws_simulator import WsSimulator

OPEN = datetime(2024, 9, 3, 13, 30, tzinfo=UTC)
MARKET = SyntheticMarket(7)
SYMBOL = "BTC-USD.CC"
SPEED = 3000.0
LOGGER = "hedgeflow.live.gapfill"
BAR_MS = 300_000


@dataclass
class Call:
    at: float  # time.monotonic()
    clock_ms: int  # the feed clock
    start_ms: int
    end_ms: int
    after_reconnect: bool
    failed: bool


@dataclass
class Run:
    runtime: LiveRuntime
    status: RuntimeStatus
    steps: list[LiveStep]
    calls: list[Call]
    sent: list[Tick]  # the ticks the simulator sent

    @property
    def after(self) -> list[Call]:
        return [c for c in self.calls if c.after_reconnect]


class FullJitter(random.Random):
    """The client's reconnect backoff without jitter: always the ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def crypto_agent() -> LiveAgent:
    settings = load_settings(env={})
    (a,) = [a for a in settings.agents if a.symbol == SYMBOL]
    agent = LiveAgent.from_settings(a, settings.costs_for(a), 100_000.0, "5m")
    agent.warm_up(MARKET.fetch_bars(SYMBOL, "5m", OPEN - timedelta(days=2), OPEN))
    return agent


def run_with_flaky_rest(
    fail: Callable[[int], bool],
    bars_after: int = 6,
    error: Exception | None = None,
    quiet_after_drop: float = 0.0,
) -> Run:
    """Stream; drop the connection once after 6 bars; the n-th REST call after the
    reconnect (n = 0, 1, ...) raises when ``fail(n)``. Stops once the repair is over
    and ``bars_after`` more bars came. ``quiet_after_drop``: the market goes quiet for
    that many wall seconds from the drop (the client reconnects after 0.3 s, then sees
    no tick until the quiet ends)."""
    steps: list[LiveStep] = []
    calls: list[Call] = []
    fetch = rest_fetcher(MARKET, "5m")
    holder: list[LiveRuntime] = []
    options: dict[str, Any] = {"backoff_initial": 0.02, "backoff_max": 0.05}
    grace = 0.75 * SPEED
    if quiet_after_drop:
        options = {"backoff_initial": 0.3, "backoff_max": 0.3, "rng": FullJitter()}
        grace = 0.25 * SPEED  # the repair's first fetch comes sooner

    with WsSimulator(seed=7, speed=SPEED, start=OPEN, tokens=["demo-sim"]) as sim:

        def flaky(symbol: str, start_ms: int, end_ms: int) -> Sequence[Bar]:
            assert symbol == SYMBOL
            reconnected = sum(c.stats.reconnects for c in holder[0].clients) > 0
            n = sum(c.after_reconnect for c in calls)
            failed = reconnected and fail(n)
            calls.append(
                Call(time.monotonic(), sim.now_ms(), start_ms, end_ms, reconnected, failed)
            )
            if failed:
                raise error or TransientSourceError("HTTP 503 (injected)")
            return fetch(symbol, start_ms, end_ms)

        runtime = LiveRuntime(
            [crypto_agent()],
            interval="5m",
            sink=lambda agent, step: steps.append(step),
            ws_url=sim.ws_url,
            token="demo-sim",
            fetch_bars=flaky,
            clock_ms=sim.now_ms,
            clock_rate=SPEED,
            grace_seconds=grace,
            client_options=options,
        )
        holder.append(runtime)

        async def main() -> RuntimeStatus:
            state: dict[str, int] = {}

            async def drive() -> None:
                while runtime.running or not runtime.clients:
                    status = runtime.status()
                    if "drop" not in state and status.bars >= 6:
                        state["drop"] = status.bars
                        sim.drop_connection(1)  # the next tick frame drops the connection
                    if (
                        quiet_after_drop
                        and "quiet" not in state
                        and sum(c.stats.disconnects for c in runtime.clients) > 0
                    ):
                        state["quiet"] = 1
                        sim.silence(quiet_after_drop)
                    if (
                        status.reconnects >= 1
                        and status.repairs >= 2
                        and status.repairs_pending == 0
                        and "repaired" not in state
                    ):
                        state["repaired"] = status.bars
                    if "repaired" in state and status.bars >= state["repaired"] + bars_after:
                        runtime.stop()
                        return
                    await asyncio.sleep(0.005)

            driver = asyncio.create_task(drive())
            try:
                return await runtime.run(duration=20.0)
            finally:
                driver.cancel()

        status = asyncio.run(main())
        sent = sim.sent_ticks(SYMBOL)
    return Run(runtime, status, steps, calls, sent)


def synthetic(first: pd.Timestamp, last: pd.Timestamp) -> pd.DataFrame:
    return MARKET.fetch_bars(SYMBOL, "5m", first, last + pd.Timedelta(minutes=5))


def iso(ms: int) -> str:
    return pd.Timestamp(ms * 1000, unit="us", tz="UTC").isoformat()


def test_a_failed_gap_fill_is_retried_and_the_gap_bars_come_from_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    run = run_with_flaky_rest(lambda n: n == 0)  # the first call after the reconnect fails
    status = run.status
    assert status.reconnects == 1 and status.repairs == 2  # startup catch-up + reconnect
    assert status.repair_failures == 0 and status.repairs_pending == 0
    first, retry = run.after[:2]
    assert first.failed and not retry.failed
    assert (retry.start_ms, retry.end_ms) == (first.start_ms, first.end_ms)  # the same range
    assert retry.at - first.at >= 0.45  # after the first backoff (0.5 s)
    gap = set(range(first.start_ms, first.end_ms, BAR_MS))
    assert gap, "the failed range holds no bar"
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert warnings == [
        f"live: REST bars of {SYMBOL} [{iso(first.start_ms)}, {iso(first.end_ms)}) failed "
        "(attempt 1 of 3): TransientSourceError: HTTP 503 (injected)"
    ]
    # every bar once, in order, equal to the synthetic bars; the gap's bars from REST
    ts = [s.ts for s in run.steps]
    ref = synthetic(ts[0], ts[-1])
    assert ts == list(ref["ts"])
    assert [s.bar.close for s in run.steps] == list(ref["close"])
    from_rest = {s.bar.ts_ms for s in run.steps if s.bar.n_ticks == 0}
    assert gap <= from_rest


@pytest.mark.parametrize(
    ("error", "attempts"),
    [
        (TransientSourceError("HTTP 503 (injected)"), 3),
        # a permanent error is not retried: one attempt, then the same outcome
        (PermanentSourceError("EODHD rejected the API token (HTTP 401)"), 1),
    ],
    ids=["transient", "permanent"],
)
def test_a_gap_fill_that_keeps_failing_is_logged_counted_and_the_gap_stays(
    caplog: pytest.LogCaptureFixture, error: Exception, attempts: int
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    run = run_with_flaky_rest(lambda n: True, error=error)  # every call after the reconnect
    status = run.status
    assert status.reconnects == 1 and status.repairs == 2
    assert status.repair_failures == 1 and status.repairs_pending == 0
    # the attempts at the same range, then the repair gives up
    after = run.after
    assert len(after) == attempts and all(c.failed for c in after)
    assert len({(c.start_ms, c.end_ms) for c in after}) == 1
    start, end = after[0].start_ms, after[0].end_ms
    waits = [b.at - a.at for a, b in itertools.pairwise(after)]
    assert all(w >= 0.5 * 2**i - 0.05 for i, w in enumerate(waits))  # backoff 0.5 s, 1 s
    records = [r for r in caplog.records if r.name == LOGGER]
    assert [r.getMessage() for r in records] == [
        *(
            f"live: REST bars of {SYMBOL} [{iso(start)}, {iso(end)}) failed "
            f"(attempt {i} of 3): {type(error).__name__}: {error}"
            for i in range(1, attempts + 1)
        ),
        f"live: could not fetch the bars of {SYMBOL} from {iso(start)} from REST; the gap stays",
    ]
    # the give-up follows the last failed attempt (no backoff after it)
    assert records[-1].created - records[-2].created < 0.5
    # the whole gap stays: from the failed range's start up to the bar of the first tick
    # after the reconnect (the failed call may have covered only its first bars, those
    # closed by then); the live bars held meanwhile were released in order and
    # streaming went on after the gap
    ts = [s.ts for s in run.steps]
    ref = synthetic(ts[0], ts[-1])
    missing = sorted({t.value // 1_000_000 for t in ref["ts"]} - {s.bar.ts_ms for s in run.steps})
    assert missing[: (end - start) // BAR_MS] == list(range(start, end, BAR_MS))
    assert missing == list(range(start, missing[-1] + BAR_MS, BAR_MS))  # one run of bars
    assert len(missing) <= 4  # the first tick came at most a few bars after the drop
    assert status.skipped_ticks > 0  # the gap's ticks after the reconnect were not used
    kept = ref[~ref["ts"].isin([pd.Timestamp(m * 1000, unit="us", tz="UTC") for m in missing])]
    assert ts == list(kept["ts"])
    assert [s.bar.close for s in run.steps] == list(kept["close"])
    assert sum(s.bar.ts_ms >= end for s in run.steps) >= 6


def test_a_failed_gap_fill_before_any_tick_does_not_release_the_partly_seen_bar(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A quiet market after the reconnect: the repair gives up before the first tick
    (the gap's end is not known yet). The bar open when the connection dropped was only
    partly seen: it must not reach the agents as if complete (it did before the fix)."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    run = run_with_flaky_rest(lambda n: True, quiet_after_drop=4.0)
    status = run.status
    assert status.reconnects == 1 and status.repair_failures == 1
    after = run.after
    assert len(after) == 3 and all(c.failed for c in after)
    start, end = after[0].start_ms, after[0].end_ms
    assert end - start == BAR_MS  # the bar open at the drop: closed, fetched, failed
    # the path under test: no tick reached the client between the drop and the give-up
    drop_bar_end = start + BAR_MS
    resumed = min(t.ts_ms for t in run.sent if t.ts_ms >= drop_bar_end)
    assert resumed > after[-1].clock_ms
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER][-1] == (
        f"live: could not fetch the bars of {SYMBOL} from {iso(start)} from REST; the gap stays"
    )
    # the partly seen bar is not among the bars the agent got; every bar before it is
    # the synthetic bar, and streaming resumed after the quiet market
    got = {s.bar.ts_ms: s for s in run.steps}
    assert start not in got
    ts = [s.ts for s in run.steps]
    assert ts == sorted(set(ts))
    ref = synthetic(ts[0], ts[-1]).set_index("ts")
    before = [s for s in run.steps if s.bar.ts_ms < start]
    assert len(before) >= 6
    for step in before:
        bar, expected = step.bar, ref.loc[step.ts]
        assert (bar.open, bar.high, bar.low, bar.close) == (
            expected["open"],
            expected["high"],
            expected["low"],
            expected["close"],
        ), step.ts
    later = [s for s in run.steps if s.bar.ts_ms > start]
    assert len(later) >= 6 and later[0].bar.ts_ms >= resumed - resumed % BAR_MS
    for step in later[1:]:  # (the first one lacks the ticks of the quiet time)
        assert step.bar.close == ref.loc[step.ts, "close"], step.ts
