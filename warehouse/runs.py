"""The ``runs`` table: start first, finish last; code version and data fingerprint."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import math
import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

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
            "params = ?, code_version = ?, data_fingerprint = ?, summary = NULL "
            "WHERE run_id = ?",
            [now.to_pydatetime(), row.at[0, "params"], code_version, data_fingerprint, run_id],
        )
        return
    con.execute(
        f"INSERT INTO {_RUNS} VALUES (?, ?, ?, NULL, 'running', ?, ?, ?, NULL)",
        [run_id, flow, now.to_pydatetime(), row.at[0, "params"], code_version, data_fingerprint],
    )


def finish_run(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    status: str,
    summary: Mapping[str, Any] | None = None,
    data_fingerprint: str | None = None,
) -> None:
    """Mark the run finished: completed / partial show its results, failed keeps them hidden.
    A fingerprint known only at the end (of the bars the run read) is recorded here."""
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
        "data_fingerprint = coalesce(?, data_fingerprint) WHERE run_id = ?",
        [status, text, data_fingerprint, run_id],
    )


def require_run(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    """The run's status; InvalidInputError when it was never started."""
    check_run_id(run_id)
    row = _run_row(con, run_id)
    if row is None:
        raise InvalidInputError(f"unknown run {run_id!r}: start_run it before writing results")
    return str(row[1])
