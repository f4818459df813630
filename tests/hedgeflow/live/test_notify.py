"""Live notifications without a warehouse: stable event ids, and the notifier against a
real webhook receiver on 127.0.0.1 with injected faults (HTTP 500s, answers slower than
the client's timeout, a closed port): retries with backoff, dead after max_attempts,
errors without the URL, a bounded drain, and a slow receiver never blocking ``submit``."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pandas as pd
import pytest

from hedgeflow.live.broker import Fill, OrderCreated, OrderUpdated, PendingOrder
from hedgeflow.live.channels import WebhookChannel, channel_id, message_text
from hedgeflow.live.notify import (
    DEAD,
    DELIVERED,
    PENDING,
    Notifier,
    backoff_delay,
    event_id,
    outbox_events,
    outbox_tables,
)
from tests.webhook_receiver import TOKEN, WebhookReceiver, closed_port

TS = pd.Timestamp("2026-12-01 14:35", tz="UTC")
REQUIRED = {"event_id", "kind", "run_id", "agent", "symbol", "ts", "side", "qty", "price", "reason"}


def _order(oid: str = "stocks-20261201T143500Z-signal") -> PendingOrder:
    return PendingOrder(oid, "buy", TS, TS + pd.Timedelta(minutes=5), "signal")


def _broker_events() -> list[Any]:
    o = _order()
    fill = Fill(o.order_id + "-f", o.order_id, "buy", 3.0, 101.5, 0.2, TS, "signal")
    done = OrderUpdated(o.order_id, "buy", TS, o.fill_after_ts, "filled", "signal", 3.0)
    stop = OrderUpdated("stocks-x-stop", "sell", TS, TS, "filled", "stop", 3.0)
    return [OrderCreated(o), fill, done, stop]


def test_one_event_per_order_and_fill_with_stable_ids() -> None:
    events = outbox_events("run-1", "stocks", "AAPL.US", _broker_events())
    # the created-then-filled order is one event (its first state), the stop order too
    assert [(e["kind"], e["status"]) for e in events] == [
        ("order", "pending"),
        ("fill", "filled"),
        ("order", "filled"),
    ]
    for e in events:
        assert set(e) >= REQUIRED
    assert events[1]["price"] == 101.5 and events[1]["qty"] == 3.0
    again = outbox_events("run-1", "stocks", "AAPL.US", _broker_events())
    assert [e["event_id"] for e in again] == [e["event_id"] for e in events]
    other = outbox_events("run-1", "forex", "AAPL.US", _broker_events())
    assert not {e["event_id"] for e in other} & {e["event_id"] for e in events}
    assert events[0]["event_id"] == event_id("run-1", "stocks", "order", _order().order_id)
    assert len({e["event_id"] for e in events}) == 3
    tables = outbox_tables(events, ["webhook-a", "webhook-b"], TS)
    assert len(tables["live_outbox"]) == 3 and len(tables["live_deliveries"]) == 6
    assert set(tables["live_deliveries"]["status"]) == {PENDING}
    assert outbox_tables([], ["webhook-a"], TS) == {}


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    assert backoff_delay(1, 0.5, 60, lambda: 1.0) == 0.5
    assert backoff_delay(4, 0.5, 60, lambda: 1.0) == 4.0
    assert backoff_delay(20, 0.5, 60, lambda: 1.0) == 60.0
    assert backoff_delay(4, 0.5, 60, lambda: 0.0) == 2.0  # half of it at the least


class Rows:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, rows: list[dict[str, Any]]) -> None:
        with self.lock:
            self.rows.extend(rows)


def _events(n: int) -> list[dict[str, Any]]:
    return [
        {"event_id": f"ev-{i}", "kind": "fill", "run_id": "r", "agent": "a", "symbol": "X",
         "ts": TS.isoformat(), "side": "buy", "qty": 1.0, "price": 2.0, "reason": "signal"}
        for i in range(n)
    ]  # fmt: skip


def test_delivers_every_event_as_one_json_post() -> None:
    with WebhookReceiver() as rx:
        rows = Rows()
        n = Notifier([WebhookChannel(rx.url, 0, 2.0)], record=rows)
        n.submit(_events(5))
        assert n.close(5.0) == 0
    assert sorted(b["event_id"] for b in rx.bodies()) == [f"ev-{i}" for i in range(5)]
    assert all(r.path == f"/hook/{TOKEN}" for r in rx.received)
    assert sorted(r["event_id"] for r in rows.rows) == [f"ev-{i}" for i in range(5)]
    assert [r["status"] for r in rows.rows] == [DELIVERED] * 5
    assert all(r["attempts"] == 1 and r["delivered_at"] is not None for r in rows.rows)
    assert {r["channel"] for r in rows.rows} == {channel_id("webhook", rx.url)}


def test_http_500s_are_retried_with_backoff_until_acknowledged() -> None:
    with WebhookReceiver(fail_first=2) as rx:
        rows = Rows()
        n = Notifier(
            [WebhookChannel(rx.url, 0, 2.0)], record=rows, backoff_initial=0.1, backoff_max=1
        )
        n.submit(_events(1))
        assert n.close(5.0) == 0
    times = [r.at for r in rx.received]
    assert [r.answered for r in rx.received] == [500, 500, 200]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1  # 0.1 then 0.2, each with jitter in [1/2, 1]
    # the states handed over (batched: the latest per event), then the final one
    states = [(r["status"], r["attempts"], r["last_error"]) for r in rows.rows]
    assert states[-1] == (DELIVERED, 3, None)
    assert set(states[:-1]) <= {
        (PENDING, 1, "HTTP 500 Internal Server Error"),
        (PENDING, 2, "HTTP 500 Internal Server Error"),
    }


def test_a_receiver_slower_than_the_timeout_ends_dead_after_max_attempts() -> None:
    with WebhookReceiver(delay=1.0) as rx:
        rows = Rows()
        n = Notifier(
            [WebhookChannel(rx.url, 0, 0.2)], record=rows, max_attempts=3,
            backoff_initial=0.05, backoff_max=0.1,
        )  # fmt: skip
        n.submit(_events(1))
        assert n.close(10.0) == 0
        assert rx.wait_for(3, 5.0)
    assert n.dead == 1 and n.delivered == 0
    states = [(r["status"], r["attempts"], r["last_error"]) for r in rows.rows]
    assert states[-1] == (DEAD, 3, "timed out after 0.2 s")
    assert set(states[:-1]) <= {(PENDING, k, "timed out after 0.2 s") for k in (1, 2)}


def test_a_closed_port_is_refused_and_the_error_never_shows_the_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook/{TOKEN}?key={TOKEN}"
    rows = Rows()
    n = Notifier([WebhookChannel(url, 0, 1.0)], record=rows, max_attempts=2, backoff_initial=0.01)
    n.submit(_events(2))
    assert n.close(5.0) == 0
    assert n.dead == 2
    errors = {r["last_error"] for r in rows.rows}
    assert errors == {"connection refused"}
    assert not any(TOKEN in str(r) for r in rows.rows)


def test_a_slow_receiver_never_blocks_submit_and_the_drain_is_bounded() -> None:
    with WebhookReceiver(delay=0.5) as rx:
        n = Notifier([WebhookChannel(rx.url, 0, 2.0)], record=Rows())
        took = []
        for ev in _events(40):
            t0 = time.perf_counter()
            n.submit([ev])
            took.append(time.perf_counter() - t0)
        assert max(took) < 0.25, max(took)  # queued: never waits for a 0.5 s answer
        t0 = time.monotonic()
        left = n.close(1.2)
        waited = time.monotonic() - t0
    assert 1.0 <= waited < 3.0, waited  # drain 1.2 s, then at most one request in flight
    assert 30 <= left <= 39  # ~2 delivered per second, the rest stays pending


def test_a_dead_channel_does_not_hold_up_a_good_one() -> None:
    with WebhookReceiver() as good, WebhookReceiver(delay=1.0) as slow:
        n = Notifier(
            [WebhookChannel(slow.url, 0, 0.5), WebhookChannel(good.url, 1, 0.5)],
            record=Rows(), max_attempts=1,
        )  # fmt: skip
        t0 = time.monotonic()
        n.submit(_events(10))
        assert good.wait_for(10, 2.0)
        assert time.monotonic() - t0 < 1.5  # the slow one needs 10 x 0.5 s for its part
        n.close(0.0)


def test_message_text_for_chat() -> None:
    title, body = message_text(_events(1)[0])
    assert title == "hedgeflow a: BUY X (fill)"
    assert "qty 1" in body and "at 2" in body and "ev-0" in body


@pytest.mark.parametrize("bad", ["ftp://h/x", "http://", "not a url", "http://h:99999/x"])
def test_webhook_urls_are_checked(bad: str) -> None:
    from hedgeflow.errors import ConfigError
    from hedgeflow.live.channels import check_urls

    with pytest.raises(ConfigError) as err:
        check_urls("webhooks", ["https://ok.example/x", bad], "http")
    assert str(err.value).startswith("setting 'notify.webhooks[1]': ")
    if len(bad) > 8:
        assert bad not in str(err.value)
