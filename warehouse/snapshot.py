"""Readers query a private in-memory snapshot, never the file the writers use.

DuckDB lets one process write a database file, and any other process's open
connection, even read-only, blocks it. A reader that held the warehouse open for
the length of its query (``hedgeflow sql`` with a cross join, say) made every
writer wait for it, and a writer that gave up lost data. So a reader here:

1. attaches the warehouse read-only (retrying while a writer holds it, like every
   connection, see :func:`hedgeflow.warehouse.db.open_connection`);
2. copies the stored tables its query names into an in-memory database (the
   others are created empty, so every view still binds), in one read transaction:
   a consistent snapshot;
3. detaches the warehouse file: the lock is held only for the copy (about 0.1 s
   per million signal rows, see ``docs/readers.md``), never for the query;
4. recreates the views (``runs``, the finished-only result views, ``live_*``, and
   ``bars`` and ``lake_quarantine`` over the Parquet lake, which take no lock at all).

The query then runs on the snapshot under a memory limit (DuckDB spills to a
private temporary folder past it) and, for ``hedgeflow sql``, in a sandbox whose
only readable folder is the lake: the warehouse file, its WAL and its temporary
files are not attached and not reachable (``lake/../hedgeflow.duckdb`` is
normalised before the check).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import duckdb

from hedgeflow.schemas.columns import RUNS
from hedgeflow.warehouse import db, runs
from hedgeflow.warehouse.db import STORE, STORED_TABLES, q, sql_string
from hedgeflow.warehouse.paths import WarehousePaths

__all__ = ["DEFAULT_MEMORY_LIMIT", "needed_tables", "sandbox", "snapshot"]

DEFAULT_MEMORY_LIMIT = "2GB"
_SNAPSHOT = "snap"
_SOURCE = "wh"


def needed_tables(query: str) -> frozenset[str]:
    """The stored tables a query can read: those whose table or view name it mentions
    as a word, plus ``runs`` for the views that show only finished runs' rows."""
    words = {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", query)}
    found = {t for t in STORED_TABLES if t.lower() in words}
    if found & set(db.FINISHED_ONLY_TABLES):
        found.add(RUNS)
    return frozenset(found)


def _attach_readonly(con: duckdb.DuckDBPyConnection, path: Path, timeout: float) -> None:
    """ATTACH the warehouse read-only, retrying while another process writes it."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    attempts = 0
    while True:
        attempts += 1
        try:
            con.execute(f"ATTACH {sql_string(str(path))} AS {_SOURCE} (READ_ONLY)")
            return
        except (duckdb.IOException, duckdb.ConnectionException, duckdb.BinderException) as exc:
            if not db.is_lock_conflict(exc) or time.monotonic() >= deadline:
                if db.is_lock_conflict(exc):
                    raise db.WarehouseBusyError(
                        f"warehouse database {path} is locked by a writer; gave up taking a "
                        f"snapshot after {timeout:.1f} s ({attempts} attempts)"
                        f"{db.lock_holder(exc)}"
                    ) from None
                raise
            time.sleep(delay)
            delay = min(delay * 1.6, 0.25)


def _copy_tables(con: duckdb.DuckDBPyConnection, tables: Iterable[str]) -> None:
    wanted = set(tables)
    present = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ?",
            [_SOURCE, STORE],
        ).fetchall()
    }
    con.execute(f"CREATE SCHEMA {_SNAPSHOT}.{STORE}")
    con.execute("BEGIN TRANSACTION")  # one read transaction: every table of one commit
    try:
        for table in (*STORED_TABLES, "schema_version", "meta"):
            if table not in present:
                continue
            limit = "" if table in wanted or table in ("schema_version", "meta") else " LIMIT 0"
            con.execute(
                f"CREATE TABLE {_SNAPSHOT}.{STORE}.{q(table)} AS "
                f"SELECT * FROM {_SOURCE}.{STORE}.{q(table)}{limit}"
            )
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise


def _show_crashed(con: duckdb.DuckDBPyConnection) -> None:
    """Runs still ``running`` whose process is gone read as ``crashed`` in the snapshot
    (the next command that writes the warehouse records it; ``sql`` itself opens no
    second database for that)."""
    columns = {r[0] for r in con.execute(f"DESCRIBE {STORE}.runs").fetchall()}
    if "process" not in columns:
        return
    for run_id, process, started in runs.running_runs(con):
        if runs.process_ended(process, started):
            runs.end_runs(con, [run_id], "crashed", runs.crashed_reason(process))


def _create_views(con: duckdb.DuckDBPyConnection, paths: WarehousePaths) -> None:
    views = {**db.static_views(), **db.lake_views(paths)}
    for name, select in views.items():
        con.execute(f"CREATE VIEW main.{q(name)} AS {select}")


def sandbox(con: duckdb.DuckDBPyConnection, lake: Path) -> None:
    """File access limited to the lake (the bars view reads it); settings locked."""
    con.execute(f"SET allowed_directories = [{sql_string(lake.as_posix() + '/')}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


@contextlib.contextmanager
def snapshot(
    paths: WarehousePaths,
    query: str,
    *,
    lock_timeout: float,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    sandboxed: bool = True,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory connection holding what ``query`` reads, the warehouse detached.

    The warehouse file must exist and be at the current schema version (the caller
    initialises it). Closed, with its temporary folder, at the end of the block."""
    spill = Path(tempfile.mkdtemp(prefix="hedgeflow-sql-"))
    try:
        con = duckdb.connect(
            ":memory:", config={"memory_limit": memory_limit, "temp_directory": str(spill)}
        )
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute("SET enable_progress_bar = false")  # it draws on stdout, into pipes
            # ATTACH then USE: the snapshot is the default database, so the views and
            # the user's `store.x` resolve in it once the warehouse is detached.
            con.execute(f"ATTACH ':memory:' AS {_SNAPSHOT} (COMPRESS)")
            _attach_readonly(con, paths.db, lock_timeout)
            try:
                _copy_tables(con, needed_tables(query))
            finally:
                con.execute(f"DETACH {_SOURCE}")
            con.execute(f"USE {_SNAPSHOT}")
            con.execute("DETACH memory")
            _show_crashed(con)
            _create_views(con, paths)
            if sandboxed:
                sandbox(con, paths.lake)
            yield con
        finally:
            con.close()
    finally:
        shutil.rmtree(spill, ignore_errors=True)
