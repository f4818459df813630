"""Live notifications: one event per live order and fill, delivered off the hot path.

* :func:`outbox_events` turns a step's broker events into notification events, each
  with a stable ``event_id`` (:func:`event_id`: a hash of run id, agent, kind and the
  order or fill id, so the same order always gets the same id, also when a restarted
  process recomputes it). The live flow stores them in the warehouse's outbox in the
  same transaction as the order and fill rows, with one ``pending`` delivery row per
  configured channel (``hedgeflow.tasks.notify``).
* :class:`Notifier` delivers them (once journaled): one worker thread per channel (a
  slow or dead receiver delays only its own channel, never the bar loop, which only
  queues), each
  attempt bounded by the channel's timeout, failures retried with exponential backoff
  and jitter, an event marked ``dead`` after ``max_attempts``. Every attempt's outcome
  goes to ``record`` as a delivery-state row (the live flow hands them to its journaled
  writer, the one thread that writes the warehouse). :meth:`Notifier.drain` waits
  (bounded) for what is pending at the end of a run; what is left stays ``pending``
  in the warehouse and the next start sends it again (at least once: receivers
  de-duplicate by ``event_id``).
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import itertools
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from hedgeflow.columns import LIVE_DELIVERIES, LIVE_OUTBOX
from hedgeflow.live.broker import Event, Fill, OrderCreated, OrderUpdated
from hedgeflow.live.channels import Channel, DeliveryError
from hedgeflow.secrets import redact

__all__ = [
    "DEAD",
    "DELIVERED",
    "PENDING",
    "Notifier",
    "backoff_delay",
    "deliveries_frame",
    "delivery_row",
    "event_id",
    "outbox_events",
    "outbox_tables",
    "run_event",
]

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
EVENT_KINDS = ("order", "fill", "run")
MAX_ERROR_CHARS = 200

log = logging.getLogger(__name__)

Record = Callable[[list[dict[str, Any]]], Any]


def event_id(*parts: str) -> str:
    """A stable id from the event's natural key (the same parts give the same id)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"ev-{digest[:32]}"


def _iso(ts: Any) -> str | None:
    if ts is None or (isinstance(ts, float) and math.isnan(ts)):
        return None
    return pd.Timestamp(ts).tz_convert("UTC").isoformat()


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def outbox_events(
    run_id: str, agent: str, symbol: str, events: Iterable[Event]
) -> list[dict[str, Any]]:
    """One notification per order (the first state this step shows of it) and per fill.

    Orders are keyed by ``(run_id, agent, order_id)`` and fills by ``(run_id, agent,
    fill_id)``; the outbox keeps the first event of an id, so an order announced
    when it was created is not announced again when it fills."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for ev in events:
        if isinstance(ev, Fill):
            eid = event_id(run_id, agent, "fill", ev.fill_id)
            row = {
                "kind": "fill",
                "ts": _iso(ev.ts),
                "side": ev.side,
                "qty": _num(ev.qty),
                "price": _num(ev.price),
                "fee": _num(ev.fee),
                "reason": ev.reason,
                "order_id": ev.order_id,
                "fill_id": ev.fill_id,
                "status": "filled",
            }
        elif isinstance(ev, OrderCreated):
            o = ev.order
            eid = event_id(run_id, agent, "order", o.order_id)
            row = {
                "kind": "order",
                "ts": _iso(o.created_ts),
                "side": o.side,
                "qty": None,
                "price": None,
                "fee": None,
                "reason": o.reason,
                "order_id": o.order_id,
                "fill_id": None,
                "status": "pending",
                "fill_after_ts": _iso(o.fill_after_ts),
            }
        elif isinstance(ev, OrderUpdated):
            eid = event_id(run_id, agent, "order", ev.order_id)
            row = {
                "kind": "order",
                "ts": _iso(ev.created_ts),
                "side": ev.side,
                "qty": _num(ev.qty),
                "price": None,
                "fee": None,
                "reason": ev.reason,
                "order_id": ev.order_id,
                "fill_id": None,
                "status": ev.status,
                "fill_after_ts": _iso(ev.fill_after_ts),
            }
        else:  # pragma: no cover - the broker has no other events
            continue
        if eid in seen:
            continue
        seen.add(eid)
        out.append({"event_id": eid, "run_id": run_id, "agent": agent, "symbol": symbol, **row})
    return out


OUTBOX_COLUMNS = ("event_id", "kind", "run_id", "agent", "symbol", "ts", "payload", "created_at")
DELIVERY_COLUMNS = (
    "event_id", "channel", "status", "attempts", "last_error", "delivered_at", "updated_at",
)  # fmt: skip


def _utc_us(frame: pd.DataFrame, *cols: str) -> None:
    for col in cols:
        frame[col] = pd.to_datetime(frame[col], utc=True).dt.as_unit("us")


def deliveries_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Delivery-state rows (:func:`delivery_row`) as a ``live_deliveries`` frame."""
    frame = pd.DataFrame(list(rows), columns=list(DELIVERY_COLUMNS))
    frame["attempts"] = frame["attempts"].astype("int64")
    frame["last_error"] = frame["last_error"].astype("object")
    _utc_us(frame, "delivered_at", "updated_at")
    return frame


