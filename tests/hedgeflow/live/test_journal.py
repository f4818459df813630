"""The live journal and the journaled sink, without a warehouse: durable appends, a torn
last record, in-order storage that waits out a busy store, replay of a backlog."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from hedgeflow.live.journal import Journal
from hedgeflow.live.sink import BacklogNotStoredError, JournaledSink


class Busy(Exception):
    pass


def test_append_pending_done_and_truncate(tmp_path: Path) -> None:
    path = tmp_path / "j" / "live-r.journal"
    j = Journal(path)
    assert [j.append({"n": i}) for i in range(5)] == [1, 2, 3, 4, 5]
    assert [seq for seq, _ in j.pending()] == [1, 2, 3, 4, 5]
    j.mark_done(3)
    assert j.pending() == [(4, {"n": 3}), (5, {"n": 4})]
    assert path.stat().st_size > 0
    j.mark_done(5)  # caught up: the journal is emptied
    assert j.pending() == [] and path.stat().st_size == 0
    j.append({"n": 5})
    j.close()
    # reopened: numbering continues after the stored ones, the unstored entry is there
    again = Journal(path)
    assert again.pending() == [(6, {"n": 5})]
    assert again.append({"n": 6}) == 7
    again.mark_done(7)
    again.close(remove_when_empty=True)
    assert not path.exists() and not again.done_path.exists()


@pytest.mark.parametrize("cut", [1, 7, 20, -1])
def test_a_torn_last_record_is_ignored_and_cut_off(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "live-r.journal"
    j = Journal(path)
    for i in range(3):
        j.append({"n": i, "pad": "x" * 50})
    j.close()
    whole = path.read_bytes()
    size_two = len(whole) - (len(whole) // 3)  # each record has the same size
    torn = whole[: size_two + cut] if cut > 0 else whole[:-1]
    path.write_bytes(torn)
    again = Journal(path)
    assert [item["n"] for _, item in again.pending()] == [0, 1]
    assert again.torn_bytes == len(torn) - size_two
    assert path.stat().st_size == size_two  # cut off at the last whole record
    assert again.append({"n": 9}) == 3  # the next record starts on a boundary
    assert [item["n"] for _, item in again.pending()] == [0, 1, 9]
    again.close()


def test_a_corrupt_record_ends_the_good_part(tmp_path: Path) -> None:
    path = tmp_path / "live-r.journal"
    j = Journal(path)
    j.append("a")
    j.append("b")
    j.close()
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF  # a flipped bit in the last payload: its checksum fails
    path.write_bytes(bytes(data))
    assert [item for _, item in Journal(path).pending()] == ["a"]


def test_the_sink_stores_in_order_and_never_blocks_the_caller(tmp_path: Path) -> None:
    """The store refuses (busy) for 1.5 s: calls keep returning at once (the journal
    is the backlog), then everything is stored once, in order."""
    free_at = time.monotonic() + 1.5
    stored: list[int] = []

    def store(item: Any) -> None:
        if time.monotonic() < free_at:
            raise Busy("locked (PID 4242)")
        stored.append(item["n"])

    j = Journal(tmp_path / "live-r.journal")
    sink = JournaledSink(
        j,
        store,
        lambda agent, step: {"n": step},
        is_busy=lambda e: isinstance(e, Busy),
        retry_max=0.1,
    )
    t0 = time.monotonic()
    for n in range(200):
        sink(None, n)  # type: ignore[arg-type]
    assert time.monotonic() - t0 < 0.5  # no waiting for the journal nor the store
    deadline = time.monotonic() + 1.0
    while len(Journal.peek(j.path)) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(Journal.peek(j.path)) == 200  # all journaled while the store refuses
    assert stored == [] and sink.pending == 200
    deadline = time.monotonic() + 1.0
    while sink.busy_for == 0 and time.monotonic() < deadline:  # the first refusal
        time.sleep(0.01)
    assert sink.busy_for > 0  # what the status line reports
    sink.close(30)
    assert sink.busy_for == 0
    assert stored == list(range(200))
    assert sink.stored == 200 and sink.busy_waits > 3 and sink.busy_seconds >= 1.0
    assert sink.max_backlog == 200
    assert not j.path.exists()  # caught up: the journal is gone


def test_a_backlog_past_the_drain_limit_stays_in_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "live-r.journal"

    def never(item: Any) -> None:
        raise Busy("locked")

    sink = JournaledSink(
        Journal(path), never, lambda a, s: s, is_busy=lambda e: isinstance(e, Busy)
    )
    for n in range(5):
        sink(None, n)  # type: ignore[arg-type]
    with pytest.raises(BacklogNotStoredError, match=r"5 live step\(s\) are kept in .*live-r"):
        sink.close(0.5)
    # the next start stores them first, in order, before anything new
    stored: list[int] = []
    replay = JournaledSink(Journal(path), stored.append, lambda a, s: s)
    assert replay.replayed == 5
    replay(None, 5)  # type: ignore[arg-type]
    replay.close(10)
    assert stored == [0, 1, 2, 3, 4, 5]


def test_another_store_error_stops_the_sink_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "live-r.journal"
    seen: list[int] = []

    def store(item: int) -> None:
        if item == 2:
            raise ValueError("bad rows")
        seen.append(item)

    sink = JournaledSink(Journal(path), store, lambda a, s: s)
    for n in range(4):
        sink(None, n)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bad rows"):
        sink.close(10)
    assert seen == [0, 1]
    assert [item for _, item in Journal(path).pending()] == [2, 3]


def test_a_step_is_in_the_journal_file_before_any_attempt_to_store_it(tmp_path: Path) -> None:
    """What a process killed during a store leaves: a reader of the file (the next
    process, after a SIGKILL) finds the entry."""
    path = tmp_path / "live-r.journal"
    seen: list[bool] = []

    def store(item: str) -> None:
        fd = os.open(path, os.O_RDONLY)  # another open file: what a new process reads
        try:
            seen.append(item.encode() in os.read(fd, 1 << 20))
        finally:
            os.close(fd)

    sink = JournaledSink(Journal(path), store, lambda a, s: s)
    for n in range(50):
        sink(None, f"step-{n}")  # type: ignore[arg-type]
    sink.close(10)
    assert seen == [True] * 50
