"""The warehouse: the only code that knows paths and DuckDB.

``Warehouse(home)`` is the facade. Bars go to the Parquet lake
(``HOME/lake/bars/...``, see ``hedgeflow.warehouse.lake``); runs, results, quarantine
and the live record go to DuckDB (``HOME/hedgeflow.duckdb``, see
``hedgeflow.warehouse.db``); reports to ``HOME/reports/<run_id>/``.

The lake heals: a partition file that cannot be read (truncated, garbled) is
moved to ``HOME/lake/quarantine/`` with a record of why (the ``lake_quarantine``
view) when ``read_bars`` or ``write_bars`` meets it, or when ``heal_lake`` finds
it; reads go on without that month and re-ingesting the range rewrites it.

Connections are short: ``with wh.write() as con:`` is one transaction on a
read-write connection that is closed at the end; ``wh.read()`` /
``wh.connect_readonly()`` open read-only. Both retry while another process
holds the DuckDB file (up to ``lock_timeout`` seconds, default 30).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from hedgeflow.errors import (
    HedgeflowError,
    InvalidInputError,
    OutOfSpaceError,
    is_out_of_space,
    out_of_space_as,
)
from hedgeflow.fsutil import directory_problem
from hedgeflow.schemas.columns import LAKE_QUARANTINE, QUARANTINE, RUN_COLUMNS
from hedgeflow.splits import Split, adjust_bars
from hedgeflow.warehouse import db, lake, live, reconcile, results, runs, snapshot
from hedgeflow.warehouse import splits as lake_splits
from hedgeflow.warehouse.db import DEFAULT_LOCK_TIMEOUT, SCHEMA_VERSION, WarehouseBusyError
from hedgeflow.warehouse.lake import (
    CorruptPartitionError,
    HealedPartition,
    LakeLockTimeout,
    LakeReadError,
    TimeLike,
    WriteReport,
)
from hedgeflow.warehouse.live import LiveRecord
from hedgeflow.warehouse.paths import REPORT_HTML, SUMMARY_MD, WarehousePaths, check_run_id
from hedgeflow.warehouse.runs import (
    code_version,
    combined_fingerprint,
    data_fingerprint,
    failures_reason,
    to_json,
)

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "REPORT_HTML",
    "SCHEMA_VERSION",
    "SUMMARY_MD",
    "CorruptPartitionError",
    "HealedPartition",
    "LakeLockTimeout",
    "LakeReadError",
    "LiveRecord",
    "Warehouse",
    "WarehouseBusyError",
    "WarehousePaths",
    "WriteReport",
    "code_version",
    "combined_fingerprint",
    "data_fingerprint",
    "failures_reason",
    "to_json",
]


class Warehouse:
    """Lake + DuckDB under one home directory. Cheap to create; everything is lazy."""

    def __init__(self, home: Path | str, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.paths = WarehousePaths.at(home)
        self.lock_timeout = float(lock_timeout)
        self._ready = False
        self._ready_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Warehouse({str(self.paths.home)!r})"

    @property
    def home(self) -> Path:
        return self.paths.home

    @property
    def db_path(self) -> Path:
        return self.paths.db

    def report_dir(self, run_id: str) -> Path:
        """``HOME/reports/<run_id>/``, created."""
        path = self.paths.report_dir(run_id)
        with out_of_space_as(self.paths.reports_root):
            path.mkdir(parents=True, exist_ok=True)
        return path

    def _make_home(self) -> None:
        """Create HOME; a path that cannot be a directory is one clear error."""
        home = self.paths.home
        try:
            home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if is_out_of_space(exc):
                raise OutOfSpaceError(home) from exc
            problem = directory_problem(home, writable=False)
            raise HedgeflowError(
                f"warehouse home {home} {problem or f'cannot be created: {exc.strerror or exc}'}"
            ) from exc

    def report_file(self, run_id: str) -> Path:
        """``HOME/reports/<run_id>/report.html``, absolute (not created)."""
        return self.paths.report_file(run_id)

    # ------------------------------------------------------------------ lake

    def write_bars(
        self,
        frame: pd.DataFrame,
        symbol: str,
        interval: str,
        start: TimeLike,
        end: TimeLike,
        source: str,
        keep: Sequence[tuple[TimeLike, TimeLike]] = (),
    ) -> WriteReport:
        """Replace the stored bars of the range ``[start, end)`` by ``frame`` (valid bars).

        Idempotent and atomic per month partition; an empty frame clears the range,
        except the ``keep`` ranges, whose stored bars stay (see ``lake.write_bars``).
        A full disk raises ``OutOfSpaceError`` naming the lake; no partition is then
        half-written (each is a temp file renamed into place).
        """
        with out_of_space_as(self.paths.lake):
            return lake.write_bars(
                self.paths,
                frame,
                symbol,
                interval,
                start,
                end,
                source,
                keep=keep,
                lock_timeout=self.lock_timeout,
            )

    def record_vendor_gaps(
        self,
        symbol: str,
        interval: str,
        ranges: Sequence[tuple[TimeLike, TimeLike]],
        run_id: str,
        source: str,
    ) -> None:
        """Record the ranges the vendor answered with no bars (the ``data_gaps`` view)."""
        from hedgeflow.warehouse.gaps import record_vendor_gaps

        with out_of_space_as(self.paths.lake):
            record_vendor_gaps(self.paths, symbol, interval, ranges, run_id, source)

    def read_bars(
        self,
        symbol: str,
        interval: str,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        on_heal: Callable[[HealedPartition], None] | None = None,
        *,
        adjusted: bool = False,
    ) -> pd.DataFrame:
        """Stored bars with ``start <= ts < end`` (pyarrow only: never waits for DuckDB);
        with ``adjusted``, adjusted for the stored splits after each bar (the
        ``bars_adjusted`` view's values; ``hedgeflow.splits.adjust_bars``).

        A month partition that cannot be read is moved to the lake's quarantine
        folder (``heal_lake``) and its bars are missing from the result (a warning
        says so, and ``on_heal`` is called with it); the read does not fail."""
        bars = lake.read_bars(
            self.paths,
            symbol,
            interval,
            start,
            end,
            lock_timeout=self.lock_timeout,
            on_heal=on_heal,
        )
        if not adjusted:
            return bars
        return adjust_bars(bars, lake_splits.read_splits(self.paths, symbol))

    def splits(self, symbol: str) -> list[Split]:
        """The stored splits of ``symbol``, oldest first."""
        return lake_splits.read_splits(self.paths, symbol)

    def write_splits(self, symbol: str, splits: Sequence[Split], source: str) -> int:
        """Merge the vendor's splits of ``symbol`` into the lake; how many were new."""
        return lake_splits.write_splits(
            self.paths, symbol, splits, source, lock_timeout=self.lock_timeout
        )

    def bars_span(self, symbol: str, interval: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """(first ts, last ts) stored for the series, or None (heals as ``read_bars``)."""
        return lake.bars_span(self.paths, symbol, interval, lock_timeout=self.lock_timeout)

    def check_lake(
        self, *, full: bool = False, suspects: Sequence[Path | str] = ()
    ) -> list[tuple[Path, str]]:
        """(file, reason) of every unreadable partition file; moves nothing. Footers
        only, unless ``full`` (every file) or ``suspects`` (those files): every page."""
        return lake.check_lake(self.paths, full=full, suspects=suspects)

    def heal_lake(
        self, *, full: bool = False, suspects: Sequence[Path | str] = ()
    ) -> list[HealedPartition]:
        """Move every unreadable partition file (``check_lake``) to the quarantine
        folder, each with a record (the ``lake_quarantine`` view); returns them.

        For ``hedgeflow sql``: when a query fails and ``lake_read_error(exc)`` says it
        was a lake file, call ``heal_lake(suspects=[err.file])`` (``full=True`` when
        ``err.file`` is None) and retry."""
        return lake.heal_lake(
            self.paths, full=full, suspects=suspects, lock_timeout=self.lock_timeout
        )

    def lake_read_error(self, error: BaseException | str) -> LakeReadError | None:
        """Whether a DuckDB error was a Parquet read error of one of this lake's files
        (and which file, when its text names one)."""
        return lake.lake_read_error(self.paths, error)

    def lake_quarantine(self) -> pd.DataFrame:
        """The records of the partition files moved to the quarantine folder, oldest
        first (read from the lake, without DuckDB)."""
        from hedgeflow.schemas import validate_frame
        from hedgeflow.schemas.bars import LakeQuarantine

        records = lake.read_quarantine_records(self.paths)
        columns = list(LakeQuarantine.to_schema().columns)
        frame = pd.DataFrame(records, columns=columns)
        frame["healed_at"] = pd.to_datetime(frame["healed_at"], utc=True).dt.as_unit("us")
        return validate_frame(LakeQuarantine, frame, LAKE_QUARANTINE)

    # ------------------------------------------------------------ connections

    def _initialise(self) -> None:
        """Create or migrate the database (read-write, once per instance)."""
        with self._ready_lock:
            if self._ready:
                return
            self._make_home()
            with (
                out_of_space_as(self.paths.db),
                db.read_write(self.paths.db, self.lock_timeout) as con,
            ):
                db.ensure_schema(con, self.paths)
            self._ready = True

    @contextlib.contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction on a short read-write connection (committed, then closed).

        A full disk (DuckDB's "No space left on device" on the file or its WAL) raises
        ``OutOfSpaceError`` naming the database file; the transaction is rolled back."""
        self._make_home()
        with out_of_space_as(self.paths.db), db.read_write(self.paths.db, self.lock_timeout) as con:
            if not self._ready:
                with self._ready_lock:
                    db.ensure_schema(con, self.paths)
                    self._ready = True
            db.refresh_bars_view(con, self.paths, temp=False)
            with db.transaction(con):
                yield con

    @contextlib.contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short read-only connection, closed at the end of the block."""
        con = self.connect_readonly()
        try:
            yield con
        finally:
            con.close()

    def connect_readonly(self) -> duckdb.DuckDBPyConnection:
        """A read-only connection (for ``hedgeflow sql``). Close it soon: while it is
        open, no other process can write the database."""
        if not self._ready and not self.paths.db.exists():
            self._initialise()
        con = db.open_connection(self.paths.db, read_only=True, timeout=self.lock_timeout)
        try:
            if not self._ready:
                if db.installed_version(con) != SCHEMA_VERSION:
                    con.close()
                    self._initialise()
                    con = db.open_connection(
                        self.paths.db, read_only=True, timeout=self.lock_timeout
                    )
                self._ready = True
            db.refresh_bars_view(con, self.paths, temp=True)
        except BaseException:
            con.close()
            raise
        return con

    @contextlib.contextmanager
    def snapshot(
        self,
        query: str,
        *,
        memory_limit: str = snapshot.DEFAULT_MEMORY_LIMIT,
        sandboxed: bool = True,
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """An in-memory copy of what ``query`` reads, for readers that may be slow: the
        warehouse file is locked only while the copy is taken (see
        ``hedgeflow.warehouse.snapshot``), never while the query runs."""
        if not self._ready:
            if self.paths.db.exists():
                with self.read() as con:  # checks the version, migrates when needed
                    pass
            else:
                self._initialise()
        with snapshot.snapshot(
            self.paths,
            query,
            lock_timeout=self.lock_timeout,
            memory_limit=memory_limit,
            sandboxed=sandboxed,
        ) as con:
            yield con

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run one read-only query and return its result."""
        with self.read() as con:
            return con.execute(sql, list(params) if params is not None else None).df()

    # ------------------------------------------------------------------ runs

    def start_run(
        self,
        run_id: str,
        flow: str,
        params: Mapping[str, Any],
        code_version: str,
        data_fingerprint: str | None = None,
    ) -> None:
        """Record the run as ``running`` (its results stay hidden until it finishes)."""
        with self.write() as con:
            runs.start_run(con, run_id, flow, params, code_version, data_fingerprint)

    def finish_run(
        self,
        run_id: str,
        status: str,
        summary: Mapping[str, Any] | None = None,
        data_fingerprint: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Mark the run ``completed``, ``partial``, ``failed``, ``cancelled``... with
        headline numbers, and why when it did not complete (``reason``)."""
        with self.write() as con:
            runs.finish_run(con, run_id, status, summary, data_fingerprint, reason)

    def mark_crashed_runs(self, wait: float = 0.5) -> list[str]:
        """Runs still marked ``running`` whose process is gone (killed, or its machine
        rebooted) become ``crashed``, with the reason; the ids marked. Cheap when there is
        nothing to do (one read); skipped (empty) while another process holds the file
        for longer than ``wait`` s: that process will be the one to do it."""
        if not self.paths.db.exists():
            return []
        try:
            con = db.open_connection(self.paths.db, read_only=True, timeout=wait)
        except db.WarehouseBusyError:
            return []
        try:
            if db.installed_version(con) is None:
                return []
            columns = {r[0] for r in con.execute(f"DESCRIBE {db.STORE}.runs").fetchall()}
            if "process" not in columns:
                return []  # an older warehouse: no process recorded yet
            dead = [
                (run_id, process)
                for run_id, process, started in runs.running_runs(con)
                if runs.process_ended(process, started)
            ]
        finally:
            con.close()
        marked: list[str] = []
        for run_id, process in dead:
            try:
                with Warehouse(self.home, lock_timeout=wait).write() as con:
                    marked += runs.end_runs(con, [run_id], "crashed", runs.crashed_reason(process))
            except db.WarehouseBusyError:
                break
        return marked

    def end_runs_of_this_process(self, status: str, reason: str) -> list[str]:
        """Runs this process started that are still ``running`` get ``status`` (e.g.
        ``cancelled`` on SIGINT) and ``reason``; the ids marked."""
        if not self.paths.db.exists():
            return []
        with self.write() as con:
            mine = [
                run_id
                for run_id, process, _ in runs.running_runs(con)
                if process == runs.this_process()
            ]
            return runs.end_runs(con, mine, status, reason)

    def runs_of_this_process(self, since: Any) -> pd.DataFrame:
        """Runs this process started at or after ``since`` (their ids and statuses)."""
        return self.query(
            f"SELECT run_id, flow, status, reason FROM {db.STORE}.runs "
            "WHERE process = ? AND started_at >= ?",
            [runs.this_process(), since],
        )

    def list_runs(self, limit: int = 20) -> pd.DataFrame:
        """The latest runs, newest first."""
        limit = max(0, int(limit))
        cols = ", ".join(db.q(c) for c in RUN_COLUMNS)
        return self.query(
            f"SELECT {cols} FROM {db.STORE}.runs ORDER BY started_at DESC, run_id LIMIT ?",
            [limit],
        )

    def find_runs(self, prefix: str, limit: int = 5) -> pd.DataFrame:
        """Runs whose id starts with ``prefix`` (a run id's characters), newest first."""
        check_run_id(prefix)
        cols = ", ".join(db.q(c) for c in RUN_COLUMNS)
        return self.query(
            f"SELECT {cols} FROM {db.STORE}.runs WHERE starts_with(run_id, ?) "
            "ORDER BY started_at DESC, run_id LIMIT ?",
            [prefix, max(1, int(limit))],
        )

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        check_run_id(run_id)
        frame = self.query(f"SELECT * FROM {db.STORE}.runs WHERE run_id = ?", [run_id])
        return None if frame.empty else frame.iloc[0].to_dict()

    # --------------------------------------------------------------- results

    def write_results(self, run_id: str, tables: Mapping[str, pd.DataFrame]) -> dict[str, int]:
        """Validate and store a run's result frames in ONE transaction.

        ``tables`` maps result table names (signals, trades, equity, agent_metrics,
        portfolio_metrics, sweep_results, sweep_overfit) to frames; a missing ``run_id``
        column is filled in. Stored rows of the same run and agent (method for
        portfolio_metrics; symbol and strategy for sweep_results and sweep_overfit)
        are replaced.
        Returns rows written per table.
        """
        check_run_id(run_id)
        results.check_result_tables(tables)
        prepared = {t: results.prepare(t, f, run_id) for t, f in tables.items()}
        counts: dict[str, int] = {}
        with self.write() as con:
            runs.require_run(con, run_id)
            for table, rows in prepared.items():
                counts[table] = results.replace_rows(
                    con, table, rows, results.RESULT_SCOPES[table], run_id
                )
        return counts

    def write_quarantine(self, frame: pd.DataFrame) -> int:
        """Store quarantined rows (replacing the same run, symbol and interval)."""
        rows = results.prepare(QUARANTINE, frame)
        if rows.num_rows == 0:
            return 0
        run_ids = sorted(set(rows.column("run_id").to_pylist()))
        with self.write() as con:
            for run_id in run_ids:
                runs.require_run(con, run_id)
            return results.replace_rows(con, QUARANTINE, rows, results.QUARANTINE_SCOPE)

    def write_live(self, table: str, frame: pd.DataFrame) -> int:
        """Upsert rows of a live table by its key (visible at once, run finished or not)."""
        results.check_live_table(table)
        rows = results.prepare(table, frame)
        with self.write() as con:
            return results.write_live_rows(con, table, rows)

    def live_record(
        self, agent: str, symbol: str, interval: str, run_id: str | None = None
    ) -> LiveRecord | None:
        """One agent's live record at its last processed bar (for a restart), or None
        when it has none; ``run_id`` picks the run (default: the one that stored it)."""
        return live.read_live_record(self.query, agent, symbol, interval, run_id)

    def outbox_event_ids(self, run_id: str) -> set[str]:
        """The ids of the notification events the outbox holds for ``run_id``."""
        if not self.db_path.exists():
            return set()
        found = self.query(live.OUTBOX_IDS_SQL, [run_id])
        return set(found["event_id"])

    def pending_notifications(self) -> pd.DataFrame:
        """The deliveries not acknowledged yet (status ``pending``): ``payload`` (the
        event's JSON), ``channel``, ``attempts``, oldest event first."""
        if not self.db_path.exists():
            return pd.DataFrame(columns=["payload", "channel", "attempts"])
        return self.query(live.PENDING_NOTIFICATIONS_SQL)

    def write_live_steps(self, steps: Sequence[Mapping[str, pd.DataFrame]]) -> int:
        """Upsert several live steps (each as ``write_live_many`` takes it) in ONE
        transaction; how many steps. The same as upserting them one after the other:
        each table's rows of all the steps are validated together and, where a later
        step has a row with an earlier one's key (an order filled, a position moved),
        the later row is the one stored."""
        merged: dict[str, list[pd.DataFrame]] = {}
        for tables in steps:
            for table, frame in tables.items():
                results.check_live_table(table)
                merged.setdefault(table, []).append(frame)
        prepared = {t: results.prepare_upserts(t, frames) for t, frames in merged.items()}
        with self.write() as con:
            for table, rows in prepared.items():
                if rows is not None:
                    results.write_live_rows(con, table, rows)
        return len(steps)

    def write_live_many(self, tables: Mapping[str, pd.DataFrame]) -> dict[str, int]:
        """Upsert rows of several live tables in ONE transaction (all validated first)."""
        for table in tables:
            results.check_live_table(table)
        prepared = {t: results.prepare(t, f) for t, f in tables.items()}
        with self.write() as con:
            return {t: results.write_live_rows(con, t, rows) for t, rows in prepared.items()}

    # -------------------------------------------------------------- reconcile

    def live_runs(self, prefix: str | None = None, limit: int = 5) -> list[dict[str, Any]]:
        """Live runs (params parsed), newest first; ``prefix``: ids starting with it.
        None of them without a database (nothing is created)."""
        if prefix is not None:
            check_run_id(prefix)
        if not self.db_path.exists():
            return []
        return reconcile.live_runs(self.query, prefix, limit)

    def find_live_run(self, run: str | None = None) -> dict[str, Any]:
        """The live run to reconcile: ``run`` (an id or a unique prefix of one), else the
        latest. One-line InvalidInputError when the warehouse, or such a live run, does
        not exist; nothing is created."""
        home = self.paths.home
        if not self.db_path.is_file():
            raise InvalidInputError(
                f"no warehouse at {home} (check --home / HEDGEFLOW_HOME): run hedgeflow live first"
            )
        if run is None:
            found = self.live_runs(limit=1)
            if not found:
                raise InvalidInputError(f"no live run recorded in {home}: run hedgeflow live first")
            return found[0]
        found = self.live_runs(run)
        if found and found[0]["run_id"] == run:
            return found[0]
        if len(found) == 1:
            return found[0]
        if found:
            names = ", ".join(str(r["run_id"]) for r in found)
            raise InvalidInputError(f"live run id prefix {run!r} is ambiguous: {names}")
        other = self.find_runs(run, limit=2)
        if len(other) == 1:
            raise InvalidInputError(
                f"run {other['run_id'].iloc[0]} is a {other['flow'].iloc[0]} run, not a live "
                "run (`hedgeflow runs` lists the runs)"
            )
        raise InvalidInputError(f"no live run {run!r} in {home} (`hedgeflow runs` lists the runs)")

    def unreconciled_live_run(self) -> dict[str, Any] | None:
        """The live run that ended last if no finished reconcile run covers it yet, or None."""
        if not self.db_path.exists():
            return None
        return reconcile.unreconciled_live_run(self.query)

    def agent_live_bars(self, run_id: str, agent: str, symbol: str, interval: str) -> pd.DataFrame:
        """The bars ``agent`` processed in live run ``run_id`` (ts, open, high, low, close)."""
        return reconcile.agent_live_bars(self.query, run_id, agent, symbol, interval)

    def agent_live_signals(self, run_id: str, agent: str) -> pd.DataFrame:
        """``agent``'s recorded signals in live run ``run_id`` (ts, signal)."""
        return reconcile.agent_live_signals(self.query, run_id, agent)

    def agent_live_fills(self, run_id: str, agent: str) -> pd.DataFrame:
        """``agent``'s fills in live run ``run_id`` (ts, side, qty, price, fee, reason)."""
        return reconcile.agent_live_fills(self.query, run_id, agent)
