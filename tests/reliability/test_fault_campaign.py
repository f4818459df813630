"""Fault campaign: the real EodhdClient and the real ingest task body
(``hedgeflow.tasks.ingest.ingest_symbol_body``) against the simulator, through real sockets,
writing to a real warehouse.

Every run must end one of three ways, and nothing else:

- **completed exact**: the stored bars of the range equal ``SyntheticMarket.fetch_bars``
  exactly, stored once, bars outside the range untouched;
- **failed clean**: a ``SourceError`` whose message names the symbol or the HTTP
  status (never the token), and the warehouse byte-for-byte as before (the bars that
  were there before the run are untouched); re-running without faults converges;
- **completed with a vendor gap**: a chunk answered ``[]`` (HTTP 200, an empty array:
  what EODHD sends for a range without bars, so indistinguishable from a holiday);
  the run flags exactly that chunk's range and keeps the bars stored there (DESIGN.md
  convention 8: an empty answer is never stored as "no bars"), the rest of the range
  is replaced; a re-run without the fault converges.

One fetch makes many requests: the client's ``max_request_days`` is 1 day, so a 6-day
window is 6 requests (20 in the random campaign). ``sleep`` is injected, so retries
never wait; ``rest_timeout`` is small so timeouts cost half a second.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

import hedgeflow.tasks.ingest as ingest_task
from hedgeflow.config import NetworkSettings
from hedgeflow.errors import PermanentSourceError, SourceError, TransientSourceError
from hedgeflow.sources.eodhd import EodhdClient
from hedgeflow.sources.simulator import TRANSIENT_KINDS, Simulator
from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.tasks.ingest import IngestResult, SourceSpec, ingest_symbol_body
from hedgeflow.warehouse import Warehouse
from tests.reliability.conftest import Tally, full_campaign

pytestmark = pytest.mark.reliability

SEED = 7
TOKEN = "campaign-tok-7d1e0c55a9"
MARKET = SyntheticMarket(SEED)
OLD_MARKET = SyntheticMarket(99)  # "yesterday's" bars: same timestamps, other prices
SYMBOLS = ("AAPL.US", "EURUSD.FOREX", "BTC-USD.CC")
INTERVAL = "5m"
# 6 one-day chunks, across a month boundary (two lake partitions)
START = datetime(2026, 10, 28, tzinfo=UTC)
END = datetime(2026, 11, 3, tzinfo=UTC)
MAX_RETRIES = 3  # 4 attempts per chunk
REST_TIMEOUT = 0.5
PERMANENT_KINDS = ("401", "403", "404")


def _utc(seconds: int) -> pd.Timestamp:
    return pd.Timestamp(seconds, unit="s", tz="UTC")


# --------------------------------------------------------------------------- plumbing


class ScriptedSession(requests.Session):
    """A requests session that queues the scripted faults in the simulator just before
    the first request of chunk k (chunks numbered in the order they are requested)."""

    def __init__(self, sim: Simulator, script: dict[int, list[str]]) -> None:
        super().__init__()
        self.sim = sim
        self.script = script
        self.chunks: list[str] = []

    def get(self, url: str | bytes, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        frm = str((kwargs.get("params") or {}).get("from"))
        if frm not in self.chunks:
            self.chunks.append(frm)
            for kind in self.script.get(len(self.chunks) - 1, []):
                self.sim.faults.inject(kind, 1, retry_after=2.0)
        return super().get(url, **kwargs)


@dataclass
class ClientHook:
    """Replaces ``hedgeflow.tasks.ingest.make_source`` so the task body builds the real client with
    a 1-day request limit, an injected sleep and a scripted session."""

    sim: Simulator
    script: dict[int, list[str]] = field(default_factory=dict)
    sleeps: list[float] = field(default_factory=list)

    def __call__(self, name: str, network: NetworkSettings, seed: int, token: str | None = None):
        assert name == "eodhd" and token == TOKEN
        return EodhdClient(
            token,
            network,
            max_request_days={"1m": 1, "5m": 1, "1h": 1},
            sleep=self.sleeps.append,
            rng=random.Random(0),
            session=ScriptedSession(self.sim, self.script),
        )


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(seed=SEED, tokens=(TOKEN,), timeout_sleep=2.0, market=MARKET) as s:
        yield s


@pytest.fixture
def hook(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClientHook]:
    sim.faults.clear()
    sim.reset_log()
    h = ClientHook(sim)
    monkeypatch.setattr(ingest_task, "make_source", h)
    yield h
    sim.faults.clear()


def _spec(sim: Simulator) -> SourceSpec:
    network = NetworkSettings(
        base_url=sim.base_url, max_retries=MAX_RETRIES, rest_timeout=REST_TIMEOUT
    )
    return SourceSpec("eodhd", network, SEED, public_token=TOKEN)


def _lake_digest(home: Path) -> dict[str, str]:
    lake = home / "lake" / "bars"
    return {
        str(p.relative_to(lake)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(lake.rglob("*"))
        if p.is_file()
    }


@dataclass
class Scene:
    """A warehouse holding old bars around and inside [start, end) for one symbol."""

    home: Path
    symbol: str
    start: datetime
    end: datetime

    @property
    def wh(self) -> Warehouse:
        return Warehouse(self.home, lock_timeout=20)

    @property
    def old_start(self) -> datetime:
        return self.start - timedelta(days=2)

    @property
    def old_end(self) -> datetime:
        return self.end + timedelta(days=1)

    def seed_old_bars(self) -> pd.DataFrame:
        old = OLD_MARKET.fetch_bars(self.symbol, INTERVAL, self.old_start, self.old_end)
        self.wh.write_bars(old, self.symbol, INTERVAL, self.old_start, self.old_end, "old")
        return old

    def expected(self) -> pd.DataFrame:
        return MARKET.fetch_bars(self.symbol, INTERVAL, self.start, self.end)

    def run(self, sim: Simulator) -> tuple[IngestResult | None, BaseException | None]:
        run_id = str(uuid.uuid4())
        self.wh.start_run(run_id, "ingest", {"symbol": self.symbol}, "reliability")
        try:
            result = ingest_symbol_body(
                self.symbol, INTERVAL, self.start, self.end, _spec(sim), self.home, run_id
            )
        except SourceError as exc:
            self.wh.finish_run(run_id, "failed", {"error": str(exc)})
            return None, exc
        self.wh.finish_run(run_id, "completed", None)
        return result, None

    def stored(self, start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
        return self.wh.read_bars(self.symbol, INTERVAL, start, end)

    def assert_no_duplicates(self) -> None:
        rows = self.wh.query(
            "select count(*) as n, count(distinct ts) as d from bars where symbol = ?",
            [self.symbol],
        )
        assert int(rows.at[0, "n"]) == int(rows.at[0, "d"]), "duplicate (symbol, ts) in bars"

    def assert_exact(self, old: pd.DataFrame, expected: pd.DataFrame | None = None) -> None:
        """The range holds exactly ``expected``; old bars outside it are untouched."""
        expected = self.expected() if expected is None else expected
        pd.testing.assert_frame_equal(self.stored(self.start, self.end), expected)
        ts = old["ts"]
        outside = old[(ts < pd.Timestamp(self.start)) | (ts >= pd.Timestamp(self.end))]
        stored_outside = pd.concat(
            [self.stored(None, self.start), self.stored(self.end, None)], ignore_index=True
        )
        pd.testing.assert_frame_equal(stored_outside, outside.reset_index(drop=True))
        self.assert_no_duplicates()
        quarantined = self.wh.query("select count(*) as n from quarantine")
        assert int(quarantined.at[0, "n"]) == 0


def _check_error(exc: BaseException, symbol: str) -> str:
    """A clear error: a SourceError naming the symbol or the HTTP status, no token."""
    assert isinstance(exc, SourceError), repr(exc)
    text = f"{exc} {exc!r}"
    assert TOKEN not in text
    if isinstance(exc, TransientSourceError):
        assert symbol in str(exc) and "failed after" in str(exc), str(exc)
        return "failed clean (transient, retries exhausted)"
    assert isinstance(exc, PermanentSourceError), repr(exc)
    assert "HTTP 40" in str(exc), str(exc)
    return "failed clean (permanent, not retried)"


def _gap_expected(
    scene: Scene, log: list[Any], old: pd.DataFrame, result: IngestResult | None
) -> tuple[pd.DataFrame, int]:
    """The expected bars when some chunks' final answer was the ``empty`` fault: the
    stored (old) bars of those chunks are kept, everything else is the vendor's. Also
    checks that the run flagged each such chunk, and nothing that had bars."""
    expected = scene.expected()
    last: dict[str, Any] = {}
    for rec in log:
        if rec.path.startswith("/api/intraday/") and rec.ticker == scene.symbol:
            last[rec.params["from"]] = rec
    flagged = set(result.empty_ranges) if result is not None else set()
    gaps = 0
    for rec in last.values():
        lo, hi = _utc(int(rec.params["from"])), _utc(int(rec.params["to"]) + 1)
        if rec.fault == "empty":
            assert (lo.to_pydatetime(), hi.to_pydatetime()) in flagged, (lo, hi, flagged)
            inside = (expected["ts"] >= lo) & (expected["ts"] < hi)
            gaps += int(inside.sum() > 0)
            kept = old[(old["ts"] >= lo) & (old["ts"] < hi)]
            expected = pd.concat([expected[~inside], kept]).sort_values("ts")
    for lo, hi in flagged:  # a flagged range without the fault: the market was closed
        vendor = scene.expected()
        assert vendor[(vendor["ts"] >= lo) & (vendor["ts"] < hi)].empty or any(
            rec.fault == "empty" and _utc(int(rec.params["from"])) == lo for rec in last.values()
        ), (lo, hi)
    return expected.reset_index(drop=True), gaps


def _count_faults(tally: Tally, log: list[Any]) -> None:
    for rec in log:
        if rec.fault:
            tally.fault(rec.fault)
    tally.note("requests", tally.notes.get("requests", 0) + len(log))


# --------------------------------------------------------------------------- scenarios

# (name, {chunk: [fault kinds queued on its first request(s)]}, expected outcome)
SCRIPTS: list[tuple[str, dict[int, list[str]], str]] = []
for _kind in TRANSIENT_KINDS:
    SCRIPTS += [
        (f"{_kind} x1", {0: [_kind]}, "exact"),
        (f"{_kind} x{MAX_RETRIES} mid-range", {2: [_kind] * MAX_RETRIES}, "exact"),
        (f"{_kind} x{MAX_RETRIES + 1} exhausts", {3: [_kind] * (MAX_RETRIES + 1)}, "transient"),
    ]
for _kind in PERMANENT_KINDS:
    SCRIPTS.append((f"{_kind} mid-range", {1: [_kind]}, "permanent"))
EVERY_CHUNK = dict(enumerate([["429"], ["500"], ["503"], ["truncated"], ["html"], ["drop"]]))
SCRIPTS += [
    ("empty answer mid-range", {1: ["empty"]}, "gap"),
    ("429 -> truncated -> 500 then ok", {0: ["429", "truncated", "500"]}, "exact"),
    (
        "html+drop+503, timeout+html502",
        {1: ["html", "drop", "503"], 4: ["timeout", "html502"]},
        "exact",
    ),
    ("429 -> 500 -> 401", {2: ["429", "500", "401"]}, "permanent"),
    ("4 mixed on the last chunk", {5: ["truncated", "503", "html", "drop"]}, "transient"),
    ("empty first chunk, 500 x2 later", {0: ["empty"], 3: ["500", "500"]}, "gap"),
    ("one fault on every chunk", EVERY_CHUNK, "exact"),
]


@pytest.mark.parametrize(
    ("name", "script", "expect"), SCRIPTS, ids=[s[0].replace(" ", "_") for s in SCRIPTS]
)
def test_scripted_faults_through_ingest(
    name: str,
    script: dict[int, list[str]],
    expect: str,
    sim: Simulator,
    hook: ClientHook,
    tmp_path: Path,
    tally: Tally,
) -> None:
    tally.describe("faults", f"scripted: {name}")
    symbol = SYMBOLS[sum(map(ord, name)) % len(SYMBOLS)]
    scene = Scene(tmp_path / "home", symbol, START, END)
    old = scene.seed_old_bars()
    before = _lake_digest(scene.home)
    hook.script = script

    result, error = scene.run(sim)
    tally.trial()
    log = sim.request_log
    _count_faults(tally, log)
    injected = sum(len(v) for v in script.values())
    assert sum(1 for r in log if r.fault) == injected

    if expect in ("exact", "gap"):
        assert error is None, f"{name}: expected success, got {error!r}"
        expected, gaps = _gap_expected(scene, log, old, result)
        assert gaps == (0 if expect == "exact" else sum(v == ["empty"] for v in script.values()))
        scene.assert_exact(old, expected)
        tally.outcome("completed exact" if expect == "exact" else "completed with vendor gap")
        if "429" in script.get(0, [])[:1]:
            assert hook.sleeps[0] == 2.0  # Retry-After honoured
        n_empty = sum(v.count("empty") for v in script.values())
        assert len(log) >= 6 + injected - n_empty
    else:
        assert error is not None, f"{name}: expected a failure"
        kind = _check_error(error, symbol)
        assert ("transient" if expect == "transient" else "permanent") in kind
        assert _lake_digest(scene.home) == before, "a failed run changed the lake"
        pd.testing.assert_frame_equal(scene.stored(), old)
        if expect == "permanent":  # not retried: nothing asked after the permanent answer
            assert log[-1].fault in PERMANENT_KINDS
        tally.outcome(kind)

    if expect != "exact":  # re-run without faults converges
        hook.script = {}
        sim.reset_log()
        _, again = scene.run(sim)
        tally.trial()
        assert again is None, repr(again)
        scene.assert_exact(old)
        tally.outcome("re-run converged")
    assert all(s <= NetworkSettings().max_backoff_sec for s in hook.sleeps)


def _random_campaign(
    seeds: range, sim: Simulator, hook: ClientHook, tmp: Path, tally: Tally
) -> None:
    start = datetime(2026, 9, 1, tzinfo=UTC)
    end = start + timedelta(days=20)  # 20 requests per fetch
    kinds = (*TRANSIENT_KINDS, "empty")
    tally.note("rate", 0.3)
    tally.note("kinds", list(kinds))
    tally.note("requests_per_fetch", 20)
    for seed in seeds:
        for i, symbol in enumerate(SYMBOLS):
            scene = Scene(tmp / f"s{seed}-{i}", symbol, start, end)
            old = scene.seed_old_bars()
            before = _lake_digest(scene.home)
            sim.reset_log()
            sim.faults.random(0.3, kinds, seed=seed * 10 + i)
            result, error = scene.run(sim)
            tally.trial()
            log = sim.request_log
            _count_faults(tally, log)
            sim.faults.clear()
            if error is None:
                expected, gaps = _gap_expected(scene, log, old, result)
                scene.assert_exact(old, expected)
                tally.outcome("completed with vendor gap" if gaps else "completed exact")
                if not gaps:
                    continue
            else:
                tally.outcome(_check_error(error, symbol))
                assert _lake_digest(scene.home) == before, "a failed run changed the lake"
                pd.testing.assert_frame_equal(scene.stored(), old)
            sim.reset_log()
            _, again = scene.run(sim)
            tally.trial()
            assert again is None, repr(again)
            scene.assert_exact(old)
            tally.outcome("re-run converged")


def test_random_faults_30_percent(
    sim: Simulator, hook: ClientHook, tmp_path: Path, tally: Tally
) -> None:
    """30% of requests fail at random (every transient kind, plus empty answers), seeded."""
    if full_campaign():
        pytest.skip("the full campaign (slow) runs more seeds")
    tally.describe("faults", "random 30% faults, 3 symbols x 20-request fetches, seed 0")
    _random_campaign(range(1), sim, hook, tmp_path, tally)


@pytest.mark.slow
def test_random_faults_30_percent_full(
    sim: Simulator, hook: ClientHook, tmp_path: Path, tally: Tally
) -> None:
    tally.describe("faults", "random 30% faults, 3 symbols x 20-request fetches, seeds 0-19")
    _random_campaign(range(20), sim, hook, tmp_path, tally)


def test_retry_after_and_backoff_delays(
    sim: Simulator, hook: ClientHook, tmp_path: Path, tally: Tally
) -> None:
    """The injected sleep sees Retry-After for 429 and capped jittered backoff otherwise."""
    tally.describe("faults", "retry delays: Retry-After honoured, backoff capped")
    scene = Scene(tmp_path / "home", "BTC-USD.CC", START, END)
    old = scene.seed_old_bars()
    hook.script = {0: ["429", "500", "429"], 3: ["503", "drop"]}
    _, error = scene.run(sim)
    tally.trial()
    _count_faults(tally, sim.request_log)
    assert error is None
    scene.assert_exact(old)
    assert len(hook.sleeps) == 5
    assert hook.sleeps[0] == 2.0 and hook.sleeps[2] == 2.0
    backoff = NetworkSettings().retry_backoff_sec
    assert 0 <= hook.sleeps[1] <= backoff * 2
    assert 0 <= hook.sleeps[3] <= backoff and 0 <= hook.sleeps[4] <= backoff * 2
    tally.outcome("completed exact")
