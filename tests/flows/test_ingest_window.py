"""Convention 9 end to end: `hedgeflow ingest --symbols BTC-USD.CC --days 1` without
`--end`, run now against the EODHD simulator, stores bars up to the last completed
5-minute bar and records the window it resolved."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from tests.e2e_helpers import assert_clean, query, run_cli

pytestmark = [pytest.mark.flow, pytest.mark.slow]  # ~19 s: a CLI run (CI runs it)

BAR = timedelta(minutes=5)


def _floor(moment: datetime) -> pd.Timestamp:
    return pd.Timestamp(moment).floor("5min")


def test_ingest_without_end_stores_up_to_the_last_completed_bar(tmp_path: Path) -> None:
    home = tmp_path / "data"
    before = datetime.now(UTC)
    out = run_cli(home, "ingest", "--symbols", "BTC-USD.CC", "--days", "1", "--source", "simulator")
    after = datetime.now(UTC)
    assert_clean(out)
    # the window end is now floored to 5 minutes, read somewhere between the two clocks
    ends = {_floor(before), _floor(after)}
    (params,) = query(home, "select params from runs where flow = 'ingest'")[0]
    stored = json.loads(params)
    end = pd.Timestamp(stored["end"])
    assert end in ends
    assert pd.Timestamp(stored["start"]) == end - pd.Timedelta(days=1)
    # the last stored bar is the last completed one: it starts one bar before the end
    first, last, n = query(
        home, "select min(ts), max(ts), count(*) from bars where symbol = 'BTC-USD.CC'"
    )[0]
    assert pd.Timestamp(last) == end - BAR
    assert pd.Timestamp(first) == end - pd.Timedelta(days=1)
    assert n == 288  # crypto trades around the clock: a day of 5-minute bars
