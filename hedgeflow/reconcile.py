"""Live vs backtest reconciliation, as pure functions (DESIGN.md "Live notifications and
reconciliation").

A live run records the bars it traded on (``live_bars``), and its ``runs`` row keeps
every agent's settings and warm-up window (``params.agents.<name>``: ``config``,
``warmup_start``, ``live_start``). The live agent warms up in shadow mode: it is the
continuation of the backtest that starts at ``warmup_start``. So the engine, run over
the warm-up history (the lake, ``[warmup_start, live_start)``) followed by the agent's
live bars, must make exactly the live fills. :func:`reconcile_agent` does that run and
compares, fill by fill (key: the fill's bar ``ts`` and side; an entry and its exit are
the two fills of a round trip):

* ``missed_signal``: the engine fills where live did not; ``extra_signal``: the
  reverse; ``fill_price``: both fill, at different prices (or for different reasons);
  ``qty``: same price, another quantity; ``costs``: same price and quantity, another
  fee. Each of these is *unexplained*: live and the engine saw the same bars.
* ``vendor_revision`` (*explained*): the vendor's bar (the lake's ``bars``, from REST)
  for a live bar's ``ts`` differs from the bar live traded on. The engine runs a second
  time with the lake's bars in place of the live ones where the lake has them; a
  difference that run shows and the first does not is the revision's doing.

The one documented gap between the two paths: a position still open after the live
run's last bar is closed by the engine at that close (exit reason ``end``) while the
live run keeps holding it, so such a trade counts with its entry fill only. Trades the
warm-up closed before ``live_start`` are not part of the live record.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hedgeflow import columns as C
from hedgeflow import rules
from hedgeflow.columns import (
    COSTS,
    DRIFT_KINDS,
    EXTRA_SIGNAL,
    FILL_PRICE,
    FILL_QTY,
    MISSED_SIGNAL,
    VENDOR_REVISION,
)
from hedgeflow.config import CostSettings, OrderMinimums, RiskSettings
from hedgeflow.engine import EngineConfig, backtest, engine_settings
from hedgeflow.errors import InvalidInputError
from hedgeflow.market import asset_class_of
from hedgeflow.research import compute_signals
from hedgeflow.strategies import parse_params

__all__ = [
    "DRIFT_COLUMNS",
    "FILL_COLUMNS",
    "AgentReconciliation",
    "Drift",
    "LiveAgentSpec",
    "ReconcileResult",
    "compare_fills",
    "engine_fills",
    "live_agent_specs",
    "reconcile_agent",
    "revised_bars",
    "threshold_exceeded",
]

# A fill as both sides are compared: the bar it executed in, buy/sell, and its numbers.
FILL_COLUMNS: tuple[str, ...] = ("ts", "side", "qty", "price", "fee", "reason")
# Numbers equal up to this relative difference are the same (both paths compute them
# with the same rule functions; the tolerance only absorbs a storage round trip).
REL_TOL = 1e-9
ABS_TOL = 1e-12
# The columns of a ``live_drift`` row (the table adds nothing else).
DRIFT_COLUMNS: tuple[str, ...] = (
    "run_id",
    "live_run_id",
    "agent",
    "symbol",
    "trade_key",
    "ts",
    "side",
    "kind",
    "live_value",
    "engine_value",
    "explained",
    "detail",
)


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class LiveAgentSpec:
    """One agent as the live run ran it (from its ``runs.params``)."""

    name: str
    symbol: str
    strategy: str
    params: Mapping[str, Any]
    risk: RiskSettings
    costs: CostSettings
    interval: str
    initial_equity: float
    warmup_start: pd.Timestamp
    live_start: pd.Timestamp
    adjust_splits: bool = False  # the warm-up history split-adjusted (runs since splits)
    # the order minimums it traded with (None: runs before they were recorded, the
    # asset class default)
    minimums: OrderMinimums | None = None

    @property
    def config(self) -> EngineConfig:
        return EngineConfig.from_settings(
            self.risk, self.costs, asset_class_of(self.symbol), self.initial_equity, self.minimums
        )


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).as_unit("us")


def live_agent_specs(run_params: Mapping[str, Any]) -> tuple[list[LiveAgentSpec], list[str]]:
    """(the agents of a live run's ``params``, the names of those it never started:
    killed before their warm-up window was recorded). InvalidInputError names an
    agent whose recorded settings cannot be read."""
    agents = run_params.get("agents")
    if not isinstance(agents, Mapping):
        raise InvalidInputError("the live run's params name no agents")
    specs: list[LiveAgentSpec] = []
    skipped: list[str] = []
    interval = str(run_params.get("interval") or "5m")
    for name, entry in agents.items():
        if not isinstance(entry, Mapping) or "live_start" not in entry:
            skipped.append(str(name))
            continue
        try:
            cfg = dict(entry["config"])
            specs.append(
                LiveAgentSpec(
                    name=str(name),
                    symbol=str(cfg["symbol"]),
                    strategy=str(cfg["strategy"]),
                    params=dict(cfg.get("params") or {}),
                    risk=RiskSettings(**dict(cfg.get("risk") or {})),
                    costs=CostSettings(**dict(cfg.get("costs") or {})),
                    interval=str(cfg.get("interval") or interval),
                    initial_equity=float(cfg["initial_equity"]),
                    warmup_start=_utc(entry["warmup_start"]),
                    live_start=_utc(entry["live_start"]),
                    adjust_splits=bool(run_params.get("adjust_splits", False)),
                    minimums=(
                        OrderMinimums(**dict(cfg["minimums"])) if cfg.get("minimums") else None
                    ),
                )
            )
        except (KeyError, TypeError, ValueError, InvalidInputError) as exc:
            raise InvalidInputError(
                f"agent {name}: the live run's recorded settings cannot be read ({exc})"
            ) from None
    return specs, skipped


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class Drift:
    """One difference between a live fill and the engine's."""

    agent: str
    symbol: str
    ts: pd.Timestamp
    side: str
    kind: str
    live_value: float | None
    engine_value: float | None
    explained: bool
    detail: str

    @property
    def trade_key(self) -> str:
        """``<agent>-<bar ts>-<side>``: the fill both sides are compared on."""
        return f"{self.agent}-{pd.Timestamp(self.ts):%Y%m%dT%H%M%SZ}-{self.side}"


