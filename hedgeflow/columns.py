"""Column names of the frames that cross module boundaries, defined once."""

from __future__ import annotations

TS = "ts"
OPEN = "open"
HIGH = "high"
LOW = "low"
CLOSE = "close"
VOLUME = "volume"
SYMBOL = "symbol"
INTERVAL = "interval"
SOURCE = "source"
INGESTED_AT = "ingested_at"
RUN_ID = "run_id"
REASON = "reason"

# signals / live_signals: a strategy's indicators without a column of their own
# (users' strategies), as one JSON object per row.
EXTRA_INDICATORS = "indicators"

PRICE_COLUMNS: tuple[str, ...] = (OPEN, HIGH, LOW, CLOSE)
# A bars frame as a source returns it: start-stamped UTC bars, sorted, RangeIndex.
BAR_COLUMNS: tuple[str, ...] = (TS, OPEN, HIGH, LOW, CLOSE, VOLUME)
# A bars row as stored in the lake.
STORED_BAR_COLUMNS: tuple[str, ...] = (SYMBOL, INTERVAL, *BAR_COLUMNS, SOURCE, INGESTED_AT)

TS_DTYPE = "datetime64[us, UTC]"

# Indicator columns of signals / live_signals; a strategy fills its own, the rest are null.
INDICATOR_COLUMNS: tuple[str, ...] = (
    "sma_fast",
    "sma_slow",
    "rsi",
    "dc_upper",
    "dc_lower",
    "dc_mid",
)

# The live record's tables (the live flow's pure rows, hedgeflow.live.record, name them;
# hedgeflow.schemas.columns re-exports them with the other table names).
LIVE_BARS = "live_bars"
LIVE_SIGNALS = "live_signals"
LIVE_ORDERS = "live_orders"
LIVE_FILLS = "live_fills"
LIVE_POSITIONS = "live_positions"
# Live notifications: the outbox (one event per order and fill, stored with them), the
# delivery state per event and channel, and the view joining them.
LIVE_OUTBOX = "live_outbox"
LIVE_DELIVERIES = "live_deliveries"
LIVE_NOTIFICATIONS = "live_notifications"

# Reconciliation (``hedgeflow reconcile``): the classes of a live-vs-engine difference,
# defined once (the core classifies, ``live_drift.kind`` stores them).
MISSED_SIGNAL = "missed_signal"  # the engine trades where live did not
EXTRA_SIGNAL = "extra_signal"  # live traded where the engine did not
FILL_PRICE = "fill_price"  # both traded, at different prices (or for another reason)
FILL_QTY = "qty"  # same price, different quantity (sizing on a different equity)
COSTS = "costs"  # same price and quantity, different fee
VENDOR_REVISION = "vendor_revision"  # explained: the vendor's bar differs from the live one
DRIFT_KINDS: tuple[str, ...] = (
    MISSED_SIGNAL,
    EXTRA_SIGNAL,
    FILL_PRICE,
    FILL_QTY,
    COSTS,
    VENDOR_REVISION,
)

# Entries the order minimums skipped: their count per sweep combination
# (sweep_results) and one row per skipped entry of a nightly run (skipped_orders).
ORDERS_SKIPPED = "orders_skipped"
SKIPPED_ORDERS = "skipped_orders"
