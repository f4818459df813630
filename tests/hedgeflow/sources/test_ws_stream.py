"""The live data path through real sockets: WsSimulator -> EodhdWsClient -> BarAggregator."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hedgeflow.errors import InvalidInputError, PermanentSourceError, TransientSourceError
from hedgeflow.live.aggregator import Bar, BarAggregator, bars_to_frame
from hedgeflow.sources.eodhd_ws import EodhdWsClient
from hedgeflow.sources.faults import FaultPlan
from hedgeflow.sources.synthetic import SyntheticMarket, aggregate_ticks
from hedgeflow.sources.tick import Tick
from hedgeflow.sources.ws_format import StatusFrame
from hedgeflow.sources.ws_simulator import WsSimulator

TOKEN = "tok-S3cret-9f2c"
DAY = datetime(2024, 9, 3, tzinfo=UTC)  # a Tuesday
BTC = "BTC-USD.CC"
ETH = "ETH-USD.CC"


class Run:
    """A client session's output: ticks received, bars closed, backfill calls."""

    def __init__(self, interval: int = 300, grace: float = 30) -> None:
        self.ticks: list[Tick] = []
        self.agg = BarAggregator(interval, grace)
        self.bars: list[Bar] = []
        self.backfills: list[tuple[str, int, int, int]] = []  # symbol, from, to, ticks so far
        self.statuses: list[StatusFrame] = []
        self.client: EodhdWsClient | None = None

    def on_tick(self, tick: Tick) -> None:
        self.ticks.append(tick)
        self.bars += self.agg.add(tick)

    def backfill(self, symbol: str, from_ms: int, to_ms: int) -> None:
        self.backfills.append((symbol, from_ms, to_ms, len(self.ticks)))

    def all_bars(self) -> pd.DataFrame:
        """Closed bars plus the bars still open at the end (closed now)."""
        self.bars += self.agg.close_all()
        return bars_to_frame(self.bars)


def stream(
    sim: WsSimulator,
    feed: str,
    symbols: list[str],
    until: Callable[[Run], bool],
    *,
    run: Run | None = None,
    timeout: float = 15.0,
    during: Callable[[Run], Any] | None = None,
    **client_kw: Any,
) -> Run:
    """Run a client against ``sim`` until ``until(run)`` holds (checked every few ms)."""
    run = run or Run()

    async def main() -> None:
        settings: dict[str, Any] = {
            "rng": random.Random(1),
            "backoff_initial": 0.02,
            "backoff_max": 0.05,
            "backfill": run.backfill,
            "clock_ms": sim.now_ms,
        }
        settings.update(client_kw)
        client = EodhdWsClient(
            feed, symbols, TOKEN, sim.ws_url, run.on_tick, run.statuses.append, **settings
        )
        run.client = client
        loop = asyncio.get_running_loop()

        async def watch() -> None:
            deadline = loop.time() + timeout
            while not until(run):
                assert loop.time() < deadline, f"timed out; stats {client.stats}"
                if during is not None:
                    step = during(run)
                    if asyncio.iscoroutine(step):
                        await step
                await asyncio.sleep(0.003)
            client.stop()

        watcher = asyncio.create_task(watch())
        await client.run(duration=timeout + 2)
        await watcher

    asyncio.run(main())
    return run


def drained(sim: WsSimulator, *symbols: str) -> Callable[[Run], bool]:
    """Speed 0: every tick before ``end`` was sent and every tick sent was received."""

    def check(run: Run) -> bool:
        sent = sum(len(sim.sent_ticks(s)) for s in symbols)
        return all(sim.exhausted(s) for s in symbols) and len(run.ticks) >= sent

    return check


def keys(ticks: list[Tick]) -> list[tuple]:
    return [t.key()[:4] for t in ticks]  # symbol, ts, price, size


