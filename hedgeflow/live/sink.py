"""Where the live steps go: the ``Sink`` type and a writer-thread sink."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from hedgeflow.live.agent import LiveAgent, LiveStep

__all__ = ["Sink", "ThreadedSink"]

Sink = Callable[[LiveAgent, LiveStep], Any]


class ThreadedSink:
    """Runs a slow sink (the warehouse writes) on one writer thread, in order, so the
    event loop keeps reading ticks while a bar is stored.

    ``sink(agent, step)`` queues the step; :meth:`close` waits until every queued step
    is stored. An error of the wrapped sink is raised by the next call (the runtime
    then stops) and by :meth:`close`; steps queued after it are not stored. A process
    killed with steps still queued loses them: the agents' state in the record is
    then that of the last stored bar, and a restart recomputes the lost bars."""

    _DONE = object()

    def __init__(self, sink: Sink, max_queue: int = 10_000) -> None:
        import queue

        self._sink = sink
        self._queue: queue.Queue[Any] = queue.Queue(max_queue)
        self._error: BaseException | None = None
        self.stored = 0
        self._thread = threading.Thread(target=self._work, name="live-sink", daemon=True)
        self._thread.start()

    def __call__(self, agent: LiveAgent, step: LiveStep) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((agent, step))

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if self._error is not None:
                continue
            try:
                self._sink(*item)
                self.stored += 1
            except BaseException as exc:
                self._error = exc

    def close(self) -> None:
        """Store everything queued, stop the thread; raise the sink's error, if any."""
        if self._thread.is_alive():
            self._queue.put(self._DONE)
            self._thread.join()
        if self._error is not None:
            raise self._error
