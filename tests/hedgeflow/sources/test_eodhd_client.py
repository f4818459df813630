"""The real EODHD client against the simulator, through real sockets."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from hedgeflow.columns import BAR_COLUMNS, TS_DTYPE
from hedgeflow.errors import InvalidInputError, PermanentSourceError, TransientSourceError
from hedgeflow.sources.base import bars_frame
from hedgeflow.sources.eodhd import EodhdClient, combine_chunks, plan_chunks
from hedgeflow.sources.simulator import Simulator

from .conftest import MARKET, Sleeps, utc

Factory = Callable[..., tuple[EodhdClient, Sleeps]]
START, END = utc(2024, 5, 1), utc(2024, 5, 2)
SYMBOL = "BTC-USD.CC"


def _expected() -> pd.DataFrame:
    return MARKET.fetch_bars(SYMBOL, "5m", START, END)


def test_ingest_equals_synthetic(sim: Simulator, make_client: Factory) -> None:
    client, sleeps = make_client()
    for symbol in ("AAPL.US", "EURUSD.FOREX", "BTC-USD.CC"):
        got = client.fetch_bars(symbol, "5m", utc(2024, 3, 8), utc(2024, 3, 12))
        pd.testing.assert_frame_equal(
            got, MARKET.fetch_bars(symbol, "5m", utc(2024, 3, 8), utc(2024, 3, 12))
        )
    assert len(sim.request_log) == 3 and sleeps == []
    assert all(r.status == 200 and "api_token" not in r.params for r in sim.request_log)


def test_unaligned_range(make_client: Factory) -> None:
    client, _ = make_client()
    start = pd.Timestamp("2024-05-01 10:02:30.250", tz="UTC")
    end = pd.Timestamp("2024-05-01 11:07:00", tz="UTC")
    got = client.fetch_bars(SYMBOL, "5m", start, end)
    pd.testing.assert_frame_equal(got, MARKET.fetch_bars(SYMBOL, "5m", start, end))
    assert got["ts"].iloc[0] == pd.Timestamp("2024-05-01 10:05", tz="UTC")
    assert got["ts"].iloc[-1] == pd.Timestamp("2024-05-01 11:05", tz="UTC")


def test_chunking_with_small_limit(sim: Simulator, make_client: Factory) -> None:
    client, _ = make_client(max_request_days={"5m": 3})
    got = client.fetch_bars(SYMBOL, "5m", utc(2024, 5, 1), utc(2024, 5, 11))
    pd.testing.assert_frame_equal(
        got, MARKET.fetch_bars(SYMBOL, "5m", utc(2024, 5, 1), utc(2024, 5, 11))
    )
    assert len(sim.request_log) == 4  # ceil(10 / 3)
    spans = [(int(r.params["from"]), int(r.params["to"])) for r in sim.request_log]
    assert all(b - a < 3 * 86_400 for a, b in spans)
    assert all(spans[i][1] + 1 == spans[i + 1][0] for i in range(3))


def test_chunking_at_the_real_1m_limit(sim: Simulator, make_client: Factory) -> None:
    client, _ = make_client()
    start, end = utc(2024, 1, 1), utc(2024, 5, 5)  # 125 days > 120
    got = client.fetch_bars("AAPL.US", "1m", start, end)
    pd.testing.assert_frame_equal(got, MARKET.fetch_bars("AAPL.US", "1m", start, end))
    assert len(sim.request_log) == 2
    assert all(r.status == 200 for r in sim.request_log)


def test_vendor_range_limit_is_permanent_422(sim: Simulator, make_client: Factory) -> None:
    client, sleeps = make_client(max_request_days={"1m": 200})
    with pytest.raises(PermanentSourceError, match=r"HTTP 422.*maximum period"):
        client.fetch_bars("AAPL.US", "1m", utc(2024, 1, 1), utc(2024, 5, 5))
    assert len(sim.request_log) == 1 and sleeps == []


def test_validates_before_any_io(sim: Simulator, make_client: Factory) -> None:
    client, _ = make_client()
    with pytest.raises(InvalidInputError, match="naive"):
        client.fetch_bars(SYMBOL, "5m", pd.Timestamp("2024-01-01"), END)
    with pytest.raises(InvalidInputError, match="interval"):
        client.fetch_bars(SYMBOL, "15m", START, END)
    with pytest.raises(InvalidInputError, match="symbol"):
        client.fetch_bars("BTC USD", "5m", START, END)
    assert len(client.fetch_bars(SYMBOL, "5m", START, START)) == 0
    assert sim.request_log == []


# -- faults ---------------------------------------------------------------------------


def test_429_honours_retry_after(sim: Simulator, make_client: Factory) -> None:
    client, sleeps = make_client()
    sim.faults.inject("429", retry_after=2)
    pd.testing.assert_frame_equal(client.fetch_bars(SYMBOL, "5m", START, END), _expected())
    assert sleeps == [2.0]
    assert [r.status for r in sim.request_log] == [429, 200]


def test_retry_after_is_capped(sim: Simulator, make_client: Factory) -> None:
    client, sleeps = make_client(max_backoff_sec=5.0)
    sim.faults.inject("429", retry_after=120)
    client.fetch_bars(SYMBOL, "5m", START, END)
    assert sleeps == [5.0]


@pytest.mark.parametrize("kind", ["500", "503", "html502"])
def test_5xx_retried_then_success(sim: Simulator, make_client: Factory, kind: str) -> None:
    client, sleeps = make_client(retry_backoff_sec=1.0, max_backoff_sec=30.0)
    sim.faults.inject(kind, count=2)
    pd.testing.assert_frame_equal(client.fetch_bars(SYMBOL, "5m", START, END), _expected())
    assert len(sim.request_log) == 3
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 1.0 and 0 <= sleeps[1] <= 2.0  # full jitter


@pytest.mark.parametrize("kind", ["500", "503"])
def test_5xx_exhausted(sim: Simulator, make_client: Factory, kind: str) -> None:
    client, sleeps = make_client(max_retries=3)
    sim.faults.inject(kind, count=10)
    with pytest.raises(TransientSourceError) as info:
        client.fetch_bars(SYMBOL, "5m", START, END)
    text = str(info.value)
    assert SYMBOL in text and "2024-05-01T00:00:00" in text and f"HTTP {kind}" in text
    assert "4 attempt" in text
    assert len(sim.request_log) == 4 and len(sleeps) == 3


def test_backoff_is_capped(sim: Simulator, make_client: Factory) -> None:
    client, sleeps = make_client(max_retries=6, retry_backoff_sec=10.0, max_backoff_sec=3.0)
    sim.faults.inject("500", count=6)
    client.fetch_bars(SYMBOL, "5m", START, END)
    assert len(sleeps) == 6 and max(sleeps) <= 3.0


def test_timeout_retried(sim: Simulator, make_client: Factory) -> None:
    client, sleeps = make_client(rest_timeout=0.3)
    sim.faults.inject("timeout")
    pd.testing.assert_frame_equal(client.fetch_bars(SYMBOL, "5m", START, END), _expected())
    assert len(sim.request_log) == 2 and len(sleeps) == 1
    assert sim.request_log[0].status is None and sim.request_log[0].fault == "timeout"


def test_timeout_exhausted_names_the_failure(sim: Simulator, make_client: Factory) -> None:
    client, _ = make_client(rest_timeout=0.2, max_retries=1)
    sim.faults.inject("timeout", count=2)
    with pytest.raises(TransientSourceError, match=r"timeout after 0\.2s"):
        client.fetch_bars(SYMBOL, "5m", START, END)
    assert len(sim.request_log) == 2


@pytest.mark.parametrize(
    ("kind", "failure"),
    [("truncated", "truncated JSON"), ("html", "HTML error page"), ("drop", "connection")],
)
def test_bad_bodies_and_drops_retried(
    sim: Simulator, make_client: Factory, kind: str, failure: str
) -> None:
    client, sleeps = make_client(max_retries=2)
    sim.faults.inject(kind)
    pd.testing.assert_frame_equal(client.fetch_bars(SYMBOL, "5m", START, END), _expected())
    assert len(sim.request_log) == 2 and len(sleeps) == 1
    sim.reset_log()
    sim.faults.inject(kind, count=3)
    with pytest.raises(TransientSourceError, match=failure):
        client.fetch_bars(SYMBOL, "5m", START, END)
    assert len(sim.request_log) == 3


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("401", r"EODHD rejected the API token \(HTTP 401\)"),
        ("403", r"HTTP 403"),
        ("404", r"unknown ticker BTC-USD.CC \(HTTP 404\)"),
    ],
)
def test_permanent_errors_are_not_retried(
    sim: Simulator, make_client: Factory, kind: str, message: str
) -> None:
    client, sleeps = make_client()
    sim.faults.inject(kind, count=5)
    with pytest.raises(PermanentSourceError, match=message):
        client.fetch_bars(SYMBOL, "5m", START, END)
    assert len(sim.request_log) == 1 and sleeps == []


def test_wrong_token_and_unknown_ticker_without_injection(make_client: Factory) -> None:
    client, _ = make_client(token="not-the-right-token")
    with pytest.raises(PermanentSourceError, match="HTTP 401"):
        client.fetch_bars(SYMBOL, "5m", START, END)
    with Simulator(symbols=["AAPL.US"], tokens=("t0k3n-x",), market=MARKET) as other:
        client2 = EodhdClient("t0k3n-x", client.network.__class__(base_url=other.base_url))
        with pytest.raises(PermanentSourceError, match=r"unknown ticker MSFT.US \(HTTP 404\)"):
            client2.fetch_bars("MSFT.US", "5m", START, END)
        client2.close()


def test_empty_array_is_an_empty_frame(sim: Simulator, make_client: Factory) -> None:
    client, sleeps = make_client()
    sim.faults.inject("empty")
    df = client.fetch_bars(SYMBOL, "5m", START, END)
    assert len(df) == 0 and list(df.columns) == list(BAR_COLUMNS)
    assert str(df["ts"].dtype) == TS_DTYPE
    assert len(sim.request_log) == 1 and sleeps == []


def test_connection_refused_is_transient(make_client: Factory, sim: Simulator) -> None:
    client, sleeps = make_client(max_retries=1)
    sim.stop()
    with pytest.raises(TransientSourceError, match="connection failed"):
        client.fetch_bars(SYMBOL, "5m", START, END)
    assert len(sleeps) == 1


# -- chunk planning and combining -----------------------------------------------------


def test_plan_chunks() -> None:
    day = 86_400_000_000
    assert plan_chunks(0, 0, 3) == []
    chunks = plan_chunks(0, 10 * day, 3)
    assert [(c.start, c.end) for c in chunks] == [
        (0, 3 * 86_400 - 1),
        (3 * 86_400, 6 * 86_400 - 1),
        (6 * 86_400, 9 * 86_400 - 1),
        (9 * 86_400, 10 * 86_400 - 1),
    ]
    assert plan_chunks(1_500_000, 2_000_001, 1)[0].end == 2  # ceil(end) - 1, inclusive


def _bars(ts_s: list[int], close: list[float]) -> pd.DataFrame:
    c = np.array(close)
    return bars_frame(np.array(ts_s) * 1_000_000, c, c, c, c, c)


def test_combine_dedups_only_across_chunks_later_wins() -> None:
    a = _bars([0, 60, 120, 120], [1, 2, 3, 4])  # a duplicate inside one chunk is kept
    b = _bars([120, 180], [30, 5])
    df = combine_chunks([a, b], 0, 10**12)
    assert df["close"].tolist() == [1, 2, 30, 5]
    df = combine_chunks([b, _bars([0, 60], [1, 2])], 60_000_000, 10**12)
    assert df["close"].tolist() == [2, 30, 5]  # filtered to [start, end) and sorted
    assert isinstance(df.index, pd.RangeIndex)
    only = combine_chunks([a], 0, 10**12)
    assert only["close"].tolist() == [1, 2, 3, 4]
    assert len(combine_chunks([a.iloc[:0]], 0, 1)) == 0


def test_a_response_beyond_the_ceiling_is_not_held(
    sim: Simulator, make_client: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The body is streamed and dropped once it passes MAX_RESPONSE_BYTES (a proxy's
    endless answer must not fill memory); the request counts as a failed attempt."""
    import hedgeflow.sources.eodhd as eodhd

    monkeypatch.setattr(eodhd, "MAX_RESPONSE_BYTES", 1000)
    client, sleeps = make_client(max_retries=1)
    with pytest.raises(TransientSourceError, match="HTTP 200 response larger than 1,000 bytes"):
        client.fetch_bars(SYMBOL, "5m", START, END)
    assert len(sim.request_log) == 2 and len(sleeps) == 1
