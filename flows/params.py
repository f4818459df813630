"""Typed flow parameters: Prefect turns them into forms in the UI and checks them
before a run is created; hedgeflow's settings loader checks every value again."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hedgeflow.strategies import BUILTIN

# The registry is the one source of the names; a user's strategy is named by reference.
StrategyName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=500,
        description=(
            f"a built-in ({', '.join(BUILTIN)}), a registered entry point, "
            "package.module:Name or path/to/file.py:Name"
        ),
        examples=list(BUILTIN),
    ),
]
SourceName = Literal["synthetic", "eodhd", "simulator"]
IntervalName = Literal["1m", "5m", "1h"]
Allocation = Literal["equal", "inverse_vol", "risk_parity"]
Rebalance = Literal["bar", "daily", "weekly"]


class RiskParam(BaseModel):
    model_config = ConfigDict(extra="forbid")

    risk_per_trade: float | None = Field(default=None, gt=0, le=1)
    stop_pct: float | None = Field(default=None, gt=0, lt=1)
    take_profit_pct: float | None = Field(default=None, gt=0)
    max_leverage: float | None = Field(default=None, gt=0, le=100)
    use_trailing_atr: bool | None = None


class AgentParam(BaseModel):
    """One agent of a run: a market, a strategy and its parameters."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$", examples=["stocks"])
    symbol: str = Field(examples=["AAPL.US", "EURUSD.FOREX", "BTC-USD.CC"])
    strategy: StrategyName
    params: dict[str, float | int | bool | str] = Field(
        default_factory=dict, examples=[{"fast": 20, "slow": 50}]
    )
    risk: RiskParam | None = None


def agents_mapping(agents: list[AgentParam] | None) -> dict[str, Any] | None:
    """The ``agents`` table of the settings for ``load_settings(agents=...)``."""
    if agents is None:
        return None
    out: dict[str, Any] = {}
    for agent in agents:
        entry: dict[str, Any] = {
            "symbol": agent.symbol,
            "strategy": agent.strategy,
            "params": dict(agent.params),
        }
        if agent.risk is not None:
            entry["risk"] = agent.risk.model_dump(exclude_none=True)
        out[agent.name] = entry
    return out
