"""Data gaps (DESIGN.md convention 8): the records of vendor answers with no bars, the
exchange calendar's sessions as a lake file, and the ``data_gaps`` view over both.

* An ingest whose vendor answered ``[]`` for a range keeps the stored bars there and
  records the range: one JSON record per answer,
  ``lake/vendor_gaps/symbol=<s>/<run_id>-<interval>-<n>.json`` (written durably).
* ``lake/calendars/XNYS-<exchange-calendars version>.parquet`` holds the calendar's
  sessions (open and close, UTC) from the library, written once per library version.
* ``data_gaps`` lists, per stock series (symbol, interval) in the lake, every session
  the calendar says was open between its first and last stored bar that has no stored
  bar (``missing_session``), and every open session (stocks) or range (forex, crypto)
  the vendor answered with no bars (``vendor_empty``, with the bars kept there).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TypeAlias

import pandas as pd

from hedgeflow.exchange_calendar import DEFAULT_CALENDAR, EXCHANGE_CALENDARS, sessions
from hedgeflow.fsutil import atomic_write
from hedgeflow.market import EXCHANGE_ASSET_CLASS, normalize_symbol, validate_interval
from hedgeflow.schemas.bars import DataGaps, VendorGap
from hedgeflow.schemas.columns import BARS, GAP_MISSING_SESSION, GAP_VENDOR_EMPTY
from hedgeflow.warehouse.paths import WarehousePaths, check_run_id

__all__ = ["calendar_file", "data_gaps_view_sql", "record_vendor_gaps"]

TimeLike: TypeAlias = datetime | pd.Timestamp


def _iso(value: TimeLike) -> str:
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.isoformat()


def record_vendor_gaps(
    paths: WarehousePaths,
    symbol: str,
    interval: str,
    ranges: Sequence[tuple[TimeLike, TimeLike]],
    run_id: str,
    source: str,
) -> list[Path]:
    """Record each ``[start, end)`` the vendor answered with no bars; returns the files."""
    if not ranges:
        return []
    sym = normalize_symbol(symbol)
    interval = validate_interval(interval)
    check_run_id(run_id)
    folder = paths.vendor_gaps_root / f"symbol={sym}"
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat()
    written = []
    for n, (lo, hi) in enumerate(ranges):
        record = {
            "recorded_at": now,
            "run_id": run_id,
            "source": source,
            "interval": interval,
            "symbol": sym,
            "start": _iso(lo),
            "end": _iso(hi),
        }
        target = folder / f"{run_id}-{interval}-{n}.json"
        text = json.dumps(record) + "\n"
        atomic_write(target, lambda tmp, text=text: tmp.write_text(text))  # type: ignore[misc]
        written.append(target)
    return written


def _calendar_names() -> list[str]:
    return sorted({DEFAULT_CALENDAR, *EXCHANGE_CALENDARS.values()})


def calendar_file(paths: WarehousePaths, name: str = DEFAULT_CALENDAR) -> Path:
    """The lake file of calendar ``name``'s sessions, written if missing (the library,
    ~1 s to import, is only loaded then: every warehouse open builds this view)."""
    target = paths.calendar_file(name, version("exchange-calendars"))
    if target.exists():
        return target
    cal = sessions(name)
    frame = pd.DataFrame(
        {
            "calendar": name,
            "open": pd.to_datetime(cal.open_ms, unit="ms", utc=True).as_unit("us"),
            "close": pd.to_datetime(cal.close_ms, unit="ms", utc=True).as_unit("us"),
        }
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda tmp: frame.to_parquet(tmp, index=False))
    return target


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _s(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _calendar_case(column: str) -> str:
    """SQL: the session calendar of a symbol column (NULL for forex and crypto)."""
    other = [
        f"{column} LIKE {_s('%.' + ex)}"
        for ex, cls in EXCHANGE_ASSET_CLASS.items()
        if cls != "stock"
    ]
    named = " ".join(
        f"WHEN {column} LIKE {_s('%.' + ex)} THEN {_s(cal)}"
        for ex, cal in EXCHANGE_CALENDARS.items()
    )
    return f"CASE WHEN {' OR '.join(other)} THEN NULL {named} ELSE {_s(DEFAULT_CALENDAR)} END"


def data_gaps_view_sql(paths: WarehousePaths) -> str:
    """The SELECT of the ``data_gaps`` view (columns of ``DataGaps``)."""
    cols = ", ".join(_q(c) for c in DataGaps.to_schema().columns)
    records = paths.vendor_gap_records()
    if records:
        spec = ", ".join(
            f"{_s(c)}: {_s('TIMESTAMPTZ' if c in ('recorded_at', 'start', 'end') else 'VARCHAR')}"
            for c in VendorGap.to_schema().columns
        )
        vendor = (
            f"SELECT * FROM read_json({_s(paths.vendor_gaps_glob)}, "
            f"format = 'newline_delimited', columns = {{{spec}}})"
        )
    else:
        vendor = (
            "SELECT CAST(NULL AS VARCHAR) AS symbol, CAST(NULL AS VARCHAR) AS interval, "
            "CAST(NULL AS VARCHAR) AS run_id, CAST(NULL AS TIMESTAMPTZ) AS start, "
            'CAST(NULL AS TIMESTAMPTZ) AS "end" WHERE false'
        )
    sessions_sql = " UNION ALL ".join(
        f"SELECT calendar, open, close FROM read_parquet({_s(calendar_file(paths, n).as_posix())})"
        for n in _calendar_names()
    )
    return f"""
WITH cal AS ({sessions_sql}),
stocks AS (
    SELECT symbol, interval, {_calendar_case("symbol")} AS calendar, ts
    FROM {_q(BARS)}
),
series AS (
    SELECT symbol, interval, calendar, min(ts) AS first_ts, max(ts) AS last_ts
    FROM stocks WHERE calendar IS NOT NULL GROUP BY ALL
),
per_session AS (
    SELECT s.symbol, s.interval, c.calendar, c.open, c.close, count(b.ts) AS n
    FROM series AS s
    JOIN cal AS c ON c.calendar = s.calendar AND c.close > s.first_ts AND c.open <= s.last_ts
    LEFT JOIN stocks AS b
        ON b.symbol = s.symbol AND b.interval = s.interval AND b.ts >= c.open AND b.ts < c.close
    GROUP BY ALL
),
vendor AS ({vendor}),
vendor_sessions AS (
    SELECT v.symbol, v.interval, c.calendar, c.open AS start, c.close AS "end", v.run_id
    FROM vendor AS v
    JOIN cal AS c ON c.calendar = {_calendar_case("v.symbol")}
        AND c.open < v."end" AND c.close > v.start
    UNION ALL
    SELECT v.symbol, v.interval, NULL, v.start, v."end", v.run_id
    FROM vendor AS v WHERE {_calendar_case("v.symbol")} IS NULL
),
gaps AS (
    SELECT {_s(GAP_MISSING_SESSION)} AS kind, symbol, interval, calendar,
           open AS start, close AS "end", CAST(0 AS BIGINT) AS stored_bars,
           CAST(NULL AS VARCHAR) AS run_id
    FROM per_session WHERE n = 0
    UNION ALL
    SELECT {_s(GAP_VENDOR_EMPTY)}, g.symbol, g.interval, g.calendar, g.start, g."end",
           (SELECT count(*) FROM {_q(BARS)} AS b WHERE b.symbol = g.symbol
                AND b.interval = g.interval AND b.ts >= g.start AND b.ts < g."end"),
           g.run_id
    FROM vendor_sessions AS g
)
SELECT {cols} FROM gaps""".strip()
