"""Result tables of a backtest run: signals, trades, equity, metrics, sweeps.

Every table carries ``run_id``; the warehouse shows a run's rows only once the
run is finished (completed or partial).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from hedgeflow.schemas._base import (
    SYMBOL_PATTERN,
    TableModel,
    json_text_check,
    name_field,
    ts_field,
)
from hedgeflow.schemas.columns import (
    EXIT_REASONS,
    POSITION_SIDES,
    RUN_ID_PATTERN,
    SKIP_REASONS,
    WALKFORWARD_MODES,
)

# ---- shared field groups (pandera collects base-class fields, bases first) ----


class IndicatorFields(TableModel):
    """Indicator values of a signals row: a strategy fills its own, the rest are null."""

    sma_fast: Series[float] = pa.Field(nullable=True)
    sma_slow: Series[float] = pa.Field(nullable=True)
    rsi: Series[float] = pa.Field(nullable=True, ge=0, le=100)
    dc_upper: Series[float] = pa.Field(nullable=True)
    dc_lower: Series[float] = pa.Field(nullable=True)
    dc_mid: Series[float] = pa.Field(nullable=True)
    # a strategy's other indicators (users' strategies) as one JSON object, else null
    indicators: Series[str] = pa.Field(nullable=True)

    @pa.check("indicators", name="json_text")
    def _indicators_json(cls, s: pd.Series) -> pd.Series:
        return json_text_check(s)


class MetricFields(TableModel):
    """The metrics of DESIGN.md convention 6 (null where undefined, e.g. no trades)."""

    total_return: Series[float] = pa.Field(nullable=True)
    cagr: Series[float] = pa.Field(nullable=True)
    ann_vol: Series[float] = pa.Field(nullable=True, ge=0)
    sharpe: Series[float] = pa.Field(nullable=True)
    sortino: Series[float] = pa.Field(nullable=True)
    max_drawdown: Series[float] = pa.Field(nullable=True, le=0)
    calmar: Series[float] = pa.Field(nullable=True)
    n_trades: Series[np.int64] = pa.Field(ge=0)
    win_rate: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    profit_factor: Series[float] = pa.Field(nullable=True, ge=0)
    exposure: Series[float] = pa.Field(nullable=True, ge=0, le=1)


class _SignalKey(TableModel):
    run_id: Series[str] = pa.Field(str_matches=RUN_ID_PATTERN)
    agent: Series[str] = name_field()
    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    ts: Series[pd.DatetimeTZDtype] = ts_field()
    close: Series[float] = pa.Field(gt=0)
    signal: Series[np.int8] = pa.Field(isin=[-1, 0, 1])


class Signals(IndicatorFields, _SignalKey):
    """Per bar: the close, the strategy's signal (1 = want long, 0 = flat, -1 = want
    short) and indicators."""

    class Config:
        unique = ("run_id", "agent", "symbol", "ts")


class Trades(TableModel):
    """A closed round trip. pnl = qty x (exit - entry) - fees; return_pct = pnl / (qty x entry)."""

    run_id: Series[str] = pa.Field(str_matches=RUN_ID_PATTERN)
    agent: Series[str] = name_field()
    trade_id: Series[np.int64] = pa.Field(ge=0)
    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    side: Series[str] = pa.Field(isin=list(POSITION_SIDES))
    qty: Series[float] = pa.Field(gt=0)
    entry_ts: Series[pd.DatetimeTZDtype] = ts_field()
    entry_price: Series[float] = pa.Field(gt=0)
    exit_ts: Series[pd.DatetimeTZDtype] = ts_field()
    exit_price: Series[float] = pa.Field(gt=0)
    exit_reason: Series[str] = pa.Field(isin=list(EXIT_REASONS))
    fees: Series[float] = pa.Field(ge=0)
    pnl: Series[float]
    return_pct: Series[float]

    class Config:
        unique = ("run_id", "agent", "trade_id")

    @pa.dataframe_check(name="exit_ts >= entry_ts")
    def _exit_after_entry(cls, df: pd.DataFrame) -> pd.Series:
        return df["exit_ts"] >= df["entry_ts"]


class SkippedOrders(TableModel):
    """An entry the order minimums skipped (the venue's quantity step and minimum
    notional): the open it was due at, its side and why."""

    run_id: Series[str] = pa.Field(str_matches=RUN_ID_PATTERN)
    agent: Series[str] = name_field()
    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    ts: Series[pd.DatetimeTZDtype] = ts_field()
    side: Series[str] = pa.Field(isin=list(POSITION_SIDES))
    reason: Series[str] = pa.Field(isin=list(SKIP_REASONS))

    class Config:
        unique = ("run_id", "agent", "ts", "side")


class Equity(TableModel):
    """Equity at each bar's close (agent ``portfolio`` for the combination)."""

    run_id: Series[str] = pa.Field(str_matches=RUN_ID_PATTERN)
    agent: Series[str] = name_field()
    ts: Series[pd.DatetimeTZDtype] = ts_field()
    equity: Series[float]
    drawdown: Series[float] = pa.Field(le=0)


