from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from hedgeflow.columns import BAR_COLUMNS, TS_DTYPE
from hedgeflow.errors import InvalidInputError
from hedgeflow.sources.synthetic import SyntheticMarket, aggregate_ticks

from .conftest import MARKET, utc

SYMBOLS = ["AAPL.US", "EURUSD.FOREX", "BTC-USD.CC"]
NY = ZoneInfo("America/New_York")


def _check_frame(df: pd.DataFrame) -> None:
    assert list(df.columns) == list(BAR_COLUMNS)
    assert str(df["ts"].dtype) == TS_DTYPE
    for col in BAR_COLUMNS[1:]:
        assert df[col].dtype == np.float64
    assert isinstance(df.index, pd.RangeIndex) and df.index.start == 0
    assert df["ts"].is_monotonic_increasing and df["ts"].is_unique


def _raw(df: pd.DataFrame) -> bytes:
    cols = [df["ts"].array.asi8.tobytes()]
    cols += [df[c].to_numpy().tobytes() for c in BAR_COLUMNS[1:]]
    return b"".join(cols)


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_same_seed_same_bars_new_seed_new_bars(symbol: str) -> None:
    start, end = utc(2024, 3, 4), utc(2024, 3, 9)
    a = SyntheticMarket(7).fetch_bars(symbol, "5m", start, end)
    b = SyntheticMarket(7).fetch_bars(symbol, "5m", start, end)
    c = SyntheticMarket(8).fetch_bars(symbol, "5m", start, end)
    _check_frame(a)
    assert len(a) > 100
    pd.testing.assert_frame_equal(a, b)
    assert _raw(a) == _raw(b)
    assert not a["close"].equals(c["close"])


