"""Ingest task: fetch -> validate -> write, for one symbol (or a batch of symbols
when the universe is larger than the number of task runs a flow should make)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from hedgeflow.config import NetworkSettings
from hedgeflow.schemas.bars import split_valid_bars
from hedgeflow.sources import make_source
from hedgeflow.sources.base import fetch, fetch_splits
from hedgeflow.tasks.common import progress_log, retry_on_transient, run_logger
from hedgeflow.warehouse import DEFAULT_LOCK_TIMEOUT, Warehouse


@dataclass(frozen=True)
class SourceSpec:
    """How a task opens its market source (picklable, holds no secret)."""

    name: str
    network: NetworkSettings
    seed: int
    # A non-secret token only (the local simulator's); the real token is read
    # from the environment or a Prefect Secret block inside the task.
    public_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class IngestResult:
    symbol: str
    interval: str
    fetched: int
    stored: int
    quarantined: int
    seconds: float
    # [lo, hi) ranges the vendor answered with no bars (closed market or vendor gap):
    # their stored bars were kept, not cleared (DESIGN.md convention 8)
    empty_ranges: tuple[tuple[datetime, datetime], ...] = ()
    # months whose stored partition could not be read: moved to the lake's quarantine
    # folder (the lake_quarantine view) and written afresh from this fetch
    healed_months: tuple[str, ...] = ()
    # splits the vendor reported that were not stored yet (stocks; they adjust the bars
    # before them in bars_adjusted and in every backtest)
    new_splits: int = 0


def ingest_symbol_body(
    symbol: str,
    interval: str,
    start: datetime,
    end: datetime,
    source: SourceSpec,
    home: Path,
    run_id: str,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> IngestResult:
    began = time.perf_counter()
    token = source.public_token
    if source.name == "eodhd" and token is None:
        from hedgeflow.tasks.secrets import eodhd_token

        token = eodhd_token(source.network)
    market = make_source(source.name, source.network, source.seed, token=token)
    try:
        fetched = fetch(market, symbol, interval, start, end)
        # fetched before anything is written: a bad splits answer changes nothing stored
        splits = fetch_splits(market, symbol, end.date())
    finally:
        close = getattr(market, "close", None)
        if close is not None:
            close()
    raw = fetched.bars
    valid, quarantined = split_valid_bars(raw, symbol, interval, run_id)
    warehouse = Warehouse(home, lock_timeout=lock_timeout)
    if len(quarantined):
        warehouse.write_quarantine(quarantined)
    report = warehouse.write_bars(
        valid, symbol, interval, start, end, source=source.name, keep=fetched.empty
    )
    # reported in the data_gaps view, never stored as "no bars" (convention 8)
    warehouse.record_vendor_gaps(symbol, interval, fetched.empty, run_id, source.name)
    new_splits = 0 if splits is None else warehouse.write_splits(symbol, splits, source.name)
    result = IngestResult(
        symbol=symbol,
        interval=interval,
        fetched=len(raw),
        stored=report.rows_written,
        quarantined=len(quarantined),
        seconds=time.perf_counter() - began,
        empty_ranges=tuple((lo.to_pydatetime(), hi.to_pydatetime()) for lo, hi in fetched.empty),
        healed_months=tuple(h.month for h in report.partitions_healed),
        new_splits=new_splits,
    )
    log = run_logger()
    log.info(
        "%s %s: %d bars fetched, %d stored, %d quarantined",
        symbol,
        interval,
        result.fetched,
        result.stored,
        result.quarantined,
    )
    if new_splits:
        log.info("%s: %d new split(s) stored (the splits view)", symbol, new_splits)
    for lo, hi in result.empty_ranges:
        log.warning(
            "%s: the vendor returned no bars for [%s, %s) (market closed, or a vendor gap); "
            "stored bars there are kept",
            symbol,
            lo.isoformat(),
            hi.isoformat(),
        )
    for healed in report.partitions_healed:
        log.warning(
            "%s %s %s: the stored partition could not be read (%s); moved to %s and "
            "rewritten from this fetch (its bars outside [%s, %s) are missing until ingested)",
            symbol,
            interval,
            healed.month,
            healed.reason,
            healed.quarantined_as,
            start.isoformat(),
            end.isoformat(),
        )
    if result.quarantined:
        log.warning(
            "%s: %d invalid bars quarantined (see the quarantine table)", symbol, result.quarantined
        )
    progress_log.info("ingested", extra={"hedgeflow_event": "ingested", "hedgeflow_result": result})
    return result


def ingest_symbols_body(
    label: str,
    symbols: list[str],
    interval: str,
    start: datetime,
    end: datetime,
    source: SourceSpec,
    home: Path,
    run_id: str,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> list[IngestResult]:
    """Ingest each symbol in turn; one symbol in memory at a time."""
    return [
        ingest_symbol_body(symbol, interval, start, end, source, home, run_id, lock_timeout)
        for symbol in symbols
    ]


ingest_symbols = task(
    name="ingest",
    task_run_name="ingest-{label}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_on_transient,
    cache_policy=NO_CACHE,
)(ingest_symbols_body)
