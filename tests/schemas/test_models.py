"""Every table model: a valid frame passes (dtypes coerced, us UTC), typical bad rows fail."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from hedgeflow.columns import BAR_COLUMNS, STORED_BAR_COLUMNS, TS_DTYPE
from hedgeflow.errors import DataValidationError
from hedgeflow.schemas import TABLE_MODELS, table_columns, validate_frame
from hedgeflow.schemas.bars import QUARANTINE_COLUMNS
from hedgeflow.schemas.columns import (
    EXTRA_INDICATORS,
    INDICATOR_COLUMNS,
    LIVE_TABLES,
    METRIC_COLUMNS,
    RESULT_TABLES,
    RUN_COLUMNS,
)

T0 = pd.Timestamp("2026-11-02 14:30", tz="UTC")
TS3 = pd.date_range(T0, periods=3, freq="5min")
METRICS = {
    "total_return": 0.1,
    "cagr": 0.2,
    "ann_vol": 0.15,
    "sharpe": 1.3,
    "sortino": np.nan,
    "max_drawdown": -0.05,
    "calmar": 4.0,
    "n_trades": 7,
    "win_rate": 0.5,
    "profit_factor": np.inf,
    "exposure": 0.4,
}
INDICATORS = {"sma_fast": 101.0, "sma_slow": 100.0, "rsi": np.nan, "dc_upper": np.nan}


def _signals() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": "r1",
            "agent": "stocks",
            "symbol": "AAPL.US",
            "ts": TS3,
            "close": [100.0, 101.0, 102.0],
            "signal": [0, 1, 1],
            **INDICATORS,
            "dc_lower": np.nan,
            "dc_mid": np.nan,
            "indicators": [None, '{"bb_mid": 101.5}', '{"bb_mid": null}'],
        }
    )


VALID: dict[str, Callable[[], pd.DataFrame]] = {
    "quarantine": lambda: pd.DataFrame(
        {
            "run_id": ["r1"],
            "symbol": ["AAPL.US"],
            "interval": ["5m"],
            "ts": [pd.NaT],
            "open": [np.nan],
            "high": [1.0],
            "low": [2.0],
            "close": [1.0],
            "volume": [None],
            "reason": ["ts missing or unparsable"],
        }
    ),
    "runs": lambda: pd.DataFrame(
        {
            "run_id": ["r1", "r2"],
            "flow": "nightly",
            "started_at": [T0, T0],
            "finished_at": [pd.NaT, T0],
            "status": ["running", "completed"],
            "params": ['{"a": 1}', "{}"],
            "code_version": "git:abc",
            "data_fingerprint": [None, "sha256:x"],
            "summary": [None, '{"sharpe": 1}'],
            "reason": [None, None],
            "process": ["host:1", None],
        }
    ),
    "signals": _signals,
    "live_signals": _signals,
    "trades": lambda: pd.DataFrame(
        {
            "run_id": "r1",
            "agent": "stocks",
            "trade_id": [0, 1],
            "symbol": "AAPL.US",
            "side": "long",
            "qty": [10.0, 5.0],
            "entry_ts": [TS3[0], TS3[1]],
            "entry_price": [100.0, 101.0],
            "exit_ts": [TS3[1], TS3[2]],
            "exit_price": [101.0, 99.0],
            "exit_reason": ["signal", "stop"],
            "fees": [0.2, 0.1],
            "pnl": [9.8, -10.1],
            "return_pct": [0.0098, -0.02],
        }
    ),
    "equity": lambda: pd.DataFrame(
        {
            "run_id": "r1",
            "agent": "portfolio",
            "ts": TS3,
            "equity": [100.0, 99.0, 101.0],
            "drawdown": [0.0, -0.01, 0.0],
        }
    ),
    "agent_metrics": lambda: pd.DataFrame(
        [
            {
                "run_id": "r1",
                "agent": "stocks",
                "symbol": "AAPL.US",
                "strategy": "sma_cross",
                "params": json.dumps({"fast": 10}),
                **METRICS,
            }
        ]
    ),
    "portfolio_metrics": lambda: pd.DataFrame(
        [{"run_id": "r1", "method": "equal", **METRICS, "weights": '{"stocks": 0.5}'}]
    ),
    "sweep_results": lambda: pd.DataFrame(
        [
            {
                "run_id": "r1",
                "symbol": "AAPL.US",
                "strategy": "sma_cross",
                "params": json.dumps({"fast": f}),
                **METRICS,
                "rank": r,
                "orders_skipped": r - 1,
            }
            for f, r in ((5, 1), (10, 2))
        ]
    ),
    "skipped_orders": lambda: pd.DataFrame(
        {
            "run_id": ["r1", "r1"],
            "agent": ["crypto", "crypto"],
            "symbol": ["BTC-USD.CC", "BTC-USD.CC"],
            "ts": pd.to_datetime(["2025-01-02 10:00", "2025-01-02 11:00"], utc=True).as_unit("us"),
            "side": ["long", "short"],
            "reason": ["below_min_notional", "below_qty_step"],
        }
    ),
    "sweep_overfit": lambda: pd.DataFrame(
        [
            {
                "run_id": "r1",
                "symbol": symbol,
                "strategy": "sma_cross",
                "n_trials": 40,
                "n_obs": 8639,
                "n_blocks": 16,
                "n_splits": 12870,
                "best_params": json.dumps({"fast": 5}),
                "sharpe_best": 0.03,
                "psr": psr,
                "sr0": 0.02,
                "dsr": dsr,
                "pbo": 0.55,
                "prob_oos_loss": 0.4,
                "degradation_slope": slope,
                "degradation_intercept": 0.001,
                "overfit": True,
            }
            for symbol, psr, dsr, slope in (("AAPL.US", 0.9, 0.6, -0.2), ("X.US", None, None, None))
        ]
    ),
    "walkforward_folds": lambda: pd.DataFrame(
        [
            {
                "run_id": "r1",
                "symbol": "AAPL.US",
                "strategy": "sma_cross",
                "mode": mode,
                "fold": fold,
                "train_start": TS3[0],
                "train_end": TS3[1],
                "test_start": TS3[2],
                "test_end": TS3[2],
                "n_train_bars": 2,
                "n_test_bars": 1,
                "metric": "sharpe",
                "best_params": json.dumps({"fast": 5}),
                "is_metric": 1.2,
                "is_sharpe": None,
                **METRICS,
            }
            for fold, mode in ((0, "rolling"), (1, "rolling"))
        ]
    ),
    "walkforward_equity": lambda: pd.DataFrame(
        {
            "run_id": "r1",
            "symbol": "AAPL.US",
            "strategy": "sma_cross",
            "mode": "cpcv",
            "path": [0, 0, 1],
            "ts": [TS3[0], TS3[1], TS3[0]],
            "fold": [0, 0, 3],
            "equity": [1e5, 1.01e5, 0.99e5],
            "drawdown": [0.0, 0.0, 0.0],
        }
    ),
    "live_bars": lambda: pd.DataFrame(
        {
            "run_id": "live-1",
            "symbol": "BTC-USD.CC",
            "interval": "1m",
            "ts": TS3,
            "open": 1.0,
            "high": 2.0,
            "low": 0.5,
            "close": 1.5,
            "volume": [1.0, np.nan, 0.0],
            "n_ticks": [3, 0, 1],
            "closed_by": ["tick", "flush", "tick"],
        }
    ),
    "live_orders": lambda: pd.DataFrame(
        {
            "run_id": "live-1",
            "agent": "crypto",
            "order_id": ["o1", "o2"],
            "symbol": "BTC-USD.CC",
            "side": ["buy", "sell"],
            "qty": [np.nan, 0.25],
            "created_ts": TS3[:2],
            "fill_after_ts": TS3[1:],
            "status": ["pending", "filled"],
            "reason": ["signal", "stop"],
        }
    ),
    "live_fills": lambda: pd.DataFrame(
        {
            "run_id": "live-1",
            "agent": "crypto",
            "fill_id": ["f1"],
            "order_id": ["o2"],
            "symbol": "BTC-USD.CC",
            "side": ["sell"],
            "qty": [0.25],
            "price": [60000.0],
            "fee": [1.5],
            "ts": TS3[2:],
            "reason": ["stop"],
        }
    ),
    "live_positions": lambda: pd.DataFrame(
        {
            "agent": ["crypto", "forex"],
            "symbol": ["BTC-USD.CC", "EURUSD.FOREX"],
            "qty": [0.25, 0.0],
            "entry_price": [60000.0, np.nan],
            "stop": [59400.0, np.nan],
            "take_profit": [61200.0, np.nan],
            "cash": [85000.0, 100000.0],
            "equity": [100000.0, 100000.0],
            "updated_ts": TS3[:2],
            "last_bar_ts": [TS3[0], pd.NaT],
        }
    ),
    "live_outbox": lambda: pd.DataFrame(
        {
            "event_id": ["ev-1", "ev-2"],
            "kind": ["order", "fill"],
            "run_id": ["r1", "r1"],
            "agent": ["stocks", "stocks"],
            "symbol": ["AAPL.US", "AAPL.US"],
            "ts": TS3[:2],
            "payload": ['{"event_id": "ev-1"}', '{"event_id": "ev-2"}'],
            "created_at": TS3[:2],
        }
    ),
    "live_deliveries": lambda: pd.DataFrame(
        {
            "event_id": ["ev-1", "ev-2"],
            "channel": ["webhook-0123456789ab", "webhook-0123456789ab"],
            "status": ["delivered", "pending"],
            "attempts": np.array([1, 2], dtype=np.int64),
            "last_error": [None, "HTTP 500"],
            "delivered_at": [TS3[0], pd.NaT],
            "updated_at": TS3[:2],
        }
    ),
    "live_drift": lambda: pd.DataFrame(
        {
            "run_id": "rec-1",
            "live_run_id": "live-1",
            "agent": "crypto",
            "symbol": "BTC-USD.CC",
            "trade_key": ["crypto-20261102T1435Z-buy", "crypto-20261102T1440Z-sell"],
            "ts": TS3[1:],
            "side": ["buy", "sell"],
            "kind": ["missed_signal", "vendor_revision"],
            "live_value": [np.nan, 60000.0],
            "engine_value": [60010.0, 60100.0],
            "explained": [False, True],
            "detail": ["engine buy 0.25 at 60010", "fill_price on the vendor's bars"],
        }
    ),
}

# (table, column, bad value) -> must fail
BAD: list[tuple[str, str, object]] = [
    ("quarantine", "reason", ""),
    ("runs", "status", "done"),
    ("runs", "params", "{not json"),
    ("runs", "run_id", "../etc"),
    ("signals", "signal", 2),
    ("signals", "symbol", "A;DROP TABLE bars"),
    ("signals", "rsi", 120.0),
    ("trades", "exit_reason", "timeout"),
    ("trades", "side", "buy"),
    ("trades", "qty", 0.0),
    ("equity", "drawdown", 0.1),
    ("agent_metrics", "win_rate", 1.5),
    ("agent_metrics", "params", "fast=10"),
    ("agent_metrics", "n_trades", -1),
    ("portfolio_metrics", "max_drawdown", 0.2),
    ("sweep_results", "rank", 0),
    ("sweep_overfit", "pbo", 1.5),
    ("sweep_overfit", "n_trials", 1),
    ("sweep_overfit", "best_params", "{fast=5"),
    ("walkforward_folds", "mode", "walk"),
    ("walkforward_folds", "n_test_bars", 0),
    ("walkforward_folds", "best_params", "{fast=5"),
    ("walkforward_folds", "fold", -1),
    ("walkforward_equity", "drawdown", 0.1),
    ("walkforward_equity", "path", -1),
    ("live_bars", "closed_by", "timer"),
    ("live_bars", "n_ticks", -1),
    ("live_orders", "status", "open"),
    ("live_fills", "price", -1.0),
    ("live_positions", "stop", 0.0),
    ("live_outbox", "kind", "trade"),
    ("live_outbox", "payload", "{not json"),
    ("live_deliveries", "status", "sent"),
    ("live_deliveries", "attempts", -1),
    ("live_drift", "kind", "timing"),
    ("live_drift", "side", "long"),
]


def test_every_stored_table_has_a_valid_example() -> None:
    assert set(VALID) | {"bars"} == set(TABLE_MODELS)


@pytest.mark.parametrize("table", sorted(VALID))
def test_valid_frame_passes_with_us_utc_timestamps(table: str) -> None:
    frame = VALID[table]()
    out = validate_frame(TABLE_MODELS[table], frame, table)
    assert len(out) == len(frame)
    for name, col in TABLE_MODELS[table].to_schema().columns.items():
        if "datetime" in str(col.dtype):
            assert str(out[name].dtype) == TS_DTYPE


@pytest.mark.parametrize("table", sorted(VALID))
def test_ns_timestamps_are_coerced_to_us(table: str) -> None:
    frame = VALID[table]()
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.DatetimeTZDtype):
            frame[col] = frame[col].dt.as_unit("ns")
    out = validate_frame(TABLE_MODELS[table], frame, table)
    assert all("ns" not in str(t) for t in out.dtypes)


@pytest.mark.parametrize(("table", "column", "value"), BAD)
def test_bad_value_is_refused(table: str, column: str, value: object) -> None:
    frame = VALID[table]()
    frame[column] = frame[column].astype("object")
    frame.loc[0, column] = value
    with pytest.raises(DataValidationError, match=table):
        validate_frame(TABLE_MODELS[table], frame, table)


@pytest.mark.parametrize("table", sorted(VALID))
def test_strict_columns(table: str) -> None:
    frame = VALID[table]()
    with pytest.raises(DataValidationError):
        validate_frame(TABLE_MODELS[table], frame.assign(unexpected=1), table)
    with pytest.raises(DataValidationError):
        validate_frame(TABLE_MODELS[table], frame.drop(columns=frame.columns[-1]), table)


def test_trades_exit_not_before_entry() -> None:
    frame = VALID["trades"]()
    frame.loc[0, "exit_ts"] = TS3[0] - pd.Timedelta("5min")
    with pytest.raises(DataValidationError, match="exit_ts >= entry_ts"):
        validate_frame(TABLE_MODELS["trades"], frame, "trades")


def test_column_constants_match_the_models() -> None:
    assert table_columns("runs") == RUN_COLUMNS
    assert table_columns("quarantine") == QUARANTINE_COLUMNS
    assert set(table_columns("bars")) == set(STORED_BAR_COLUMNS)
    assert table_columns("signals")[-len(INDICATOR_COLUMNS) - 1 :] == (
        *INDICATOR_COLUMNS,
        EXTRA_INDICATORS,
    )
    assert table_columns("live_signals") == table_columns("signals")
    for table in ("agent_metrics", "portfolio_metrics", "sweep_results"):
        cols = table_columns(table)
        start = cols.index(METRIC_COLUMNS[0])
        assert cols[start : start + len(METRIC_COLUMNS)] == METRIC_COLUMNS
    assert set(RESULT_TABLES) | set(LIVE_TABLES) <= set(TABLE_MODELS)
    assert set(BAR_COLUMNS) < set(STORED_BAR_COLUMNS)
