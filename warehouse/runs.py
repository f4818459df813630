"""The ``runs`` table: start first, finish last; code version and data fingerprint."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import math
import os
import socket
import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import psutil

from hedgeflow.errors import InvalidInputError
from hedgeflow.schemas import Runs, validate_frame
from hedgeflow.schemas.columns import FINAL_STATUSES, RUN_COLUMNS
from hedgeflow.warehouse.db import STORE
from hedgeflow.warehouse.paths import check_run_id

_RUNS = f"{STORE}.runs"


def _plain(value: Any) -> Any:
    """A JSON-able copy: NaN/inf -> null, numpy -> python, timestamps -> ISO text."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_plain(v) for v in items]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def to_json(value: Any) -> str:
    """Stable JSON text (sorted keys, no NaN) for params, summaries and weights."""
    return json.dumps(_plain(value), sort_keys=True, allow_nan=False, separators=(",", ":"))


def _git_describe(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``git describe`` of the checkout hedgeflow runs from, else the package version
    (an installed hedgeflow: never the git state of a repository it happens to sit in)."""
    root = Path(__file__).resolve().parent.parent  # warehouse/runs.py -> the checkout
    if (root / "pyproject.toml").is_file() and (root / "hedgeflow").is_dir():
        described = _git_describe(root)
        if described:
            return f"git:{described}"
    try:
        return f"hedgeflow {metadata.version('hedgeflow')}"
    except metadata.PackageNotFoundError:
        return "unknown"


def combined_fingerprint(fingerprints: Iterable[tuple[str, str]]) -> str | None:
    """One fingerprint of a run's bars fingerprints, (symbol, fingerprint) per agent or
    symbol, independent of their order; None when there are none."""
    parts = sorted(f"{symbol}={fp}" for symbol, fp in fingerprints)
    if not parts:
        return None
    return "sha256:" + hashlib.sha256(",".join(parts).encode()).hexdigest()


def failures_reason(failed: Mapping[str, str]) -> str | None:
    """A run's ``reason`` from what failed (name -> error), or None when nothing did."""
    return "; ".join(f"{name}: {error}" for name, error in failed.items()) or None


def data_fingerprint(frames: Mapping[str, pd.DataFrame] | Iterable[pd.DataFrame]) -> str:
    """A stable hash of the bars a run used (same data -> same text, across processes).

    A mapping is hashed in sorted key order (e.g. symbol -> bars); a sequence in
    its order. Column names, dtypes and every value count; the index does not.
    """
    h = hashlib.sha256()
    items: Iterable[tuple[str, pd.DataFrame]]
    if isinstance(frames, Mapping):
        items = sorted(frames.items(), key=lambda kv: str(kv[0]))
    else:
        items = ((str(i), f) for i, f in enumerate(frames))
    for key, frame in items:
        header = f"\x00{key}\x00{list(map(str, frame.columns))}{list(map(str, frame.dtypes))}"
        h.update(header.encode())
        hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
        h.update(np.ascontiguousarray(hashed).tobytes())
    return "sha256:" + h.hexdigest()


def _run_row(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[Any, ...] | None:
    rows = con.execute(f"SELECT flow, status FROM {_RUNS} WHERE run_id = ?", [run_id]).fetchall()
    return tuple(rows[0]) if rows else None


def start_run(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    flow: str,
    params: Mapping[str, Any],
    code_version: str,
    data_fingerprint: str | None = None,
) -> None:
    """Insert the run as ``running``. Starting an existing run of the same flow again
    (a retried flow run) resets it to ``running``, which hides its results until it
    finishes again; another flow's run id is refused."""
    check_run_id(run_id)
    now = pd.Timestamp.now(tz="UTC").as_unit("us")
    row = pd.DataFrame(
        [
            {
                "run_id": run_id,
                "flow": flow,
                "started_at": now,
                "finished_at": pd.NaT,
                "status": "running",
                "params": to_json(dict(params)),
                "code_version": code_version,
                "data_fingerprint": data_fingerprint,
                "summary": None,
                "reason": None,
                "process": this_process(),
            }
        ],
        columns=list(RUN_COLUMNS),
    )
    validate_frame(Runs, row, "runs")
    existing = _run_row(con, run_id)
    if existing is not None:
        if existing[0] != flow:
            raise InvalidInputError(
                f"run id {run_id!r} already belongs to flow {existing[0]!r}, not {flow!r}"
            )
        con.execute(
            f"UPDATE {_RUNS} SET started_at = ?, finished_at = NULL, status = 'running', "
            "params = ?, code_version = ?, data_fingerprint = ?, summary = NULL, "
            "reason = NULL, process = ? WHERE run_id = ?",
            [
                now.to_pydatetime(),
                row.at[0, "params"],
                code_version,
                data_fingerprint,
                row.at[0, "process"],
                run_id,
            ],
        )
        return
    con.execute(
        f"INSERT INTO {_RUNS} (run_id, flow, started_at, status, params, code_version, "
        "data_fingerprint, process) VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
        [
            run_id,
            flow,
            now.to_pydatetime(),
            row.at[0, "params"],
            code_version,
            data_fingerprint,
            row.at[0, "process"],
        ],
    )


def finish_run(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    status: str,
    summary: Mapping[str, Any] | None = None,
    data_fingerprint: str | None = None,
    reason: str | None = None,
) -> None:
    """Mark the run finished: completed / partial show its results, failed keeps them hidden.
    A fingerprint known only at the end (of the bars the run read) is recorded here, and
    ``reason`` says why a run failed or was cancelled (one line)."""
    check_run_id(run_id)
    if status not in FINAL_STATUSES:
        raise InvalidInputError(
            f"invalid final status {status!r}: expected one of {', '.join(FINAL_STATUSES)}"
        )
    if _run_row(con, run_id) is None:
        raise InvalidInputError(f"unknown run {run_id!r}: start_run it first")
    text = None if summary is None else to_json(dict(summary))
    con.execute(
        f"UPDATE {_RUNS} SET finished_at = current_timestamp, status = ?, summary = ?, "
        "data_fingerprint = coalesce(?, data_fingerprint), reason = ? WHERE run_id = ?",
        [status, text, data_fingerprint, one_line(reason), run_id],
    )


def one_line(text: str | None, limit: int = 300) -> str | None:
    """A reason as one short line (None stays None)."""
    if text is None:
        return None
    words = " ".join(str(text).split())
    return words if len(words) <= limit else words[: limit - 3] + "..."


def this_process() -> str:
    """``host:pid`` of this process, recorded with every run it starts."""
    return f"{socket.gethostname()}:{os.getpid()}"


def process_ended(process: str | None, started_at: dt.datetime | pd.Timestamp) -> bool:
    """Whether the process that started a run (``host:pid``) is gone: it ran on this
    host and no process with that pid exists, or the one that does started after the
    run did (a reused pid). A run of another host (or with no process) is not judged."""
    if not process or ":" not in process:
        return False
    host, _, pid_text = process.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        proc = psutil.Process(int(pid_text))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        return bool(proc.create_time() > pd.Timestamp(started_at).timestamp() + 1.0)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def crashed_reason(process: str | None) -> str:
    return (
        f"its process ({process}) ended without finishing the run: killed, or the machine stopped"
    )


def running_runs(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str | None, Any]]:
    """(run_id, process, started_at) of the runs marked ``running``."""
    rows = con.execute(
        f"SELECT run_id, process, started_at FROM {_RUNS} WHERE status = 'running'"
    ).fetchall()
    return [(str(r[0]), r[1], r[2]) for r in rows]


def end_runs(
    con: duckdb.DuckDBPyConnection, run_ids: Iterable[str], status: str, reason: str
) -> list[str]:
    """Mark these runs (those still ``running``) ``status`` with ``reason``; the ids marked."""
    if status not in FINAL_STATUSES:
        raise InvalidInputError(f"invalid final status {status!r}")
    done: list[str] = []
    for run_id in run_ids:
        changed = con.execute(
            f"UPDATE {_RUNS} SET finished_at = current_timestamp, status = ?, reason = ? "
            "WHERE run_id = ? AND status = 'running' RETURNING run_id",
            [status, one_line(reason), run_id],
        ).fetchall()
        done.extend(str(r[0]) for r in changed)
    return done


def require_run(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    """The run's status; InvalidInputError when it was never started."""
    check_run_id(run_id)
    row = _run_row(con, run_id)
    if row is None:
        raise InvalidInputError(f"unknown run {run_id!r}: start_run it before writing results")
    return str(row[1])
