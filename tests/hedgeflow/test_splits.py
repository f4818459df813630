"""Split ratios as the vendor writes them, and adjusting bars for the splits after them."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from hedgeflow.errors import DataFormatError
from hedgeflow.splits import (
    Split,
    adjust_bars,
    adjustment_factors,
    parse_ratio,
    parse_splits_json,
    render_splits_json,
    session_dates,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4.000000/1.000000", (4.0, 1.0)), ("1.000000/10.000000", (1.0, 10.0)), ("3/2", (3.0, 2.0))],
)
def test_vendor_ratios(text: str, expected: tuple[float, float]) -> None:
    assert parse_ratio(text, "x") == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0.000000/1.000000", "must be two positive numbers"),
        ("4.000000/0", "must be two positive numbers"),
        ("-4/1", "is not 'new/old' shares"),
        ("4:1", "is not 'new/old' shares"),
        ("", "is not 'new/old' shares"),
        (4.0, "is not 'new/old' shares"),
        (None, "is not 'new/old' shares"),
        ("1/1", "changes nothing"),
        ("1e400/1", "is not 'new/old' shares"),
    ],
)
def test_bad_ratios_are_refused_naming_the_value(text: object, problem: str) -> None:
    with pytest.raises(DataFormatError, match=f"^AAPL entry 2: split ratio .*{problem}"):
        parse_ratio(text, "AAPL entry 2")


def test_answers_parse_sort_and_round_trip() -> None:
    body = (
        b'[{"date": "2022-06-06", "split": "20.000000/1.000000"}, '
        b'{"date": "2020-08-31", "split": "4.000000/1.000000"}]'
    )
    splits = parse_splits_json(body, "AAPL.US")
    assert splits == [Split(date(2020, 8, 31), 4.0, 1.0), Split(date(2022, 6, 6), 20.0, 1.0)]
    assert parse_splits_json(render_splits_json(splits), "AAPL.US") == splits
    assert parse_splits_json(b"[]", "AAPL.US") == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html>", "the answer is not JSON"),
        (b'{"date": "2020-08-31"}', "expected a JSON array, got dict"),
        (b"[1]", "entry 1: expected an object, got int"),
        (
            b'[{"date": "2020-31-08", "split": "4/1"}]',
            "entry 1: date '2020-31-08' is not YYYY-MM-DD",
        ),
        (b'[{"split": "4/1"}]', "entry 1: date None is not YYYY-MM-DD"),
        (b'[{"date": "2020-08-31", "split": "-1/1"}]', "entry 1: split ratio '-1/1'"),
    ],
)
def test_bad_answers_name_the_entry(body: bytes, problem: str) -> None:
    with pytest.raises(DataFormatError, match=problem):
        parse_splits_json(body, "AAPL.US")


def _bars(stamps: list[str]) -> pd.DataFrame:
    ts = pd.DatetimeIndex(pd.to_datetime(stamps, utc=True)).as_unit("us")
    n = len(ts)
    return pd.DataFrame(
        {
            "ts": ts,
            "open": np.full(n, 400.0),
            "high": np.full(n, 404.0),
            "low": np.full(n, 396.0),
            "close": np.full(n, 400.0),
            "volume": np.full(n, 100.0),
        }
    )


def test_session_date_is_new_york_s() -> None:
    # 00:30 UTC on the 29th is 20:30 (after hours) on Friday the 28th in New York (EDT)
    got = session_dates(pd.to_datetime(["2020-08-29 00:30", "2020-08-31 13:30"], utc=True))
    assert got.tolist() == [date(2020, 8, 28), date(2020, 8, 31)]


def test_adjusting_divides_prices_and_multiplies_volume_by_the_later_splits() -> None:
    bars = _bars(
        [
            "2020-08-28 19:55",  # before both splits: 4 x 2
            "2020-08-29 00:30",  # Friday the 28th's after hours in New York: 4 x 2
            "2020-08-31 13:30",  # the 4-for-1 ex-date: only the later 2-for-1
            "2022-06-06 13:30",  # the 2-for-1 ex-date: raw
        ]
    )
    splits = [Split(date(2022, 6, 6), 2.0, 1.0), Split(date(2020, 8, 31), 4.0, 1.0)]
    assert adjustment_factors(bars["ts"], splits).tolist() == [8.0, 8.0, 2.0, 1.0]
    adj = adjust_bars(bars, splits)
    assert adj["close"].tolist() == [50.0, 50.0, 200.0, 400.0]
    assert adj["high"].tolist() == [50.5, 50.5, 202.0, 404.0]
    assert adj["volume"].tolist() == [800.0, 800.0, 200.0, 100.0]
    assert bars["close"].tolist() == [400.0] * 4  # the input is not changed
    reverse = adjust_bars(bars, [Split(date(2021, 1, 4), 1.0, 10.0)])
    assert reverse["close"].tolist() == [4000.0, 4000.0, 4000.0, 400.0]
    assert adjust_bars(bars, []) is bars
    assert adjust_bars(bars, [Split(date(2019, 1, 2), 2.0, 1.0)]) is bars  # all after it