@dataclass
class AgentReconciliation:
    agent: str
    symbol: str
    live_fills: int = 0
    engine_fills: int = 0
    matched: int = 0  # fills equal on both sides
    bars: int = 0  # live bars the agent processed
    history_bars: int = 0  # warm-up bars the engine replayed first
    revised_bars: int = 0  # live bars the vendor's (lake) bars differ from
    signal_mismatches: int = 0  # live bars whose recorded signal the engine's differs from
    drifts: list[Drift] = field(default_factory=list)

    @property
    def unexplained(self) -> int:
        return sum(not d.explained for d in self.drifts)


@dataclass
class ReconcileResult:
    live_run_id: str
    agents: list[AgentReconciliation] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # agents the live run never started
    live_status: str = ""  # the live run's status (``running``: its record may still grow)

    @property
    def drifts(self) -> list[Drift]:
        return [d for a in self.agents for d in a.drifts]

    @property
    def unexplained(self) -> int:
        return sum(a.unexplained for a in self.agents)

    @property
    def explained(self) -> int:
        return len(self.drifts) - self.unexplained

    def counts(self) -> dict[str, int]:
        """Differences per class, every class named (0 when none)."""
        found = Counter(d.kind for d in self.drifts)
        return {kind: int(found.get(kind, 0)) for kind in DRIFT_KINDS}

    def frame(self, run_id: str) -> pd.DataFrame:
        """The ``live_drift`` rows of this result for reconcile run ``run_id``."""
        drifts = self.drifts
        frame = pd.DataFrame(
            {
                "run_id": [run_id] * len(drifts),
                "live_run_id": [self.live_run_id] * len(drifts),
                "agent": [d.agent for d in drifts],
                "symbol": [d.symbol for d in drifts],
                "trade_key": [d.trade_key for d in drifts],
                "ts": pd.Series(
                    [d.ts for d in drifts], dtype=pd.DatetimeTZDtype(unit="us", tz="UTC")
                ),
                "side": [d.side for d in drifts],
                "kind": [d.kind for d in drifts],
                "live_value": np.array(
                    [np.nan if d.live_value is None else d.live_value for d in drifts], float
                ),
                "engine_value": np.array(
                    [np.nan if d.engine_value is None else d.engine_value for d in drifts], float
                ),
                "explained": np.array([d.explained for d in drifts], dtype=bool),
                "detail": [d.detail for d in drifts],
            },
            columns=list(DRIFT_COLUMNS),
        )
        return frame

    def agent_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "agent": a.agent,
                "symbol": a.symbol,
                "bars": a.bars,
                "live_fills": a.live_fills,
                "engine_fills": a.engine_fills,
                "matched": a.matched,
                "revised_bars": a.revised_bars,
                "signal_mismatches": a.signal_mismatches,
                "differences": len(a.drifts),
                "unexplained": a.unexplained,
            }
            for a in self.agents
        ]


