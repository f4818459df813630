"""DuckDB: short connections with lock retry, DDL built from the pandera models, views.

DuckDB lets one process hold the file read-write and then no other process
may open it at all (not even read-only). So every connection is short (one
transaction) and every open retries on the lock error with backoff until a
timeout, then fails with an error naming the file.

Layout of the database file:

- schema ``store``: the tables (one per model of ``hedgeflow.schemas.TABLE_MODELS`` but
  ``bars``, which lives in the Parquet lake), ``store.schema_version`` and
  ``store.meta``;
- schema ``main``: the views people query: ``bars`` (over the lake), ``data_gaps``
  (missing sessions and empty vendor answers; see ``gaps``),
  ``lake_quarantine`` (over the records of the partition files the lake moved to
  its quarantine folder because they could not be read; see ``lake``),
  ``runs``, one view per result table showing only rows of finished runs
  (completed or partial), and the ``live_*`` tables as they are.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

from hedgeflow.columns import (
    INGESTED_AT,
    INTERVAL,
    PRICE_COLUMNS,
    SOURCE,
    STORED_BAR_COLUMNS,
    SYMBOL,
    TS,
    VOLUME,
)
from hedgeflow.errors import HedgeflowError, OutOfSpaceError, is_out_of_space
from hedgeflow.schemas import TABLE_MODELS
from hedgeflow.schemas.bars import LakeQuarantine
from hedgeflow.schemas.columns import (
    BARS,
    BARS_ADJUSTED,
    DATA_GAPS,
    EXTRA_INDICATORS,
    FINISHED_STATUSES,
    LAKE_QUARANTINE,
    LIVE_DELIVERIES,
    LIVE_DRIFT,
    LIVE_OUTBOX,
    LIVE_SIGNALS,
    LIVE_TABLES,
    NOTIFY_TABLES,
    NOTIFY_VIEW,
    ORDERS_SKIPPED,
    PROCESS,
    QUARANTINE,
    REASON,
    RESULT_TABLES,
    RUNS,
    SIGNALS,
    SKIPPED_ORDERS,
    SPLITS,
    SWEEP_OVERFIT,
    SWEEP_RESULTS,
    WALKFORWARD_EQUITY,
    WALKFORWARD_FOLDS,
)
from hedgeflow.splits import EXCHANGE_TZ
from hedgeflow.warehouse.paths import WarehousePaths

SCHEMA_VERSION = 8
STORE = "store"
# How long a connection waits for another process's lock before it gives up. Flows
# pass ``Settings.lock_timeout`` (writers wait, they never drop work); 30 s is for
# interactive readers.
DEFAULT_LOCK_TIMEOUT = 30.0
LOCK_NOTE_EVERY = 10.0  # seconds between "waiting for the lock" warnings
LOCK_LOGGER = "hedgeflow.warehouse"  # the CLI prints it; flow runs send it to Prefect
_log = logging.getLogger(LOCK_LOGGER)

# Tables stored in DuckDB (bars live in the lake).
STORED_TABLES: tuple[str, ...] = tuple(t for t in TABLE_MODELS if t != BARS)
# Views that hide rows of unfinished runs.
FINISHED_ONLY_TABLES: tuple[str, ...] = (*RESULT_TABLES, QUARANTINE, LIVE_DRIFT)
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {RUNS: ("run_id",)}

_DUCK_TYPES = {
    "float64": "DOUBLE",
    "int64": "BIGINT",
    "int32": "INTEGER",
    "int8": "TINYINT",
    "bool": "BOOLEAN",
    "datetime64[us, UTC]": "TIMESTAMPTZ",
}


class WarehouseBusyError(HedgeflowError, TimeoutError):
    """The DuckDB file stayed locked by another process for longer than the timeout."""


class WarehouseOpenError(HedgeflowError):
    """The DuckDB file cannot be opened (not a database, no such directory, ...)."""


def q(name: str) -> str:
    """Quote an identifier (column names such as ``interval`` are SQL keywords)."""
    return '"' + name.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def duck_type(dtype: object) -> str:
    name = str(dtype)
    if name in _DUCK_TYPES:
        return _DUCK_TYPES[name]
    if name == "str" or name.startswith("string"):
        return "VARCHAR"
    raise HedgeflowError(f"no DuckDB type for pandera dtype {name!r}")


def table_ddl(table: str) -> str:
    schema = TABLE_MODELS[table].to_schema()
    cols = []
    for name, col in schema.columns.items():
        null = "" if col.nullable else " NOT NULL"
        cols.append(f"    {q(name)} {duck_type(col.dtype)}{null}")
    if table in PRIMARY_KEYS:
        cols.append(f"    PRIMARY KEY ({', '.join(q(c) for c in PRIMARY_KEYS[table])})")
    body = ",\n".join(cols)
    return f"CREATE TABLE IF NOT EXISTS {STORE}.{q(table)} (\n{body}\n)"


# --------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------

_BARS_VIEW_COLUMNS: tuple[str, ...] = STORED_BAR_COLUMNS
_BARS_SELECT = ", ".join(q(c) for c in _BARS_VIEW_COLUMNS)


def bars_view_sql(paths: WarehousePaths) -> str:
    """The SELECT of the ``bars`` view: the lake, or a typed empty relation without files."""
    if paths.lake_has_bars():
        return (
            f"SELECT {_BARS_SELECT} FROM read_parquet({sql_string(paths.bars_glob)}, "
            "hive_partitioning = true, "
            "hive_types = {'interval': VARCHAR, 'symbol': VARCHAR, 'month': VARCHAR})"
        )
    schema = TABLE_MODELS[BARS].to_schema()
    typed = ", ".join(
        f"CAST(NULL AS {duck_type(schema.columns[c].dtype)}) AS {q(c)}" for c in _BARS_VIEW_COLUMNS
    )
    return f"SELECT {typed} WHERE false"


def _typed_empty(columns: dict[str, str]) -> str:
    typed = ", ".join(f"CAST(NULL AS {t}) AS {q(c)}" for c, t in columns.items())
    return f"SELECT {typed} WHERE false"


_LAKE_QUARANTINE_TYPES: dict[str, str] = {
    name: duck_type(col.dtype) for name, col in LakeQuarantine.to_schema().columns.items()
}


def lake_quarantine_view_sql(paths: WarehousePaths) -> str:
    """The SELECT of the ``lake_quarantine`` view: the records in the lake's
    quarantine folder, or a typed empty relation when there are none."""
    if not paths.quarantine_records():
        return _typed_empty(_LAKE_QUARANTINE_TYPES)
    spec = ", ".join(f"{sql_string(c)}: {sql_string(t)}" for c, t in _LAKE_QUARANTINE_TYPES.items())
    cols = ", ".join(q(c) for c in _LAKE_QUARANTINE_TYPES)
    return (
        f"SELECT {cols} FROM read_json({sql_string(paths.quarantine_records_glob)}, "
        f"format = 'newline_delimited', columns = {{{spec}}})"
    )


_SPLITS_TYPES: dict[str, str] = {
    "symbol": "VARCHAR",
    "ex_date": "DATE",
    "new_shares": "DOUBLE",
    "old_shares": "DOUBLE",
    "ratio": "DOUBLE",
    "source": "VARCHAR",
    "ingested_at": "TIMESTAMP WITH TIME ZONE",
}


def splits_view_sql(paths: WarehousePaths) -> str:
    """The SELECT of the ``splits`` view: the lake's splits files, or a typed empty
    relation when there are none."""
    if not paths.lake_has_splits():
        return _typed_empty(_SPLITS_TYPES)
    cols = ", ".join(f"CAST({q(c)} AS {t}) AS {q(c)}" for c, t in _SPLITS_TYPES.items())
    return (
        f"SELECT {cols} FROM read_parquet({sql_string(paths.splits_glob)}, "
        "hive_partitioning = false)"
    )


def bars_adjusted_view_sql() -> str:
    """``bars_adjusted``: ``bars`` with prices divided and volume multiplied by the product
    of the ratios of the splits after each bar's session date (New York), as
    ``hedgeflow.splits.adjust_bars`` computes for the backtests; ``split_factor`` is that
    product (1 where no later split is stored)."""
    prices = ", ".join(f"b.{q(c)} / f.k AS {q(c)}" for c in PRICE_COLUMNS)
    return (
        f"SELECT b.{q(SYMBOL)}, b.{q(INTERVAL)}, b.{q(TS)}, {prices}, "
        f"b.{q(VOLUME)} * f.k AS {q(VOLUME)}, f.k AS split_factor, b.{q(SOURCE)}, "
        f"b.{q(INGESTED_AT)} FROM {q(BARS)} AS b, LATERAL (SELECT coalesce(product(s.ratio), "
        f"1.0) AS k FROM {q(SPLITS)} AS s WHERE s.symbol = b.{q(SYMBOL)} AND s.ex_date > "
        f"CAST(timezone({sql_string(EXCHANGE_TZ)}, b.{q(TS)}) AS DATE)) AS f"
    )


def lake_views(paths: WarehousePaths) -> dict[str, str]:
    """View name -> SELECT for the views over the lake (they change as files appear);
    ``data_gaps`` reads ``bars``, so it comes after it."""
    from hedgeflow.warehouse.gaps import data_gaps_view_sql

    return {
        BARS: bars_view_sql(paths),
        LAKE_QUARANTINE: lake_quarantine_view_sql(paths),
        DATA_GAPS: data_gaps_view_sql(paths),
        SPLITS: splits_view_sql(paths),
        BARS_ADJUSTED: bars_adjusted_view_sql(),
    }


def static_views() -> dict[str, str]:
    """View name -> SELECT, for every view but ``bars``."""
    finished = ", ".join(sql_string(s) for s in FINISHED_STATUSES)
    views = {RUNS: f"SELECT * FROM {STORE}.{q(RUNS)}"}
    for table in FINISHED_ONLY_TABLES:
        views[table] = (
            f"SELECT * FROM {STORE}.{q(table)} WHERE {q('run_id')} IN "
            f"(SELECT {q('run_id')} FROM {STORE}.{q(RUNS)} WHERE {q('status')} IN ({finished}))"
        )
    for table in (*LIVE_TABLES, *NOTIFY_TABLES):
        views[table] = f"SELECT * FROM {STORE}.{q(table)}"
    views[NOTIFY_VIEW] = notifications_view_sql()
    return views


def notifications_view_sql() -> str:
    """``live_notifications``: one row per outbox event with its delivery state over
    the channels it was queued for: ``dead`` when a channel gave up, ``delivered`` when
    every channel acknowledged it, else ``pending`` (``unrouted``: no channel was
    configured when it was stored); ``attempts`` the most any channel made."""
    o, d = f"{STORE}.{q(LIVE_OUTBOX)}", f"{STORE}.{q(LIVE_DELIVERIES)}"
    return (
        "SELECT o.event_id, o.kind, "
        "CASE WHEN count(d.channel) = 0 THEN 'unrouted' "
        "WHEN bool_or(d.status = 'dead') THEN 'dead' "
        "WHEN bool_and(d.status = 'delivered') THEN 'delivered' ELSE 'pending' END AS status, "
        "coalesce(max(d.attempts), 0) AS attempts, "
        "arg_max(d.last_error, d.updated_at) AS last_error, "
        "CASE WHEN count(d.channel) > 0 AND bool_and(d.status = 'delivered') "
        "THEN max(d.delivered_at) END AS delivered_at, "
        "count(d.channel) AS channels, o.run_id, o.agent, o.symbol, o.ts, o.created_at "
        f"FROM {o} AS o LEFT JOIN {d} AS d ON d.event_id = o.event_id "
        "GROUP BY o.event_id, o.kind, o.run_id, o.agent, o.symbol, o.ts, o.created_at"
    )


# --------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------

# Read-write connections this process holds per database file: a reader in the
# same process must then share that (read-write) instance, since DuckDB refuses
# a second configuration of one file inside a process.
_RW_OPEN: dict[str, int] = {}
_RW_LOCK = threading.Lock()
# One read-write session at a time per database within this process: threads of
# one flow (mapped tasks) would otherwise race on catalog changes and transactions.
_WRITERS: dict[str, threading.RLock] = {}


def _writer_lock(key: str) -> threading.RLock:
    with _RW_LOCK:
        return _WRITERS.setdefault(key, threading.RLock())


def is_lock_conflict(exc: Exception) -> bool:
    """Whether a DuckDB error says another process (or configuration) holds the file."""
    msg = str(exc)
    return (
        "Could not set lock" in msg
        or "Conflicting lock" in msg
        or "different configuration" in msg
        or "database is locked" in msg
    )


_HOLDER_RE = re.compile(r"Conflicting lock is held in (\S+) \(PID (\d+)\)")


def lock_holder(exc: Exception) -> str:
    """``"; held by PID n (program)"`` from DuckDB's lock error, or ``""``."""
    found = _HOLDER_RE.search(str(exc))
    if not found:
        return ""
    return f"; held by PID {found.group(2)} ({Path(found.group(1)).name})"


