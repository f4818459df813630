"""One agent's research step and the user-file backtest, as pure functions.

``run_agent``: bars -> signals -> backtest -> metrics. The nightly task wraps it
with warehouse I/O; ``hedgeflow backtest --bars`` wraps it with file I/O.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hedgeflow import columns as C
from hedgeflow.config import (
    DEFAULT_MINIMUMS,
    AgentSettings,
    CostSettings,
    OrderMinimums,
    RiskSettings,
)
from hedgeflow.engine import BacktestResult, EngineConfig, backtest
from hedgeflow.errors import InvalidInputError
from hedgeflow.market import AssetClass, validate_asset_class
from hedgeflow.metrics import compute_metrics
from hedgeflow.report import skipped_by_reason
from hedgeflow.strategies import get_strategy, params_from_strings, parse_params

if TYPE_CHECKING:
    from hedgeflow.exports import ExportFormat


@dataclass(frozen=True)
class AgentResult:
    agent: str
    symbol: str
    strategy: str
    params: Mapping[str, Any]
    signals: pd.DataFrame  # ts, close, signal, indicator columns
    result: BacktestResult
    metrics: dict[str, Any]


def compute_signals(
    bars: pd.DataFrame, strategy: str, params: Any, shorts: bool = False
) -> pd.DataFrame:
    """Signal and indicator values at each bar's close (``shorts``: the run allows
    short selling, so the signal may be -1)."""
    spec = get_strategy(strategy)
    o, h, lo, c = (
        np.ascontiguousarray(bars[x].to_numpy(dtype=np.float64)) for x in C.PRICE_COLUMNS
    )
    signal, indicators = spec.signals(o, h, lo, c, params, shorts=shorts)
    # the times copied (a frame of its own, as before); the other columns are fresh
    # arrays, taken as they are (copy=False: no consolidating copy)
    columns: dict[str, Any] = {C.TS: bars[C.TS].array.copy(), C.CLOSE: c, "signal": signal}
    columns.update(indicators)
    return pd.DataFrame(columns, copy=False)


def _json_number(value: float) -> str:
    return "null" if value != value or value in (math.inf, -math.inf) else repr(float(value))


def extra_indicators_json(
    values: Mapping[str, Any], columns: Sequence[str], n: int
) -> list[str | None]:
    """One JSON object per row (``n`` rows) of the ``columns`` of ``values`` (name ->
    array of ``n`` or a scalar when ``n`` is 1): the indicators a strategy has beyond
    the stored columns, so none is lost. ``None`` per row when there are none; NaN and
    infinities become null."""
    if not columns:
        return [None] * n
    arrays = [np.broadcast_to(np.asarray(values[c], dtype=np.float64), (n,)) for c in columns]
    keys = [json.dumps(c) for c in columns]
    return [
        "{" + ", ".join(f"{k}: {_json_number(v)}" for k, v in zip(keys, row, strict=True)) + "}"
        for row in zip(*(a.tolist() for a in arrays), strict=True)
    ]


def skipped_note(skipped: pd.DataFrame) -> str:
    """``", 3 entries skipped by the order minimums (below_min_notional 3)"``, or ""."""
    if skipped.empty:
        return ""
    noun = "entry" if len(skipped) == 1 else "entries"
    return f", {len(skipped)} {noun} skipped by the order minimums ({skipped_by_reason(skipped)})"


def run_agent(
    bars: pd.DataFrame,
    agent: AgentSettings,
    costs: CostSettings,
    initial_equity: float,
    minimums: OrderMinimums | None = None,
) -> AgentResult:
    """One agent's backtest; ``minimums`` default to the agent's own (its asset
    class's when it has none)."""
    if bars.empty:
        raise InvalidInputError(f"agent {agent.name}: no bars for {agent.symbol} in the window")
    params = parse_params(agent.strategy, agent.params)
    signals = compute_signals(bars, agent.strategy, params, agent.risk.allow_short)
    config = EngineConfig.from_settings(
        agent.risk, costs, agent.asset_class, initial_equity, minimums or agent.minimums
    )
    result = backtest(bars, signals["signal"].to_numpy(), config)
    metrics = compute_metrics(
        result.equity["equity"].to_numpy(),
        result.equity[C.TS],
        result.trades,
        agent.asset_class,
        result.equity["position"].to_numpy() if "position" in result.equity else None,
    )
    return AgentResult(
        agent=agent.name,
        symbol=agent.symbol,
        strategy=agent.strategy,
        params=dataclasses.asdict(params),
        signals=signals,
        result=result,
        metrics=metrics,
    )


def backtest_file(
    bars_path: Path,
    strategy: str,
    params: Sequence[str],
    asset_class: str,
    equity: float,
    risk: float,
    stop_pct: float,
    take_profit_pct: float,
    max_leverage: float,
    fee_bps: float,
    slippage_bps: float,
    out_dir: Path,
    out_format: ExportFormat = "csv",
    allow_short: bool = False,
    qty_step: float | None = None,
    min_notional: float | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """``hedgeflow backtest --bars FILE``: every input checked before the file is read.
    Returns the metrics and the entries the order minimums skipped (``qty_step`` and
    ``min_notional`` default to the asset class's)."""
    from hedgeflow.backtest_io import check_out_dir, read_bars_file, write_backtest_outputs

    klass: AssetClass = validate_asset_class(asset_class)
    parsed = params_from_strings(strategy, list(params))
    if not equity > 0 or not np.isfinite(equity):
        raise InvalidInputError(f"--equity must be positive, got {equity}")
    risk_settings = RiskSettings(
        risk_per_trade=risk,
        stop_pct=stop_pct,
        take_profit_pct=take_profit_pct,
        max_leverage=max_leverage,
        allow_short=allow_short,
    )
    get_strategy(strategy).check_shorts(allow_short)
    costs = CostSettings(fee_bps=fee_bps, slippage_bps=slippage_bps)
    default = DEFAULT_MINIMUMS[klass]
    try:
        minimums = OrderMinimums(
            qty_step=default.qty_step if qty_step is None else qty_step,
            min_notional=default.min_notional if min_notional is None else min_notional,
        )
    except InvalidInputError as exc:
        raise InvalidInputError(f"--{str(exc).replace('_', '-')}") from None
    check_out_dir(out_dir, out_format)
    bars = read_bars_file(bars_path)
    signals = compute_signals(bars, strategy, parsed, allow_short)
    config = EngineConfig.from_settings(risk_settings, costs, klass, equity, minimums)
    result = backtest(bars, signals["signal"].to_numpy(), config)
    metrics = compute_metrics(
        result.equity["equity"].to_numpy(),
        result.equity[C.TS],
        result.trades,
        klass,
        result.equity["position"].to_numpy() if "position" in result.equity else None,
    )
    write_backtest_outputs(result, metrics, out_dir, out_format)
    return metrics, result.skipped


def params_json(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), sort_keys=True)
