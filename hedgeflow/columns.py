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
