"""The drivers of the one rule set (hedgeflow.rules), for the hand-made rule cases:
the same bars, signal and settings through the batch engine, the live paper broker
(one bar at a time) and the sweep kernel. Each returns a ``BacktestResult``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from hedgeflow.engine import (
    SKIPPED_COLUMNS,
    TRADE_COLUMNS,
    BacktestResult,
    EngineConfig,
    backtest,
)
from hedgeflow.indicators import atr
from hedgeflow.live.broker import Fill, OrderUpdated, PaperBroker
from hedgeflow.sweep import kernels as K
from hedgeflow.sweep.core import engine_vector

Driver = Callable[[pd.DataFrame, Any, EngineConfig], BacktestResult]


def engine(bars: pd.DataFrame, signal: Any, config: EngineConfig) -> BacktestResult:
    return backtest(bars, signal, config)


def broker(bars: pd.DataFrame, signal: Any, config: EngineConfig) -> BacktestResult:
    """The paper broker bar by bar; its fills become the engine's frames."""
    sig = np.asarray(signal)
    if sig.ndim != 1 or sig.shape[0] != len(bars) or ((sig != 0) & (sig != 1) & (sig != -1)).any():
        return backtest(bars, signal, config)  # raises the engine's InvalidInputError
    b = PaperBroker(config, "rules", "TEST", interval="5m")
    equity, position, exits = [], [], []
    skipped: list[tuple[pd.Timestamp, str, str]] = []
    for row, s in zip(bars.itertuples(index=False), sig.tolist(), strict=True):
        events = b.on_bar(row.ts, row.open, row.high, row.low, row.close, int(s))
        exits += [e for e in events if isinstance(e, Fill) and e.trade is not None]
        skipped += [
            (row.ts, "long" if e.side == "buy" else "short", e.reason)
            for e in events
            if isinstance(e, OrderUpdated) and e.status == "rejected"
        ]
        equity.append(b.state.equity)
        position.append(b.held)
    events = b.close_out()
    exits += [e for e in events if isinstance(e, Fill) and e.trade is not None]
    equity[-1] = b.state.equity
    eq = np.array(equity)
    trades = pd.DataFrame(
        {
            "trade_id": np.arange(1, len(exits) + 1, dtype=np.int64),
            "side": pd.Series([f.trade.side for f in exits], dtype="str"),
            "qty": [f.trade.qty for f in exits],
            "entry_ts": pd.Series([f.trade.entry_ts for f in exits], dtype=bars["ts"].dtype),
            "entry_price": [f.trade.entry_price for f in exits],
            "exit_ts": pd.Series([f.trade.exit_ts for f in exits], dtype=bars["ts"].dtype),
            "exit_price": [f.trade.exit_price for f in exits],
            "exit_reason": pd.Series([f.trade.exit_reason for f in exits], dtype="str"),
            "fees": [f.trade.fees for f in exits],
            "pnl": [f.trade.pnl for f in exits],
            "return_pct": [f.trade.return_pct for f in exits],
        },
        columns=list(TRADE_COLUMNS),
    )
    frame = pd.DataFrame(
        {
            "ts": bars["ts"].reset_index(drop=True),
            "equity": eq,
            "drawdown": eq / np.maximum.accumulate(eq) - 1.0,
            "position": np.array(position, dtype=np.float64),
        }
    )
    skips = pd.DataFrame(
        {
            "ts": pd.Series([s[0] for s in skipped], dtype=bars["ts"].dtype),
            "side": pd.Series([s[1] for s in skipped], dtype="str"),
            "reason": pd.Series([s[2] for s in skipped], dtype="str"),
        },
        columns=list(SKIPPED_COLUMNS),
    )
    return BacktestResult(trades=trades, equity=frame, config=config, skipped=skips)


def sweep(bars: pd.DataFrame, signal: Any, config: EngineConfig) -> BacktestResult:
    """The sweep's per-combination kernel on the same signal: its statistics must be
    those of the engine's result (which the case then checks in detail)."""
    result = backtest(bars, signal, config)
    o, h, lo, c = (
        np.ascontiguousarray(bars[x].to_numpy(np.float64)) for x in ("open", "high", "low", "close")
    )
    a = atr(h, lo, c, config.atr_period) if config.use_trailing_atr else np.empty(0)
    out = np.empty(K.N_STATS)
    K._combo(o, h, lo, c, np.asarray(signal, dtype=np.int8), a, engine_vector(config), out)
    eq = result.equity["equity"].to_numpy()
    pnl = result.trades["pnl"].to_numpy()
    assert out[K.S_GROWTH] == eq[-1] / eq[0]
    assert out[K.S_N_TRADES] == len(result.trades)
    assert out[K.S_WINS] == int((pnl > 0).sum())
    assert out[K.S_GROSS_PROFIT] == pnl[pnl > 0].sum()
    assert out[K.S_GROSS_LOSS] == -pnl[pnl < 0].sum()
    assert out[K.S_EXPOSED] == int((result.equity["position"].to_numpy() != 0).sum())
    assert out[K.S_MAX_DD] == result.equity["drawdown"].min()
    assert out[K.S_SKIPPED] == len(result.skipped)
    return result


DRIVERS: dict[str, Driver] = {"engine": engine, "broker": broker, "sweep": sweep}