def outbox_tables(
    events: Sequence[Mapping[str, Any]], channel_ids: Sequence[str], created_at: pd.Timestamp
) -> dict[str, pd.DataFrame]:
    """The outbox rows of ``events`` and one ``pending`` delivery row per event and
    channel (nothing when there are no events)."""
    if not events:
        return {}
    outbox = pd.DataFrame(
        [
            {
                **{k: ev[k] for k in ("event_id", "kind", "run_id", "agent", "symbol", "ts")},
                "payload": json.dumps(dict(ev), sort_keys=True),
                "created_at": created_at,
            }
            for ev in events
        ],
        columns=list(OUTBOX_COLUMNS),
    )
    _utc_us(outbox, "ts", "created_at")
    tables = {LIVE_OUTBOX: outbox}
    if channel_ids:
        tables[LIVE_DELIVERIES] = deliveries_frame(
            [delivery_row(ev["event_id"], cid, PENDING, 0) for ev in events for cid in channel_ids]
        )
    return tables


def events_in(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events of a journaled item's outbox frame (as the webhooks receive them)."""
    frame = item.get(LIVE_OUTBOX) if isinstance(item, Mapping) else None
    if frame is None or len(frame) == 0:
        return []
    return [json.loads(p) for p in frame["payload"]]


def run_event(flow: str, run_id: str, status: str, reason: str | None) -> dict[str, Any]:
    """The event of a flow run that did not complete (kind ``run``)."""
    return {
        "event_id": event_id(run_id, flow, "run", status),
        "kind": "run",
        "flow": flow,
        "run_id": run_id,
        "agent": None,
        "symbol": None,
        "ts": pd.Timestamp.now(tz="UTC").isoformat(),
        "side": None,
        "qty": None,
        "price": None,
        "status": status,
        "reason": reason,
    }


def backoff_delay(
    attempts: int, initial: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after the ``attempts``-th failure: ``initial * 2**(attempts-1)``
    capped at ``cap``, with equal jitter (between half and all of it)."""
    base = min(cap, initial * (2.0 ** max(0, attempts - 1)))
    return base * (0.5 + 0.5 * rand())


def delivery_row(
    eid: str,
    channel: str,
    status: str,
    attempts: int,
    last_error: str | None = None,
    delivered_at: pd.Timestamp | None = None,
) -> dict[str, Any]:
    return {
        "event_id": eid,
        "channel": channel,
        "status": status,
        "attempts": int(attempts),
        "last_error": last_error,
        "delivered_at": delivered_at,
        "updated_at": pd.Timestamp.now(tz="UTC").floor("us"),
    }


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    event: dict[str, Any] = field(compare=False)
    attempts: int = field(compare=False, default=0)


class _Worker:
    """One channel's queue and thread."""

    def __init__(self, notifier: Notifier, channel: Channel) -> None:
        self.notifier = notifier
        self.channel = channel
        self.heap: list[_Job] = []
        self.keys: set[str] = set()  # event ids queued or in flight
        self.busy = False
        self.thread = threading.Thread(target=self.run, name=f"notify-{channel.label}", daemon=True)

    def run(self) -> None:
        n = self.notifier
        cond = n._cond
        while True:
            with cond:
                while not n._stopping:
                    now = time.monotonic()
                    if self.heap and self.heap[0].due <= now:
                        break
                    timeout = self.heap[0].due - now if self.heap else None
                    cond.wait(timeout)
                if n._stopping:
                    return
                job = heapq.heappop(self.heap)
                self.busy = True
            self.notifier._attempt(self, job)
            with cond:
                self.busy = False
                cond.notify_all()


class Notifier:
    """Delivers events to channels in the background (see the module doc).

    ``record(rows)`` receives delivery-state rows (:func:`delivery_row`) after each
    attempt; ``sleep``-free: the workers wait on a condition, so :meth:`close` stops
    them at once (an attempt in flight finishes within its timeout)."""

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        record: Record | None = None,
        max_attempts: int = 8,
        backoff_initial: float = 0.5,
        backoff_max: float = 60.0,
        rand: Callable[[], float] = random.random,
        record_every: float = 0.2,
    ) -> None:
        self.channels = list(channels)
        self._record = record
        self.max_attempts = int(max_attempts)
        self.backoff_initial = float(backoff_initial)
        self.backoff_max = float(backoff_max)
        self._rand = rand
        self._cond = threading.Condition()
        self._stopping = False
        self._seq = itertools.count()
        self.delivered = 0
        self.dead = 0
        self.failed_attempts = 0
        self.record_errors = 0
        self.delivered_at: dict[tuple[str, str], float] = {}  # (event, channel) -> monotonic
        self._workers = {c.id: _Worker(self, c) for c in self.channels}
        for w in self._workers.values():
            w.thread.start()
        # delivery states are handed to ``record`` in batches, at most every
        # ``record_every`` s (one warehouse transaction each, not one per attempt)
        self.record_every = float(record_every)
        self._rows: list[dict[str, Any]] = []
        self._stopped = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="notify-record", daemon=True)
        if self.channels:
            self._flusher.start()

    @property
    def channel_ids(self) -> list[str]:
        return [c.id for c in self.channels]

    def set_record(self, record: Record | None) -> None:
        """Where delivery-state rows go from now on."""
        self._record = record

    def record(self, rows: list[dict[str, Any]]) -> None:
        """Hand delivery-state rows to ``record`` (e.g. channels no longer configured)."""
        self._emit(rows)

    def submit(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Queue every event for every channel (an event already queued is skipped)."""
        return self.resume((dict(ev), cid, 0) for ev in events for cid in self._workers)

    def resume(self, pending: Iterable[tuple[Mapping[str, Any], str, int]]) -> int:
        """Queue ``(event, channel id, attempts so far)`` entries (a restart's backlog);
        entries for channels not configured are ignored. Returns how many were queued."""
        queued = 0
        now = time.monotonic()
        with self._cond:
            for event, cid, attempts in pending:
                worker = self._workers.get(cid)
                if worker is None or event["event_id"] in worker.keys:
                    continue
                worker.keys.add(event["event_id"])
                heapq.heappush(worker.heap, _Job(now, next(self._seq), dict(event), int(attempts)))
                queued += 1
            if queued:
                self._cond.notify_all()
        return queued

    @property
    def pending(self) -> int:
        """Deliveries queued or in flight."""
        with self._cond:
            return sum(len(w.heap) + (1 if w.busy else 0) for w in self._workers.values())

    def _emit(self, rows: list[dict[str, Any]]) -> None:
        with self._cond:
            self._rows.extend(rows)
        if not self._flusher.is_alive():  # no worker thread: hand them over at once
            self._flush()

    def _flush_loop(self) -> None:
        while not self._stopped.wait(self.record_every):
            self._flush()

    def _flush(self) -> None:
        with self._cond:
            rows, self._rows = self._rows, []
        if rows:
            self._hand_over(rows)

    def _hand_over(self, rows: list[dict[str, Any]]) -> None:
        record = self._record
        if record is None:
            return
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:  # one row per event and channel: its latest state
            latest[(row["event_id"], row["channel"])] = row
        try:
            record(list(latest.values()))
        except Exception as exc:  # the record is closed or failed: the next start resends
            self.record_errors += 1
            log.warning("notify: cannot record the delivery state (%s)", redact(str(exc)))

    def _attempt(self, worker: _Worker, job: _Job) -> None:
        channel = worker.channel
        eid = job.event["event_id"]
        attempts = job.attempts + 1
        try:
            channel.send(job.event)
        except DeliveryError as exc:
            error: str | None = redact(str(exc))[:MAX_ERROR_CHARS]
        except Exception as exc:  # a bug in a channel: keep the worker alive
            error = f"{type(exc).__name__} in {channel.label}"
        else:
            error = None
        if error is None:
            with self._cond:
                self.delivered += 1
                self.delivered_at[(eid, channel.id)] = time.monotonic()
                worker.keys.discard(eid)
            self._emit(
                [
                    delivery_row(
                        eid, channel.id, DELIVERED, attempts,
                        delivered_at=pd.Timestamp.now(tz="UTC").floor("us"),
                    )
                ]
            )  # fmt: skip
            return
        with self._cond:
            self.failed_attempts += 1
        if attempts >= self.max_attempts:
            with self._cond:
                self.dead += 1
                worker.keys.discard(eid)
            log.warning(
                "notify: %s event %s is dead after %d attempts (%s)",
                channel.label, eid, attempts, error,
            )  # fmt: skip
            self._emit([delivery_row(eid, channel.id, DEAD, attempts, error)])
            return
        self._emit([delivery_row(eid, channel.id, PENDING, attempts, error)])
        delay = backoff_delay(attempts, self.backoff_initial, self.backoff_max, self._rand)
        with self._cond:
            job.attempts = attempts
            job.due = time.monotonic() + delay
            job.seq = next(self._seq)
            heapq.heappush(worker.heap, job)
            self._cond.notify_all()

    def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` s until nothing is pending; how many are left."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                left = sum(len(w.heap) + (1 if w.busy else 0) for w in self._workers.values())
                now = time.monotonic()
                if not left or now >= deadline:
                    return left
                # nothing can finish before the next due time past the deadline
                due = [w.heap[0].due for w in self._workers.values() if w.heap and not w.busy]
                busy = any(w.busy for w in self._workers.values())
                if not busy and due and min(due) > deadline:
                    return left
                self._cond.wait(min(0.25, deadline - now))

    def close(self, timeout: float = 0.0) -> int:
        """Drain for up to ``timeout`` s, then stop the workers; how many are left
        (still ``pending`` in the warehouse: the next start sends them)."""
        left = self.drain(timeout) if timeout > 0 else self.pending
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for w in self._workers.values():
            w.thread.join(5.0)
        self._stopped.set()
        if self._flusher.is_alive():
            self._flusher.join(5.0)
        self._flush()
        for c in self.channels:
            with contextlib.suppress(Exception):
                c.close()
        return left
