"""Quarantine through a real ingest run: ``hedgeflow ingest --source eodhd`` (the real
EODHD client, in a subprocess, against the session's Prefect server) reads a local
EODHD-compatible simulator whose market serves a few broken bars. The broken rows land
in ``quarantine`` with their raw values and reasons, never in ``bars``, and the run
reports exactly how many: in the console summary and in its ``runs`` row."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hedgeflow.schemas.bars import (
    REASON_DUPLICATE,
    REASON_HIGH,
    REASON_LOW,
    REASON_PRICE,
    REASON_VOLUME,
)
from hedgeflow.sources.simulator import Simulator
from hedgeflow.sources.synthetic import SyntheticMarket
from tests.e2e_helpers import assert_clean, query, query_frame
from tests.flows.harness_cli import harness_api_url, run_cli_on

__all__ = ["harness_api_url"]

pytestmark = pytest.mark.flow

SYMBOL = "BTC-USD.CC"
TOKEN = "quarantine-test-token"
SEED = 7
# position in the clean bars -> the reason its corruption must be quarantined with
BROKEN = {
    10: REASON_PRICE.format(col="open"),  # open null (NaN)
    20: REASON_PRICE.format(col="close"),  # close negative
    30: REASON_HIGH,  # high below the close/open
    40: REASON_LOW,  # low above the close/open
    50: REASON_VOLUME,  # negative volume
    70: f"{REASON_PRICE.format(col='close')}; {REASON_VOLUME}",  # two rules at once
}
DUPLICATED = 60  # a second copy of this bar arrives (last, out of order)


class BrokenVendorMarket(SyntheticMarket):
    """The synthetic market, with BROKEN rows corrupted and bar DUPLICATED repeated
    (another valid close) at the end of every answer for SYMBOL."""

    def fetch_bars(
        self,
        symbol: str,
        interval: str,
        start: datetime | pd.Timestamp,
        end: datetime | pd.Timestamp,
    ) -> pd.DataFrame:
        bars = super().fetch_bars(symbol, interval, start, end)
        if symbol != SYMBOL or len(bars) <= max(BROKEN):
            return bars
        return corrupt(bars)


def corrupt(bars: pd.DataFrame) -> pd.DataFrame:
    bars = bars.copy()
    top = np.maximum(bars["open"], bars["close"])
    bottom = np.minimum(bars["open"], bars["close"])
    assert top[30] > bottom[30] and top[40] > bottom[40]
    bars.loc[10, "open"] = np.nan
    bars.loc[20, "close"] = -1.0
    bars.loc[30, "high"] = bars.loc[30, "low"]  # below max(open, close)
    bars.loc[40, "low"] = top[40] + 1.0
    bars.loc[50, "volume"] = -10.0
    bars.loc[70, ["close", "volume"]] = [0.0, -1.0]
    # the copy is a valid bar with another close (between open and close)
    dup = bars.loc[DUPLICATED]
    assert dup["open"] != dup["close"]
    copy = bars.loc[[DUPLICATED]].assign(close=(dup["open"] + dup["close"]) / 2)
    return pd.concat([bars, copy], ignore_index=True)


def summary_row(stdout: str, first: str) -> list[str]:
    """The cells of the console summary table's row starting with ``first``."""
    for line in stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│|]", line) if c.strip()]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no {first!r} row in:\n{stdout}")


def test_ingest_quarantines_bad_vendor_rows_and_reports_the_count(
    harness_api_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "data"
    end = "2026-11-20"
    start, stop = pd.Timestamp("2026-11-19", tz="UTC"), pd.Timestamp(end, tz="UTC")
    clean = SyntheticMarket(SEED).fetch_bars(SYMBOL, "5m", start, stop)
    assert len(clean) == 288
    sent = corrupt(clean)

    with Simulator(seed=SEED, tokens=(TOKEN,), market=BrokenVendorMarket(SEED)) as sim:
        proc = run_cli_on(
            harness_api_url,
            home,
            "ingest", "--source", "eodhd", "--symbols", SYMBOL, "--days", "1", "--end", end,
            EODHD_API_TOKEN=TOKEN,
            HEDGEFLOW_NETWORK__BASE_URL=sim.base_url,
        )  # fmt: skip
        served = [r.status for r in sim.request_log]
    assert_clean(proc)
    assert served == [200]
    n_bad = len(BROKEN) + 1
    fetched, stored = len(sent), len(clean) - len(BROKEN)

    # The run reports the count: the console summary ...
    assert summary_row(proc.stdout, SYMBOL)[1:5] == ["5m", f"{fetched}", f"{stored}", f"{n_bad}"]
    assert summary_row(proc.stdout, "total")[1:4] == [f"{fetched}", f"{stored}", f"{n_bad}"]
    # ... and the runs row.
    ((run_id, status, summary),) = query(
        home, "select run_id, status, summary from runs where flow = 'ingest'"
    )
    assert status == "completed"
    assert json.loads(summary) == {
        "fetched": fetched,
        "stored": stored,
        "quarantined": n_bad,
        "empty_ranges": 0,
    }

    # The quarantine holds exactly the bad rows, raw, with their reasons, under the run.
    q = query_frame(home, "select * from quarantine order by ts, reason")
    assert set(q["run_id"]) == {run_id} and set(q["symbol"]) == {SYMBOL}
    assert set(q["interval"]) == {"5m"}
    expected = {clean["ts"][i]: reason for i, reason in BROKEN.items()}
    got = dict(zip(q["ts"], q["reason"], strict=True))
    dup_ts = clean["ts"][DUPLICATED]
    assert got.pop(dup_ts) == REASON_DUPLICATE
    assert got == expected
    by_ts = q.set_index("ts")
    assert math.isnan(by_ts.loc[clean["ts"][10], "open"])
    assert by_ts.loc[clean["ts"][20], "close"] == -1.0
    assert by_ts.loc[clean["ts"][50], "volume"] == -10.0
    assert by_ts.loc[dup_ts, "close"] == sent["close"].iloc[-1]  # the later copy

    # bars holds every other row, unchanged; of the duplicated bar, the first copy.
    bars = query_frame(home, "select ts, open, high, low, close, volume from bars order by ts")
    keep = clean.drop(index=list(BROKEN)).reset_index(drop=True)
    assert list(bars["ts"]) == list(keep["ts"])
    for col in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(bars[col], keep[col], err_msg=col)
