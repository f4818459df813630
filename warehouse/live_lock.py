"""One live runner per warehouse: ``HOME/live.lock``, held with ``flock`` for a run's life.

The file holds who holds it (JSON: pid, host, run id, start time). The kernel drops
an ``flock`` when its process dies, however it dies, so a lock that can be taken is a
lock whose holder is gone: the new runner takes it over and learns from the file which
run the dead one left (``LiveLock.previous``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from hedgeflow.errors import HedgeflowError
from hedgeflow.warehouse.paths import WarehousePaths

__all__ = ["LiveLock", "LiveRunnerBusyError", "acquire_live_lock"]


class LiveRunnerBusyError(HedgeflowError):
    """Another ``hedgeflow live`` holds this warehouse's live lock."""


def _read(fd: int) -> dict[str, Any]:
    try:
        text = os.pread(fd, 64 * 1024, 0).decode("utf-8", "replace")
        data = json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class LiveLock:
    """A held live lock; :meth:`update` records the run id, :meth:`release` frees it."""

    path: Any
    fd: int
    info: dict[str, Any]
    previous: dict[str, Any] = field(default_factory=dict)  # a dead holder's record

    def update(self, **fields: Any) -> None:
        self.info.update(fields)
        data = json.dumps(self.info, sort_keys=True).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        os.fsync(self.fd)

    def release(self) -> None:
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> LiveLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def describe_holder(info: dict[str, Any]) -> str:
    pid = info.get("pid", "?")
    host = info.get("host", "?")
    run = info.get("run_id") or "(run not chosen yet)"
    since = info.get("started_at", "?")
    return f"pid {pid} on {host}, run {run}, since {since}"


def acquire_live_lock(paths: WarehousePaths, run_id: str | None = None) -> LiveLock:
    """Take ``HOME/live.lock`` or raise :class:`LiveRunnerBusyError` naming the holder."""
    paths.home.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.live_lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder: dict[str, Any] = {}
        for _ in range(20):  # the holder writes its record right after taking the lock
            holder = _read(fd)
            if holder:
                break
            time.sleep(0.05)
        os.close(fd)
        raise LiveRunnerBusyError(
            f"another `hedgeflow live` is running on the warehouse {paths.home} "
            f"({describe_holder(holder)}); stop it first (one live runner per warehouse)"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    previous = _read(fd)
    lock = LiveLock(
        path=paths.live_lock,
        fd=fd,
        info={
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "run_id": run_id,
            "started_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        },
        previous=previous,
    )
    try:
        lock.update()
    except BaseException:
        lock.release()
        raise
    return lock
