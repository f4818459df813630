"""Nightly research tasks: one agent's backtest, the portfolio."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from hedgeflow import columns as C
from hedgeflow.config import AgentSettings, Settings
from hedgeflow.metrics import compute_metrics
from hedgeflow.portfolio import combine
from hedgeflow.research import (
    AgentResult,
    extra_indicators_json,
    params_json,
    run_agent,
    skipped_note,
)
from hedgeflow.schemas import table_columns
from hedgeflow.tasks.common import log_healed, progress_log, run_logger
from hedgeflow.warehouse import Warehouse, data_fingerprint
from hedgeflow.windows import Window

PORTFOLIO_METHODS = ("equal", "inverse_vol", "risk_parity")
PORTFOLIO_AGENT = "portfolio"
# Rows of several agents are stored in one transaction up to about this many
# signal rows (fewer transactions, bounded memory).
WRITE_BATCH_ROWS = 300_000
TRADE_METRICS = ("win_rate", "profit_factor", "exposure")


@dataclass(frozen=True)
class AgentSummary:
    agent: str
    symbol: str
    strategy: str
    asset_class: str
    metrics: dict[str, Any]
    equity: pd.DataFrame  # ts, equity
    n_bars: int
    prices: pd.DataFrame  # ts, close of the bars traded (the tearsheet's price chart)
    trades: pd.DataFrame  # engine.TRADE_COLUMNS
    bars_fingerprint: str
    skipped: pd.DataFrame  # engine.SKIPPED_COLUMNS: entries the order minimums skipped


@dataclass(frozen=True)
class PortfolioSummary:
    method: str
    metrics_by_method: dict[str, dict[str, Any]]
    weights_by_method: dict[str, dict[str, float]]
    asset_class: str  # how its metrics are annualised
    equity: pd.DataFrame  # the configured method's curve: ts, equity, drawdown


def _clean(value: Any) -> Any:
    """NaN/inf -> None so that every metric is storable and JSON-safe."""
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def clean_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: _clean(v) for k, v in metrics.items()}


def agent_tables(run_id: str, outcome: AgentResult) -> dict[str, pd.DataFrame]:
    """The warehouse rows of one agent's backtest."""
    keys = {C.RUN_ID: run_id, "agent": outcome.agent}
    stored = table_columns("signals")
    extra = [c for c in outcome.signals.columns if c not in stored]
    indicators = extra_indicators_json(outcome.signals, extra, len(outcome.signals))
    signals = outcome.signals.assign(
        **keys, symbol=outcome.symbol, **{C.EXTRA_INDICATORS: indicators}
    ).reindex(columns=list(stored))
    trades = outcome.result.trades.assign(**keys, symbol=outcome.symbol)
    skipped = outcome.result.skipped.assign(**keys, symbol=outcome.symbol)
    equity = outcome.result.equity[[C.TS, "equity", "drawdown"]].assign(**keys)
    metrics = pd.DataFrame(
        [
            {
                **keys,
                "symbol": outcome.symbol,
                "strategy": outcome.strategy,
                "params": params_json(outcome.params),
                **clean_metrics(outcome.metrics),
            }
        ]
    )
    return {
        "signals": signals,
        "trades": trades,
        "equity": equity,
        "agent_metrics": metrics,
        C.SKIPPED_ORDERS: skipped,
    }


def backtest_agent(
    agent: AgentSettings, settings: Settings, window: Window, run_id: str
) -> tuple[AgentSummary, dict[str, pd.DataFrame]]:
    """One agent's backtest and the rows it stores (not yet written)."""
    bars = Warehouse(settings.home, lock_timeout=settings.lock_timeout).read_bars(
        agent.symbol,
        settings.interval,
        window.start,
        window.end,
        on_heal=log_healed,
        adjusted=settings.adjust_splits,
    )
    outcome = run_agent(
        bars,
        agent,
        settings.costs_for(agent),
        settings.portfolio.initial_equity,
        settings.minimums_for(agent),
    )
    metrics = clean_metrics(outcome.metrics)
    run_logger().info(
        "agent %s (%s, %s): %d bars, %d trades, total return %.4f%s",
        agent.name,
        agent.symbol,
        agent.strategy,
        len(bars),
        int(metrics.get("n_trades") or 0),
        metrics.get("total_return") or 0.0,
        skipped_note(outcome.result.skipped),
    )
    summary = AgentSummary(
        agent=agent.name,
        symbol=agent.symbol,
        strategy=agent.strategy,
        asset_class=agent.asset_class,
        metrics=metrics,
        equity=outcome.result.equity[[C.TS, "equity"]].copy(),
        n_bars=len(bars),
        prices=bars[[C.TS, C.CLOSE]].copy(),
        trades=outcome.result.trades.copy(),
        bars_fingerprint=data_fingerprint({agent.symbol: bars}),
        skipped=outcome.result.skipped.copy(),
    )
    return summary, agent_tables(run_id, outcome)


