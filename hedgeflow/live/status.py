"""Running totals of a live runtime: per agent and for the whole runtime."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

__all__ = ["AgentStatus", "RuntimeStatus", "live_verdict"]


@dataclass(slots=True)
class AgentStatus:
    """One agent's running totals (since this process started)."""

    name: str
    symbol: str
    strategy: str
    bars: int = 0  # bars processed live
    signals: int = 0  # signal changes (0 -> 1, 1 -> 0) among them
    signal: int = 0  # the signal at the last close
    orders: int = 0
    fills: int = 0
    trades: int = 0
    realized_pnl: float = 0.0
    equity: float = math.nan
    position: float = 0.0
    last_ts: pd.Timestamp | None = None
    refused: int = 0
    skipped: int = 0  # entries the order minimums skipped (live_orders status 'rejected')


@dataclass(slots=True)
class RuntimeStatus:
    """A snapshot of the runtime (``on_status`` gets one every ``status_every`` s)."""

    mode: str
    clock_ms: int
    elapsed: float  # wall seconds since run() started
    agents: list[AgentStatus]
    ticks: int = 0
    bars: int = 0  # closed bars dispatched (live + REST)
    rest_bars: int = 0  # of which from REST (catch-up, backfill, polling)
    late_ticks: int = 0
    duplicate_ticks: int = 0
    skipped_ticks: int = 0  # ticks of bars covered by a REST repair
    bad_frames: int = 0
    reconnects: int = 0
    repairs: int = 0
    repairs_pending: int = 0
    repair_failures: int = 0
    connections: int = 0
    running: bool = True
    # why the feed is judged unhealthy (the runtime stopped on it), or None
    problem: str | None = None
    idle_connections: int = 0  # the longest run of connections that delivered no tick
    silent_seconds: float = 0.0  # wall seconds since the last tick (or the start)
    backlog: int = 0  # steps journaled, waiting for the warehouse (set by the live flow)

    @property
    def clock(self) -> pd.Timestamp:
        return pd.Timestamp(self.clock_ms * 1000, unit="us", tz="UTC")


def live_verdict(
    mode: str, ticks: int, problem: str | None, seconds: float
) -> tuple[str, str | None]:
    """How a live run ends: ``completed``, or ``degraded`` / ``failed`` with the reason.

    WebSocket mode only (a REST poll has bars, no ticks, to judge): the runtime stopped on
    a feed ``problem`` -> ``degraded`` after some ticks, ``failed`` without any; no tick
    at all in the whole run -> ``failed``."""
    if mode != "ws":
        return "completed", None
    if problem:
        return ("degraded" if ticks else "failed"), problem
    if ticks == 0:
        return "failed", f"no tick received in {seconds:.0f} s"
    return "completed", None
