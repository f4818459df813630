"""Column names and vocabularies of the warehouse tables, defined once.

The bar columns (``ts``, ``open``, ... ``run_id``, ``reason``) live in
``hedgeflow.columns``; this module adds the names the result, run and live
tables use. The pandera models in this package declare exactly these names
(a test checks it), and the warehouse builds its DDL from the models.
"""

from __future__ import annotations

from typing import Final

# defined in the core (the live flow's pure record names them), re-exported here
from hedgeflow.columns import (
    DRIFT_KINDS as DRIFT_KINDS,
)
from hedgeflow.columns import (
    EXTRA_INDICATORS as EXTRA_INDICATORS,
)
from hedgeflow.columns import (
    INDICATOR_COLUMNS as INDICATOR_COLUMNS,
)
from hedgeflow.columns import (
    LIVE_BARS,
    LIVE_DELIVERIES,
    LIVE_FILLS,
    LIVE_NOTIFICATIONS,
    LIVE_ORDERS,
    LIVE_OUTBOX,
    LIVE_POSITIONS,
    LIVE_SIGNALS,
)
from hedgeflow.columns import ORDERS_SKIPPED as _ORDERS_SKIPPED
from hedgeflow.columns import SKIPPED_ORDERS as _SKIPPED_ORDERS
from hedgeflow.metrics import METRIC_KEYS

# --- runs ---------------------------------------------------------------
FLOW: Final = "flow"
STARTED_AT: Final = "started_at"
FINISHED_AT: Final = "finished_at"
STATUS: Final = "status"
PARAMS: Final = "params"
CODE_VERSION: Final = "code_version"
DATA_FINGERPRINT: Final = "data_fingerprint"
SUMMARY: Final = "summary"
# why a run failed, crashed or was cancelled (one line), and the process that ran it
# ("host:pid", so a later command can tell a dead run from a running one)
REASON: Final = "reason"
PROCESS: Final = "process"

RUN_COLUMNS: tuple[str, ...] = (
    "run_id",
    FLOW,
    STARTED_AT,
    FINISHED_AT,
    STATUS,
    PARAMS,
    CODE_VERSION,
    DATA_FINGERPRINT,
    SUMMARY,
    REASON,
    PROCESS,
)

RUN_STATUSES: tuple[str, ...] = (
    "running",
    "completed",
    "partial",
    "degraded",
    "failed",
    "cancelled",
    "crashed",
)
# A run whose results the user-facing views show. ``degraded``: a live run that stored
# what it got but whose feed went silent or kept failing (the reason is in its summary).
FINISHED_STATUSES: tuple[str, ...] = ("completed", "partial", "degraded")
# Statuses finish_run accepts.
# ``cancelled``: stopped by SIGINT / SIGTERM; ``crashed``: its process died (found by a
# later command); both keep their results hidden, like ``failed``.
FINAL_STATUSES: tuple[str, ...] = (
    "completed",
    "partial",
    "degraded",
    "failed",
    "cancelled",
    "crashed",
)

# A run id is used as a directory name (HOME/reports/<run_id>/): keep it plain.
RUN_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"

# --- results ------------------------------------------------------------
AGENT: Final = "agent"
STRATEGY: Final = "strategy"
SIGNAL: Final = "signal"
TRADE_ID: Final = "trade_id"
SIDE: Final = "side"
QTY: Final = "qty"
ENTRY_TS: Final = "entry_ts"
ENTRY_PRICE: Final = "entry_price"
EXIT_TS: Final = "exit_ts"
EXIT_PRICE: Final = "exit_price"
EXIT_REASON: Final = "exit_reason"
FEES: Final = "fees"
PNL: Final = "pnl"
RETURN_PCT: Final = "return_pct"
EQUITY: Final = "equity"
DRAWDOWN: Final = "drawdown"
METHOD: Final = "method"
WEIGHTS: Final = "weights"
RANK: Final = "rank"

# The agent name of the combined (portfolio) equity curve.
PORTFOLIO_AGENT: Final = "portfolio"

EXIT_REASONS: tuple[str, ...] = ("signal", "stop", "take_profit", "end")
POSITION_SIDES: tuple[str, ...] = ("long", "short")
# Why the order minimums skipped an entry (hedgeflow.rules.SKIP_REASONS; a test checks)
SKIP_REASONS: tuple[str, ...] = ("no_equity", "below_qty_step", "below_min_notional")