@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize("interval", ["1m", "5m", "1h"])
def test_range_split_equality(symbol: str, interval: str) -> None:
    a, c = utc(2024, 3, 7, 10), utc(2024, 3, 12, 3)
    b = pd.Timestamp("2024-03-08 15:07:13.5", tz="UTC")  # not on a bar boundary
    whole = MARKET.fetch_bars(symbol, interval, a, c)
    parts = pd.concat(
        [MARKET.fetch_bars(symbol, interval, a, b), MARKET.fetch_bars(symbol, interval, b, c)],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(whole, parts)
    assert whole["ts"].iloc[0] >= a and whole["ts"].iloc[-1] < c
    t_whole = MARKET.ticks(symbol, a, c)
    t1, t2 = MARKET.ticks(symbol, a, b), MARKET.ticks(symbol, b, c)
    assert np.array_equal(t_whole.ts_ms, np.concatenate([t1.ts_ms, t2.ts_ms]))
    assert np.array_equal(t_whole.price, np.concatenate([t1.price, t2.price]))


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_bars_are_aggregated_ticks(symbol: str) -> None:
    start, end = utc(2024, 5, 1), utc(2024, 5, 4)
    ticks = MARKET.ticks(symbol, start, end)
    for seconds, interval in ((60, "1m"), (300, "5m"), (3600, "1h")):
        expected = aggregate_ticks(ticks.ts_ms, ticks.price, ticks.size, seconds)
        pd.testing.assert_frame_equal(MARKET.fetch_bars(symbol, interval, start, end), expected)


def test_ticks_shape_and_rounding() -> None:
    start, end = utc(2024, 5, 1), utc(2024, 5, 3)
    stock = MARKET.ticks("AAPL.US", start, end)
    fx = MARKET.ticks("EURUSD.FOREX", start, end)
    btc = MARKET.ticks("BTC-USD.CC", start, end)
    for t in (stock, fx, btc):
        assert t.ts_ms.dtype == np.int64
        assert np.all(np.diff(t.ts_ms) > 0)
        assert np.all(t.price > 0)
    # ~4 ticks a minute
    assert 3.5 < len(btc) / (2 * 1440) < 4.5
    # cents of the unsplit quote: AAPL.US split 2-for-1 on 2022-10-31 (seed 7), so its
    # 2024 prices are cents / 2 and its sizes whole shares x 2
    assert [s.ratio for s in MARKET.split_schedule("AAPL.US") if s.ex_date.year < 2024] == [2.0]
    assert np.allclose(stock.price * 200, np.round(stock.price * 200), atol=1e-6)
    assert not np.allclose(stock.price * 100, np.round(stock.price * 100), atol=1e-6)
    assert np.all(stock.size % 2 == 0) and np.all(stock.size >= 2)
    assert np.isnan(stock.bid).all() and np.isnan(btc.ask).all()
    assert np.all(btc.size > 0) and not np.all(btc.size == np.round(btc.size))
    assert np.isnan(fx.size).all()
    assert np.all(fx.bid < fx.ask)
    assert np.array_equal(fx.price, (fx.bid + fx.ask) / 2)
    assert np.allclose(fx.bid * 1e5, np.round(fx.bid * 1e5), atol=1e-4)
    assert MARKET.fetch_bars("EURUSD.FOREX", "5m", start, end)["volume"].isna().all()


def test_stock_bars_only_in_new_york_session_across_dst() -> None:
    # US DST started on 2024-03-10: the session moves from 14:30 to 13:30 UTC.
    bars = MARKET.fetch_bars("AAPL.US", "1m", utc(2024, 3, 4), utc(2024, 3, 16))
    local = bars["ts"].dt.tz_convert(NY)
    minutes = local.dt.hour * 60 + local.dt.minute
    assert minutes.min() == 9 * 60 + 30 and minutes.max() == 15 * 60 + 59
    assert (local.dt.day_of_week < 5).all()
    opens = bars.groupby(bars["ts"].dt.date)["ts"].min().dt.strftime("%H")
    assert set(opens[:5]) == {"14"} and set(opens[5:]) == {"13"}
    assert len(opens) == 10  # two weeks of weekdays, nothing at the weekend


def test_forex_is_24x5() -> None:
    bars = MARKET.fetch_bars("EURUSD.FOREX", "5m", utc(2024, 6, 3), utc(2024, 6, 17))
    ts = bars["ts"]
    dow, hour = ts.dt.day_of_week, ts.dt.hour
    assert not (dow == 5).any()  # Saturday
    assert not ((dow == 4) & (hour >= 22)).any()  # after Friday 22:00
    assert not ((dow == 6) & (hour < 22)).any()  # before Sunday 22:00
    assert ((dow == 6) & (hour == 22)).any() and ((dow == 4) & (hour == 21)).any()


def test_crypto_trades_every_day_and_hour() -> None:
    bars = MARKET.fetch_bars("BTC-USD.CC", "1h", utc(2024, 6, 1), utc(2024, 6, 15))
    assert len(bars) == 14 * 24


@pytest.mark.parametrize(
    ("symbol", "lo", "hi", "plo", "phi"),
    [
        ("AAPL.US", 0.012, 0.03, 50, 500),
        ("EURUSD.FOREX", 0.003, 0.007, 0.9, 1.3),
        ("BTC-USD.CC", 0.025, 0.05, 20_000, 150_000),
    ],
)
def test_daily_vol_and_level(symbol: str, lo: float, hi: float, plo: float, phi: float) -> None:
    bars = MARKET.fetch_bars(symbol, "1h", utc(2023, 1, 1), utc(2024, 1, 1))
    daily = bars.set_index("ts")["close"].resample("1D").last().dropna()
    vol = np.log(daily).diff().std()
    assert lo < vol < hi
    assert plo < bars["low"].min() and bars["high"].max() < phi


def _rsi(close: pd.Series, n: int = 14) -> pd.Series:
    delta = close.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / n, adjust=False).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / n, adjust=False).mean()
    return 100 - 100 / (1 + gain / loss)


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_default_window_triggers_every_strategy_often(symbol: str) -> None:
    bars = MARKET.fetch_bars(symbol, "5m", utc(2024, 10, 1), utc(2024, 10, 31))
    close = bars["close"]
    above = (close.rolling(20).mean() > close.rolling(50).mean()).astype(int)
    crosses = int((above.diff() == 1).sum())
    rsi = _rsi(close)
    rsi_entries = int(((rsi < 30) & (rsi.shift() >= 30)).sum())
    upper = bars["high"].rolling(20).max().shift()
    breakouts = int(((close > upper) & ~(close.shift() > upper.shift())).sum())
    assert crosses >= 10 and rsi_entries >= 10 and breakouts >= 10, (
        crosses,
        rsi_entries,
        breakouts,
    )