def bars_of(ticks: list[Tick], interval: int = 300) -> pd.DataFrame:
    ordered = sorted(ticks, key=lambda t: t.ts_ms)
    return aggregate_ticks(
        np.array([t.ts_ms for t in ordered], dtype="int64"),
        np.array([t.price for t in ordered]),
        np.array([t.size for t in ordered]),
        interval,
    )


# -- the full path, one symbol per feed -------------------------------------------------------


@pytest.mark.parametrize(
    ("feed", "symbol", "start_hour"),
    [("us", "AAPL.US", 13), ("forex", "EURUSD.FOREX", 0), ("crypto", BTC, 0)],
)
def test_full_path_rebuilds_the_synthetic_bars(feed: str, symbol: str, start_hour: int) -> None:
    start = DAY + timedelta(hours=start_hour)
    end = start + timedelta(hours=3)
    # regular-session trades only (extended hours: tests/hedgeflow/live/test_hours.py)
    with WsSimulator(seed=7, speed=0, start=start, end=end, extended_hours=False) as sim:
        run = stream(sim, feed, [symbol], drained(sim, symbol))
    expected = SyntheticMarket(7).fetch_bars(symbol, "5m", start, end)
    assert len(expected) > 20
    pd.testing.assert_frame_equal(run.all_bars(), expected)
    assert keys(run.ticks) == keys(sim.sent_ticks(symbol))
    assert run.statuses == [StatusFrame(200, "Authorized", False)]
    assert run.client is not None and run.client.stats.bad_total == 0


def test_full_path_us_quotes_bar_the_mid() -> None:
    start, end = DAY + timedelta(hours=14), DAY + timedelta(hours=16)
    with WsSimulator(seed=7, speed=0, start=start, end=end) as sim:
        run = stream(sim, "us-quote", ["AAPL.US"], drained(sim, "AAPL.US"))
        sent = sim.sent_ticks("AAPL.US")
    assert [t.key() for t in run.ticks] == [t.key() for t in sent]
    assert all(t.bid < t.price < t.ask and t.feed == "us-quote" for t in run.ticks)
    got = run.all_bars()
    pd.testing.assert_frame_equal(got, bars_of(sent))
    rest = SyntheticMarket(7).fetch_bars("AAPL.US", "5m", start, end)
    assert np.array_equal(got["ts"].to_numpy(), rest["ts"].to_numpy())
    assert np.allclose(got["close"], rest["close"], rtol=0, atol=1e-9)
    assert got["volume"].isna().all()


def test_two_symbols_share_a_connection() -> None:
    start, end = DAY, DAY + timedelta(hours=2)
    with WsSimulator(seed=3, speed=0, start=start, end=end) as sim:
        run = stream(sim, "crypto", [BTC, ETH], drained(sim, BTC, ETH))
    frame = run.all_bars()
    assert run.agg.stats.late_ticks == 0
    by_symbol = {s: [t for t in run.ticks if t.symbol == s] for s in (BTC, ETH)}
    market = SyntheticMarket(3)
    for symbol, ticks in by_symbol.items():
        pd.testing.assert_frame_equal(bars_of(ticks), market.fetch_bars(symbol, "5m", start, end))
    assert len(frame) == sum(len(market.fetch_bars(s, "5m", start, end)) for s in (BTC, ETH))


# -- faults --------------------------------------------------------------------------------------


