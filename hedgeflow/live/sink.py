"""Where the live steps go: the ``Sink`` type and the journaled writer-thread sink."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from hedgeflow.errors import HedgeflowError
from hedgeflow.live.agent import LiveAgent, LiveStep
from hedgeflow.live.journal import Journal

__all__ = ["BacklogNotStoredError", "JournaledSink", "Sink"]

Sink = Callable[[LiveAgent, LiveStep], Any]

log = logging.getLogger(__name__)

BUSY_WARN_EVERY_SECONDS = 10.0


class BacklogNotStoredError(HedgeflowError):
    """The warehouse stayed busy past the drain limit: the backlog is in the journal."""


class JournaledSink:
    """Stores the live steps on one writer thread, in order, never dropping one.

    ``sink(agent, step)`` (on the event loop's thread) only queues the step. A journal
    thread turns the queued steps into items (``encode``) and appends them to the
    :class:`~hedgeflow.live.journal.Journal` (all that are queued with one fsync), and
    hands them to the writer thread, which stores them in order with ``store(item)`` and
    marks each done in the journal: a step reaches the journal, durably, before any
    attempt to store it, and the loop never waits for the disk or the warehouse (the
    in-memory queues are unbounded: the journal is the backlog). A process killed
    between ``sink`` and the append (milliseconds) loses those steps from both the
    journal and the warehouse, so the record stays that of the last journaled step and
    a restart recomputes the rest. When ``store``
    raises an error that ``is_busy`` accepts (the warehouse file is locked by another
    process) the writer waits (backoff up to ``retry_max`` s) and tries the same item
    again, for as long as it takes, logging a warning at most every 10 s naming the
    holder (``describe_busy``). Any other error of ``store`` stops the writer: it is
    raised by the next ``sink`` call and by :meth:`close`; the unstored items stay in
    the journal for the next start.

    The journal's entries not yet stored when the sink is created (a previous process
    died with a backlog) are queued first, so they are stored before any new step.
    """

    def __init__(
        self,
        journal: Journal,
        store: Callable[[Any], Any],
        encode: Callable[[LiveAgent, LiveStep], Any] | None = None,
        *,
        is_busy: Callable[[BaseException], bool] = lambda exc: False,
        describe_busy: Callable[[BaseException], str] = str,
        retry_initial: float = 0.05,
        retry_max: float = 0.5,
        store_many: Callable[[list[Any]], Any] | None = None,
        batch_max: int = 256,
    ) -> None:
        self.journal = journal
        self._store = store
        # stores several queued items in one go (one warehouse transaction: a backlog, or
        # the final flush of a run, costs one connection, not one per step)
        self._store_many = store_many
        self._batch_max = max(1, int(batch_max)) if store_many is not None else 1
        self._encode = encode
        self._is_busy = is_busy
        self._describe_busy = describe_busy
        self._retry_initial = float(retry_initial)
        self._retry_max = float(retry_max)
        self._queue: deque[tuple[int, Any]] = deque(journal.pending())
        self.replayed = len(self._queue)
        self._inbox: deque[tuple[LiveAgent, LiveStep]] = deque()  # not journaled yet
        self._journaling = 0  # steps taken from the inbox, not yet in the queue
        self._cond = threading.Condition()
        self._closing = False
        self._abort = threading.Event()
        self._error: BaseException | None = None
        self.stored = 0
        self.busy_waits = 0  # store attempts refused because the warehouse was busy
        self.busy_seconds = 0.0  # wall time spent waiting for the warehouse
        self.max_backlog = len(self._queue)
        self._busy_since: float | None = None  # the warehouse refuses the current item
        self._journal_thread = threading.Thread(
            target=self._journal_work, name="live-journal", daemon=True
        )
        self._thread = threading.Thread(target=self._work, name="live-sink", daemon=True)
        self._journal_thread.start()
        self._thread.start()

    def __call__(self, agent: LiveAgent, step: LiveStep) -> None:
        if self._error is not None:
            raise self._error
        if self._encode is None:
            raise TypeError("this JournaledSink has no encode: it only replays its journal")
        with self._cond:
            self._inbox.append((agent, step))
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Steps not stored yet (queued for the journal, or journaled)."""
        with self._cond:
            return len(self._inbox) + self._journaling + len(self._queue)

    def _journal_work(self) -> None:
        encode = self._encode
        while True:
            with self._cond:
                while not self._inbox and not self._closing:
                    self._cond.wait()
                if not self._inbox or self._error is not None:
                    return
                batch = list(self._inbox)
                self._inbox.clear()
                self._journaling = len(batch)
            try:
                assert encode is not None
                items = [encode(agent, step) for agent, step in batch]
                seqs = self.journal.append_many(items)
            except BaseException as exc:
                with self._cond:
                    self._error = exc
                    self._journaling = 0
                    self._cond.notify_all()
                return
            with self._cond:
                self._queue.extend(zip(seqs, items, strict=True))
                self._journaling = 0
                self.max_backlog = max(self.max_backlog, len(self._queue))
                self._cond.notify_all()

    @property
    def busy_for(self) -> float:
        """Seconds the writer has been waiting for a busy warehouse (0: not waiting)."""
        since = self._busy_since
        return 0.0 if since is None else time.monotonic() - since

    @property
    def error(self) -> BaseException | None:
        return self._error

    def _store_one(self, items: list[Any]) -> bool:
        """Store ``items`` (one, or a batch with ``store_many``), waiting out a busy
        warehouse; False when aborted or failed."""
        delay = self._retry_initial
        waited_since: float | None = None
        next_warn = 0.0
        while True:
            attempt = time.monotonic()
            try:
                if self._store_many is not None:
                    self._store_many(items)
                else:
                    self._store(items[0])
            except BaseException as exc:
                if not self._is_busy(exc):
                    self._error = exc
                    return False
                now = time.monotonic()
                if waited_since is None:  # the refused attempt itself waited too
                    waited_since = self._busy_since = attempt
                self.busy_waits += 1
                if now >= next_warn:
                    next_warn = now + BUSY_WARN_EVERY_SECONDS
                    log.warning(
                        "live: the warehouse is busy (%s); %d step(s) wait in the journal "
                        "%s (waiting %.0f s so far, nothing is lost)",
                        self._describe_busy(exc),
                        self.pending,
                        self.journal.path,
                        now - waited_since,
                    )
                if self._abort.wait(delay):
                    self.busy_seconds += time.monotonic() - waited_since
                    self._busy_since = None
                    return False
                delay = min(delay * 2.0, self._retry_max)
                continue
            if waited_since is not None:
                self._busy_since = None
                waited = time.monotonic() - waited_since
                self.busy_seconds += waited
                log.warning("live: the warehouse is free again after %.1f s", waited)
            return True

    def _work(self) -> None:
        while True:
            with self._cond:
                while (
                    not self._queue
                    and (not self._closing or self._inbox or self._journaling)
                    and self._error is None
                ):
                    self._cond.wait()
                if not self._queue:
                    return
                batch = [self._queue[i] for i in range(min(self._batch_max, len(self._queue)))]
            stored = self._store_one([item for _, item in batch])
            if not stored and len(batch) > 1 and self._error is not None:
                # a step the warehouse refuses: store the batch one by one, so that every
                # step before it is stored and the journal keeps it (and what follows)
                self._error = None
                self._batch_max = 1
                continue
            if not stored:
                with self._cond:
                    self._cond.notify_all()
                return
            self.journal.mark_done(batch[-1][0])
            with self._cond:
                for _ in batch:
                    self._queue.popleft()
                self.stored += len(batch)
                self._cond.notify_all()

    def close(self, timeout: float | None = None) -> None:
        """Wait until every queued item is stored (up to ``timeout`` s), stop the thread.

        Raises the store's error, if any, or :class:`BacklogNotStoredError` when the
        warehouse stayed busy past ``timeout`` (the items stay in the journal; the
        next start stores them)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        self._journal_thread.join(timeout)
        self._thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(30.0)
            left = self.pending
            self.journal.close()
            raise BacklogNotStoredError(
                f"the warehouse stayed locked by another process for more than "
                f"{timeout:.0f} s: {left} live step(s) are kept in {self.journal.path} "
                "and will be stored by the next `hedgeflow live` (close the SQL session "
                "holding the database)"
            )
        if self._error is not None:
            self.journal.close()
            raise self._error
        self.journal.close(remove_when_empty=True)