# The metrics of DESIGN.md convention 6, in that order.
METRIC_COLUMNS: tuple[str, ...] = METRIC_KEYS  # defined once, in the core

# --- live ---------------------------------------------------------------
N_TICKS: Final = "n_ticks"
CLOSED_BY: Final = "closed_by"
ORDER_ID: Final = "order_id"
FILL_ID: Final = "fill_id"
CREATED_TS: Final = "created_ts"
FILL_AFTER_TS: Final = "fill_after_ts"
PRICE: Final = "price"
FEE: Final = "fee"
STOP: Final = "stop"
TAKE_PROFIT: Final = "take_profit"
CASH: Final = "cash"
UPDATED_TS: Final = "updated_ts"
LAST_BAR_TS: Final = "last_bar_ts"

BAR_CLOSED_BY: tuple[str, ...] = ("tick", "flush")
ORDER_SIDES: tuple[str, ...] = ("buy", "sell")
ORDER_STATUSES: tuple[str, ...] = ("pending", "filled", "cancelled", "rejected")
# Live notifications (hedgeflow.live.notify): event kinds, delivery states.
NOTIFY_KINDS: tuple[str, ...] = ("order", "fill")
DELIVERY_STATUSES: tuple[str, ...] = ("pending", "delivered", "dead")
NOTIFY_TABLES: tuple[str, ...] = (LIVE_OUTBOX, LIVE_DELIVERIES)
NOTIFY_VIEW: Final = LIVE_NOTIFICATIONS
# Why an order or fill happened (documented vocabulary, not enforced: the live
# flow may add reasons).
ORDER_REASONS: tuple[str, ...] = ("signal", "stop", "take_profit", "end", "flatten")

# --- table names --------------------------------------------------------
# (the live tables' names, and INDICATOR_COLUMNS, are defined in the core,
# hedgeflow.columns: the live flow's pure record names them)
BARS: Final = "bars"
QUARANTINE: Final = "quarantine"
LAKE_QUARANTINE: Final = "lake_quarantine"  # a view over the lake, like bars
SPLITS: Final = "splits"  # a view over the lake's splits files
BARS_ADJUSTED: Final = "bars_adjusted"  # bars adjusted for the splits after them
VENDOR_GAPS: Final = "vendor_gaps"  # records in the lake: vendor answers with no bars
DATA_GAPS: Final = "data_gaps"  # a view: missing sessions and empty vendor answers
# data_gaps kinds
GAP_MISSING_SESSION: Final = "missing_session"
GAP_VENDOR_EMPTY: Final = "vendor_empty"
GAP_KINDS: tuple[str, ...] = (GAP_MISSING_SESSION, GAP_VENDOR_EMPTY)
RUNS: Final = "runs"
SIGNALS: Final = "signals"
TRADES: Final = "trades"
EQUITY_TABLE: Final = "equity"
AGENT_METRICS: Final = "agent_metrics"
PORTFOLIO_METRICS: Final = "portfolio_metrics"
SWEEP_RESULTS: Final = "sweep_results"
SWEEP_OVERFIT: Final = "sweep_overfit"
# entries of a nightly run's agents the order minimums skipped, one row each
SKIPPED_ORDERS: Final = _SKIPPED_ORDERS
ORDERS_SKIPPED: Final = _ORDERS_SKIPPED  # sweep_results: the count per combination
# hedgeflow walkforward: one row per fold, and the stitched out-of-sample equity per path
WALKFORWARD_FOLDS: Final = "walkforward_folds"
WALKFORWARD_EQUITY: Final = "walkforward_equity"
WALKFORWARD_MODES: tuple[str, ...] = ("rolling", "anchored", "cpcv")
# hedgeflow reconcile's differences (a result of a reconcile run, shown once it finished)
LIVE_DRIFT: Final = "live_drift"

# Tables a run writes with Warehouse.write_results.
RESULT_TABLES: tuple[str, ...] = (
    SIGNALS,
    TRADES,
    EQUITY_TABLE,
    AGENT_METRICS,
    PORTFOLIO_METRICS,
    SWEEP_RESULTS,
    SWEEP_OVERFIT,
    WALKFORWARD_FOLDS,
    WALKFORWARD_EQUITY,
    SKIPPED_ORDERS,
)
LIVE_TABLES: tuple[str, ...] = (LIVE_BARS, LIVE_SIGNALS, LIVE_ORDERS, LIVE_FILLS, LIVE_POSITIONS)
