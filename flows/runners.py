"""Task runners for the compute stages of the flows (nightly backtests, sweeps).

- ``threads`` (default): Prefect's thread pool;
- a Dask scheduler address (the ``dask_address`` parameter or setting, or the
  ``DASK_SCHEDULER_ADDRESS`` environment variable, dask's own setting):
  ``DaskTaskRunner(address=...)``; its workers must see the same ``HEDGEFLOW_HOME``
  (they read bars and write results there) and have hedgeflow installed;
- ``dask`` without an address: a ``distributed.LocalCluster`` of 2 worker
  processes for the duration of the run.

A flow runs its compute stage as a subflow called with
``.with_options(task_runner=...)``, so the runner is a per-run choice that also
works from a deployment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from hedgeflow.errors import InvalidInputError
from hedgeflow.tasks.common import thread_pool

TaskRunnerName = Literal["threads", "dask"]
DASK_WORKERS = 2
DASK_ADDRESS_ENV = "DASK_SCHEDULER_ADDRESS"


def configured_dask_address(explicit: str | None = None) -> str | None:
    """``explicit``, else ``$DASK_SCHEDULER_ADDRESS``, else dask's ``scheduler-address``."""
    if explicit:
        return explicit
    if os.environ.get(DASK_ADDRESS_ENV):
        return os.environ[DASK_ADDRESS_ENV]
    if not _dask_configured():
        return None  # no Dask configuration to read: spare the import (0.2-0.4 s)
    import dask.config

    value = dask.config.get("scheduler-address", None)
    return str(value) if value else None


def _dask_configured() -> bool:
    """Whether Dask could find any configuration: a ``DASK_*`` variable, or one of the
    folders dask.config reads (``$DASK_CONFIG``, ``~/.config/dask``, ``/etc/dask``,
    ``<prefix>/etc/dask``)."""
    if any(name.startswith("DASK_") for name in os.environ):
        return True
    folders = [os.environ.get("DASK_CONFIG"), "~/.config/dask", "/etc/dask"]
    folders.append(os.path.join(sys.prefix, "etc", "dask"))
    return any(Path(f).expanduser().exists() for f in folders if f)


def quiet_dask() -> None:
    """Dask logs warnings and errors only (scheduler here, workers in their processes)."""
    os.environ.setdefault("PREFECT_LOGGING_LOGGERS_DISTRIBUTED_LEVEL", "WARNING")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    os.environ.setdefault("DASK_DISTRIBUTED__LOGGING__DISTRIBUTED", "warning")
    for name in ("distributed", "distributed.scheduler", "distributed.http.proxy"):
        logging.getLogger(name).setLevel(logging.WARNING)


def task_runner_for(task_runner: str, dask_address: str | None) -> tuple[Any, str]:
    """(task runner, description) for a flow's compute stage (a subflow)."""
    if task_runner not in ("threads", "dask"):
        raise InvalidInputError(f"task_runner must be threads or dask, got {task_runner!r}")
    address = configured_dask_address(dask_address)
    if address is None and task_runner == "threads":
        return thread_pool(), "threads"
    quiet_dask()
    from prefect_dask import DaskTaskRunner

    if address is not None:
        return DaskTaskRunner(address=address), f"dask {address}"
    return (
        DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": DASK_WORKERS,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": ":0",
                "silence_logs": logging.WARNING,
            },
        ),
        f"dask LocalCluster({DASK_WORKERS} workers)",
    )


@contextlib.contextmanager
def api_for_workers(dask: bool) -> Iterator[None]:
    """In ephemeral mode, point this flow's settings at the running temporary server
    so that Dask workers (other processes, given these settings with each task)
    report to it instead of starting temporary servers of their own."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if not dask or PREFECT_API_URL.value():
        yield
        return
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        url = str(client.api_url).rstrip("/")
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield
