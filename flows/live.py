"""The live flow: one long-lived flow run streaming ticks (or polling REST) into bars,
signals and paper trades, persisted bar by bar.

``live(source, mode, speed, duration, ...)``:

0. takes the warehouse's live lock (``HOME/live.lock``, one live runner per
   warehouse: a second one is refused with an error naming the first; the lock of a
   dead runner is free, and is taken over) and stores what the last run left in its
   journal (``HOME/journal/``), in order, before anything is read back;
1. picks the live run: the last ``live`` run of the warehouse when its source and
   agents match (a restart continues it, under its run id, with its positions), else
   a new one (``fresh=True`` forces a new one); writes its ``runs`` row (``running``);
2. opens the sources: against ``simulator`` a local EODHD REST server and a WebSocket
   simulator over the same synthetic market (same seed), whose clock starts at
   ``start`` (default: the open of the last complete US session, or where the
   restored run stopped, whichever is later) and runs ``speed`` times faster than
   the wall clock; against ``eodhd`` the real client and feeds, on the wall clock;
3. restores the agents the run already has (``hedgeflow.tasks.live.restore_agent``: position,
   pending order, signal state, from the ``live_*`` tables), ingests the lookback
   window before the start where the lake lacks it and warms the other agents up on
   it (shadow mode: signals valid from the first live bar);
4. runs :class:`~hedgeflow.live.runtime.LiveRuntime` (``mode="ws"``) or
   :class:`~hedgeflow.live.poll.PollRuntime` (``mode="poll"``) until ``duration`` wall
   seconds pass or a stop is requested (Ctrl-C in the CLI); every step goes to the
   run's journal (fsynced) and a writer thread stores it (``hedgeflow.tasks.live.
   open_live_sink``), waiting out a warehouse that another process (a slow SQL
   reader) keeps locked while the loop keeps processing bars; the end of the run
   waits for that backlog (up to ``[live] drain_limit``);
5. marks the run ``completed``; ``degraded`` (the feed went silent for longer than
   ``max_silence``, or kept closing without a tick, after some ticks) or ``failed``
   (no tick at all, or an error), with the reason in the run's summary. Nothing is
   closed out: ``live_positions`` keeps the open positions and the next run
   continues them.

The only Prefect task runs are the ingest batches of step 3 (at most a few).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import pandas as pd
from prefect import flow

from hedgeflow.config import AgentSettings, Settings, load_settings
from hedgeflow.errors import InvalidInputError, SourceError
from hedgeflow.flows.ingest import ingest_window
from hedgeflow.flows.params import (
    AGENTS_DOC,
    ALLOW_SHORT_DOC,
    INTERVAL_DOC,
    AgentParam,
    Doc,
    IntervalName,
    agents_mapping,
)
from hedgeflow.live.agent import LiveAgent
from hedgeflow.live.clock import SimulatedClock
from hedgeflow.live.corporate import SplitFetcher, SplitRefresh, announce_splits
from hedgeflow.live.rest import BarFetcher, rest_fetcher
from hedgeflow.live.runtime import SHUTDOWN, request_shutdown, shutdown_reason
from hedgeflow.live.session import last_session_open
from hedgeflow.live.status import RuntimeStatus, live_verdict
from hedgeflow.market import interval_seconds
from hedgeflow.tasks.common import (
    current_run_id,
    mark_run_ended,
    progress_log,
    run_logger,
    thread_pool,
)
from hedgeflow.tasks.ingest import SourceSpec
from hedgeflow.tasks.live import open_live_sink, restore_agent, store_live_backlog
from hedgeflow.tasks.notify import open_notifier, resume_notifications, stop_notifier
from hedgeflow.warehouse import Warehouse, code_version
from hedgeflow.warehouse.live_lock import LiveLock, acquire_live_lock
from hedgeflow.windows import Window

LiveSource = Literal["simulator", "eodhd"]
LiveMode = Literal["ws", "poll"]
T = TypeVar("T")

LOG_EVERY_SECONDS = 60.0  # a status line in the flow run's log


@dataclass
class LiveSummary:
    run_id: str
    status: str
    source: str
    mode: str
    speed: float
    start: datetime  # feed clock at the start of streaming
    end: datetime | None = None  # feed clock at the end
    seconds: float = 0.0
    resumed: list[str] = field(default_factory=list)  # agents restored from the record
    agents: list[dict[str, Any]] = field(default_factory=list)
    feed: dict[str, int] = field(default_factory=dict)
    reason: str | None = None  # why the run is not ``completed``
    problem: str | None = None  # the feed problem the runtime stopped on
    # the warehouse backlog: steps stored, busy_seconds waiting for a locked warehouse,
    # max_backlog steps waiting at once, replayed (left in the journal by a dead run)
    journal: dict[str, float] = field(default_factory=dict)
    # the paper equity a fresh agent starts with ([portfolio] initial_equity); agents in
    # ``resumed`` carry their cash and position over from the run's record instead
    initial_equity: float = 0.0
    # notifications: delivered, dead, failed_attempts, pending (left for the next start)
    notify: dict[str, int] = field(default_factory=dict)


@dataclass
class _Sources:
    spec: SourceSpec
    fetch: BarFetcher
    token: str
    ws_url: str
    splits: SplitFetcher


def _agent_config(agent: AgentSettings, settings: Settings) -> dict[str, Any]:
    """What must not change for a restored agent to continue its record."""
    return json.loads(
        json.dumps(
            {
                "symbol": agent.symbol,
                "strategy": agent.strategy,
                "params": dict(agent.params),
                "risk": dataclasses.asdict(agent.risk),
                "costs": dataclasses.asdict(settings.costs_for(agent)),
                "minimums": dataclasses.asdict(settings.minimums_for(agent)),
                "interval": settings.interval,
                "initial_equity": settings.portfolio.initial_equity,
            },
            sort_keys=True,
            default=str,
        )
    )


def _previous_run(warehouse: Warehouse) -> dict[str, Any] | None:
    if not warehouse.db_path.exists():
        return None
    runs = warehouse.query(
        "SELECT run_id, params FROM runs WHERE flow = 'live' ORDER BY started_at DESC LIMIT 1"
    )
    if runs.empty:
        return None
    row = runs.iloc[0].to_dict()
    try:
        row["params"] = json.loads(row["params"] or "{}")
    except ValueError:
        return None
    return row


def _floor(ts: datetime, interval_ms: int) -> datetime:
    ms = int(pd.Timestamp(ts).value // 1_000_000)
    return datetime.fromtimestamp((ms - ms % interval_ms) / 1000, UTC)


def _utc(value: Any) -> datetime:
    return pd.Timestamp(value).tz_convert("UTC").to_pydatetime()


@contextlib.contextmanager
def _open_sources(
    settings: Settings, source: str, stack: contextlib.ExitStack
) -> Iterator[_Sources]:
    from hedgeflow.sources.eodhd import EodhdClient

    if source == "simulator":
        from hedgeflow.sources.factory import SIMULATOR_TOKEN
        from hedgeflow.sources.simulator import Simulator

        rest = stack.enter_context(Simulator(seed=settings.seed, tokens=(SIMULATOR_TOKEN,)))
        network = dataclasses.replace(settings.network, base_url=rest.base_url)
        token = SIMULATOR_TOKEN
        spec = SourceSpec("eodhd", network, settings.seed, public_token=token)
    else:
        from hedgeflow.tasks.secrets import eodhd_token

        network = settings.network
        token = eodhd_token(network)
        spec = SourceSpec("eodhd", network, settings.seed)
    client = stack.enter_context(EodhdClient(token, network))
    yield _Sources(
        spec, rest_fetcher(client, settings.interval), token, network.ws_url, client.fetch_splits
    )


def _missing_from(warehouse: Warehouse, symbol: str, interval: str, window: Window) -> datetime:
    """Where the stored bars of ``window`` need topping up: the window's start when
    nothing is stored, else the start of the day of the last stored bar."""
    stored = warehouse.read_bars(symbol, interval, window.start, window.end)
    if stored.empty:
        return window.start
    last = pd.Timestamp(stored["ts"].iloc[-1]).floor("D").to_pydatetime()
    return max(window.start, last)


def _run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, in a helper thread when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="hedgeflow-live")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: T = box["result"]
    return result


@flow(name="live", task_runner=thread_pool())
def live(
    source: Annotated[
        LiveSource, Doc("Feeds: {choices} (eodhd needs the EODHD token)")
    ] = "simulator",
    mode: Annotated[
        LiveMode, Doc("{choices}: WebSocket ticks built into bars, or REST bars")
    ] = "ws",
    speed: Annotated[
        float, Doc("Simulated market seconds per wall second (simulator only)")
    ] = 300.0,
    duration: Annotated[
        float | None,
        Doc("Wall seconds to run", empty="until the run is cancelled", empty_title="forever"),
    ] = None,
    start: Annotated[
        datetime | None,
        Doc(
            "Start of the simulated clock, UTC (simulator only)",
            empty="the open of the last complete US session",
            detail="Or where the continued run stopped, whichever is later.",
            empty_title="last session",
        ),
    ] = None,
    fresh: Annotated[bool, Doc("Start a new live run instead of continuing the last")] = False,
    interval: Annotated[IntervalName | None, INTERVAL_DOC] = None,
    agents: Annotated[list[AgentParam] | None, AGENTS_DOC] = None,
    status_every: Annotated[float, Doc("Wall seconds between status updates")] = 2.0,
    max_silence: Annotated[
        float | None,
        Doc(
            "Wall seconds without a tick before the run stops degraded (0: no limit)",
            "live.max_silence",
        ),
    ] = None,
    allow_short: Annotated[bool | None, ALLOW_SHORT_DOC] = None,
) -> LiveSummary:
    """Live signals and paper trades for the configured agents (see the module doc).

    ``speed``: simulated market seconds per wall second (simulator only);
    ``duration``: wall seconds to run (None: until stopped); ``start``: the simulated
    clock's start (simulator only); ``fresh``: start a new live run instead of
    continuing the last one; ``agents`` replaces the configured agents;
    ``max_silence``: wall seconds without a tick before the run stops degraded (0: no
    limit; default: the ``[live] max_silence`` setting)."""
    if source not in ("simulator", "eodhd"):
        raise InvalidInputError(f"source must be simulator or eodhd, got {source!r}")
    if mode not in ("ws", "poll"):
        raise InvalidInputError(f"mode must be ws or poll, got {mode!r}")
    if not (0 < speed <= 1_000_000):
        raise InvalidInputError(f"speed must be in (0, 1000000], got {speed}")
    if duration is not None and not duration > 0:
        raise InvalidInputError(f"duration must be > 0 seconds, got {duration}")
    if not 0.05 <= status_every <= 3600:
        raise InvalidInputError(f"status_every must be in [0.05, 3600], got {status_every}")
    overrides: dict[str, Any] = {}
    if interval:
        overrides["interval"] = interval
    if max_silence is not None:
        overrides["live"] = {"max_silence": max_silence}
    if allow_short is not None:  # every agent's default; an agent's own risk still wins
        overrides["risk"] = {"allow_short": allow_short}
    settings = load_settings(overrides=overrides or None, agents=agents_mapping(agents))
    if not settings.agents:
        raise InvalidInputError("no agents configured")
    # Outside the streaming loop every warehouse call waits as long as the backlog may.
    warehouse = Warehouse(settings.home, lock_timeout=settings.live.drain_limit)
    lock = acquire_live_lock(warehouse.paths)
    try:
        return _live_locked(
            settings, warehouse, lock, source, mode, speed, duration, start, fresh, status_every
        )
    finally:
        lock.release()


def _live_locked(
    settings: Settings,
    warehouse: Warehouse,
    lock: LiveLock,
    source: str,
    mode: str,
    speed: float,
    duration: float | None,
    start: datetime | None,
    fresh: bool,
    status_every: float,
) -> LiveSummary:
    interval_ = settings.interval
    interval_ms = interval_seconds(interval_) * 1000
    log = run_logger()
    if lock.previous.get("pid"):
        log.warning(
            "live: taking over from a live runner that died (pid %s, run %s)",
            lock.previous.get("pid"),
            lock.previous.get("run_id"),
        )
    replayed = store_live_backlog(warehouse, settings.live.drain_limit)

    configs = {a.name: _agent_config(a, settings) for a in settings.agents}
    prev = None if fresh else _previous_run(warehouse)
    prev_agents: dict[str, Any] = {}
    if prev is not None and prev["params"].get("source") == source:
        prev_agents = {
            name: entry
            for name, entry in dict(prev["params"].get("agents") or {}).items()
            if name in configs and entry.get("config") == configs[name]
        }
    run_id = str(prev["run_id"]) if prev_agents and prev is not None else current_run_id()
    params: dict[str, Any] = {
        "source": source,
        "mode": mode,
        "speed": speed if source == "simulator" else 1.0,
        "interval": interval_,
        "adjust_splits": settings.adjust_splits,  # how the warm-up history was read
        "flow_run_id": current_run_id(),
        # a continued agent keeps its windows: a kill before step 3 records them again must
        # not leave a record the next restart cannot continue
        "agents": {
            name: {
                "config": cfg,
                **{k: v for k, v in prev_agents.get(name, {}).items() if k != "config"},
            }
            for name, cfg in configs.items()
        },
    }
    lock.update(run_id=run_id)
    _close_dead_run(warehouse, lock.previous, run_id)
    warehouse.start_run(run_id, "live", params, code_version())
    began = time.monotonic()
    summary: LiveSummary | None = None
    try:
        summary = _live_body(
            settings, warehouse, run_id, params, prev_agents, source, mode, speed, duration,
            start, status_every, interval_ms,
        )  # fmt: skip
    except BaseException as exc:
        # a warehouse still locked: the run stays `running`, the next start resumes it
        mark_run_ended(warehouse, run_id, exc)
        raise
    summary.seconds = time.monotonic() - began
    summary.journal["replayed"] = replayed
    status, reason = _verdict(summary)
    if shutdown_reason() is not None:  # SIGINT / SIGTERM: stopped cleanly, on request
        status, reason = "cancelled", shutdown_reason()
    headline: dict[str, Any] = {
        "bars": sum(int(a["bars"]) for a in summary.agents),
        "fills": sum(int(a["fills"]) for a in summary.agents),
        "agents": len(summary.agents),
        "ticks": summary.feed.get("ticks", 0),
        "journal": summary.journal,
    }
    if summary.notify:
        headline["notify"] = summary.notify
    if reason:
        headline["reason"] = reason
    warehouse.finish_run(run_id, status, headline, reason=reason)
    summary.status, summary.reason = status, reason
    (log.info if status == "completed" else log.warning)(
        "live run %s stopped after %.0f s: %d bars, %d fills, status %s%s",
        run_id,
        summary.seconds,
        headline["bars"],
        headline["fills"],
        status,
        f" ({reason})" if reason else "",
    )
    return summary


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _verdict(summary: LiveSummary) -> tuple[str, str | None]:
    return live_verdict(
        summary.mode, int(summary.feed.get("ticks", 0)), summary.problem, summary.seconds
    )


def _close_dead_run(warehouse: Warehouse, previous: dict[str, Any], run_id: str) -> None:
    """A dead runner's run that this runner does not continue: mark it failed."""
    dead = previous.get("run_id")
    if not dead or dead == run_id or not warehouse.db_path.exists():
        return
    row = warehouse.get_run(str(dead))
    if row is not None and row["status"] == "running":
        warehouse.finish_run(
            str(dead),
            "failed",
            {"reason": f"its runner (pid {previous.get('pid')}) died; run {run_id} took over"},
        )