def test_dropped_connections_reconnect_resubscribe_and_backfill_the_gap() -> None:
    start = DAY
    with WsSimulator(seed=7, speed=3000, start=start) as sim:
        sim.drop_connection(30, every=True)
        run = stream(sim, "crypto", [BTC], lambda r: len(r.backfills) >= 3 and len(r.ticks) >= 110)
        sent = sim.sent_ticks(BTC)
        subscriptions = list(sim.subscription_log)
    client = run.client
    assert client is not None
    assert client.stats.reconnects >= 3 and client.stats.disconnects >= 3
    # Resubscribed on every connection.
    assert [(a, s) for _, a, s in subscriptions] == [("subscribe", (BTC,))] * len(subscriptions)
    assert len({conn for conn, _, _ in subscriptions}) == len(subscriptions) >= 4
    # Every tick the server sent arrived (in order), none invented.
    assert keys(run.ticks) == keys(sent[: len(run.ticks)])
    # Each backfill covers exactly the gap: from the last tick before the drop to the
    # reconnect time, which is no later than the first tick after it.
    received = {t.ts_ms for t in run.ticks}
    synthetic = SyntheticMarket(7).ticks(BTC, start, start + timedelta(days=2)).ts_ms.tolist()
    gap_ticks = 0
    for symbol, from_ms, to_ms, n_before in run.backfills:
        assert symbol == BTC
        assert from_ms == run.ticks[n_before - 1].ts_ms
        assert from_ms < to_ms
        if n_before < len(run.ticks):
            first_after = run.ticks[n_before].ts_ms
            assert to_ms <= first_after
            missed = [t for t in synthetic if from_ms < t < first_after]
            assert not received.intersection(missed)
            gap_ticks += len([t for t in missed if t < to_ms])
    assert gap_ticks > 0  # the gaps are real at speed 3000
    # Outside the gaps nothing was missed.
    lo, hi = run.ticks[0].ts_ms, run.ticks[-1].ts_ms
    gaps = [(f, run.ticks[n].ts_ms) for _, f, _, n in run.backfills if n < len(run.ticks)]
    for t in synthetic:
        if lo <= t <= hi and t not in received:
            assert any(f < t < a for f, a in gaps), t
    assert client.stats.backfills == len(run.backfills)


def test_drops_at_full_speed_lose_nothing_and_keep_the_bars() -> None:
    start, end = DAY, DAY + timedelta(hours=3)
    with WsSimulator(seed=7, speed=0, start=start, end=end, faults=FaultPlan()) as sim:
        sim.drop_connection(100, every=True, abrupt=False)
        run = stream(sim, "crypto", [BTC], drained(sim, BTC))
    assert run.client is not None and run.client.stats.reconnects >= 5
    pd.testing.assert_frame_equal(
        run.all_bars(), SyntheticMarket(7).fetch_bars(BTC, "5m", start, end)
    )
    assert all(f <= t for _, f, t, _ in run.backfills)


def test_duplicates_are_counted_and_bars_unchanged() -> None:
    start, end = DAY, DAY + timedelta(hours=3)
    with WsSimulator(seed=7, speed=0, start=start, end=end) as sim:
        sim.duplicate(0.2)
        run = stream(sim, "forex", ["EURUSD.FOREX"], drained(sim, "EURUSD.FOREX"))
        dupes = sim.faults_injected("duplicate")
    assert len(dupes) > 50
    assert run.agg.stats.duplicates == len(dupes)
    assert run.agg.stats.late_ticks == 0
    pd.testing.assert_frame_equal(
        run.all_bars(), SyntheticMarket(7).fetch_bars("EURUSD.FOREX", "5m", start, end)
    )