def threshold_exceeded(unexplained: int, max_unexplained: int) -> bool:
    """Whether a reconciliation should be notified: more unexplained differences than
    the ``[reconcile] max_unexplained`` setting allows."""
    return unexplained > max_unexplained


# --------------------------------------------------------------------------- compare


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def _fills_by_key(fills: pd.DataFrame, who: str) -> dict[tuple[pd.Timestamp, str], dict[str, Any]]:
    missing = [c for c in FILL_COLUMNS if c not in fills.columns]
    if missing:
        raise InvalidInputError(f"{who} fills lack columns: {', '.join(missing)}")
    out: dict[tuple[pd.Timestamp, str], dict[str, Any]] = {}
    for row in fills[list(FILL_COLUMNS)].to_dict("records"):
        key = (pd.Timestamp(row["ts"]), str(row["side"]))
        if key in out:
            raise InvalidInputError(f"{who} has two {key[1]} fills at {key[0]}")
        out[key] = row
    return out


def _describe(row: Mapping[str, Any]) -> str:
    return (
        f"{row['side']} {float(row['qty']):.10g} at {float(row['price']):.10g} "
        f"fee {float(row['fee']):.6g} ({row['reason']})"
    )


def compare_fills(
    live: pd.DataFrame,
    engine: pd.DataFrame,
    *,
    agent: str,
    symbol: str,
) -> list[Drift]:
    """The differences between two fill lists (columns :data:`FILL_COLUMNS`), fill by
    fill on (ts, side), in time order; every one unexplained (the caller attributes
    differences to vendor revisions)."""
    got = _fills_by_key(live, "live")
    exp = _fills_by_key(engine, "engine")
    out: list[Drift] = []
    for key in sorted(set(got) | set(exp), key=lambda k: (k[0], k[1] == "sell")):
        ts, side = key
        lv, ev = got.get(key), exp.get(key)
        if lv is None and ev is not None:
            out.append(
                Drift(
                    agent,
                    symbol,
                    ts,
                    side,
                    MISSED_SIGNAL,
                    None,
                    float(ev["price"]),
                    False,
                    f"engine {_describe(ev)}; live did not fill",
                )
            )
            continue
        if ev is None and lv is not None:
            out.append(
                Drift(
                    agent,
                    symbol,
                    ts,
                    side,
                    EXTRA_SIGNAL,
                    float(lv["price"]),
                    None,
                    False,
                    f"live {_describe(lv)}; the engine did not fill",
                )
            )
            continue
        assert lv is not None and ev is not None
        detail = f"live {_describe(lv)}; engine {_describe(ev)}"
        if not _same(float(lv["price"]), float(ev["price"])) or lv["reason"] != ev["reason"]:
            kind, a, b = FILL_PRICE, float(lv["price"]), float(ev["price"])
        elif not _same(float(lv["qty"]), float(ev["qty"])):
            kind, a, b = FILL_QTY, float(lv["qty"]), float(ev["qty"])
        elif not _same(float(lv["fee"]), float(ev["fee"])):
            kind, a, b = COSTS, float(lv["fee"]), float(ev["fee"])
        else:
            continue
        out.append(Drift(agent, symbol, ts, side, kind, a, b, False, detail))
    return out


