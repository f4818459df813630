from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgeflow.columns import BAR_COLUMNS, TS_DTYPE
from hedgeflow.errors import DataFormatError
from hedgeflow.secrets import register_secret
from hedgeflow.sources.base import bars_frame
from hedgeflow.sources.eodhd_format import (
    _parse_careful,
    parse_intraday_json,
    render_intraday_json,
)

from .conftest import MARKET, utc


def _frame(ts_s: list[int], rows: list[list[float]]) -> pd.DataFrame:
    cols = np.array(rows, dtype="float64").reshape(-1, 5).T
    return bars_frame(np.array(ts_s, dtype="int64") * 1_000_000, *cols)


def test_render_is_eodhds_exact_shape() -> None:
    bars = _frame([1627896900], [[146.1, 146.3, 145.9, 146.2, 123456.0]])
    body = render_intraday_json(bars)
    assert json.loads(body) == [
        {
            "timestamp": 1627896900,
            "gmtoffset": 0,
            "datetime": "2021-08-02 09:35:00",
            "open": 146.1,
            "high": 146.3,
            "low": 145.9,
            "close": 146.2,
            "volume": 123456,
        }
    ]
    assert b'"volume":123456}' in body  # integer volumes as EODHD writes them
    assert render_intraday_json(bars.iloc[:0]) == b"[]"


@pytest.mark.parametrize("symbol", ["AAPL.US", "EURUSD.FOREX", "BTC-USD.CC"])
def test_round_trip_is_exact(symbol: str) -> None:
    bars = MARKET.fetch_bars(symbol, "1m", utc(2024, 5, 1), utc(2024, 5, 4))
    parsed = parse_intraday_json(render_intraday_json(bars))
    pd.testing.assert_frame_equal(parsed, bars)


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(finite, finite, finite, finite, finite | st.just(math.nan)), max_size=20))
def test_round_trip_any_float(rows: list[tuple[float, ...]]) -> None:
    bars = _frame(list(range(0, 60 * len(rows), 60)), [list(r) for r in rows])
    body = render_intraday_json(bars)
    parsed = parse_intraday_json(body)
    pd.testing.assert_frame_equal(parsed, bars)
    pd.testing.assert_frame_equal(_parse_careful(body), bars)


def test_parse_dtypes_and_empty() -> None:
    for body in (b"[]", b" [ ]\n", b"[\n]"):
        df = parse_intraday_json(body)
        assert list(df.columns) == list(BAR_COLUMNS) and len(df) == 0
        assert str(df["ts"].dtype) == TS_DTYPE
        assert all(df[c].dtype == np.float64 for c in BAR_COLUMNS[1:])
        assert isinstance(df.index, pd.RangeIndex)


def test_nulls_stay_nan_and_nothing_is_dropped() -> None:
    body = (
        b'[{"timestamp": 60, "gmtoffset": 0, "datetime": "1970-01-01 00:01:00", '
        b'"open": 1.1, "high": 1.2, "low": 1.0, "close": null, "volume": null},\n'
        b' {"timestamp": 0, "open": 1, "high": 2, "low": 0.5, "close": 1.5},'
        b' {"timestamp": 0, "open": 1, "high": 2, "low": 0.5, "close": 1.5, "volume": 7}]'
    )
    df = parse_intraday_json(body)
    assert len(df) == 3  # unsorted, duplicated: kept as received for the validator
    assert df["ts"].astype("int64").tolist() == [60_000_000, 0, 0]
    assert math.isnan(df.loc[0, "close"]) and math.isnan(df.loc[0, "volume"])
    assert math.isnan(df.loc[1, "volume"]) and df.loc[2, "volume"] == 7.0
    assert df.loc[0, "open"] == 1.1


def test_pretty_printed_reordered_and_extra_keys() -> None:
    body = json.dumps(
        [
            {
                "close": "146.2",
                "volume": 10,
                "extra": {"nested": [1, 2]},
                "low": 145.9,
                "high": 146.3,
                "open": 146.1,
                "timestamp": 1627896900,
            }
        ],
        indent=2,
    ).encode()
    df = parse_intraday_json(body)
    assert df.iloc[0, 1:].tolist() == [146.1, 146.3, 145.9, 146.2, 10.0]


def test_fast_and_careful_parsers_agree() -> None:
    bars = MARKET.fetch_bars("BTC-USD.CC", "5m", utc(2024, 5, 1), utc(2024, 5, 8))
    body = render_intraday_json(bars)
    pd.testing.assert_frame_equal(parse_intraday_json(body), _parse_careful(body))


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "empty response body"),
        (b'[{"timestamp":1627896900,"gmtoffset":0,"open":146.1,"hi', "truncated JSON"),
        (b"[{]", "invalid JSON"),
        (
            b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
            "HTML error page instead of JSON.*502 Bad Gateway",
        ),
        (b"<!DOCTYPE html>\n<html><body>oops</body></html>", "HTML error page instead of JSON"),
        (b'{"error": "Ticker not found"}', "object instead of an array.*Ticker not found"),
        (b'{"message": "Unauthenticated"}', "object instead of an array.*Unauthenticated"),
        (b'"just a string"', "str instead of an array"),
        (b"[1, 2]", "bar 0 is a JSON int"),
        (b'[{"open":1,"high":1,"low":1,"close":1}]', "bar 0 has no timestamp field"),
        (b'[{"timestamp":1,"open":1,"high":1,"low":1}]', "bar 0 has no close field"),
        (b'[{"timestamp":null,"open":1,"high":1,"low":1,"close":1}]', "bar 0 has timestamp"),
        (b'[{"timestamp":1.5,"open":1,"high":1,"low":1,"close":1}]', "not whole seconds"),
        (b'[{"timestamp":1,"open":"abc","high":1,"low":1,"close":1}]', "bar 0 has open"),
        (b'[{"timestamp":1,"open":true,"high":1,"low":1,"close":1}]', "bar 0 has open"),
        (b"\xff\xfe[]", "not UTF-8 JSON"),
    ],
)
def test_malformed_bodies_raise_clear_errors(body: bytes, match: str) -> None:
    with pytest.raises(DataFormatError, match=match):
        parse_intraday_json(body)


def test_error_messages_are_short_and_redacted() -> None:
    register_secret("sekrit-token-123")
    body = b'{"error": "bad token sekrit-token-123 for url ?api_token=other-value", "x": "'
    body += b"A" * 5000 + b'"}'
    with pytest.raises(DataFormatError) as info:
        parse_intraday_json(body)
    text = str(info.value)
    assert "sekrit-token-123" not in text and "other-value" not in text
    assert "bad token" in text
    assert len(text) < 300
    huge = b"[" + b'{"timestamp":1,"open":1,"high":1,"low":1,"close":1},' * 1000
    with pytest.raises(DataFormatError) as info:
        parse_intraday_json(huge)
    assert len(str(info.value)) < 300
