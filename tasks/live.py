"""Live record tasks: persist each step's rows, restore an agent after a restart.

``persist_step`` is a plain function, called once per bar by the live flow: a
Prefect task run per bar would flood the API of a long-lived flow. It writes all
the tables of one bar in ONE short transaction (``Warehouse.write_live_many``),
upserting by key, so a replayed bar rewrites its rows and never duplicates them;
a process killed mid-bar loses at most the bar in progress.

``open_live_sink`` is where the live flow sends those steps: a
:class:`~hedgeflow.live.sink.JournaledSink` that appends each step's rows to the run's
journal (``HOME/journal/live-<run_id>.journal``, durable) before a writer thread
stores them, waiting out a warehouse locked by another process (a slow SQL reader)
instead of giving up; ``store_live_backlog`` stores what a previous process left in
its journals, in order, before anything is rebuilt from the rows.

``restore_agent`` rebuilds a :class:`LiveAgent` from the record: the position
(``live_positions``), the last processed bar's signal (``live_signals``), the
order still pending at its close (``live_orders``), the open position's entry
fill (``live_fills``), and replays the history plus the run's ``live_bars``
through the strategy. The restarted process continues under the same run id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from hedgeflow.config import AgentSettings, CostSettings
from hedgeflow.live.agent import LiveAgent, LiveStep
from hedgeflow.live.journal import Journal
from hedgeflow.live.record import replay_bars, state_from_rows, step_tables
from hedgeflow.live.sink import BacklogNotStoredError, JournaledSink
from hedgeflow.tasks.common import run_logger
from hedgeflow.warehouse import Warehouse
from hedgeflow.warehouse.db import busy_holder, is_busy_error

# One store attempt waits this long for the DuckDB file; the sink then retries (forever).
WRITE_ATTEMPT_SECONDS = 5.0
REFUSED_SUFFIX = ".refused"  # a journal set aside: the warehouse refused one of its steps


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
    return warehouse.write_live_many(step_item(run_id, agent, step, updated_ts))


def step_item(
    run_id: str, agent: LiveAgent, step: LiveStep, updated_ts: pd.Timestamp | None = None
) -> dict[str, pd.DataFrame]:
    """A step as the rows ``persist_step`` stores (what the journal keeps)."""
    return step_tables(
        step,
        run_id=run_id,
        agent=agent.name,
        symbol=agent.symbol,
        interval=agent.interval,
        updated_ts=updated_ts if updated_ts is not None else _now(),
    )


def _sink_for(warehouse: Warehouse, journal: Journal, run_id: str | None) -> JournaledSink:
    writer = Warehouse(warehouse.home, lock_timeout=WRITE_ATTEMPT_SECONDS)

    def store(tables: Mapping[str, pd.DataFrame]) -> Any:
        return writer.write_live_many(tables)

    def store_many(items: list[Mapping[str, pd.DataFrame]]) -> Any:
        return writer.write_live_steps(items)

    def encode(agent: LiveAgent, step: LiveStep) -> dict[str, pd.DataFrame]:
        assert run_id is not None
        return step_item(run_id, agent, step)

    return JournaledSink(
        journal,
        store,
        encode if run_id is not None else None,
        is_busy=is_busy_error,
        describe_busy=busy_holder,
        store_many=store_many,
    )


def open_live_sink(warehouse: Warehouse, run_id: str) -> JournaledSink:
    """The run's journaled sink (it first stores what the run's journal still holds)."""
    return _sink_for(warehouse, Journal(warehouse.paths.live_journal(run_id)), run_id)


def store_live_backlog(warehouse: Warehouse, limit: float) -> int:
    """Store every live journal's unstored steps, in order, waiting up to ``limit`` s per
    journal for a busy warehouse (BacklogNotStoredError after that, journals intact).
    A journal with a step the warehouse refuses (rows that fail their schema: a bug) is
    set aside as ``<name>.refused`` with a warning, so it cannot block every start; the
    record then continues from the last step stored. Returns how many steps were stored."""
    stored = 0
    for path in warehouse.paths.live_journals():
        journal = Journal(path)
        if journal.torn_bytes:
            run_logger().warning(
                "live journal %s: ignored a torn last record (%d bytes)", path, journal.torn_bytes
            )
        sink = _sink_for(warehouse, journal, None)
        try:
            sink.close(limit)
        except BacklogNotStoredError:
            raise
        except Exception as exc:
            aside = path.with_name(path.name + REFUSED_SUFFIX)
            path.replace(aside)
            journal.done_path.unlink(missing_ok=True)
            run_logger().warning(
                "live journal %s: the warehouse refused a step (%s); %d step(s) not stored "
                "are kept in %s",
                path,
                exc,
                sink.pending,
                aside,
            )
        stored += sink.stored
        if sink.stored:
            run_logger().info("live journal %s: stored %d step(s) left by the last run",
                              path, sink.stored)  # fmt: skip
    return stored


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