def _live_body(
    settings: Settings,
    warehouse: Warehouse,
    run_id: str,
    params: dict[str, Any],
    prev_agents: dict[str, Any],
    source: str,
    mode: str,
    speed: float,
    duration: float | None,
    start: datetime | None,
    status_every: float,
    interval_ms: int,
) -> LiveSummary:
    log = run_logger()
    interval_ = settings.interval
    equity0 = settings.portfolio.initial_equity

    # 1. Restore the agents the run already has.
    live_agents: dict[str, LiveAgent] = {}
    resumed: list[str] = []
    windows: dict[str, tuple[datetime, datetime]] = {}
    for agent in settings.agents:
        entry = prev_agents.get(agent.name)
        if not entry or "warmup_start" not in entry:
            continue
        w_start, w_end = _utc(entry["warmup_start"]), _utc(entry["live_start"])
        history = warehouse.read_bars(
            agent.symbol, interval_, w_start, w_end, adjusted=settings.adjust_splits
        )
        try:
            restored = restore_agent(
                warehouse, agent, settings.costs_for(agent), equity0, interval_, history, run_id
            )
        except LookupError as exc:
            log.warning("agent %s: cannot continue its record (%s); fresh start", agent.name, exc)
            restored = None
        if restored is None:
            continue
        live_agents[agent.name] = restored.agent
        resumed.append(agent.name)
        windows[agent.name] = (w_start, w_end)

    # 2. Where the feed clock starts.
    if source == "simulator":
        begin = start if start is not None else last_session_open()
        begin = _floor(begin, interval_ms)
        if start is None and live_agents:
            resume = min(
                pd.Timestamp(a.last_ts).to_pydatetime() + timedelta(milliseconds=interval_ms)
                for a in live_agents.values()
                if a.last_ts is not None
            )
            begin = max(begin, resume)
    else:
        begin = datetime.now(UTC)
    history_end = _floor(begin, interval_ms)

    with contextlib.ExitStack() as stack, _open_sources(settings, source, stack) as sources:
        # 3. Warm the other agents up on the stored lookback (ingesting what is missing).
        fresh_agents = [a for a in settings.agents if a.name not in live_agents]
        if fresh_agents:
            window = Window(history_end - timedelta(days=settings.lookback_days), history_end)
            symbols = list(dict.fromkeys(a.symbol for a in fresh_agents))
            since = min(_missing_from(warehouse, s, interval_, window) for s in symbols)
            if since < window.end:
                _, failed = ingest_window(
                    symbols, interval_, Window(since, window.end), sources.spec,
                    settings.without_secrets(), run_id,
                )  # fmt: skip
                if failed:
                    detail = "; ".join(f"{s}: {e}" for s, e in failed.items())
                    raise SourceError(f"live warm-up: ingest failed for {detail}")
            for agent in fresh_agents:
                live_agent = LiveAgent.from_settings(
                    agent, settings.costs_for(agent), equity0, interval_,
                    settings.minimums_for(agent),
                )  # fmt: skip
                history = warehouse.read_bars(
                    agent.symbol,
                    interval_,
                    window.start,
                    window.end,
                    adjusted=settings.adjust_splits,
                )
                report = live_agent.warm_up(history, "shadow")
                if not report.ready:
                    log.warning(
                        "agent %s: %d history bars, fewer than the %d its indicators need",
                        agent.name,
                        report.bars,
                        live_agent.warmup_bars,
                    )
                live_agents[agent.name] = live_agent
                windows[agent.name] = (window.start, window.end)
        agents_ = [live_agents[a.name] for a in settings.agents]
        for warning in announce_splits(agents_, sources.splits, begin):
            log.warning("%s", warning)
        # asked again on every new New York day of the live clock (a background thread)
        splits_refresh = SplitRefresh(
            agents_, sources.splits, begin, lambda warning: log.warning("%s", warning)
        )
        for name, (w_start, w_end) in windows.items():
            params["agents"][name].update(
                warmup_start=w_start.isoformat(), live_start=w_end.isoformat()
            )
        params["start"] = begin.isoformat()
        params["resumed"] = resumed
        warehouse.start_run(run_id, "live", params, code_version())  # records the windows
        log.info(
            "live run %s: %s %s from %s (%s), agents %s%s",
            run_id,
            source,
            mode,
            begin.isoformat(),
            f"x{speed:g}" if source == "simulator" else "wall clock",
            ", ".join(a.name for a in agents_),
            f" (continuing {', '.join(resumed)})" if resumed else "",
        )

        # Every step goes to the run's journal, then one writer thread stores the steps
        # in order while the loop reads ticks (waiting out a locked warehouse).
        # Orders and fills also go to the notification outbox (same transaction); the
        # notifier delivers them in the background once journaled.
        notifier = open_notifier(settings.notify)
        sink = open_live_sink(warehouse, run_id, notifier)
        resume_notifications(warehouse, notifier)

        last_log = [time.monotonic()]

        def on_status(status: RuntimeStatus) -> None:
            status.backlog = sink.pending if sink.busy_for > 0 else 0
            if splits_refresh.on_clock(status.clock):
                log.info("live: asking for the splits ahead of %s", status.clock.date())
            progress_log.info(
                "live status",
                extra={"hedgeflow_event": "live_status", "hedgeflow_status": status},
            )
            now = time.monotonic()
            if now - last_log[0] >= LOG_EVERY_SECONDS:
                last_log[0] = now
                log.info(
                    "live at %s: %s",
                    status.clock.isoformat(),
                    "; ".join(
                        f"{a.name} {a.bars} bars {a.fills} fills "
                        + (f"{a.skipped} skipped " if a.skipped else "")
                        + f"equity {a.equity:,.2f}"
                        for a in status.agents
                    ),
                )

        rate = speed if source == "simulator" else 1.0
        # the time-flush grace is in feed time: against the fast simulator it is one
        # wall second, so ticks still in flight on a loaded machine are not late
        grace = max(2.0, 1.0 * speed) if source == "simulator" else 2.0
        ended = False
        try:
            final = _stream(
                agents_, settings, sources, stack, source, mode, begin, rate, grace, sink,
                on_status, status_every, duration,
            )  # fmt: skip
            ended = True
        finally:
            # a normal end delivers what is pending (bounded; at most 2 s when a stop was
            # requested: Ctrl-C / SIGTERM stop promptly); the rest stays pending
            drain = settings.notify.drain_seconds if ended else 0.0
            if shutdown_reason() is not None:
                drain = min(drain, 2.0)
            notified = stop_notifier(notifier, drain, sink, settings.live.drain_limit)
            if sink.pending:
                log.info("live: storing the last %d step(s) of the journal", sink.pending)
            sink.close(settings.live.drain_limit)
    return LiveSummary(
        run_id=run_id,
        status="running",
        initial_equity=settings.portfolio.initial_equity,
        source=source,
        mode=mode,
        speed=rate,
        start=begin,
        end=final.clock.to_pydatetime(),
        resumed=resumed,
        agents=[dataclasses.asdict(a) for a in final.agents],
        feed={
            "ticks": final.ticks,
            "bars": final.bars,
            "rest_bars": final.rest_bars,
            "late_ticks": final.late_ticks,
            "duplicate_ticks": final.duplicate_ticks,
            "skipped_ticks": final.skipped_ticks,
            "bad_frames": final.bad_frames,
            "reconnects": final.reconnects,
            "repair_failures": final.repair_failures,
            "idle_connections": final.idle_connections,
        },
        problem=final.problem,
        journal={
            "stored": sink.stored,
            "busy_seconds": round(sink.busy_seconds, 1),
            "max_backlog": sink.max_backlog,
        },
        notify=notified,
    )


