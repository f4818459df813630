"""Splits end to end: the vendor's ``/splits`` (the simulator, over a real socket) into
the lake, the ``splits`` and ``bars_adjusted`` views, and the adjusted bars every
backtest reads.

The must-show case (issue 11): S152.US of the synthetic market (seed 7) splits 4-for-1
on 2021-01-20, its first split. On the raw bars the default stock agent is stopped out
at the split's first bar (a fake 75% crash); on the adjusted bars it trades exactly as on
the same market that never split (its prices divided by 4), bit for bit.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hedgeflow.config import DEFAULT_COSTS, NetworkSettings, RiskSettings
from hedgeflow.engine import EngineConfig, backtest
from hedgeflow.errors import TransientSourceError
from hedgeflow.research import compute_signals
from hedgeflow.sources.simulator import Simulator
from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.splits import Split
from hedgeflow.strategies import parse_params
from hedgeflow.tasks.ingest import SourceSpec, ingest_symbol_body
from hedgeflow.warehouse import Warehouse

SEED = 7
TOKEN = "splits-tok-51d2"
SYMBOL = "S152.US"
EX_DATE = date(2021, 1, 20)
START = datetime(2020, 12, 31, tzinfo=UTC)
END = datetime(2021, 2, 9, tzinfo=UTC)
PRICES = ["open", "high", "low", "close"]


@pytest.fixture(scope="module")
def sim() -> Simulator:
    with Simulator(seed=SEED, tokens=(TOKEN,)) as server:
        yield server


def _ingest(sim: Simulator, home: Path, symbol: str = SYMBOL) -> None:
    network = NetworkSettings(base_url=sim.base_url, max_retries=0, rest_timeout=5.0)
    spec = SourceSpec("eodhd", network, SEED, public_token=TOKEN)
    ingest_symbol_body(symbol, "5m", START, END, spec, home, "run-splits-1")


def _trades(bars: pd.DataFrame) -> pd.DataFrame:
    signal = compute_signals(bars, "sma_cross", parse_params("sma_cross", {}))["signal"]
    cfg = EngineConfig.from_settings(RiskSettings(), DEFAULT_COSTS["stock"], "stock", 100_000.0)
    return backtest(bars, signal.to_numpy(), cfg).trades


def test_the_schedule_has_the_case() -> None:
    first = SyntheticMarket(SEED).split_schedule(SYMBOL)[0]
    assert (first.ex_date, first.ratio) == (EX_DATE, 4.0)


@pytest.fixture(scope="module")
def stored(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    home = tmp_path_factory.mktemp("splits") / "data"
    _ingest(sim, home)
    return Warehouse(home)


def test_ingest_stores_the_vendors_splits_up_to_the_window_end(stored: Warehouse) -> None:
    assert stored.splits(SYMBOL) == [Split(EX_DATE, 4.0, 1.0)]
    rows = stored.query("select symbol, ex_date, new_shares, old_shares, ratio from splits")
    assert rows.values.tolist() == [[SYMBOL, pd.Timestamp(EX_DATE), 4.0, 1.0, 4.0]]


def test_raw_bars_crash_at_the_split_and_stop_out(stored: Warehouse) -> None:
    raw = stored.read_bars(SYMBOL, "5m", START, END)
    ex = pd.Timestamp(EX_DATE, tz="UTC")
    before, after = raw[raw["ts"] < ex], raw[raw["ts"] >= ex]
    drop = after["open"].iloc[0] / before["close"].iloc[-1] - 1
    assert -0.78 < drop < -0.72  # a 4-for-1 split reads as a 75% crash
    trades = _trades(raw)
    at_split = trades[trades["exit_ts"] == after["ts"].iloc[0]]
    assert at_split["exit_reason"].tolist() == ["stop"]
    assert float(at_split["pnl"].iloc[0]) < -0.5 * float(
        at_split["qty"].iloc[0] * at_split["entry_price"].iloc[0]
    )


def test_adjusted_bars_trade_as_the_market_that_never_split(stored: Warehouse) -> None:
    adjusted = stored.read_bars(SYMBOL, "5m", START, END, adjusted=True)
    never = SyntheticMarket(SEED, splits=False).fetch_bars(SYMBOL, "5m", START, END)
    never[PRICES] = never[PRICES] / 4.0
    never["volume"] = never["volume"] * 4.0
    pd.testing.assert_frame_equal(adjusted, never, check_exact=True)
    got, expected = _trades(adjusted), _trades(never)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert len(got) > 20
    split_bar = adjusted[adjusted["ts"] >= pd.Timestamp(EX_DATE, tz="UTC")]["ts"].iloc[0]
    assert not ((got["exit_ts"] == split_bar) & (got["exit_reason"] == "stop")).any()


def test_the_bars_adjusted_view_holds_the_same_values(stored: Warehouse) -> None:
    view = stored.query(
        "select ts, open, high, low, close, volume, split_factor from bars_adjusted "
        f"where symbol = '{SYMBOL}' order by ts"
    )
    adjusted = stored.read_bars(SYMBOL, "5m", START, END, adjusted=True)
    assert len(view) == len(adjusted)
    for col in [*PRICES, "volume"]:
        assert np.array_equal(view[col].to_numpy(), adjusted[col].to_numpy()), col
    ex = pd.Timestamp(EX_DATE, tz="UTC")
    factors = view.set_index("ts")["split_factor"]
    assert set(factors[factors.index < ex]) == {4.0} and set(factors[factors.index >= ex]) == {1.0}
    raw = stored.query(f"select count(*) n from bars where symbol = '{SYMBOL}'")["n"].iloc[0]
    assert raw == len(view)


def test_a_bad_ratio_changes_nothing_stored(sim: Simulator, stored: Warehouse) -> None:
    """A malformed answer fails the symbol with a message naming the ratio; the bars
    and splits already stored stay as they were."""
    before_bars = stored.read_bars(SYMBOL, "5m", START, END)
    before_files = {p: p.read_bytes() for p in stored.paths.lake.rglob("*.parquet")}
    for body, problem in [
        (b'[{"date": "2021-01-20", "split": "0.000000/1.000000"}]', "must be two positive"),
        (b'[{"date": "2021-01-20", "split": "-4/1"}]', "is not 'new/old' shares"),
        (b'[{"date": "2021-01-20", "split": "four/one"}]', "is not 'new/old' shares"),
    ]:
        sim.split_answers[SYMBOL] = body
        try:
            with pytest.raises(TransientSourceError, match=problem):
                _ingest(sim, stored.paths.home)
        finally:
            sim.split_answers.pop(SYMBOL)
    assert {p: p.read_bytes() for p in stored.paths.lake.rglob("*.parquet")} == before_files
    pd.testing.assert_frame_equal(stored.read_bars(SYMBOL, "5m", START, END), before_bars)
    assert stored.splits(SYMBOL) == [Split(EX_DATE, 4.0, 1.0)]


def test_forex_and_crypto_have_no_splits(sim: Simulator, tmp_path: Path) -> None:
    home = tmp_path / "data"
    before = len(sim.request_log)
    _ingest(sim, home, "BTC-USD.CC")
    paths = [r.path for r in sim.request_log[before:]]
    assert not any(p.startswith("/api/splits/") for p in paths)
    assert Warehouse(home).query("select count(*) n from splits")["n"].iloc[0] == 0
