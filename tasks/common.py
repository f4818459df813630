"""Shared pieces of the Prefect tasks: logging, retry policy, run ids."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from hedgeflow.errors import OutOfSpaceError, TransientSourceError

T = TypeVar("T")

# Progress events for the CLI's progress display (it attaches a handler here).
progress_log = logging.getLogger("hedgeflow.progress")


def run_logger() -> logging.Logger | logging.LoggerAdapter[Any]:
    """Prefect's run logger inside a run, a plain logger elsewhere (e.g. ``task.fn()``)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("hedgeflow")


def log_healed(healed: Any) -> None:
    """``on_heal`` of ``Warehouse.read_bars`` in a task: the run's log says which month
    of bars could not be read and is missing from this run."""
    run_logger().warning(
        "%s: its bars are missing from this run until that month is ingested again",
        healed.describe(),
    )


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry only transient source failures."""
    try:
        state.result()
    except TransientSourceError:
        return True
    except Exception:
        return False
    return False


# Prefect's ephemeral server loses task-run records (and prints ERROR tracebacks at
# exit) when many task runs finish at once (PREFECT.md); flows make at most this
# many task runs per stage and give each a batch when the universe is larger.
MAX_TASKS_PER_STAGE = 8


# Threads per flow run: the work is CPU-bound numpy/numba on 2 cores; more threads
# only hold more symbols in memory at once.
TASK_THREADS = 4


def thread_pool() -> Any:
    """The flows' task runner: a bounded thread pool."""
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=TASK_THREADS)


def batches(items: Sequence[T], max_batches: int = MAX_TASKS_PER_STAGE) -> list[list[T]]:
    """Split ``items`` into at most ``max_batches`` batches of near-equal size, in order."""
    n = len(items)
    if n == 0:
        return []
    k = min(n, max_batches)
    size, extra = divmod(n, k)
    out, start = [], 0
    for i in range(k):
        stop = start + size + (1 if i < extra else 0)
        out.append(list(items[start:stop]))
        start = stop
    return out


def batch_label(batch: Sequence[str], index: int, total: int) -> str:
    return batch[0] if len(batch) == 1 else f"{index + 1}of{total}-{len(batch)}"


def current_run_id() -> str:
    """The Prefect flow run id when inside a flow run, else a fresh uuid."""
    try:
        from prefect.runtime import flow_run

        run_id = flow_run.get_id()
        if run_id:
            return str(run_id)
    except Exception:
        pass
    return str(uuid.uuid4())


def raise_if_out_of_space(outcome: object) -> None:
    """A task that failed on a full disk fails the whole run with that one-line error
    (every later write would fail the same way), instead of counting as one failed
    symbol or agent."""
    if isinstance(outcome, OutOfSpaceError):
        raise outcome


def mark_run_failed(warehouse: Any, run_id: str) -> None:
    """Record a failed run; on a full disk the row cannot be written and stays
    ``running`` (readers never show its results), and the original error is the one
    the caller re-raises."""
    with contextlib.suppress(OutOfSpaceError):
        warehouse.finish_run(run_id, "failed", None)