_PID_RE = re.compile(r"\(PID (\d+)\)")


def is_busy_error(exc: BaseException) -> bool:
    """True for "another process holds the database file" (a writer may retry later)."""
    if isinstance(exc, WarehouseBusyError):
        return True
    return isinstance(exc, duckdb.IOException | duckdb.ConnectionException) and is_lock_conflict(
        exc
    )


def busy_holder(exc: BaseException) -> str:
    """Who holds the database file, as DuckDB's lock error names it ("PID 123"), for a
    :func:`is_busy_error` error."""
    seen: BaseException | None = exc
    while seen is not None:
        found = _PID_RE.search(str(seen))
        if found:
            return f"held by PID {found.group(1)}"
        seen = seen.__cause__ or seen.__context__
    return "held by another process"


def open_connection(
    path: Path, *, read_only: bool, timeout: float = DEFAULT_LOCK_TIMEOUT
) -> duckdb.DuckDBPyConnection:
    """Open ``path``, retrying while another process holds its lock (up to ``timeout`` s)."""
    key = str(path)
    started = time.monotonic()
    deadline = started + timeout
    next_note = started + LOCK_NOTE_EVERY
    delay = 0.01
    attempts = 0
    while True:
        attempts += 1
        with _RW_LOCK:
            shared_rw = read_only and _RW_OPEN.get(key, 0) > 0
        try:
            con = duckdb.connect(key, read_only=read_only and not shared_rw)
            break
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if is_out_of_space(exc):
                raise OutOfSpaceError(path) from exc
            if not is_lock_conflict(exc):
                raise WarehouseOpenError(f"cannot open warehouse database {path}: {exc}") from exc
            if time.monotonic() >= deadline:
                mode = "read-only" if read_only else "read-write"
                raise WarehouseBusyError(
                    f"warehouse database {path} is locked by another process; gave up opening "
                    f"it {mode} after {timeout:.1f} s ({attempts} attempts){lock_holder(exc)}. "
                    "Another flow or a reader is holding it: retry when it is done."
                ) from exc
            now = time.monotonic()
            if now >= next_note:  # a writer waiting for a reader says so, and for whom
                next_note = now + LOCK_NOTE_EVERY
                _log.warning(
                    "warehouse database %s is locked%s; waiting (%.0f s of %.0f s)",
                    path,
                    lock_holder(exc),
                    now - started,
                    timeout,
                )
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.6, 0.25)
    try:
        con.execute("SET TimeZone = 'UTC'")
        # DuckDB draws a progress bar on stdout for long queries, into pipes too
        con.execute("SET enable_progress_bar = false")
    except BaseException:
        con.close()
        raise
    return con