class _AgentMetricsKey(TableModel):
    run_id: Series[str] = pa.Field(str_matches=RUN_ID_PATTERN)
    agent: Series[str] = name_field()
    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    # Aliased: a plain `strategy` attribute would shadow DataFrameModel.strategy().
    strategy_: Series[str] = pa.Field(
        alias="strategy", str_length={"min_value": 1, "max_value": 128}
    )
    params: Series[str]


class AgentMetrics(MetricFields, _AgentMetricsKey):
    """One row per agent and run: its strategy, parameters (JSON) and metrics."""

    class Config:
        unique = ("run_id", "agent")

    @pa.check("params", name="json_text")
    def _json(cls, s: pd.Series) -> pd.Series:
        return json_text_check(s)


class _PortfolioMetricsKey(TableModel):
    run_id: Series[str] = pa.Field(str_matches=RUN_ID_PATTERN)
    method: Series[str] = name_field()


class PortfolioMetrics(MetricFields, _PortfolioMetricsKey):
    """One row per allocation method and run; ``weights`` is JSON text (agent -> weight)."""

    weights: Series[str]

    class Config:
        unique = ("run_id", "method")

    @pa.check("weights", name="json_text")
    def _json(cls, s: pd.Series) -> pd.Series:
        return json_text_check(s)


class _SweepKey(TableModel):
    run_id: Series[str] = pa.Field(str_matches=RUN_ID_PATTERN)
    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    # Aliased: a plain `strategy` attribute would shadow DataFrameModel.strategy().
    strategy_: Series[str] = pa.Field(
        alias="strategy", str_length={"min_value": 1, "max_value": 128}
    )
    params: Series[str]


class SweepResults(MetricFields, _SweepKey):
    """One row per parameter set of a sweep; ``rank`` 1 = best within (symbol, strategy)."""

    rank: Series[np.int64] = pa.Field(ge=1)
    # entries the order minimums skipped (0 for sweeps stored before they were counted)
    orders_skipped: Series[np.int64] = pa.Field(ge=0)

    class Config:
        unique = ("run_id", "symbol", "strategy", "params")

    @pa.check("params", name="json_text")
    def _json(cls, s: pd.Series) -> pd.Series:
        return json_text_check(s)


