"""Live notifications against a real warehouse and a real webhook receiver on 127.0.0.1:
the outbox is stored with the orders and fills (one event per row, ids stable across a
replay), delivery states come back through the same journaled sink, the view shows
them, a replayed step never resets a delivered event, and a restart re-sends only what
was not acknowledged."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from hedgeflow.config import NotifySettings
from hedgeflow.live.agent import LiveAgent
from hedgeflow.live.channels import channel_id
from hedgeflow.tasks.live import open_live_sink, step_item
from hedgeflow.tasks.notify import (
    notify_run,
    open_notifier,
    resume_notifications,
    step_outbox,
    stop_notifier,
)
from hedgeflow.warehouse import Warehouse
from tests.tasks.test_live_record import AGENT, RUN, _history_len, fresh
from tests.webhook_receiver import TOKEN, WebhookReceiver, closed_port

N_BARS = 60


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    from hedgeflow.sources.synthetic import SyntheticMarket

    start = pd.Timestamp("2024-03-04", tz="UTC")
    return SyntheticMarket(7).fetch_bars(AGENT.symbol, "5m", start, start + pd.Timedelta(days=1))


def _run(wh: Warehouse, notify: NotifySettings, bars: pd.DataFrame, k0: int, k1: int,
         agent: LiveAgent, drain: float = 5.0) -> tuple[dict[str, int], list[float]]:  # fmt: skip
    """Feed bars[k0:k1] through the live sink with a notifier, as the live flow does."""
    notifier = open_notifier(notify)
    sink = open_live_sink(wh, RUN, notifier)
    resume_notifications(wh, notifier)
    calls = []
    for r in bars.iloc[k0:k1].itertuples(index=False):
        step = agent.on_bar(r)
        assert step is not None
        t0 = time.perf_counter()
        sink(agent, step)
        calls.append(time.perf_counter() - t0)
    counts = stop_notifier(notifier, drain, sink, 120.0)
    sink.close(30)
    return counts, calls


def _notify(*urls: str, **kw: Any) -> NotifySettings:
    return NotifySettings(webhooks=tuple(urls), **kw)


@pytest.mark.slow  # ~10 s (60 bars stored one transaction each); .ci/run step 3
def test_every_order_and_fill_is_one_event_delivered_once(
    tmp_path: Path, bars: pd.DataFrame
) -> None:
    wh = Warehouse(tmp_path / "home")
    k = _history_len(bars)
    agent = fresh()
    agent.warm_up(bars.iloc[:k])
    with WebhookReceiver() as rx:
        counts, _ = _run(wh, _notify(rx.url), bars, k, k + N_BARS, agent)
    orders = wh.query("SELECT run_id, agent, order_id, side, reason FROM live_orders")
    fills = wh.query("SELECT * FROM live_fills")
    assert len(fills) >= 4 and len(orders) >= 4
    outbox = wh.query("SELECT * FROM live_outbox")
    assert len(outbox) == outbox["event_id"].nunique() == len(orders) + len(fills)
    got = rx.bodies()
    assert sorted(b["event_id"] for b in got) == sorted(outbox["event_id"])  # once each
    assert counts == {"delivered": len(outbox), "dead": 0, "failed_attempts": 0, "pending": 0}
    # each event is an order or a fill of the record, with its fields
    by_fill = {f"{r.fill_id}": r for r in fills.itertuples(index=False)}
    by_order = {r.order_id: r for r in orders.itertuples(index=False)}
    for body in got:
        assert body["run_id"] == RUN and body["agent"] == AGENT.name
        assert body["symbol"] == AGENT.symbol
        if body["kind"] == "fill":
            row = by_fill.pop(body["fill_id"])
            assert (body["side"], body["qty"], body["price"]) == (row.side, row.qty, row.price)
            assert pd.Timestamp(body["ts"]) == row.ts
        else:
            row = by_order.pop(body["order_id"])
            assert (body["side"], body["reason"]) == (row.side, row.reason)
    assert not by_fill and not by_order  # none missing, none invented
    view = wh.query("SELECT * FROM live_notifications")
    assert set(view["status"]) == {"delivered"} and set(view["attempts"]) == {1}
    assert view["delivered_at"].notna().all()
    assert {"event_id", "kind", "status", "attempts", "last_error", "delivered_at", "run_id",
            "agent", "symbol"} <= set(view.columns)  # fmt: skip
    # a replay of the stored steps (a kill between store and mark-done, or a restart
    # recomputing them) keeps every event once and delivered
    agent2 = fresh()
    agent2.warm_up(bars.iloc[:k])
    cid = channel_id("webhook", rx.url)
    for s in _steps(agent2, bars.iloc[k : k + N_BARS]):
        item = step_item(RUN, agent2, s)
        item.update(step_outbox(RUN, agent2, s, [cid], pd.Timestamp.now(tz="UTC")))
        wh.write_live_many(item)
    again = wh.query("SELECT event_id, status, attempts FROM live_notifications")
    assert len(again) == len(view) and set(again["status"]) == {"delivered"}
    assert len(wh.query("SELECT * FROM live_deliveries")) == len(view)


def _steps(agent: LiveAgent, bars: pd.DataFrame) -> list[Any]:
    out = []
    for r in bars.itertuples(index=False):
        step = agent.on_bar(r)
        assert step is not None
        out.append(step)
    return out


@pytest.mark.slow  # ~10 s; .ci/run step 3
def test_a_restart_resends_only_what_was_not_acknowledged(
    tmp_path: Path, bars: pd.DataFrame
) -> None:
    wh = Warehouse(tmp_path / "home")
    k = _history_len(bars)
    agent = fresh()
    agent.warm_up(bars.iloc[:k])
    port = closed_port()
    # run 1: the receiver is down; the end's drain stops waiting once every event is
    # refused and backing off (30 s, past the drain)
    down = f"http://127.0.0.1:{port}/hook/{TOKEN}"
    counts1, _ = _run(wh, _notify(down, backoff_initial=30.0), bars, k, k + 60, agent, 20)
    first = wh.query("SELECT event_id, status, attempts, last_error FROM live_notifications")
    assert len(first) >= 2 and counts1["delivered"] == 0
    assert counts1["pending"] == len(first) and counts1["failed_attempts"] >= len(first)
    assert (first["attempts"] >= 1).all()
    assert set(first["status"]) == {"pending"}
    assert set(first["last_error"]) == {"connection refused"}
    assert TOKEN not in first.to_string()
    # run 2: the receiver is up on the same URL: the backlog, then the new events
    with WebhookReceiver() as rx:
        rx._server.server_close()
        from http.server import ThreadingHTTPServer

        rx._server = ThreadingHTTPServer(("127.0.0.1", port), rx._server.RequestHandlerClass)
        rx._thread = __import__("threading").Thread(target=rx._server.serve_forever, daemon=True)
        rx._thread.start()
        counts2, _ = _run(wh, _notify(down), bars, k + 60, k + N_BARS, agent)
    ids = [b["event_id"] for b in rx.bodies()]
    outbox = wh.query("SELECT event_id FROM live_outbox")
    assert sorted(ids) == sorted(outbox["event_id"])  # every event once, the old ones too
    assert set(first["event_id"]) <= set(ids)
    view = wh.query("SELECT status, attempts FROM live_notifications")
    assert set(view["status"]) == {"delivered"}
    assert counts2["delivered"] == len(outbox)
    # run 3: nothing pending, nothing re-sent; a removed channel's leftovers are marked dead
    with WebhookReceiver() as rx3:
        n = open_notifier(_notify(rx3.url))
        assert resume_notifications(wh, n) == 0
        n.close(0.0)
    assert rx3.bodies() == []


@pytest.mark.slow  # ~10 s; .ci/run step 3
def test_a_slow_receiver_does_not_slow_the_bar_loop(tmp_path: Path, bars: pd.DataFrame) -> None:
    """Each sink call only queues: with a receiver answering in 0.3 s (past nothing:
    the client waits) the per-bar call stays sub-millisecond-ish, as without one."""
    k = _history_len(bars)
    timings = {}
    for name, delay in (("fast", 0.0), ("slow", 0.3)):
        wh = Warehouse(tmp_path / name)
        agent = fresh()
        agent.warm_up(bars.iloc[:k])
        with WebhookReceiver(delay=delay) as rx:
            t0 = time.perf_counter()
            _, calls = _run(wh, _notify(rx.url, timeout=2.0), bars, k, k + 60, agent, 0.0)
            timings[name] = (time.perf_counter() - t0, max(calls), sorted(calls)[len(calls) // 2])
    assert timings["slow"][1] < 0.05, timings  # the slowest sink call
    assert timings["slow"][2] < 0.005, timings  # the median one


def test_a_run_that_did_not_complete_is_announced_within_the_drain() -> None:
    with WebhookReceiver() as rx:
        notify = _notify(rx.url)
        assert notify_run(notify, "nightly", "run-9", "completed", None) is None
        counts = notify_run(notify, "nightly", "run-9", "partial", f"x failed {rx.url}")
    assert counts == {"delivered": 1, "dead": 0, "failed_attempts": 0, "pending": 0}
    (body,) = rx.bodies()
    assert (body["kind"], body["status"], body["run_id"]) == ("run", "partial", "run-9")
    assert TOKEN not in body["reason"]  # a URL in the reason is redacted
    # a receiver that never answers in time: the flow waits at most drain_seconds
    with WebhookReceiver(delay=2.0) as slow:
        t0 = time.monotonic()
        counts = notify_run(
            _notify(slow.url, timeout=0.3, drain_seconds=1.0, backoff_initial=0.1),
            "nightly", "run-9", "failed", "boom",
        )  # fmt: skip
        took = time.monotonic() - t0
    assert counts is not None and counts["delivered"] == 0 and counts["failed_attempts"] >= 2
    assert took < 2.5, took
