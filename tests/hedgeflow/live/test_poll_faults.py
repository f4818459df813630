"""REST polling mode (the article's ``live_poll_rest``) against the local EODHD simulator,
through the real EODHD client and real sockets, with faults injected through the
simulator's control endpoint:

* transient failures (5xx, 429, timeouts, truncated JSON, HTML pages, dropped
  connections) fail a poll for one symbol, are logged and counted, and the next poll
  fetches from the first bar still needed: every bar still arrives, once, in order;
* a permanent failure (HTTP 401, a bad token) ends the run at once with
  PermanentSourceError, naming the problem and not the token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hedgeflow.config import NetworkSettings, load_settings
from hedgeflow.errors import PermanentSourceError
from hedgeflow.live.agent import LiveAgent, LiveStep
from hedgeflow.live.clock import SimulatedClock
from hedgeflow.live.poll import PollRuntime
from hedgeflow.live.rest import rest_fetcher
from hedgeflow.sources.eodhd import EodhdClient
from hedgeflow.sources.simulator import Simulator
from hedgeflow.sources.synthetic import SyntheticMarket

OPEN = datetime(2024, 9, 3, 13, 30, tzinfo=UTC)  # a Tuesday's US open: all markets trade
OPEN_MS = int(OPEN.timestamp() * 1000)
MARKET = SyntheticMarket(7)
TOKEN = "demo-sim"
SPEED = 3000.0  # a 5-minute bar every 0.1 s of wall time
REST_TIMEOUT = 1.0  # generous: a normal answer on a loaded machine must not time out


@pytest.fixture()
def sim() -> Iterator[Simulator]:
    with Simulator(seed=7, tokens=(TOKEN,), timeout_sleep=REST_TIMEOUT + 0.3) as server:
        yield server


def control(sim: Simulator, command: dict[str, Any]) -> dict[str, Any]:
    """POST a command to the simulator's control endpoint (as a user would)."""
    request = urllib.request.Request(
        f"{sim.control_url}/faults",
        data=json.dumps(command).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200
        result: dict[str, Any] = json.loads(answer.read())
        return result


def client(sim: Simulator, token: str = TOKEN, max_retries: int = 0) -> EodhdClient:
    network = NetworkSettings(
        base_url=sim.base_url,
        rest_timeout=REST_TIMEOUT,
        max_retries=max_retries,
        retry_backoff_sec=0.02,
        max_backoff_sec=0.05,
    )
    return EodhdClient(token, network)


def warmed_agents() -> list[LiveAgent]:
    settings = load_settings(env={})
    agents = []
    for a in settings.agents:
        agent = LiveAgent.from_settings(a, settings.costs_for(a), 100_000.0, "5m")
        agent.warm_up(MARKET.fetch_bars(a.symbol, "5m", OPEN - timedelta(days=4), OPEN))
        agents.append(agent)
    return agents


@dataclass
class Polled:
    runtime: PollRuntime
    agents: list[LiveAgent]
    steps: dict[str, list[LiveStep]] = field(default_factory=dict)
    error: BaseException | None = None


def poll(
    rest: EodhdClient,
    *,
    bars_each: int,
    duration: float = 20.0,
    on_bar: Any = None,
    until: Callable[[], bool] = lambda: True,
) -> Polled:
    """Poll until every agent has ``bars_each`` bars and ``until()`` holds (or
    ``duration`` wall seconds)."""
    agents = warmed_agents()
    steps: dict[str, list[LiveStep]] = {a.name: [] for a in agents}
    holder: list[PollRuntime] = []

    def sink(agent: LiveAgent, step: LiveStep) -> None:
        steps[agent.name].append(step)
        if on_bar is not None:
            on_bar(steps)
        if all(len(s) >= bars_each for s in steps.values()) and until():
            holder[0].stop()

    runtime = PollRuntime(
        agents,
        interval="5m",
        sink=sink,
        fetch_bars=rest_fetcher(rest, "5m"),
        clock_ms=SimulatedClock(OPEN_MS, SPEED),
        clock_rate=SPEED,
        poll_delay_seconds=30,
    )
    holder.append(runtime)
    polled = Polled(runtime, agents, steps)
    try:
        asyncio.run(runtime.run(duration=duration))
    except Exception as exc:
        polled.error = exc
    return polled


def assert_every_bar_once_in_order(polled: Polled, at_least: int) -> None:
    for agent in polled.agents:
        got = polled.steps[agent.name]
        assert len(got) >= at_least, (agent.name, len(got))
        last = got[-1].ts
        ref = MARKET.fetch_bars(agent.symbol, "5m", OPEN, last + timedelta(minutes=5))
        assert [s.ts for s in got] == list(ref["ts"]), f"{agent.name}: missing or extra bars"
        assert [s.bar.close for s in got] == list(ref["close"]), agent.name
        assert agent.refused.total() == 0


# (fault kind, the client's description of the failure in the poll's warning)
TRANSIENT_FAULTS = [
    ("500", "last failure: HTTP 500"),
    ("429", "last failure: HTTP 429 (rate limited)"),
    ("timeout", f"last failure: timeout after {REST_TIMEOUT:g}s"),
    ("truncated", "last failure: EODHD returned truncated JSON"),
    ("503", "last failure: HTTP 503"),
    ("html", "last failure: EODHD returned an HTML error page instead of JSON"),
    ("html502", "last failure: HTTP 502"),
    ("drop", "last failure: connection failed"),
]


def test_transient_poll_failures_are_logged_counted_and_the_bars_still_arrive(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    for kind, _ in TRANSIENT_FAULTS:  # one fault for each of the next eight requests
        control(sim, {"inject": kind, "count": 1, "retry_after": 0})
    assert sim.faults.pending == len(TRANSIENT_FAULTS)
    caplog.set_level(logging.WARNING, logger="hedgeflow.live.poll")
    with client(sim) as rest:  # no retries in the client: every fault fails a poll
        polled = poll(rest, bars_each=10)
    assert polled.error is None, polled.error
    runtime = polled.runtime
    assert sim.faults.pending == 0
    assert runtime.poll_failures == len(TRANSIENT_FAULTS)
    assert runtime.status().repair_failures == len(TRANSIENT_FAULTS)
    warnings = [r.getMessage() for r in caplog.records if r.name == "hedgeflow.live.poll"]
    assert len(warnings) == len(TRANSIENT_FAULTS), warnings
    for message, (kind, description) in zip(warnings, TRANSIENT_FAULTS, strict=True):
        assert message.startswith("live poll: bars of "), message
        assert "failed: TransientSourceError: EODHD request for " in message, message
        assert description in message, (kind, message)
        assert TOKEN not in message
    # the faulted requests came first, then the polls went on, each failed symbol
    # fetched again from the same first bar it still needed
    requests = sim.request_log
    assert [r.fault for r in requests[: len(TRANSIENT_FAULTS)]] == [k for k, _ in TRANSIENT_FAULTS]
    assert all(r.fault is None and r.status == 200 for r in requests[len(TRANSIENT_FAULTS) :])
    for failed in requests[: len(TRANSIENT_FAULTS)]:
        later = [r for r in requests if r.at > failed.at and r.ticker == failed.ticker]
        assert later and later[0].params["from"] == failed.params["from"], failed
    assert_every_bar_once_in_order(polled, at_least=10)


def test_random_transient_faults_with_client_retries_lose_no_bar(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    kinds = [k for k, _ in TRANSIENT_FAULTS if k != "timeout"]  # (timeouts cost wall time)
    control(sim, {"random": {"rate": 0.3, "kinds": kinds, "seed": 3}})
    caplog.set_level(logging.WARNING)
    with client(sim, max_retries=3) as rest:
        # at least 30 requests: the seeded fault sequence puts 10 faults among them
        polled = poll(rest, bars_each=10, until=lambda: len(sim.request_log) >= 30)
    assert polled.error is None, polled.error
    faulted = [r for r in sim.request_log if r.fault is not None]
    assert len(faulted) >= 10
    # every faulted request was either retried by the client ("retry i/3") or was the
    # fourth failed attempt of a fetch, which failed that symbol's poll (logged, counted)
    retries = [r for r in caplog.records if r.name == "hedgeflow.sources.eodhd"]
    poll_failures = [r for r in caplog.records if r.name == "hedgeflow.live.poll"]
    assert len(faulted) == len(retries) + len(poll_failures)
    assert polled.runtime.poll_failures == len(poll_failures)
    assert_every_bar_once_in_order(polled, at_least=10)


def test_a_bad_token_ends_the_poll_run_at_once(sim: Simulator) -> None:
    with client(sim, token="not-the-token", max_retries=3) as rest:
        polled = poll(rest, bars_each=1, duration=20.0)
    assert isinstance(polled.error, PermanentSourceError)
    assert "EODHD rejected the API token (HTTP 401)" in str(polled.error)
    assert "not-the-token" not in str(polled.error)
    runtime = polled.runtime
    assert not runtime.running and runtime.router.bars == 0
    # one request: a 401 is never retried, and no later poll is made
    assert [r.status for r in sim.request_log] == [401]
    assert runtime.polls == 1


def test_a_401_while_polling_ends_the_run_and_keeps_the_bars_before_it(sim: Simulator) -> None:
    injected: list[int] = []

    def on_bar(steps: dict[str, list[LiveStep]]) -> None:
        if not injected and min(len(s) for s in steps.values()) >= 5:
            injected.append(len(sim.request_log))
            sim.faults.inject("401")  # the token is revoked while the run polls

    with client(sim, max_retries=3) as rest:
        polled = poll(rest, bars_each=10_000, duration=20.0, on_bar=on_bar)
    assert injected, "the run ended before the fault was injected"
    assert isinstance(polled.error, PermanentSourceError)
    assert "EODHD rejected the API token (HTTP 401)" in str(polled.error)
    assert not polled.runtime.running
    requests = sim.request_log
    assert requests[-1].fault == "401" and requests[-1].status == 401
    assert all(r.status == 200 for r in requests[:-1])
    assert_every_bar_once_in_order(polled, at_least=5)