def test_out_of_order_inside_a_bar_keeps_the_bars() -> None:
    start, end = DAY, DAY + timedelta(hours=3)
    with WsSimulator(seed=7, speed=0, start=start, end=end) as sim:
        sim.out_of_order(0.15)
        run = stream(sim, "crypto", [BTC], drained(sim, BTC))
        sent = sim.sent_ticks(BTC)
    bar_ms = 300_000
    swaps = [(a, b) for a, b in itertools.pairwise(sent) if b.ts_ms < a.ts_ms]
    crossing = [b for a, b in swaps if a.ts_ms // bar_ms != b.ts_ms // bar_ms]
    assert len(swaps) - len(crossing) > 30  # plenty of reorders inside a bar
    # A swap across a bar boundary makes the held-back tick late: counted, not merged.
    assert run.agg.stats.late_ticks == len(crossing)
    late = {t.ts_ms for t in crossing}
    expected = bars_of([t for t in sent if t.ts_ms not in late])
    pd.testing.assert_frame_equal(run.all_bars(), expected)
    # Every bar no crossing swap touched is exactly the synthetic bar.
    rest = SyntheticMarket(7).fetch_bars(BTC, "5m", start, end)
    touched = {pd.Timestamp(t // bar_ms * bar_ms, unit="ms", tz="UTC") for t in late}
    untouched = ~rest["ts"].isin(touched)
    assert untouched.sum() >= len(rest) - len(crossing)
    got = run.all_bars()
    pd.testing.assert_frame_equal(
        got[~got["ts"].isin(touched)].reset_index(drop=True), rest[untouched].reset_index(drop=True)
    )


def test_malformed_frames_are_counted_and_bars_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    start, end = DAY, DAY + timedelta(hours=3)
    with WsSimulator(seed=7, speed=0, start=start, end=end) as sim:
        sim.malformed(0.25)
        with caplog.at_level(logging.WARNING, logger="hedgeflow.sources.eodhd_ws"):
            run = stream(sim, "crypto", [BTC], drained(sim, BTC))
        garbage = sim.faults_injected()
        sent = sim.sent_ticks(BTC)
    assert len(garbage) > 100 and all(kind.startswith("malformed:") for kind, _, _ in garbage)
    assert {kind for kind, _, _ in garbage} >= {"malformed:truncated", "malformed:nan_price"}
    stats = run.client.stats  # type: ignore[union-attr]
    assert stats.bad_total == len(garbage)
    assert len(stats.bad_frames) >= 8
    assert keys(run.ticks) == keys(sent)  # no wrong price slipped through
    pd.testing.assert_frame_equal(
        run.all_bars(), SyntheticMarket(7).fetch_bars(BTC, "5m", start, end)
    )
    # Logged, but rate limited: one line per new reason at most, not one per frame.
    lines = [r for r in caplog.records if "bad frame" in r.getMessage()]
    assert 1 <= len(lines) <= len(stats.bad_frames) + 1


def test_silence_lets_the_time_flush_close_the_bar() -> None:
    grace = 20
    state: dict[str, int] = {}

    def during(run: Run) -> None:
        run.bars += run.agg.flush(sim.now_ms())
        if len(run.ticks) >= 15 and "silenced_at" not in state:
            state["silenced_at"] = sim.now_ms()
            sim.silence(0.5)  # 300 s of simulated time at speed 600

    with WsSimulator(seed=7, speed=600, start=DAY) as sim:
        run = stream(
            sim,
            "crypto",
            [BTC],
            lambda r: len(r.ticks) >= 40 and "silenced_at" in state,
            run=Run(interval=60, grace=grace),
            during=during,
        )
        silenced = sim.faults_injected("silenced")
        sent = sim.sent_ticks(BTC)
    assert silenced, "the silence skipped no tick"
    first_silenced = silenced[0][2]
    last_before = max(t.ts_ms for t in run.ticks if t.ts_ms < first_silenced)
    bar_start = last_before // 60_000 * 60_000
    (quiet_bar,) = [b for b in run.bars if b.ts_ms == bar_start]
    assert quiet_bar.closed_by == "flush"
    assert run.agg.stats.late_ticks == 0
    assert keys(run.ticks) == keys(sent[: len(run.ticks)])
    pd.testing.assert_frame_equal(run.all_bars(), bars_of(run.ticks, 60))


def test_unsubscribe_stops_a_symbol() -> None:
    state: dict[str, Any] = {}

    async def during(run: Run) -> None:
        if len(run.ticks) >= 20 and "at" not in state:
            state["at"] = len(run.ticks)
            await run.client.unsubscribe([ETH])  # type: ignore[union-attr]
            await asyncio.sleep(0.05)
            state["eth_sent"] = len(sim.sent_ticks(ETH))

    with WsSimulator(seed=7, speed=3000, start=DAY) as sim:
        run = stream(
            sim,
            "crypto",
            [BTC, ETH],
            lambda r: "eth_sent" in state and len(r.ticks) >= state["at"] + 40,
            during=during,
        )
        eth_sent = len(sim.sent_ticks(ETH))
        log = list(sim.subscription_log)
    assert ("unsubscribe", (ETH,)) in [(a, s) for _, a, s in log]
    assert eth_sent == state["eth_sent"]
    assert run.client is not None and run.client.symbols == [BTC]
    assert all(t.symbol == BTC for t in run.ticks[state["at"] + 5 :])


# -- the token ----------------------------------------------------------------------------------


def _assert_clean(text: str) -> None:
    assert TOKEN not in text
    assert "S3cret" not in text


def test_a_bad_token_is_permanent_and_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with WsSimulator(seed=7, speed=0, start=DAY, tokens={"the-right-one"}) as sim:
        with pytest.raises(PermanentSourceError) as info:
            stream(sim, "crypto", [BTC], lambda r: False, timeout=5)
        assert sim.rejected_connections == 1
    _assert_clean(str(info.value) + repr(info.value))
    _assert_clean("".join(traceback.format_exception(info.value)))
    assert "401" in str(info.value)
    _assert_clean(caplog.text)


def test_the_token_never_appears_in_logs_exceptions_or_reprs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # websockets' loggers log request lines at DEBUG
    with WsSimulator(seed=7, speed=3000, start=DAY) as sim:
        sim.drop_connection(20, every=True)
        sim.malformed(0.2)
        run = stream(sim, "crypto", [BTC], lambda r: len(r.backfills) >= 2)
        _assert_clean(repr(sim))
    client = run.client
    assert client is not None
    _assert_clean(repr(client) + str(client.stats) + repr(client.__dict__.get("ws_url")))
    assert any("api_token=***" in r.getMessage() for r in caplog.records)  # it was there
    for record in caplog.records:
        _assert_clean(record.getMessage())
        _assert_clean(str(record.exc_text or ""))
    _assert_clean(caplog.text)

    # Connection refused, then give up: the exception is clean too.
    async def refused() -> None:
        client = EodhdWsClient(
            "crypto",
            [BTC],
            TOKEN,
            "ws://127.0.0.1:9/ws",
            backoff_initial=0.01,
            backoff_max=0.01,
            max_reconnects=2,
        )
        await client.run(duration=5)

    with pytest.raises(TransientSourceError) as info:
        asyncio.run(refused())
    _assert_clean("".join(traceback.format_exception(info.value)))

    async def bad_url() -> None:
        await EodhdWsClient("crypto", [BTC], TOKEN, "ws://127.0.0.1:99999999/ws").run(duration=5)

    with pytest.raises((InvalidInputError, TransientSourceError)) as info2:
        asyncio.run(bad_url())
    _assert_clean("".join(traceback.format_exception(info2.value)))
    _assert_clean(caplog.text)


def test_client_rejects_bad_settings() -> None:
    with pytest.raises(InvalidInputError):
        EodhdWsClient("crypto", ["AAPL.US"], TOKEN, "ws://127.0.0.1:1/ws")
    with pytest.raises(InvalidInputError):
        EodhdWsClient("crypto", [BTC], "  ", "ws://127.0.0.1:1/ws")
    with pytest.raises(InvalidInputError):
        EodhdWsClient("options", [BTC], TOKEN, "ws://127.0.0.1:1/ws")
    with pytest.raises(InvalidInputError):
        EodhdWsClient("us", [f"S{i}.US" for i in range(51)], TOKEN, "ws://127.0.0.1:1/ws")
    with pytest.raises(InvalidInputError) as info:
        EodhdWsClient("crypto", [BTC], TOKEN, "https://example.invalid/ws")
    _assert_clean(str(info.value))
