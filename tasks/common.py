"""Shared pieces of the Prefect tasks: logging, retry policy, run ids."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from hedgeflow.errors import TransientSourceError

# Progress events for the CLI's progress display (it attaches a handler here).
progress_log = logging.getLogger("hedgeflow.progress")


def run_logger() -> logging.Logger | logging.LoggerAdapter[Any]:
    """Prefect's run logger inside a run, a plain logger elsewhere (e.g. ``task.fn()``)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("hedgeflow")


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry only transient source failures."""
    try:
        state.result()
    except TransientSourceError:
        return True
    except Exception:
        return False
    return False


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