# --------------------------------------------------------------------------- engine


def engine_fills(bars: pd.DataFrame, spec: LiveAgentSpec) -> pd.DataFrame:
    """The fills the engine makes over ``bars`` (history + live, sorted) that the live
    record holds: every fill of a round trip still open at ``live_start`` or opened
    after it, but the ``end`` close-out of a position open after the last bar."""
    return _engine_run(bars, spec)[0]


def _engine_run(bars: pd.DataFrame, spec: LiveAgentSpec) -> tuple[pd.DataFrame, np.ndarray]:
    """(:func:`engine_fills`, the strategy's signal at every bar)."""
    params = parse_params(spec.strategy, spec.params)
    config = spec.config
    signals = compute_signals(bars, spec.strategy, params, config.allow_short)
    result = backtest(bars, signals["signal"].to_numpy(), config)
    p = engine_settings(config)
    rows: list[tuple[Any, ...]] = []
    for t in result.trades.itertuples(index=False):
        if t.exit_ts < spec.live_start:
            continue  # closed during the warm-up: never part of the live record
        qty, entry, exit_ = float(t.qty), float(t.entry_price), float(t.exit_price)
        # a long buys to open and sells to close; a short sells to open, buys to cover
        opens, closes = ("sell", "buy") if t.side == "short" else ("buy", "sell")
        rows.append((t.entry_ts, opens, qty, entry, float(rules.fee(qty, entry, p)), "signal"))
        if t.exit_reason != "end":
            fee = float(rules.fee(qty, exit_, p))
            rows.append((t.exit_ts, closes, qty, exit_, fee, str(t.exit_reason)))
    return _fills_frame(rows), signals["signal"].to_numpy()


