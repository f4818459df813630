"""Delivery fault campaign (RELIABILITY.md): the live notifier against real receivers on
127.0.0.1, every round with three channels at once: a webhook that answers HTTP 500 to
the first attempts of each event, one slower than the client's timeout, and a closed
port. Every event reaches the good webhook at least once under its ``event_id`` (a
duplicate carries the same body), none is invented, the failing channels end ``dead``
after ``max_attempts`` with an error that never shows the URL, and ``submit`` (the bar
loop's side) never waits for a receiver."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from hedgeflow.live.channels import WebhookChannel, channel_id
from hedgeflow.live.notify import DEAD, DELIVERED, Notifier
from tests.hedgeflow.live.test_notify import Rows, _events
from tests.reliability.conftest import Tally
from tests.webhook_receiver import TOKEN, WebhookReceiver, closed_port

pytestmark = [pytest.mark.reliability, pytest.mark.slow]  # CI step 3 runs it

CATEGORY = "delivery faults"
ROUNDS = 4
EVENTS = 8


def test_notifications_under_500s_timeouts_and_refused_connections(tally: Tally) -> None:
    tally.describe(CATEGORY, "live notifier: HTTP 500s, slow receivers, a closed port")
    rng = random.Random(13)
    for _ in range(ROUNDS):
        fail_first = rng.randint(1, 3)
        events = _events(EVENTS)
        refused = f"http://127.0.0.1:{closed_port()}/hook/{TOKEN}"
        with WebhookReceiver(fail_first=fail_first) as flaky, WebhookReceiver(delay=0.6) as slow:
            rows = Rows()
            notifier = Notifier(
                [
                    WebhookChannel(flaky.url, 0, 2.0),
                    WebhookChannel(slow.url, 1, 0.2),
                    WebhookChannel(refused, 2, 1.0),
                ],
                record=rows,
                max_attempts=fail_first + 2,
                backoff_initial=0.02,
                backoff_max=0.1,
            )
            waits = []
            for event in events:
                t0 = time.perf_counter()
                notifier.submit([event])
                waits.append(time.perf_counter() - t0)
            left = notifier.close(20.0)
            bodies = flaky.bodies()
        assert left == 0
        assert max(waits) < 0.25, max(waits)  # queued, never waiting on a receiver
        sent = {e["event_id"]: e for e in events}
        got = Counter(b["event_id"] for b in bodies)
        assert set(got) == set(sent)  # every event at least once, none invented
        assert all(b == sent[b["event_id"]] for b in bodies)  # a duplicate is the same body
        final: dict[tuple[str, str], dict] = {}
        for row in rows.rows:
            final[(row["channel"], row["event_id"])] = row
        by_channel = Counter((ch, r["status"], r["last_error"]) for (ch, _), r in final.items())
        assert by_channel[(channel_id("webhook", flaky.url), DELIVERED, None)] == EVENTS
        slow_id, refused_id = channel_id("webhook", slow.url), channel_id("webhook", refused)
        assert by_channel[(slow_id, DEAD, "timed out after 0.2 s")] == EVENTS
        assert by_channel[(refused_id, DEAD, "connection refused")] == EVENTS
        assert not any(TOKEN in str(r) for r in rows.rows)
        tally.trial()
        tally.fault("HTTP 500", fail_first * EVENTS)
        tally.fault("timeout", (fail_first + 2) * EVENTS)
        tally.fault("connection refused", (fail_first + 2) * EVENTS)
        tally.outcome("delivered (after 500s)", EVENTS)
        tally.outcome("dead after max_attempts (timeout, refused)", 2 * EVENTS)
        tally.outcome("duplicates (same id and body)", sum(got.values()) - EVENTS)
    tally.note("slowest submit (ms)", "< 250")