@dataclass(frozen=True)
class AgentFailure:
    agent: str
    error: str


def agent_backtests_body(
    label: str, agents: list[AgentSettings], settings: Settings, window: Window, run_id: str
) -> list[AgentSummary | AgentFailure]:
    """Backtest a batch of agents, one symbol's bars in memory at a time, and store
    the batch's rows in one transaction.

    A batch of one fails its task run when the agent fails (its branch shows as
    failed in Prefect); in a larger batch each agent's failure is returned instead,
    so the other agents of the batch still publish."""
    out: list[AgentSummary | AgentFailure] = []
    rows: dict[str, list[pd.DataFrame]] = {}
    warehouse = Warehouse(settings.home, lock_timeout=settings.lock_timeout)

    def flush() -> None:
        if rows:
            frames = {table: pd.concat(parts, ignore_index=True) for table, parts in rows.items()}
            warehouse.write_results(run_id, frames)
            rows.clear()

    for agent in agents:
        try:
            summary, tables = backtest_agent(agent, settings, window, run_id)
        except Exception as exc:
            if len(agents) == 1:
                raise
            run_logger().error("agent %s failed: %s", agent.name, exc)
            out.append(AgentFailure(agent.name, f"{type(exc).__name__}: {exc}"))
            continue
        out.append(summary)
        for table, frame in tables.items():
            rows.setdefault(table, []).append(frame)
        if sum(len(f) for f in rows.get("signals", ())) >= WRITE_BATCH_ROWS:
            flush()
    flush()
    for item in out:
        if isinstance(item, AgentSummary):
            progress_log.info(
                "%s: %d trades",
                item.agent,
                int(item.metrics.get("n_trades") or 0),
                extra={"hedgeflow_event": "agent_done"},
            )
    return out


agent_backtests = task(
    name="agent-backtest",
    task_run_name="backtest-{label}",
    cache_policy=NO_CACHE,
)(agent_backtests_body)


def portfolio_asset_class(summaries: list[AgentSummary]) -> str:
    """Annualise the portfolio like its most continuous market (crypto > forex > stock)."""
    classes = {s.asset_class for s in summaries}
    for klass in ("crypto", "forex", "stock"):
        if klass in classes:
            return klass
    return "stock"


def combine_portfolio_body(
    summaries: list[AgentSummary], settings: Settings, run_id: str
) -> PortfolioSummary:
    curves = {s.agent: s.equity[[C.TS, "equity"]] for s in summaries}
    klass = portfolio_asset_class(summaries)
    metrics_by_method: dict[str, dict[str, Any]] = {}
    weights_by_method: dict[str, dict[str, float]] = {}
    chosen_equity: pd.DataFrame | None = None
    rows = []
    for method in PORTFOLIO_METHODS:
        combined = combine(
            curves,
            method=method,
            rebalance=settings.portfolio.rebalance,
            fee_bps=settings.portfolio.fee_bps,
            initial_equity=settings.portfolio.initial_equity,
            vol_lookback_bars=settings.portfolio.vol_lookback_bars,
        )
        eq = combined.equity
        metrics = clean_metrics(
            compute_metrics(eq["equity"].to_numpy(), eq[C.TS], None, klass, None)
        )
        # trade statistics belong to agents: the combination counts their trades
        metrics.update({k: None for k in TRADE_METRICS})
        metrics["n_trades"] = sum(int(s.metrics.get("n_trades") or 0) for s in summaries)
        weights = {k: float(v) for k, v in combined.weights.items()}
        metrics_by_method[method] = metrics
        weights_by_method[method] = weights
        rows.append({C.RUN_ID: run_id, "method": method, **metrics, "weights": json.dumps(weights)})
        if method == settings.portfolio.allocation:
            chosen_equity = eq[[C.TS, "equity", "drawdown"]].copy()
    assert chosen_equity is not None
    tables = {
        "portfolio_metrics": pd.DataFrame(rows),
        "equity": chosen_equity.assign(**{C.RUN_ID: run_id, "agent": PORTFOLIO_AGENT}),
    }
    Warehouse(settings.home, lock_timeout=settings.lock_timeout).write_results(run_id, tables)
    return PortfolioSummary(
        settings.portfolio.allocation, metrics_by_method, weights_by_method, klass, chosen_equity
    )


combine_portfolio = task(name="combine-portfolio", cache_policy=NO_CACHE)(combine_portfolio_body)