@contextlib.contextmanager
def read_write(path: Path, timeout: float) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection for the duration of the block (no transaction).

    Sessions of one process are serialised; other processes wait on DuckDB's file lock."""
    key = str(path)
    with _writer_lock(key):
        con = open_connection(path, read_only=False, timeout=timeout)
        with _RW_LOCK:
            _RW_OPEN[key] = _RW_OPEN.get(key, 0) + 1
        try:
            yield con
        finally:
            with _RW_LOCK:
                _RW_OPEN[key] -= 1
            con.close()


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


# --------------------------------------------------------------------------
# Schema creation and migrations
# --------------------------------------------------------------------------


def _migration_1(con: duckdb.DuckDBPyConnection) -> None:
    for table in STORED_TABLES:
        con.execute(table_ddl(table))


def _migration_2(con: duckdb.DuckDBPyConnection) -> None:
    """signals / live_signals gain ``indicators``: users' strategies' own indicators
    as JSON (a new warehouse has it already from migration 1)."""
    for table in (SIGNALS, LIVE_SIGNALS):
        con.execute(
            f"ALTER TABLE {STORE}.{q(table)} ADD COLUMN IF NOT EXISTS {q(EXTRA_INDICATORS)} VARCHAR"
        )


def _migration_3(con: duckdb.DuckDBPyConnection) -> None:
    """runs gain ``reason`` (why a run failed, crashed or was cancelled) and ``process``
    (host:pid of the process running it, to tell a dead run from a running one)."""
    for column in (REASON, PROCESS):
        con.execute(f"ALTER TABLE {STORE}.{q(RUNS)} ADD COLUMN IF NOT EXISTS {q(column)} VARCHAR")


