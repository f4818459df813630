"""Shared pieces of the Prefect tasks: logging, retry policy, run ids."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from hedgeflow.errors import OutOfSpaceError, TransientSourceError
from hedgeflow.warehouse import Warehouse
from hedgeflow.warehouse.db import WarehouseBusyError

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
# exit) when many task runs finish at once (PREFECT.md): with it, flows make at most
# EPHEMERAL_TASKS_PER_STAGE task runs per stage and give each a batch when the universe
# is larger. A real server (hedgeflow's resident one, or PREFECT_API_URL) keeps every
# record, so each agent / symbol gets its own task run, up to SERVER_TASKS_PER_STAGE:
# measured on 30 agents, one task each cost 10-20 % more wall time than 8 batches (a
# task run and a warehouse transaction each), so larger universes still batch.
EPHEMERAL_TASKS_PER_STAGE = 8
SERVER_TASKS_PER_STAGE = 32
MAX_TASKS_PER_STAGE = EPHEMERAL_TASKS_PER_STAGE  # the ephemeral mode's bound


def max_tasks_per_stage() -> int:
    """Task runs per stage: one per item on a Prefect server, batches in ephemeral mode."""
    from prefect.settings import PREFECT_API_URL

    return SERVER_TASKS_PER_STAGE if PREFECT_API_URL.value() else EPHEMERAL_TASKS_PER_STAGE


# Threads per flow run: the work is CPU-bound numpy/numba on 2 cores; more threads
# only hold more symbols in memory at once.
TASK_THREADS = 4


def thread_pool() -> Any:
    """The flows' task runner: a bounded thread pool."""
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=TASK_THREADS)


def batches(items: Sequence[T], max_batches: int | None = None) -> list[list[T]]:
    """Split ``items`` into at most ``max_batches`` batches of near-equal size, in order
    (default: ``max_tasks_per_stage()``)."""
    if max_batches is None:
        max_batches = max_tasks_per_stage()
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
            FLOW_RUNS_STARTED.append(str(run_id))
            return str(run_id)
    except Exception:
        pass
    return str(uuid.uuid4())


# The Prefect flow runs this process's flows started (current_run_id records them), so
# that the command can mark them Cancelled after a SIGINT / SIGTERM.
FLOW_RUNS_STARTED: list[str] = []


def cancel_flow_runs(reason: str, timeout: float = 5.0) -> None:
    """Set the flow runs this process started (and their subflow runs) to Cancelled with
    ``reason``, whatever state Prefect's engine left them in (Crashed after an
    interrupt, Completed after a live run's clean stop). Best effort, at most about
    ``timeout`` seconds: a server that does not answer leaves them as they are."""
    from prefect.states import Cancelled

    ids = list(dict.fromkeys(FLOW_RUNS_STARTED))
    _force_flow_runs_state(ids, Cancelled, reason, timeout, keep_final=False)


def crash_flow_runs(run_ids: Sequence[str], timeout: float = 5.0) -> None:
    """Set the Prefect flow runs (and subflow runs) of runs whose process died to Crashed,
    as their ``runs`` rows already are: a killed command never stays Running in the UI.
    Best effort, like :func:`cancel_flow_runs`; ids Prefect does not know are skipped."""
    from prefect.states import Crashed

    message = "the process running it died (found by hedgeflow)"
    _force_flow_runs_state(list(run_ids), Crashed, message, timeout, keep_final=True)


def _force_flow_runs_state(
    ids: list[str], state: Callable[..., Any], message: str, timeout: float, *, keep_final: bool
) -> None:
    """``state(message=...)`` forced on the flow runs ``ids`` and their subflow runs, in a
    thread given ``timeout`` seconds; ``keep_final`` leaves finished ones alone."""
    if not ids:
        return

    def force() -> None:
        from uuid import UUID

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            FlowRunFilterParentFlowRunId,
        )

        uuids = []
        for i in ids:
            with contextlib.suppress(ValueError):
                uuids.append(UUID(i))
        if not uuids:
            return
        with get_client(sync_client=True) as client:
            known = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=uuids))
            )
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=uuids)
                )
            )
            for flow_run in [*known, *children]:
                if keep_final and flow_run.state is not None and flow_run.state.is_final():
                    continue
                client.set_flow_run_state(flow_run.id, state(message=message), force=True)

    worker = threading.Thread(target=force, name="force-flow-runs-state", daemon=True)
    worker.start()
    worker.join(timeout)


def raise_if_out_of_space(outcome: object) -> None:
    """A task that failed on a full disk fails the whole run with that one-line error
    (every later write would fail the same way), instead of counting as one failed
    symbol or agent."""
    if isinstance(outcome, OutOfSpaceError):
        raise outcome


def interruption(exc: BaseException) -> str | None:
    """``SIGINT`` / ``SIGTERM`` when ``exc`` is how a signal stopped the run (Ctrl-C's
    KeyboardInterrupt, the CLI's ``Terminated``, Prefect's TerminationSignal), else None."""
    from prefect.exceptions import TerminationSignal

    if isinstance(exc, TerminationSignal):
        return signal.Signals(exc.signal).name
    if isinstance(exc, KeyboardInterrupt):
        return signal.Signals(getattr(exc, "signum", signal.SIGINT)).name
    return None


def end_reason(exc: BaseException) -> tuple[str, str]:
    """(status, reason) of a run that ``exc`` ended: ``cancelled`` by a signal, else
    ``failed`` with the error on one line."""
    name = interruption(exc)
    if name is not None:
        return "cancelled", f"stopped by {name}" + (" (Ctrl-C)" if name == "SIGINT" else "")
    text = str(exc).strip().splitlines()
    return "failed", f"{type(exc).__name__}: {text[0] if text else ''}"


def mark_run_ended(warehouse: Any, run_id: str, exc: BaseException) -> None:
    """Record a run that ``exc`` ended: ``cancelled`` by SIGINT / SIGTERM, else
    ``failed``, with the reason. On a full disk (or a warehouse locked past the
    interruption's patience) the row cannot be written and stays ``running`` (readers
    never show its results; the next command marks it crashed), and the original error
    is the one the caller re-raises."""
    status, reason = end_reason(exc)
    if status == "cancelled":  # stop within seconds, even while a reader holds the file
        warehouse = Warehouse(warehouse.home, lock_timeout=INTERRUPT_LOCK_WAIT)
    with contextlib.suppress(OutOfSpaceError, WarehouseBusyError):
        warehouse.finish_run(run_id, status, None, reason=reason)


# Seconds an interrupted run waits for the warehouse to record that it was cancelled.
INTERRUPT_LOCK_WAIT = 5.0
