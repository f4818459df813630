"""What ``hedgeflow reconcile`` reads: live runs, an agent's live bars and fills.

The rows are the live flow's record (``live_bars``, ``live_signals``, ``live_fills``)
and the ``runs`` rows of the ``live`` and ``reconcile`` flows; the result goes to
``live_drift`` through ``Warehouse.write_results``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from hedgeflow.schemas.columns import FINISHED_STATUSES, LIVE_BARS, LIVE_FILLS, LIVE_SIGNALS

Query = Callable[[str, Sequence[Any]], pd.DataFrame]

LIVE_FLOW = "live"
RECONCILE_FLOW = "reconcile"
_RUN_COLUMNS = "run_id, status, params, started_at, finished_at"


def _run(row: dict[str, Any]) -> dict[str, Any]:
    try:
        row["params"] = json.loads(row.get("params") or "{}")
    except ValueError:
        row["params"] = {}
    return row


def live_runs(query: Query, prefix: str | None = None, limit: int = 5) -> list[dict[str, Any]]:
    """Live runs, newest first (params parsed); with ``prefix``, those whose id starts
    with it (an exact id first)."""
    if prefix is None:
        frame = query(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE flow = ? ORDER BY started_at DESC, run_id "
            "LIMIT ?",
            [LIVE_FLOW, limit],
        )
    else:
        frame = query(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE flow = ? AND starts_with(run_id, ?) "
            "ORDER BY run_id <> ?, started_at DESC, run_id LIMIT ?",
            [LIVE_FLOW, prefix, prefix, limit],
        )
    return [_run(r) for r in frame.to_dict("records")]


def unreconciled_live_run(query: Query) -> dict[str, Any] | None:
    """The live run that ended last (any status but ``running``: a run stopped with
    Ctrl-C is ``cancelled``, and its record is whole), unless a finished reconcile run
    started after it ended already covers it."""
    live = query(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE flow = ? AND status <> 'running' "
        "ORDER BY coalesce(finished_at, started_at) DESC, run_id LIMIT 1",
        [LIVE_FLOW],
    )
    if live.empty:
        return None
    run = _run(live.iloc[0].to_dict())
    ended = run["finished_at"] if pd.notna(run["finished_at"]) else run["started_at"]
    finished = tuple(FINISHED_STATUSES)
    marks = ", ".join("?" for _ in finished)
    done = query(
        f"SELECT params FROM runs WHERE flow = ? AND status IN ({marks}) AND started_at >= ?",
        [RECONCILE_FLOW, *finished, ended],
    )
    for text in done["params"]:
        try:
            if json.loads(text or "{}").get("live_run_id") == run["run_id"]:
                return None
        except ValueError:
            continue
    return run


def agent_live_bars(
    query: Query, run_id: str, agent: str, symbol: str, interval: str
) -> pd.DataFrame:
    """The bars the agent processed in the run (a ``live_signals`` row each), by ts."""
    return query(
        f"SELECT b.ts, b.open, b.high, b.low, b.close FROM {LIVE_BARS} b "
        f"JOIN {LIVE_SIGNALS} s ON s.run_id = b.run_id AND s.symbol = b.symbol AND s.ts = b.ts "
        'WHERE b.run_id = ? AND b.symbol = ? AND b."interval" = ? AND s.agent = ? ORDER BY b.ts',
        [run_id, symbol, interval, agent],
    )


def agent_live_fills(query: Query, run_id: str, agent: str) -> pd.DataFrame:
    """The agent's fills in the run, by ts (ts, side, qty, price, fee, reason)."""
    return query(
        f"SELECT ts, side, qty, price, fee, reason FROM {LIVE_FILLS} "
        "WHERE run_id = ? AND agent = ? ORDER BY ts, side",
        [run_id, agent],
    )


def agent_live_signals(query: Query, run_id: str, agent: str) -> pd.DataFrame:
    """The signals the agent recorded in the run, by ts (ts, signal)."""
    return query(
        f"SELECT ts, signal FROM {LIVE_SIGNALS} WHERE run_id = ? AND agent = ? ORDER BY ts",
        [run_id, agent],
    )
