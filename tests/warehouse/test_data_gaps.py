"""The ``data_gaps`` view (DESIGN.md convention 8) over a real lake and DuckDB file:
sessions the XNYS calendar says were open but have no stored bars, and vendor answers
with no bars, with the stored bars kept."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.warehouse import Warehouse

MARKET = SyntheticMarket(7)
START = datetime(2025, 11, 24, tzinfo=UTC)  # Monday; Thursday 27th is Thanksgiving
END = datetime(2025, 12, 2, tzinfo=UTC)
GAPS = (
    'select kind, symbol, interval, calendar, start, "end", stored_bars, run_id '
    "from data_gaps order by kind, symbol, start"
)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_missing_sessions_follow_the_calendar(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    bars = MARKET.fetch_bars("AAPL.US", "5m", START, END)
    # the synthetic market follows XNYS: no bars on Thanksgiving, 13:00 ET close on the 28th
    days = set(bars["ts"].dt.date.astype(str))
    assert "2025-11-27" not in days and len(days) == 5
    # the vendor lost Tuesday 25th: stored bars without it
    lost = bars["ts"].dt.date.astype(str) == "2025-11-25"
    wh.write_bars(bars[~lost].reset_index(drop=True), "AAPL.US", "5m", START, END, "test")
    # crypto has no calendar: never a missing session
    crypto = MARKET.fetch_bars("BTC-USD.CC", "5m", START, END)
    wh.write_bars(crypto, "BTC-USD.CC", "5m", START, END, "test")
    gaps = wh.query(GAPS)
    assert gaps.to_dict("records") == [
        {
            "kind": "missing_session",
            "symbol": "AAPL.US",
            "interval": "5m",
            "calendar": "XNYS",
            "start": ts("2025-11-25 14:30"),
            "end": ts("2025-11-25 21:00"),
            "stored_bars": 0,
            "run_id": None,
        }
    ]


def test_an_empty_vendor_answer_is_reported_and_keeps_the_bars(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    bars = MARKET.fetch_bars("AAPL.US", "5m", START, END)
    wh.write_bars(bars, "AAPL.US", "5m", START, END, "test")
    before = wh.read_bars("AAPL.US", "5m")
    # the vendor answers [] for Wed 26th..Fri 28th (Thanksgiving in between): kept, reported
    lo, hi = ts("2025-11-26"), ts("2025-11-29")
    empty = bars.iloc[:0]
    wh.write_bars(empty, "AAPL.US", "5m", lo, hi, "eodhd", keep=[(lo, hi)])
    wh.record_vendor_gaps("AAPL.US", "5m", [(lo, hi)], "run-1", "eodhd")
    wh.record_vendor_gaps("BTC-USD.CC", "5m", [(lo, hi)], "run-1", "eodhd")
    pd.testing.assert_frame_equal(wh.read_bars("AAPL.US", "5m"), before)
    gaps = wh.query(GAPS)
    assert list(gaps["kind"]) == ["vendor_empty"] * 3
    stock = gaps[gaps["symbol"] == "AAPL.US"]
    # the two open sessions, not the holiday; the early close ends at 18:00 UTC
    assert list(zip(stock["start"], stock["end"], strict=True)) == [
        (ts("2025-11-26 14:30"), ts("2025-11-26 21:00")),
        (ts("2025-11-28 14:30"), ts("2025-11-28 18:00")),
    ]
    assert list(stock["stored_bars"]) == [78, 42]  # the bars kept there
    assert set(gaps["run_id"]) == {"run-1"}
    crypto = gaps[gaps["symbol"] == "BTC-USD.CC"].iloc[0]
    assert (crypto["start"], crypto["end"]) == (lo, hi) and pd.isna(crypto["calendar"])
    assert crypto["stored_bars"] == 0


def test_a_vendor_answer_for_a_closed_day_is_not_a_gap(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    wh.write_bars(MARKET.fetch_bars("AAPL.US", "5m", START, END), "AAPL.US", "5m", START, END, "t")
    christmas = (ts("2025-12-25"), ts("2025-12-26"))
    wh.record_vendor_gaps("AAPL.US", "5m", [christmas], "run-2", "eodhd")
    assert wh.query(GAPS).empty


def test_a_bad_vendor_gap_record_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    from hedgeflow.errors import InvalidInputError

    wh = Warehouse(tmp_path)
    lo, hi = ts("2025-11-26"), ts("2025-11-27")
    for symbol, run_id in (("AAPL.US", "../escape"), ("../x.US", "run-3")):
        with pytest.raises(InvalidInputError):
            wh.record_vendor_gaps(symbol, "5m", [(lo, hi)], run_id, "eodhd")
    assert wh.paths.vendor_gap_records() == []
