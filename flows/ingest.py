"""The ingest flow: one mapped task per symbol (fetch -> validate -> write); large
universes are split into batches of symbols (tasks/common.py ``max_tasks_per_stage``)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Annotated

from prefect import flow

from hedgeflow.config import Settings, load_settings
from hedgeflow.errors import InvalidInputError, SourceError
from hedgeflow.flows.params import (
    DAYS_DOC,
    END_DOC,
    INTERVAL_DOC,
    SOURCE_DOC,
    SYMBOLS_DOC,
    IntervalName,
    SourceName,
)
from hedgeflow.market import interval_seconds, normalize_symbol, validate_interval
from hedgeflow.tasks.common import (
    batch_label,
    batches,
    current_run_id,
    mark_run_ended,
    raise_if_out_of_space,
    run_logger,
    thread_pool,
)
from hedgeflow.tasks.ingest import IngestResult, SourceSpec, ingest_symbols
from hedgeflow.warehouse import Warehouse, code_version
from hedgeflow.windows import Window, lookback_window


@contextlib.contextmanager
def open_source_spec(settings: Settings) -> Iterator[SourceSpec]:
    """A SourceSpec for the tasks; for ``simulator`` a local EODHD-compatible server
    runs for the duration and the real EODHD client talks to it."""
    if settings.source != "simulator":
        yield SourceSpec(settings.source, settings.network, settings.seed)
        return
    from hedgeflow.sources.simulator import Simulator

    with Simulator(seed=settings.seed) as sim:
        network = dataclasses.replace(settings.network, base_url=sim.base_url)
        yield SourceSpec("eodhd", network, settings.seed, public_token=sim.tokens[0])


def resolve_symbols(symbols: list[str] | None, settings: Settings) -> list[str]:
    chosen = list(symbols) if symbols else list(settings.symbols)
    if not chosen:
        raise InvalidInputError("no symbols to ingest")
    out = [normalize_symbol(s) for s in chosen]
    return list(dict.fromkeys(out))


def ingest_window(
    symbols: list[str],
    interval: str,
    window: Window,
    spec: SourceSpec,
    settings: Settings,
    run_id: str,
) -> tuple[list[IngestResult], dict[str, str]]:
    """Submit the ingest tasks and wait for all of them (used by ingest and nightly).

    Returns the results and, per symbol whose task failed, the error."""
    groups = batches(symbols)
    labels = [batch_label(g, i, len(groups)) for i, g in enumerate(groups)]
    futures = ingest_symbols.map(
        labels,
        groups,
        interval=interval,
        start=window.start,
        end=window.end,
        source=spec,
        home=settings.home,
        run_id=run_id,
        lock_timeout=settings.lock_timeout,
    )
    results: list[IngestResult] = []
    failed: dict[str, str] = {}
    for group, future in zip(groups, futures, strict=True):
        outcome = future.result(raise_on_failure=False)
        raise_if_out_of_space(outcome)
        if isinstance(outcome, BaseException):
            for symbol in group:
                failed[symbol] = f"{type(outcome).__name__}: {outcome}"
        else:
            results.extend(outcome)
    return results, failed


# Stored bars "cover" the window when they start and end within this of its ends
# (markets close for weekends; a shorter window uses a quarter of its length).
COVER_SLACK = timedelta(days=4)


def missing_symbols(
    warehouse: Warehouse, symbols: list[str], interval: str, window: Window
) -> list[str]:
    """Symbols whose stored bars do not cover the window (they are ingested first)."""
    slack = min(COVER_SLACK, (window.end - window.start) / 4)
    step = timedelta(seconds=interval_seconds(interval))
    out = []
    for symbol in symbols:
        span = warehouse.bars_span(symbol, interval)
        if span is None or span[0] > window.start + slack or span[1] + step < window.end - slack:
            out.append(symbol)
    return out


def ingest_missing(
    warehouse: Warehouse, symbols: list[str], window: Window, settings: Settings, run_id: str
) -> dict[str, str]:
    """Ingest the symbols whose stored bars do not cover ``window`` (sweep and
    walk-forward read the lake); per symbol whose ingest failed, ``ingest failed: ...``."""
    missing = missing_symbols(warehouse, symbols, settings.interval, window)
    if not missing:
        return {}
    run_logger().info("ingesting %d symbols first: %s", len(missing), ", ".join(missing))
    with open_source_spec(settings) as spec:
        _, failed = ingest_window(missing, settings.interval, window, spec, settings, run_id)
    return {symbol: f"ingest failed: {error}" for symbol, error in failed.items()}


@flow(name="ingest", task_runner=thread_pool())
def ingest(
    symbols: Annotated[list[str] | None, SYMBOLS_DOC] = None,
    days: Annotated[int | None, DAYS_DOC] = None,
    interval: Annotated[IntervalName | None, INTERVAL_DOC] = None,
    source: Annotated[SourceName | None, SOURCE_DOC] = None,
    end: Annotated[datetime | None, END_DOC] = None,
) -> list[IngestResult]:
    """Fetch bars for ``symbols`` over the ``days`` before ``end`` (default: the end
    of the last completed bar, now floored to the interval), validate them and store
    them in the lake."""
    overrides: dict[str, object] = {}
    if source:
        overrides["source"] = source
    if interval:
        overrides["interval"] = interval
    settings = load_settings(overrides=overrides).without_secrets()
    chosen = resolve_symbols(symbols, settings)
    interval_ = validate_interval(settings.interval)
    window = lookback_window(
        settings.lookback_days if days is None else days, end, interval=interval_
    )
    run_id = current_run_id()
    warehouse = Warehouse(settings.home, lock_timeout=settings.lock_timeout)
    params = {
        "symbols": chosen,
        "interval": interval_,
        "source": settings.source,
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
    }
    warehouse.start_run(run_id, "ingest", params, code_version())
    log = run_logger()
    log.info(
        "ingesting %d symbols %s..%s from %s",
        len(chosen),
        window.start,
        window.end,
        settings.source,
    )
    try:
        with open_source_spec(settings) as spec:
            results, failed = ingest_window(chosen, interval_, window, spec, settings, run_id)
    except BaseException as exc:
        mark_run_ended(warehouse, run_id, exc)
        raise
    if failed:
        detail = "; ".join(f"{symbol}: {error}" for symbol, error in failed.items())
        warehouse.finish_run(run_id, "failed", {"failed": failed}, reason=detail)
        raise SourceError(f"ingest failed for {len(failed)} of {len(chosen)} symbols: {detail}")
    summary = {
        "fetched": sum(r.fetched for r in results),
        "stored": sum(r.stored for r in results),
        "quarantined": sum(r.quarantined for r in results),
        # empty vendor answers: their stored bars were kept (convention 8)
        "empty_ranges": sum(len(r.empty_ranges) for r in results),
    }
    warehouse.finish_run(run_id, "completed", summary)
    return results
