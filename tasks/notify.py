"""Live notifications glue: the outbox rows of a step, the notifier of a live run.

The live flow's journaled sink (``hedgeflow.tasks.live.open_live_sink``) adds
:func:`step_outbox` to every step it journals, so the events are stored in the same
transaction as their orders and fills (only events the run has not announced yet: a
step recomputed after a restart, or an order's later state, adds none). Once a step is
in the journal (fsynced: the journal is the outbox's write-ahead log, stored in order by
the writer thread), its events go to the :class:`~hedgeflow.live.notify.Notifier`,
which delivers them in the background, so a slow or locked warehouse never holds
notifications up; the delivery states it reports go back through the same sink (the one
writer of the warehouse), never through a connection of their own.

:func:`resume_notifications` queues what the warehouse still has ``pending`` (a previous
process died, or its end's bounded wait ran out); pending deliveries of a channel that
is no longer configured are marked ``dead``.

:func:`notify_run` announces a nightly run that failed or was partial (kind
``run``), waiting at most ``[notify] drain_seconds``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from hedgeflow.columns import LIVE_DELIVERIES
from hedgeflow.config import NotifySettings
from hedgeflow.live.agent import LiveAgent, LiveStep
from hedgeflow.live.channels import make_channels
from hedgeflow.live.notify import (
    DEAD,
    Notifier,
    deliveries_frame,
    delivery_row,
    events_in,
    outbox_events,
    outbox_tables,
    run_event,
)
from hedgeflow.live.sink import JournaledSink
from hedgeflow.secrets import redact
from hedgeflow.tasks.common import run_logger
from hedgeflow.warehouse import Warehouse

__all__ = [
    "notify_event",
    "notify_run",
    "open_notifier",
    "resume_notifications",
    "step_outbox",
    "stop_notifier",
]


def step_outbox(
    run_id: str,
    agent: LiveAgent,
    step: LiveStep,
    channel_ids: Sequence[str],
    created_at: pd.Timestamp,
    announced: set[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """The outbox and pending-delivery rows of a step's orders and fills; with
    ``announced`` (ids announced already, updated here), only the new events."""
    events = outbox_events(run_id, agent.name, agent.symbol, step.events)
    if announced is not None:
        events = [e for e in events if e["event_id"] not in announced]
        announced.update(e["event_id"] for e in events)
    return outbox_tables(events, channel_ids, created_at)


def open_notifier(notify: NotifySettings) -> Notifier:
    """The run's notifier (no worker thread when no channel is configured)."""
    return Notifier(
        make_channels(notify.webhooks, notify.apprise, notify.timeout),
        max_attempts=notify.max_attempts,
        backoff_initial=notify.backoff_initial,
        backoff_max=notify.backoff_max,
    )


def attach(notifier: Notifier, sink: JournaledSink) -> None:
    """Delivery states go to ``sink`` (journaled, stored in order with the steps)."""

    def record(rows: list[dict[str, Any]]) -> None:
        sink.put({LIVE_DELIVERIES: deliveries_frame(rows)})

    notifier.set_record(record)


def on_journaled(notifier: Notifier) -> Any:
    """The sink's listener: queue the new events of every item once it is journaled."""

    def listener(items: list[Any]) -> None:
        for item in items:
            events = events_in(item)
            if events:
                notifier.submit(events)

    return listener


def resume_notifications(warehouse: Warehouse, notifier: Notifier) -> int:
    """Queue the deliveries the warehouse still has pending; mark those of channels no
    longer configured dead. Returns how many were queued."""
    pending = warehouse.pending_notifications()
    if pending.empty:
        return 0
    known = set(notifier.channel_ids)
    queue: list[tuple[dict[str, Any], str, int]] = []
    orphans: list[dict[str, Any]] = []
    for payload, channel, attempts in pending.itertuples(index=False):
        event = json.loads(payload)
        if channel in known:
            queue.append((event, str(channel), int(attempts)))
        else:
            orphans.append(
                delivery_row(
                    event["event_id"], str(channel), DEAD, int(attempts),
                    "its channel is no longer configured in [notify]",
                )
            )  # fmt: skip
    if orphans:
        notifier.record(orphans)
        run_logger().warning(
            "notify: %d pending notification(s) belong to channels no longer configured: "
            "marked dead",
            len(orphans),
        )
    queued = notifier.resume(queue)
    if queued:
        run_logger().info("notify: re-sending %d notification(s) not acknowledged", queued)
    return queued


def stop_notifier(
    notifier: Notifier,
    drain_seconds: float,
    sink: JournaledSink | None = None,
    store_limit: float = 0.0,
) -> dict[str, int]:
    """Deliver what is pending (waiting up to ``drain_seconds``), stop the workers;
    the counts for the run's summary. With ``sink``, the steps it was handed are stored
    first (up to ``store_limit`` s: the sink's own drain limit, which its close would
    wait anyway), so their events are queued too."""
    if sink is not None and drain_seconds > 0 and store_limit > 0:
        sink.wait_stored(store_limit)
    left = notifier.close(drain_seconds)
    if left:
        run_logger().warning(
            "notify: %d notification(s) still pending after %.0f s; the next start sends them",
            left,
            drain_seconds,
        )
    return {
        "delivered": notifier.delivered,
        "dead": notifier.dead,
        "failed_attempts": notifier.failed_attempts,
        "pending": left,
    }


def notify_run(
    notify: NotifySettings, flow: str, run_id: str, status: str, reason: str | None
) -> dict[str, int] | None:
    """Announce a run that did not complete (kind ``run``) on every channel, waiting at
    most ``drain_seconds`` (retries included); None when there is nothing to do. Never
    raises: a notification problem is logged, the run's outcome stands."""
    if status == "completed":
        return None
    return notify_event(notify, run_event(flow, run_id, status, redact(reason or "")[:500] or None))


def notify_event(notify: NotifySettings, event: dict[str, Any]) -> dict[str, int] | None:
    """Send one event (with its ``event_id``) on every channel, waiting at most
    ``drain_seconds``; None without channels. Never raises."""
    if not notify.enabled:
        return None
    log = run_logger()
    try:
        notifier = open_notifier(notify)
        notifier.submit([event])
        counts = stop_notifier(notifier, notify.drain_seconds)
    except Exception as exc:
        log.warning("notify: could not send event %s (%s)", event.get("event_id"), redact(str(exc)))
        return None
    if counts["delivered"]:
        log.info("notify: sent %s event %s", event.get("kind"), event.get("event_id"))
    return counts
