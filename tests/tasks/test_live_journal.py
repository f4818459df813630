"""The live journal against a real warehouse: a replay stores the same rows (natural
keys: idempotent), a reader in another process makes the sink wait (naming it) instead
of dropping steps; and the one-runner lock (``HOME/live.lock``)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from hedgeflow.live.journal import Journal
from hedgeflow.live.sink import JournaledSink
from hedgeflow.schemas.columns import LIVE_TABLES
from hedgeflow.tasks.live import step_item, store_live_backlog
from hedgeflow.warehouse import Warehouse
from hedgeflow.warehouse.db import busy_holder, is_busy_error
from hedgeflow.warehouse.live_lock import LiveRunnerBusyError, acquire_live_lock
from tests.e2e_helpers import read_line
from tests.tasks.test_live_record import AGENT, N_LIVE, NOW, RUN, _history_len, _tables, fresh

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("open", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


@pytest.fixture(scope="module")
def items(bars: pd.DataFrame) -> list[dict[str, pd.DataFrame]]:
    k = _history_len(bars)
    agent = fresh()
    agent.warm_up(bars.iloc[:k])
    out = []
    for r in bars.iloc[k : k + N_LIVE].itertuples(index=False):
        step = agent.on_bar(r)
        assert step is not None
        out.append(step_item(RUN, agent, step, updated_ts=NOW))
    return out


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    from hedgeflow.sources.synthetic import SyntheticMarket

    start = pd.Timestamp("2024-03-04", tz="UTC")
    return SyntheticMarket(7).fetch_bars(AGENT.symbol, "5m", start, start + pd.Timedelta(days=1))


def _journal(wh: Warehouse, items: list[dict[str, pd.DataFrame]]) -> Journal:
    journal = Journal(wh.paths.live_journal(RUN))
    for item in items:
        journal.append(item)
    return journal


@pytest.mark.slow  # ~15 s; .ci/run runs it in step 3
def test_a_replayed_backlog_stores_every_row_once_in_order(
    tmp_path: Path, items: list[dict[str, pd.DataFrame]]
) -> None:
    items = items[:20]  # 3 fills among them
    n = len(items)
    once = Warehouse(tmp_path / "once")
    for item in items:
        once.write_live_many(item)
    expected = _tables(once)
    assert len(expected["live_bars"]) == n
    assert len(expected["live_fills"]) == 3

    wh = Warehouse(tmp_path / "home")
    journal = _journal(wh, items)
    journal.close()
    done = journal.done_path
    # a first start stores the backlog; a kill before its "done" mark was written makes
    # the next start store all of it again: the natural keys make that harmless
    assert store_live_backlog(wh, 60) == n
    assert not wh.paths.live_journal(RUN).exists()
    _journal(wh, items).close()
    done.unlink(missing_ok=True)
    assert store_live_backlog(wh, 60) == n
    got = _tables(wh)
    for table in LIVE_TABLES:
        pd.testing.assert_frame_equal(got[table], expected[table], check_dtype=False)


@pytest.mark.slow  # ~15 s; .ci/run runs it in step 3
def test_a_reader_in_another_process_delays_the_sink_without_loss(
    tmp_path: Path, items: list[dict[str, pd.DataFrame]], caplog: pytest.LogCaptureFixture
) -> None:
    wh = Warehouse(tmp_path / "home")
    wh.write_live_many(items[0])  # the database exists
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(wh.db_path), "3"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert read_line(holder.stdout, 60).strip() == "open"
        # the live flow's wiring (open_live_sink), with the steps' rows made up front and
        # store attempts shorter than the reader's hold (the flow's are 5 s)
        writer = Warehouse(wh.home, lock_timeout=0.5)
        sink = JournaledSink(
            Journal(wh.paths.live_journal(RUN)),
            writer.write_live_many,
            lambda agent, item: item,
            is_busy=is_busy_error,
            describe_busy=busy_holder,
        )
        t0 = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="hedgeflow.live.sink"):
            for item in items[1:]:
                sink(None, item)  # type: ignore[arg-type]
            queued_in = time.monotonic() - t0
            assert sink.pending > 0  # nothing could be stored yet
            sink.close(120)
    finally:
        holder.wait(60)
    assert queued_in < 2.0
    assert sink.stored == len(items) - 1 and sink.busy_seconds > 1.0
    assert f"held by PID {holder.pid}" in caplog.text
    assert len(wh.query("SELECT * FROM live_bars")) == N_LIVE


LOCK_HOLDER = """
import sys
from hedgeflow.warehouse import WarehousePaths
from hedgeflow.warehouse.live_lock import acquire_live_lock
lock = acquire_live_lock(WarehousePaths.at(sys.argv[1]), run_id="live-run-A")
print("locked", flush=True)
sys.stdin.read()
"""


def test_the_live_lock_refuses_a_second_runner_until_the_holder_dies(tmp_path: Path) -> None:
    home = tmp_path / "home"
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert read_line(holder.stdout, 60).strip() == "locked"
        wh = Warehouse(home)
        with pytest.raises(LiveRunnerBusyError) as refused:
            acquire_live_lock(wh.paths)
        message = str(refused.value)
        assert f"pid {holder.pid} on " in message and "run live-run-A," in message
        assert "\n" not in message
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(30)
    # the dead holder's flock is gone: taken over, with its record
    with acquire_live_lock(wh.paths) as lock:
        assert lock.previous["pid"] == holder.pid
        assert lock.previous["run_id"] == "live-run-A"
        lock.update(run_id="live-run-B")
        with pytest.raises(LiveRunnerBusyError, match=rf"pid {os.getpid()} .*run live-run-B,"):
            acquire_live_lock(wh.paths)
    # released cleanly: the next runner finds no dead holder
    with acquire_live_lock(wh.paths) as lock:
        assert lock.previous == {}


def test_a_journal_the_warehouse_refuses_is_set_aside(
    tmp_path: Path, items: list[dict[str, pd.DataFrame]]
) -> None:
    wh = Warehouse(tmp_path / "home")
    bad = {t: f.copy() for t, f in items[1].items()}
    bad["live_positions"]["cash"] = float("nan")  # fails its schema, always
    journal = _journal(wh, [items[0], bad, items[2]])
    journal.close()
    assert store_live_backlog(wh, 60) == 1  # the step before it
    assert wh.paths.live_journals() == []  # the next start is not blocked
    aside = wh.paths.live_journal(RUN).with_name(wh.paths.live_journal(RUN).name + ".refused")
    assert [seq for seq, _ in Journal.peek(aside)] == [1, 2, 3]
    assert len(wh.query("SELECT * FROM live_bars")) == 1


def test_a_batch_of_steps_stores_what_the_steps_one_by_one_store(
    tmp_path: Path, items: list[dict[str, pd.DataFrame]]
) -> None:
    """The writer stores its queue in batches (one transaction): the same rows as
    upserting each step in turn (an order's later state, a position's last values)."""
    one_by_one, batched = Warehouse(tmp_path / "a"), Warehouse(tmp_path / "b")
    for item in items:
        one_by_one.write_live_many(item)
    assert batched.write_live_steps(items) == len(items)
    assert len(items) >= 10
    for table in ("live_bars", "live_signals", "live_orders", "live_fills", "live_positions"):
        sql = f"SELECT * FROM {table} ORDER BY ALL"
        a, b = one_by_one.query(sql), batched.query(sql)
        assert len(a) > 0, table
        pd.testing.assert_frame_equal(a, b, obj=table)
    # an order stored pending, then filled by a later step of the same batch
    assert len(one_by_one.query("SELECT * FROM live_orders WHERE status = 'filled'")) > 0