def test_one_crypto_year_of_ticks_aggregates_to_every_bar() -> None:
    """A year of crypto ticks (about 2 M) aggregates to one bar per 5 minutes, round the
    clock. (Its speed is a benchmark's business, not a test's: the wall-clock bound this
    test had failed CI under coverage.)"""
    market = SyntheticMarket(123)
    market.fetch_bars("BTC-USD.CC", "5m", utc(2020, 1, 1), utc(2020, 1, 2))  # anchors
    ticks = market.ticks("BTC-USD.CC", utc(2023, 1, 1), utc(2024, 1, 1))
    bars = aggregate_ticks(ticks.ts_ms, ticks.price, ticks.size, 300)
    assert len(ticks) > 1_900_000
    assert len(bars) == 365 * 288
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()


def test_rejects_naive_times_and_bad_inputs() -> None:
    with pytest.raises(InvalidInputError, match="naive"):
        MARKET.fetch_bars("AAPL.US", "5m", pd.Timestamp("2024-01-01"), utc(2024, 1, 2))
    with pytest.raises(InvalidInputError, match="interval"):
        MARKET.fetch_bars("AAPL.US", "2m", utc(2024, 1, 1), utc(2024, 1, 2))
    with pytest.raises(InvalidInputError, match="symbol"):
        MARKET.fetch_bars("../etc", "5m", utc(2024, 1, 1), utc(2024, 1, 2))
    with pytest.raises(InvalidInputError, match="covers"):
        MARKET.fetch_bars("AAPL.US", "5m", utc(1990, 1, 1), utc(1990, 1, 2))
    assert len(MARKET.fetch_bars("AAPL.US", "5m", utc(2024, 1, 2), utc(2024, 1, 2))) == 0


def test_accepts_other_timezones_and_timestamps() -> None:
    tokyo = pd.Timestamp("2024-05-01 09:00", tz="Asia/Tokyo")
    a = MARKET.fetch_bars("BTC-USD.CC", "5m", tokyo, tokyo + pd.Timedelta(hours=2))
    b = MARKET.fetch_bars("BTC-USD.CC", "5m", utc(2024, 5, 1), utc(2024, 5, 1, 2))
    pd.testing.assert_frame_equal(a, b)


def test_aggregate_ticks_rules() -> None:
    ts = np.array([0, 1_000, 59_999, 60_000, 185_000], dtype=np.int64)
    price = np.array([10.0, 12.0, 9.0, 11.0, 13.0])
    size = np.array([0.1, 0.2, 0.3, 1.0, 2.0])
    bars = aggregate_ticks(ts, price, size, 60)
    _check_frame(bars)
    assert bars["ts"].tolist() == [pd.Timestamp(s, unit="s", tz="UTC") for s in (0, 60, 180)]
    assert bars[["open", "high", "low", "close"]].to_numpy().tolist() == [
        [10.0, 12.0, 9.0, 9.0],
        [11.0, 11.0, 11.0, 11.0],
        [13.0, 13.0, 13.0, 13.0],
    ]
    assert bars["volume"].tolist() == [0.6, 1.0, 2.0]  # rounded: 0.1+0.2+0.3 != 0.6
    _check_frame(aggregate_ticks(ts[:0], price[:0], size[:0], 60))
    with pytest.raises(InvalidInputError, match="sorted"):
        aggregate_ticks(ts[::-1], price, size, 60)
