"""One pandera DataFrameModel per warehouse table (DESIGN.md "Tables").

``TABLE_MODELS`` maps a table name to its model; the warehouse builds its DDL
from these models and validates every frame with them before storing it.
"""

from __future__ import annotations

import pandera.pandas as pa

from hedgeflow.schemas import columns
from hedgeflow.schemas._base import validate_frame
from hedgeflow.schemas.bars import (
    BarsFrame,
    Quarantine,
    StoredBars,
    ensure_valid_bars,
    split_valid_bars,
)
from hedgeflow.schemas.live import (
    LiveBars,
    LiveDeliveries,
    LiveFills,
    LiveOrders,
    LiveOutbox,
    LivePositions,
    LiveSignals,
)
from hedgeflow.schemas.reconcile import LiveDrift
from hedgeflow.schemas.results import (
    AgentMetrics,
    Equity,
    PortfolioMetrics,
    Signals,
    SkippedOrders,
    SweepOverfit,
    SweepResults,
    Trades,
    WalkforwardEquity,
    WalkforwardFolds,
)
from hedgeflow.schemas.runs import Runs

TABLE_MODELS: dict[str, type[pa.DataFrameModel]] = {
    columns.BARS: StoredBars,
    columns.QUARANTINE: Quarantine,
    columns.RUNS: Runs,
    columns.SIGNALS: Signals,
    columns.TRADES: Trades,
    columns.EQUITY_TABLE: Equity,
    columns.AGENT_METRICS: AgentMetrics,
    columns.PORTFOLIO_METRICS: PortfolioMetrics,
    columns.SWEEP_RESULTS: SweepResults,
    columns.SWEEP_OVERFIT: SweepOverfit,
    columns.SKIPPED_ORDERS: SkippedOrders,
    columns.WALKFORWARD_FOLDS: WalkforwardFolds,
    columns.WALKFORWARD_EQUITY: WalkforwardEquity,
    columns.LIVE_BARS: LiveBars,
    columns.LIVE_SIGNALS: LiveSignals,
    columns.LIVE_ORDERS: LiveOrders,
    columns.LIVE_FILLS: LiveFills,
    columns.LIVE_POSITIONS: LivePositions,
    columns.LIVE_OUTBOX: LiveOutbox,
    columns.LIVE_DELIVERIES: LiveDeliveries,
    columns.LIVE_DRIFT: LiveDrift,
}


def table_columns(table: str) -> tuple[str, ...]:
    """The columns of ``table`` in model order."""
    return tuple(TABLE_MODELS[table].to_schema().columns)


__all__ = [
    "TABLE_MODELS",
    "AgentMetrics",
    "BarsFrame",
    "Equity",
    "LiveBars",
    "LiveDeliveries",
    "LiveDrift",
    "LiveFills",
    "LiveOrders",
    "LiveOutbox",
    "LivePositions",
    "LiveSignals",
    "PortfolioMetrics",
    "Quarantine",
    "Runs",
    "Signals",
    "StoredBars",
    "SweepOverfit",
    "SweepResults",
    "Trades",
    "WalkforwardEquity",
    "WalkforwardFolds",
    "ensure_valid_bars",
    "split_valid_bars",
    "table_columns",
    "validate_frame",
]