def _migration_4(con: duckdb.DuckDBPyConnection) -> None:
    """``live_drift``: the differences ``hedgeflow reconcile`` finds (a new warehouse
    has it already from migration 1)."""
    con.execute(table_ddl(LIVE_DRIFT))


def _migration_5(con: duckdb.DuckDBPyConnection) -> None:
    """The live notifications' outbox and delivery states (a new warehouse has them
    already from migration 1)."""
    for table in NOTIFY_TABLES:
        con.execute(table_ddl(table))


def _migration_6(con: duckdb.DuckDBPyConnection) -> None:
    """The ``sweep_overfit`` table: a sweep's overfitting statistics per symbol (a new
    warehouse has it already from migration 1)."""
    con.execute(table_ddl(SWEEP_OVERFIT))


def _migration_7(con: duckdb.DuckDBPyConnection) -> None:
    """``walkforward_folds`` and ``walkforward_equity``: hedgeflow walkforward's folds
    and stitched out-of-sample equity (a new warehouse has them already from migration 1)."""
    for table in (WALKFORWARD_FOLDS, WALKFORWARD_EQUITY):
        con.execute(table_ddl(table))


def _migration_8(con: duckdb.DuckDBPyConnection) -> None:
    """Order minimums: ``skipped_orders`` (the entries a nightly run's agents skipped)
    and ``sweep_results.orders_skipped`` (0 for the sweeps stored before it, which did
    not count them; a new warehouse has both already from migration 1)."""
    con.execute(table_ddl(SKIPPED_ORDERS))
    con.execute(
        f"ALTER TABLE {STORE}.{q(SWEEP_RESULTS)} "
        f"ADD COLUMN IF NOT EXISTS {q(ORDERS_SKIPPED)} BIGINT DEFAULT 0"
    )