class SweepOverfit(TableModel):
    """One row per (run, symbol, strategy) of a sweep: the overfitting statistics of
    its combinations (DESIGN.md "Overfitting statistics"; per-period Sharpe ratios).
    ``best_params`` is the combination with the highest Sharpe; ``overfit`` is true
    when pbo > 0.5 or dsr < 0.95 (or dsr is undefined: the winner never moved)."""

    run_id: Series[str] = pa.Field(str_matches=RUN_ID_PATTERN)
    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    # Aliased: a plain `strategy` attribute would shadow DataFrameModel.strategy().
    strategy_: Series[str] = pa.Field(
        alias="strategy", str_length={"min_value": 1, "max_value": 128}
    )
    n_trials: Series[np.int64] = pa.Field(ge=2)
    n_obs: Series[np.int64] = pa.Field(ge=2)
    n_blocks: Series[np.int64] = pa.Field(ge=2)
    n_splits: Series[np.int64] = pa.Field(ge=1)
    best_params: Series[str]
    sharpe_best: Series[float]
    psr: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    sr0: Series[float] = pa.Field(nullable=True, ge=0)
    dsr: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    pbo: Series[float] = pa.Field(ge=0, le=1)
    prob_oos_loss: Series[float] = pa.Field(ge=0, le=1)
    degradation_slope: Series[float] = pa.Field(nullable=True)
    degradation_intercept: Series[float] = pa.Field(nullable=True)
    overfit: Series[bool]

    class Config:
        unique = ("run_id", "symbol", "strategy")

    @pa.check("best_params", name="json_text")
    def _json(cls, s: pd.Series) -> pd.Series:
        return json_text_check(s)


class _WalkforwardKey(TableModel):
    run_id: Series[str] = pa.Field(str_matches=RUN_ID_PATTERN)
    symbol: Series[str] = pa.Field(str_matches=SYMBOL_PATTERN)
    # Aliased: a plain `strategy` attribute would shadow DataFrameModel.strategy().
    strategy_: Series[str] = pa.Field(
        alias="strategy", str_length={"min_value": 1, "max_value": 128}
    )
    mode: Series[str] = pa.Field(isin=list(WALKFORWARD_MODES))


class WalkforwardFolds(MetricFields, _WalkforwardKey):
    """One row per fold (a CPCV split) of ``hedgeflow walkforward``: its train and test
    spans (first and last bar timestamps; a CPCV split's train and test sets may have
    gaps), the combination chosen in sample by ``metric`` (``best_params``, JSON) and
    its in-sample value (``is_metric``) and Sharpe (``is_sharpe``), then its
    out-of-sample metrics (the MetricFields) over the fold's test bars, run from flat."""

    fold: Series[np.int64] = pa.Field(ge=0)
    train_start: Series[pd.DatetimeTZDtype] = ts_field()
    train_end: Series[pd.DatetimeTZDtype] = ts_field()
    test_start: Series[pd.DatetimeTZDtype] = ts_field()
    test_end: Series[pd.DatetimeTZDtype] = ts_field()
    n_train_bars: Series[np.int64] = pa.Field(ge=1)
    n_test_bars: Series[np.int64] = pa.Field(ge=1)
    metric: Series[str] = pa.Field(str_length={"min_value": 1, "max_value": 32})
    best_params: Series[str]
    is_metric: Series[float] = pa.Field(nullable=True)
    is_sharpe: Series[float] = pa.Field(nullable=True)

    class Config:
        unique = ("run_id", "symbol", "strategy", "fold")

    @pa.check("best_params", name="json_text")
    def _json(cls, s: pd.Series) -> pd.Series:
        return json_text_check(s)

    @pa.dataframe_check(name="train_start <= train_end and test_start <= test_end")
    def _ordered(cls, df: pd.DataFrame) -> pd.Series:
        return (df["train_start"] <= df["train_end"]) & (df["test_start"] <= df["test_end"])


class WalkforwardEquity(_WalkforwardKey):
    """The stitched out-of-sample equity of ``hedgeflow walkforward`` at each test bar's
    close: one path for rolling and anchored folds, phi paths for CPCV; ``fold`` is the
    fold whose out-of-sample run the bar belongs to."""

    path: Series[np.int64] = pa.Field(ge=0)
    ts: Series[pd.DatetimeTZDtype] = ts_field()
    fold: Series[np.int64] = pa.Field(ge=0)
    equity: Series[float]
    drawdown: Series[float] = pa.Field(le=0)

    class Config:
        unique = ("run_id", "symbol", "strategy", "path", "ts")