def _fills_frame(rows: Sequence[tuple[Any, ...]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=list(FILL_COLUMNS))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.as_unit("us")
    for col in ("qty", "price", "fee"):
        frame[col] = frame[col].astype(np.float64)
    return frame


_OHLC = list(C.PRICE_COLUMNS)


def revised_bars(live_bars: pd.DataFrame, lake_bars: pd.DataFrame) -> pd.DataFrame:
    """The live bars whose ``ts`` the lake (the vendor's REST bars) also has with other
    prices: ts, then ``live_<col>`` and ``lake_<col>`` for open, high, low, close."""
    cols = [C.TS, *_OHLC]
    if live_bars.empty or lake_bars.empty:
        return pd.DataFrame(columns=[C.TS, *(f"{s}_{c}" for s in ("live", "lake") for c in _OHLC)])
    both = live_bars[cols].merge(lake_bars[cols], on=C.TS, suffixes=("_live", "_lake"))
    differs = np.zeros(len(both), dtype=bool)
    for col in _OHLC:
        a, b = both[f"{col}_live"].to_numpy(float), both[f"{col}_lake"].to_numpy(float)
        differs |= ~np.isclose(a, b, rtol=REL_TOL, atol=ABS_TOL)
    both = both[differs].rename(
        columns={f"{c}_{s}": f"{s}_{c}" for c in _OHLC for s in ("live", "lake")}
    )
    return both.reset_index(drop=True)


def _substitute(live_bars: pd.DataFrame, revised: pd.DataFrame) -> pd.DataFrame:
    """The live bars with the vendor's prices where the vendor revised them."""
    if revised.empty:
        return live_bars
    out = live_bars.copy()
    lake = revised.set_index(C.TS)
    at = out[C.TS].isin(lake.index).to_numpy()
    for col in _OHLC:
        out.loc[at, col] = lake.loc[out.loc[at, C.TS], f"lake_{col}"].to_numpy()
    return out


def _revision_note(revised: pd.DataFrame, ts: pd.Timestamp) -> str:
    """The revised bar nearest before (or at) a fill, as text."""
    before = revised[revised[C.TS] <= ts]
    row = (before if len(before) else revised).iloc[-1 if len(before) else 0]
    changed = [
        f"{c} {row[f'live_{c}']:.10g} -> {row[f'lake_{c}']:.10g}"
        for c in _OHLC
        if not _same(float(row[f"live_{c}"]), float(row[f"lake_{c}"]))
    ]
    when = pd.Timestamp(row[C.TS]).isoformat()
    return f"bar {when} revised by the vendor ({', '.join(changed)})"


def reconcile_agent(
    spec: LiveAgentSpec,
    history: pd.DataFrame,
    live_bars: pd.DataFrame,
    live_fills: pd.DataFrame,
    lake_bars: pd.DataFrame | None = None,
    live_signals: pd.DataFrame | None = None,
) -> AgentReconciliation:
    """Re-run the engine for one agent and classify every difference with its live fills.

    ``history``: the lake's bars of ``[warmup_start, live_start)``; ``live_bars``: the
    bars the agent processed live (ts, open, high, low, close); ``live_fills``: its
    fills (:data:`FILL_COLUMNS`); ``lake_bars``: the lake's bars over the live span
    (None or empty: no vendor bars to compare with); ``live_signals``: the signals live
    recorded (ts, signal), a diagnostic: on the same live bars the engine's signals
    differ from them only when the warm-up history differs from the one live replayed
    (the lake's history revised since), which the unexplained differences then say."""
    out = AgentReconciliation(spec.name, spec.symbol)
    cols = [C.TS, *_OHLC]
    live = live_bars.sort_values(C.TS)[cols].reset_index(drop=True)
    fills = live_fills[list(FILL_COLUMNS)].reset_index(drop=True)
    out.live_fills = len(fills)
    out.bars = len(live)
    if live.empty:
        # never processed a bar: nothing to re-run; a fill would be an extra one
        out.drifts = compare_fills(fills, _fills_frame([]), agent=spec.name, symbol=spec.symbol)
        return out
    hist = history.sort_values(C.TS)[cols]
    hist = hist[hist[C.TS] < live[C.TS].iloc[0]]
    out.history_bars = len(hist)
    bars = pd.concat([hist, live], ignore_index=True)
    engine, signal = _engine_run(bars, spec)
    out.engine_fills = len(engine)
    drifts = compare_fills(fills, engine, agent=spec.name, symbol=spec.symbol)
    if live_signals is not None and len(live_signals):
        mine = pd.Series(signal[len(hist) :], index=live[C.TS].to_numpy())
        theirs = live_signals.set_index(C.TS)["signal"]
        both = mine.index.intersection(theirs.index)
        out.signal_mismatches = int((mine[both].to_numpy() != theirs[both].to_numpy()).sum())
        if out.signal_mismatches:
            note = (
                f"; {out.signal_mismatches} live signal(s) differ from the engine's on the "
                "same bars (the warm-up history may have been revised since the live run)"
            )
            drifts = [dataclasses.replace(d, detail=d.detail + note) for d in drifts]
    unexplained = {(d.ts, d.side) for d in drifts}
    revised = (
        revised_bars(live, lake_bars) if lake_bars is not None else revised_bars(live, live[:0])
    )
    out.revised_bars = len(revised)
    if len(revised):
        on_vendor = engine_fills(
            pd.concat([hist, _substitute(live, revised)], ignore_index=True), spec
        )
        for d in compare_fills(fills, on_vendor, agent=spec.name, symbol=spec.symbol):
            if (d.ts, d.side) in unexplained:
                continue  # already a difference on the bars live traded on
            drifts.append(
                Drift(
                    d.agent,
                    d.symbol,
                    d.ts,
                    d.side,
                    VENDOR_REVISION,
                    d.live_value,
                    d.engine_value,
                    True,
                    f"{d.kind} on the vendor's bars: {_revision_note(revised, d.ts)}; {d.detail}",
                )
            )
        drifts.sort(key=lambda d: (d.ts, d.side == "sell"))
    out.drifts = drifts
    out.matched = len(fills) - sum(1 for d in drifts if not d.explained and d.kind != MISSED_SIGNAL)
    return out


def markdown_summary(run_id: str, result: ReconcileResult, max_unexplained: int) -> str:
    """The reconcile run's Prefect artifact: counts per class, then per agent."""
    counts = result.counts()
    lines = [
        f"# Reconciliation of live run `{result.live_run_id}`",
        "",
        f"reconcile run `{run_id}`: **{result.unexplained} unexplained** difference(s), "
        f"{result.explained} explained by vendor revisions "
        f"(threshold `[reconcile] max_unexplained = {max_unexplained}`).",
        "",
        "| class | differences |",
        "|---|---:|",
        *(f"| {kind} | {n} |" for kind, n in counts.items()),
        "",
        "| agent | symbol | live bars | live fills | engine fills | matched | revised bars "
        "| signal mismatches | unexplained |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r['agent']} | {r['symbol']} | {r['bars']} | {r['live_fills']} | "
            f"{r['engine_fills']} | {r['matched']} | {r['revised_bars']} | "
            f"{r['signal_mismatches']} | {r['unexplained']} |"
            for r in result.agent_rows()
        ),
    ]
    if result.skipped:
        lines += ["", f"not started in the live run (no record): {', '.join(result.skipped)}"]
    return "\n".join(lines) + "\n"