MIGRATIONS = {
    1: _migration_1,
    2: _migration_2,
    3: _migration_3,
    4: _migration_4,
    5: _migration_5,
    6: _migration_6,
    7: _migration_7,
    8: _migration_8,
}


def _meta_get(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    rows = con.execute(f"SELECT value FROM {STORE}.meta WHERE key = ?", [key]).fetchall()
    return str(rows[0][0]) if rows else None


def installed_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The schema version of an open database, or None when it was never initialised."""
    rows = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
        [STORE, "schema_version"],
    ).fetchall()
    if not rows or not rows[0][0]:
        return None
    found = con.execute(f"SELECT max(version) FROM {STORE}.schema_version").fetchall()
    return int(found[0][0]) if found and found[0][0] is not None else None


def ensure_schema(con: duckdb.DuckDBPyConnection, paths: WarehousePaths) -> None:
    """Create or migrate everything, idempotently, in one transaction."""
    with transaction(con):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {STORE}")
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {STORE}.schema_version "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
        )
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {STORE}.meta (key VARCHAR PRIMARY KEY, value VARCHAR)"
        )
        current = installed_version(con) or 0
        if current > SCHEMA_VERSION:
            raise HedgeflowError(
                f"warehouse database {paths.db} has schema version {current}, newer than this "
                f"hedgeflow ({SCHEMA_VERSION}): upgrade hedgeflow"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](con)
            con.execute(
                f"INSERT INTO {STORE}.schema_version VALUES (?, current_timestamp)", [version]
            )
        views = {**static_views(), **lake_views(paths)}
        for name, select in views.items():
            key = f"view:{name}"
            if _meta_get(con, key) != select:
                con.execute(f"CREATE OR REPLACE VIEW main.{q(name)} AS {select}")
                con.execute(f"INSERT OR REPLACE INTO {STORE}.meta VALUES (?, ?)", [key, select])


def refresh_bars_view(con: duckdb.DuckDBPyConnection, paths: WarehousePaths, *, temp: bool) -> None:
    """Point ``bars`` (and ``lake_quarantine``) at the lake as it is now (the lake may
    have gained its first files, or its first quarantined one).

    Read-write connections replace the stored view; read-only ones shadow it
    with a TEMP view when it is stale.
    """
    for name, select in lake_views(paths).items():
        if _meta_get(con, f"view:{name}") == select:
            continue
        if temp:
            con.execute(f"CREATE OR REPLACE TEMP VIEW {q(name)} AS {select}")
        else:
            with transaction(con):
                con.execute(f"CREATE OR REPLACE VIEW main.{q(name)} AS {select}")
                con.execute(
                    f"INSERT OR REPLACE INTO {STORE}.meta VALUES (?, ?)", [f"view:{name}", select]
                )
