"""Every path of the warehouse, built only from validated names.

Layout under HOME::

    lake/bars/interval=5m/symbol=AAPL.US/month=2026-11/part.parquet
    lake/quarantine/bars/interval=5m/symbol=AAPL.US/month=2026-11/part.parquet.<stamp>
    lake/quarantine/bars/interval=5m/symbol=AAPL.US/month=2026-11/part.parquet.<stamp>.json
    lake/.locks/bars-AAPL.US.lock
    hedgeflow.duckdb
    reports/<run_id>/report.html   (the tearsheet; summary.md and charts beside it)
    journal/live-<run_id>.journal   the live flow's backlog (hedgeflow.live.journal)
    live.lock                       held by the one ``hedgeflow live`` of this home

A symbol, interval or run id is validated (``hedgeflow.market`` /
``RUN_ID_PATTERN``) before any path is built, so no name can traverse out of
HOME or inject anything into SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hedgeflow.errors import InvalidInputError
from hedgeflow.market import normalize_symbol, validate_interval
from hedgeflow.schemas.columns import RUN_ID_PATTERN

DB_FILE_NAME = "hedgeflow.duckdb"
# A nightly or sweep run's report folder: the tearsheet and the markdown summary.
REPORT_HTML = "report.html"
SUMMARY_MD = "summary.md"
PART_FILE_NAME = "part.parquet"
SPLITS_FILE_NAME = "splits.parquet"
TEMP_SUFFIX = ".tmp"
# A partition file that could not be read is moved to the quarantine folder under its
# path relative to the lake plus ".<QUARANTINE_STAMP>" (UTC), next to a record of why
# (the same name plus QUARANTINE_RECORD_SUFFIX).
QUARANTINE_STAMP = "%Y%m%dT%H%M%S%fZ"
QUARANTINE_RECORD_SUFFIX = ".json"
JOURNAL_DIR_NAME = "journal"
LIVE_JOURNAL_PREFIX = "live-"
LIVE_JOURNAL_SUFFIX = ".journal"
LIVE_LOCK_FILE_NAME = "live.lock"
_RUN_ID_RE = re.compile(RUN_ID_PATTERN)
_MONTH_RE = re.compile(r"^\d{4}-\d{2}$")


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_RE.fullmatch(run_id):
        raise InvalidInputError(
            f"invalid run id {run_id!r}: letters, digits, '_', '.', '-' "
            "(max 128 characters, starting with a letter or digit)"
        )
    return run_id


def month_key(month: np.datetime64) -> str:
    """``2026-11`` for a ``datetime64[M]``."""
    return str(month.astype("datetime64[M]"))


@dataclass(frozen=True)
class WarehousePaths:
    home: Path

    @classmethod
    def at(cls, home: Path | str) -> WarehousePaths:
        return cls(Path(home).expanduser().resolve())

    @property
    def db(self) -> Path:
        return self.home / DB_FILE_NAME

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    @property
    def bars_root(self) -> Path:
        return self.lake / "bars"

    @property
    def bars_glob(self) -> str:
        """The glob DuckDB reads: one file per interval/symbol/month partition."""
        return f"{self.bars_root.as_posix()}/*/*/*/*.parquet"

    @property
    def splits_root(self) -> Path:
        """``lake/splits``: one file of splits per stock."""
        return self.lake / "splits"

    @property
    def splits_glob(self) -> str:
        """The glob DuckDB reads for the ``splits`` view."""
        return f"{self.splits_root.as_posix()}/*/{SPLITS_FILE_NAME}"

    def splits_file(self, symbol: str) -> Path:
        return self.splits_root / f"symbol={normalize_symbol(symbol)}" / SPLITS_FILE_NAME

    def lake_has_splits(self) -> bool:
        root = self.splits_root
        return root.is_dir() and next(root.glob(f"*/{SPLITS_FILE_NAME}"), None) is not None

    @property
    def quarantine_root(self) -> Path:
        """``lake/quarantine``: partition files that could not be read, moved away."""
        return self.lake / "quarantine"

    @property
    def quarantine_records_glob(self) -> str:
        """The glob DuckDB reads for the ``lake_quarantine`` view (one record per file)."""
        return f"{self.quarantine_root.as_posix()}/**/*{QUARANTINE_RECORD_SUFFIX}"

    def quarantine_file(self, partition: Path, stamp: str) -> Path:
        """Where the partition file ``partition`` (under ``bars_root``) is moved."""
        relative = partition.relative_to(self.lake)
        return self.quarantine_root / relative.parent / f"{relative.name}.{stamp}"

    def quarantine_records(self) -> list[Path]:
        """Every quarantine record (oldest stamp first within a folder)."""
        root = self.quarantine_root
        if not root.is_dir():
            return []
        return sorted(root.rglob(f"*{QUARANTINE_RECORD_SUFFIX}"))

    @property
    def vendor_gaps_root(self) -> Path:
        """``lake/vendor_gaps``: one JSON record per vendor answer with no bars."""
        return self.lake / "vendor_gaps"

    @property
    def vendor_gaps_glob(self) -> str:
        """The glob DuckDB reads for the vendor gap records of the ``data_gaps`` view."""
        return f"{self.vendor_gaps_root.as_posix()}/*/*.json"

    def vendor_gap_records(self) -> list[Path]:
        root = self.vendor_gaps_root
        if not root.is_dir():
            return []
        return sorted(root.glob("*/*.json"))

    def calendar_file(self, name: str, version: str) -> Path:
        """``lake/calendars/<name>-<library version>.parquet``: a calendar's sessions."""
        return self.lake / "calendars" / f"{name}-{version}.parquet"

    def partition_files(self) -> list[Path]:
        """Every file the ``bars`` view reads (``bars_glob``), sorted."""
        root = self.bars_root
        if not root.is_dir():
            return []
        return sorted(root.glob("*/*/*/*.parquet"))

    def partition_of(self, path: Path | str) -> tuple[str, str, str] | None:
        """(interval, symbol, month) of a file under ``bars_root``, or None when
        ``path`` is not a partition file of this lake."""
        try:
            relative = Path(path).resolve().relative_to(self.bars_root)
        except (ValueError, OSError):
            return None
        parts = relative.parts
        if len(parts) != 4 or not parts[3].endswith(".parquet"):
            return None
        keys = []
        for part, key in zip(parts[:3], ("interval=", "symbol=", "month="), strict=True):
            if not part.startswith(key):
                return None
            keys.append(part.removeprefix(key))
        interval, symbol, month = keys
        try:  # only names this lake writes (and can lock)
            validate_interval(interval)
            if normalize_symbol(symbol) != symbol:
                return None
        except InvalidInputError:
            return None
        if not _MONTH_RE.fullmatch(month):
            return None
        return interval, symbol, month

    @property
    def locks(self) -> Path:
        return self.lake / ".locks"

    @property
    def reports_root(self) -> Path:
        return self.home / "reports"

    @property
    def journal_dir(self) -> Path:
        return self.home / JOURNAL_DIR_NAME

    def live_journal(self, run_id: str) -> Path:
        """``journal/live-<run_id>.journal``: the live run's steps not yet stored."""
        name = f"{LIVE_JOURNAL_PREFIX}{check_run_id(run_id)}{LIVE_JOURNAL_SUFFIX}"
        return self.journal_dir / name

    def live_journals(self) -> list[Path]:
        """Every live journal present, oldest first."""
        if not self.journal_dir.is_dir():
            return []
        found = self.journal_dir.glob(f"{LIVE_JOURNAL_PREFIX}*{LIVE_JOURNAL_SUFFIX}")
        return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))

    @property
    def live_lock(self) -> Path:
        """``live.lock``: flock-ed by the one live runner of this home."""
        return self.home / LIVE_LOCK_FILE_NAME

    def series_dir(self, symbol: str, interval: str) -> Path:
        """``lake/bars/interval=<i>/symbol=<s>`` (names validated here)."""
        symbol = normalize_symbol(symbol)
        validate_interval(interval)
        return self.bars_root / f"interval={interval}" / f"symbol={symbol}"

    def partition_file(self, symbol: str, interval: str, month: str) -> Path:
        if not _MONTH_RE.fullmatch(month):
            raise InvalidInputError(f"invalid month {month!r}: expected YYYY-MM")
        return self.series_dir(symbol, interval) / f"month={month}" / PART_FILE_NAME

    def symbol_lock(self, symbol: str) -> Path:
        return self.locks / f"bars-{normalize_symbol(symbol)}.lock"

    def report_dir(self, run_id: str) -> Path:
        return self.reports_root / check_run_id(run_id)

    def report_file(self, run_id: str) -> Path:
        """The run's tearsheet, absolute."""
        return (self.report_dir(run_id) / REPORT_HTML).absolute()

    def months_present(self, symbol: str, interval: str) -> list[str]:
        """The month partitions of a series that hold a file, oldest first."""
        base = self.series_dir(symbol, interval)
        if not base.is_dir():
            return []
        months = []
        for entry in base.iterdir():
            name = entry.name
            if name.startswith("month=") and (entry / PART_FILE_NAME).is_file():
                month = name.removeprefix("month=")
                if _MONTH_RE.fullmatch(month):
                    months.append(month)
        return sorted(months)

    def lake_has_bars(self) -> bool:
        root = self.bars_root
        if not root.is_dir():
            return False
        return next(root.glob("*/*/*/*.parquet"), None) is not None
