"""Writing result, quarantine and live frames: validate with the model, replace by key, insert.

Each write deletes the rows its frame is about first (the *scope*: for a run's
results the run and agent, for live rows their key), then inserts the frame,
inside the caller's transaction. A retried task therefore replaces its rows
instead of duplicating them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import duckdb
import pandas as pd
import pyarrow as pa

from hedgeflow.errors import InvalidInputError
from hedgeflow.schemas import TABLE_MODELS, validate_frame
from hedgeflow.schemas.columns import (
    AGENT_METRICS,
    EQUITY_TABLE,
    LIVE_BARS,
    LIVE_DELIVERIES,
    LIVE_DRIFT,
    LIVE_FILLS,
    LIVE_ORDERS,
    LIVE_OUTBOX,
    LIVE_POSITIONS,
    LIVE_SIGNALS,
    PORTFOLIO_METRICS,
    SIGNALS,
    SKIPPED_ORDERS,
    SWEEP_OVERFIT,
    SWEEP_RESULTS,
    TRADES,
    WALKFORWARD_EQUITY,
    WALKFORWARD_FOLDS,
)
from hedgeflow.warehouse.db import STORE, q

# Table -> the columns whose values in a frame select the stored rows it replaces.
RESULT_SCOPES: dict[str, tuple[str, ...]] = {
    SIGNALS: ("run_id", "agent"),
    TRADES: ("run_id", "agent"),
    EQUITY_TABLE: ("run_id", "agent"),
    AGENT_METRICS: ("run_id", "agent"),
    PORTFOLIO_METRICS: ("run_id", "method"),
    SKIPPED_ORDERS: ("run_id", "agent"),
    SWEEP_RESULTS: ("run_id", "symbol", "strategy"),
    SWEEP_OVERFIT: ("run_id", "symbol", "strategy"),
    WALKFORWARD_FOLDS: ("run_id", "symbol", "strategy"),
    WALKFORWARD_EQUITY: ("run_id", "symbol", "strategy"),
    LIVE_DRIFT: ("run_id", "agent"),
}
QUARANTINE_SCOPE: tuple[str, ...] = ("run_id", "symbol", "interval")  # table QUARANTINE
# Live tables are upserted by their key.
LIVE_KEYS: dict[str, tuple[str, ...]] = {
    LIVE_BARS: ("run_id", "symbol", "interval", "ts"),
    LIVE_SIGNALS: ("run_id", "agent", "symbol", "ts"),
    LIVE_ORDERS: ("run_id", "order_id"),
    LIVE_FILLS: ("run_id", "fill_id"),
    LIVE_POSITIONS: ("agent", "symbol"),
    # never rewritten: a replayed step keeps the first event (see insert_new_rows)
    LIVE_OUTBOX: ("event_id",),
    # only moved forward: a row replaces the stored one when it has at least as many
    # attempts, so a replayed step's `pending` row never resets a delivered event
    LIVE_DELIVERIES: ("event_id", "channel"),
}

_counter = itertools.count()


def prepare(table: str, frame: pd.DataFrame, run_id: str | None = None) -> pa.Table:
    """Validate ``frame`` for ``table`` (filling or checking ``run_id``) and convert to Arrow."""
    if table not in TABLE_MODELS:
        raise InvalidInputError(f"unknown table {table!r}")
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInputError(f"{table}: expected a DataFrame, got {type(frame).__name__}")
    if run_id is not None:
        if "run_id" not in frame.columns:
            frame = frame.assign(run_id=run_id)
        else:
            other = pd.unique(frame["run_id"].astype("object"))
            if len(other) and (len(other) > 1 or other[0] != run_id):
                raise InvalidInputError(
                    f"{table}: frame has run_id {list(other)[:3]} but is written for run {run_id!r}"
                )
    model = TABLE_MODELS[table]
    valid = validate_frame(model, frame, table)
    ordered = valid[list(model.to_schema().columns)]
    return pa.Table.from_pandas(ordered, preserve_index=False)


def prepare_upserts(table: str, frames: Sequence[pd.DataFrame]) -> pa.Table | None:
    """The rows of several upserts of a live table (in order) as ONE validated Arrow
    table: every row is validated (a bad row fails it, even one a later row replaces),
    then a key's last row wins, as upserting them one after the other would store (the
    outbox: its first row; delivery states: the one with the most attempts)."""
    rows = [f for f in frames if len(f)]
    if not rows:
        return None
    frame = rows[0] if len(rows) == 1 else pd.concat(rows, ignore_index=True)
    model = TABLE_MODELS[table]
    valid = validate_frame(model, frame, table, unique=False)
    keys = list(LIVE_KEYS[table])
    if table == LIVE_OUTBOX:  # the outbox keeps an event's first row
        valid = valid.drop_duplicates(keys, keep="first")
    elif table == LIVE_DELIVERIES:  # delivery states only move forward
        valid = valid.sort_values("attempts", kind="stable").drop_duplicates(keys, keep="last")
    else:
        valid = valid.drop_duplicates(keys, keep="last")
    ordered = valid[list(model.to_schema().columns)]
    return pa.Table.from_pandas(ordered, preserve_index=False)


def replace_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    rows: pa.Table,
    scope: tuple[str, ...],
    run_id: str | None = None,
) -> int:
    """Delete stored rows whose ``scope`` values occur in ``rows``, then insert ``rows``."""
    if rows.num_rows == 0:
        return 0
    name = f"_hf_new_{table}_{next(_counter)}"
    con.register(name, rows)
    try:
        cols = ", ".join(q(c) for c in scope)
        where = f"({cols}) IN (SELECT DISTINCT {cols} FROM {name})"
        params: list[object] = []
        if run_id is not None:
            # A constant predicate lets DuckDB skip other runs' row groups.
            where = f"{q('run_id')} = ? AND {where}"
            params.append(run_id)
        con.execute(f"DELETE FROM {STORE}.{q(table)} WHERE {where}", params)
        con.execute(f"INSERT INTO {STORE}.{q(table)} BY NAME SELECT * FROM {name}")
    finally:
        con.unregister(name)
    return rows.num_rows


def insert_new_rows(
    con: duckdb.DuckDBPyConnection, table: str, rows: pa.Table, key: tuple[str, ...]
) -> int:
    """Insert the rows of ``rows`` whose ``key`` is not stored yet; how many were new."""
    if rows.num_rows == 0:
        return 0
    name = f"_hf_new_{table}_{next(_counter)}"
    con.register(name, rows)
    try:
        match = " AND ".join(f"s.{q(c)} = n.{q(c)}" for c in key)
        found = con.execute(
            f"INSERT INTO {STORE}.{q(table)} BY NAME SELECT * FROM {name} AS n "
            f"WHERE NOT EXISTS (SELECT 1 FROM {STORE}.{q(table)} AS s WHERE {match})"
        ).fetchall()
    finally:
        con.unregister(name)
    return int(found[0][0]) if found else 0


def advance_rows(
    con: duckdb.DuckDBPyConnection, table: str, rows: pa.Table, key: tuple[str, ...]
) -> int:
    """Upsert by ``key``, but only over stored rows with at most as many ``attempts``
    (delivery states move forward; a replayed older state changes nothing)."""
    if rows.num_rows == 0:
        return 0
    name = f"_hf_new_{table}_{next(_counter)}"
    con.register(name, rows)
    try:
        match = " AND ".join(f"s.{q(c)} = n.{q(c)}" for c in key)
        con.execute(
            f"DELETE FROM {STORE}.{q(table)} AS s WHERE EXISTS (SELECT 1 FROM {name} AS n "
            f"WHERE {match} AND n.attempts >= s.attempts)"
        )
    finally:
        con.unregister(name)
    return insert_new_rows(con, table, rows, key)


def write_live_rows(con: duckdb.DuckDBPyConnection, table: str, rows: pa.Table) -> int:
    """Store one live table's rows with that table's rule (upsert; the outbox keeps the
    first event; delivery states only move forward)."""
    if table == LIVE_OUTBOX:
        return insert_new_rows(con, table, rows, LIVE_KEYS[table])
    if table == LIVE_DELIVERIES:
        return advance_rows(con, table, rows, LIVE_KEYS[table])
    return replace_rows(con, table, rows, LIVE_KEYS[table])


def check_result_tables(tables: Mapping[str, pd.DataFrame]) -> None:
    unknown = [t for t in tables if t not in RESULT_SCOPES]
    if unknown:
        raise InvalidInputError(
            f"not result tables: {unknown}; expected some of {', '.join(RESULT_SCOPES)}"
        )


def check_live_table(table: str) -> None:
    if table not in LIVE_KEYS:
        raise InvalidInputError(
            f"not a live table: {table!r}; expected one of {', '.join(LIVE_KEYS)}"
        )