def drift_table_rows(result: ReconcileResult, limit: int = 500) -> list[dict[str, Any]]:
    """The differences as rows of a table artifact (the first ``limit``)."""
    return [
        {
            "agent": d.agent,
            "ts": pd.Timestamp(d.ts).isoformat(),
            "side": d.side,
            "kind": d.kind,
            "live": d.live_value,
            "engine": d.engine_value,
            "explained": d.explained,
            "detail": d.detail,
        }
        for d in result.drifts[:limit]
    ]


def summary_lines(run_id: str, result: ReconcileResult, max_unexplained: int) -> Iterable[str]:
    """The CLI's short summary (plain text)."""
    status = f", {result.live_status}" if result.live_status else ""
    yield f"reconciled live run {result.live_run_id}{status} (reconcile run {run_id})"
    for r in result.agent_rows():
        yield (
            f"  {r['agent']:<10} {r['symbol']:<14} {r['bars']:>5} bars  "
            f"{r['live_fills']:>3} live fills  {r['engine_fills']:>3} engine fills  "
            f"{r['unexplained']} unexplained"
            + (f" ({r['signal_mismatches']} signals differ)" if r["signal_mismatches"] else "")
        )
    if result.skipped:
        yield f"  not started in the live run: {', '.join(result.skipped)}"
    counts = ", ".join(f"{k} {n}" for k, n in result.counts().items())
    yield f"differences: {counts}"
    verdict = "over" if threshold_exceeded(result.unexplained, max_unexplained) else "within"
    yield (
        f"unexplained: {result.unexplained} ({verdict} [reconcile] max_unexplained = "
        f"{max_unexplained}); explained by vendor revisions: {result.explained}"
    )
