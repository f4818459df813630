"""Engine input validation: non-finite settings, the fee / slippage range and a NaN (or
otherwise non 0/1) signal are refused with InvalidInputError naming the problem,
before the compiled loop runs."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

import hedgeflow.engine as engine
from hedgeflow.engine import EngineConfig, backtest, run_arrays
from hedgeflow.errors import InvalidInputError

BASE = EngineConfig()
NON_FINITE = [math.nan, math.inf, -math.inf, np.float64("nan")]
FINITE_SETTINGS = [
    "initial_equity",
    "risk_per_trade",
    "stop_pct",
    "take_profit_pct",
    "max_leverage",
    "atr_mult",
]


def bars(n: int = 6) -> pd.DataFrame:
    close = 100.0 + np.arange(n, dtype=np.float64)
    return pd.DataFrame(
        {
            "ts": pd.date_range("2025-01-02 14:30", periods=n, freq="5min", tz="UTC"),
            "open": close,
            "high": close + 1.0,
            "low": close - 1.0,
            "close": close,
        }
    )


@pytest.fixture()
def no_loop(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace the compiled loop: a refused input must never reach it."""
    calls: list[Any] = []

    def loop(*args: Any) -> Any:
        calls.append(args)
        raise AssertionError("the compiled loop ran on an input that should be refused")

    monkeypatch.setattr(engine, "_event_loop", loop)
    return calls


@pytest.mark.parametrize("name", FINITE_SETTINGS)
@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf", "np.nan"])
def test_non_finite_settings_are_refused(name: str, value: float) -> None:
    settings: dict[str, Any] = {name: value}
    with pytest.raises(InvalidInputError, match=re.escape(f"{name} must be a finite number")):
        EngineConfig(**settings)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("initial_equity", 0.0, "initial_equity must be in > 0, got 0.0"),
        ("initial_equity", -1_000.0, "initial_equity must be in > 0, got -1000.0"),
        ("risk_per_trade", 1.5, "risk_per_trade must be in (0, 1.0], got 1.5"),
        ("stop_pct", 1.0, "stop_pct must be in (0, 1.0), got 1.0"),
        ("take_profit_pct", -0.02, "take_profit_pct must be in > 0, got -0.02"),
        ("max_leverage", 0, "max_leverage must be in > 0, got 0"),
        ("max_leverage", True, "max_leverage must be a finite number, got True"),
        ("risk_per_trade", "0.01", "risk_per_trade must be a finite number, got '0.01'"),
    ],
)
def test_out_of_range_settings_name_the_setting_and_value(
    name: str, value: Any, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        EngineConfig(**{name: value})


@pytest.mark.parametrize("name", ["fee_bps", "slippage_bps"])
@pytest.mark.parametrize(
    "value",
    [-0.01, -5.0, 10_000.0, 25_000.0, 1e9, math.nan, math.inf, -math.inf, True],
    ids=["-0.01", "-5", "10000", "25000", "1e9", "nan", "inf", "-inf", "bool"],
)
def test_fee_and_slippage_outside_0_to_10000_bps_are_refused(name: str, value: Any) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(f"{name} must be in [0, 10000) bps")):
        EngineConfig(**{name: value})


@pytest.mark.parametrize("value", [0, 0.0, 2.5, 9_999.99])
def test_fee_and_slippage_inside_the_range_are_accepted(value: float) -> None:
    cfg = EngineConfig(fee_bps=value, slippage_bps=value)
    assert (cfg.fee_bps, cfg.slippage_bps) == (value, value)


@pytest.mark.parametrize(
    ("signal", "message"),
    [
        ([0.0, 1.0, math.nan, 1.0, 0.0, 0.0], "signal is NaN at position 2"),
        (pd.Series([math.nan, 0, 1, 1, 0, 0], dtype="float64"), "signal is NaN at position 0"),
        ([0.0, 1.0, 1.0, math.inf, 0.0, 0.0], "signal must be -1, 0 or 1 (short, flat, long), got"),
        ([0, 1, -2, 0, 0, 0], "got np.int64(-2) at position 2"),
        ([0.0, 0.5, 1.0, 0.0, 0.0, 0.0], "got np.float64(0.5) at position 1"),
        # a nullable integer signal with a missing value: refused, not read as 0
        (pd.array([0, 1, pd.NA, 1, 0, 0], dtype="Int64"), "signal is NaN at position 2"),
        (["0", "1", "1", "0", "0", "0"], "signal must be numeric -1/0/1, got dtype <U1"),
        ([0, 1, 1, 0, 0], "signal must be a 1-D array of 6 values, got shape (5,)"),
    ],
    ids=["nan", "nan-series", "inf", "minus-two", "half", "pd.NA", "strings", "short"],
)
def test_bad_signals_are_refused_before_the_loop(
    no_loop: list[Any], signal: Any, message: str
) -> None:
    frame = bars()
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        backtest(frame, signal, EngineConfig())
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        run_arrays(frame["open"], frame["high"], frame["low"], frame["close"], signal, BASE)
    assert no_loop == []


def test_a_valid_signal_reaches_the_loop(no_loop: list[Any]) -> None:
    # the fixture is live: a good input does reach the (replaced) loop
    with pytest.raises(AssertionError, match="the compiled loop ran"):
        backtest(bars(), [0, 1, 1, 0, 0, 0], EngineConfig())
    (args,) = no_loop
    np.testing.assert_array_equal(args[4], np.array([0, 1, 1, 0, 0, 0], dtype=np.int8))


def test_the_settings_reach_the_loop_as_validated() -> None:
    cfg = EngineConfig(fee_bps=10.0, slippage_bps=0.0, stop_pct=0.5, take_profit_pct=0.5)
    result = backtest(bars(), [0, 1, 1, 0, 0, 0], cfg)
    (trade,) = result.trades.itertuples()
    # entry at the open of bar 2 (102), exit at the open of bar 4 (104); 10 bps each side
    assert (trade.entry_price, trade.exit_price, trade.exit_reason) == (102.0, 104.0, "signal")
    assert trade.fees == pytest.approx(trade.qty * (102.0 + 104.0) * 10 / 1e4)
    assert math.isfinite(result.final_equity)