def _stream(
    agents: list[LiveAgent],
    settings: Settings,
    sources: _Sources,
    stack: contextlib.ExitStack,
    source: str,
    mode: str,
    begin: datetime,
    rate: float,
    grace: float,
    sink: Any,
    on_status: Any,
    status_every: float,
    duration: float | None,
) -> RuntimeStatus:
    from hedgeflow.live.poll import PollRuntime
    from hedgeflow.live.runtime import LiveRuntime

    begin_ms = int(pd.Timestamp(begin).value // 1_000_000)
    runtime: LiveRuntime | PollRuntime
    if mode == "poll":
        clock = SimulatedClock(begin_ms, rate) if source == "simulator" else None
        runtime = PollRuntime(
            agents,
            interval=settings.interval,
            sink=sink,
            fetch_bars=sources.fetch,
            clock_ms=clock,
            clock_rate=rate,
            poll_delay_seconds=grace,
            on_status=on_status,
            status_every=status_every,
        )
    else:
        ws_url, clock_ms = sources.ws_url, None
        if source == "simulator":
            from hedgeflow.sources.ws_simulator import WsSimulator

            wss = stack.enter_context(
                WsSimulator(seed=settings.seed, speed=rate, start=begin, tokens=(sources.token,))
            )
            ws_url, clock_ms = wss.ws_url, wss.now_ms
        runtime = LiveRuntime(
            agents,
            interval=settings.interval,
            sink=sink,
            ws_url=ws_url,
            token=sources.token,
            fetch_bars=sources.fetch,
            clock_ms=clock_ms,
            clock_rate=rate,
            grace_seconds=grace,
            on_status=on_status,
            status_every=status_every,
            max_silence=settings.live.max_silence or None,
            max_idle_connections=settings.live.max_idle_connections,
            extended_hours=settings.live.extended_hours,
            calendars=settings.calendars,
        )
    try:
        with _sigterm_stops_cleanly():
            return _run_coroutine(runtime.run(duration, stop=SHUTDOWN))
    except KeyboardInterrupt:  # Ctrl-C without the CLI's handler: a clean stop too
        return runtime.status()


@contextlib.contextmanager
def _sigterm_stops_cleanly() -> Iterator[None]:
    """While streaming, SIGTERM (a terminal's kill, a Prefect worker cancelling the run)
    stops the run cleanly like Ctrl-C: the last bars stored, the run ``cancelled``.
    Prefect's own handler would raise TerminationSignal in the middle of the event loop.
    A second SIGTERM stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: object) -> None:
        if SHUTDOWN.is_set():
            raise KeyboardInterrupt
        request_shutdown("stopped by SIGTERM", signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
