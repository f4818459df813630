"""Live record tasks: persist each step's rows, restore an agent after a restart.

``persist_step`` is a plain function, called once per bar by the live flow: a
Prefect task run per bar would flood the API of a long-lived flow. It writes all
the tables of one bar in ONE short transaction (``Warehouse.write_live_many``),
upserting by key, so a replayed bar rewrites its rows and never duplicates them;
a process killed mid-bar loses at most the bar in progress.

``restore_agent`` rebuilds a :class:`LiveAgent` from the record: the position
(``live_positions``), the last processed bar's signal (``live_signals``), the
order still pending at its close (``live_orders``), the open position's entry
fill (``live_fills``), and replays the history plus the run's ``live_bars``
through the strategy. The restarted process continues under the same run id.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from hedgeflow.config import AgentSettings, CostSettings
from hedgeflow.live.agent import LiveAgent, LiveStep
from hedgeflow.live.record import replay_bars, state_from_rows, step_tables
from hedgeflow.tasks.common import run_logger
from hedgeflow.warehouse import Warehouse


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").floor("us")


def persist_step(
    warehouse: Warehouse,
    run_id: str,
    agent: LiveAgent,
    step: LiveStep,
    updated_ts: pd.Timestamp | None = None,
) -> dict[str, int]:
    """Store one step's rows (bar, signal, orders, fills, position) in one transaction."""
    tables = step_tables(
        step,
        run_id=run_id,
        agent=agent.name,
        symbol=agent.symbol,
        interval=agent.interval,
        updated_ts=updated_ts if updated_ts is not None else _now(),
    )
    return warehouse.write_live_many(tables)


@dataclass(frozen=True)
class RestoredAgent:
    agent: LiveAgent
    run_id: str
    last_bar_ts: pd.Timestamp
    replayed_bars: int


def restore_agent(
    warehouse: Warehouse,
    agent: AgentSettings,
    costs: CostSettings,
    initial_equity: float,
    interval: str,
    history: pd.DataFrame | None,
    run_id: str | None = None,
) -> RestoredAgent | None:
    """The agent as the record left it, or None when it has no live record yet.

    ``history``: the warm-up bars the lost process started from (its bars before
    the run's first live bar are replayed). ``run_id``: the run to continue; by
    default the run that stored the agent's last processed bar.
    """
    record = warehouse.live_record(agent.name, agent.symbol, interval, run_id)
    if record is None:
        return None
    state = state_from_rows(
        record.position,
        last_signal=record.signal,
        pending_order=record.pending_order,
        entry_fill=record.entry_fill,
    )
    replay = replay_bars(history, record.live_bars)
    live = LiveAgent.resume(agent, costs, initial_equity, interval, replay, state)
    return RestoredAgent(
        agent=live, run_id=record.run_id, last_bar_ts=record.last_bar_ts, replayed_bars=len(replay)
    )


@task(name="restore-live-agent", cache_policy=NO_CACHE)
def restore_agent_task(
    warehouse: Warehouse,
    agent: AgentSettings,
    costs: CostSettings,
    initial_equity: float,
    interval: str,
    history: pd.DataFrame | None,
    run_id: str | None = None,
) -> RestoredAgent | None:
    restored = restore_agent(warehouse, agent, costs, initial_equity, interval, history, run_id)
    logger = run_logger()
    if restored is None:
        logger.info("agent %s: no live record, starting fresh", agent.name)
    else:
        logger.info(
            "agent %s: restored run %s at %s (%d bars replayed, qty %s)",
            agent.name,
            restored.run_id,
            restored.last_bar_ts,
            restored.replayed_bars,
            restored.agent.broker.state.qty,
        )
    return restored
