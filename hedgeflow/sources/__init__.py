"""Market data sources: the MarketSource protocol, a synthetic market, the EODHD REST
client and a local EODHD-compatible simulator (the last two imported on first use)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hedgeflow.sources.base import MarketSource
from hedgeflow.sources.factory import SOURCE_NAMES, make_source
from hedgeflow.sources.synthetic import SyntheticMarket, Ticks, aggregate_ticks

if TYPE_CHECKING:
    from hedgeflow.sources.eodhd import EodhdClient
    from hedgeflow.sources.simulator_source import SimulatorSource

__all__ = [
    "SOURCE_NAMES",
    "EodhdClient",
    "MarketSource",
    "SimulatorSource",
    "SyntheticMarket",
    "Ticks",
    "aggregate_ticks",
    "make_source",
]


def __getattr__(name: str) -> Any:
    if name == "EodhdClient":
        from hedgeflow.sources.eodhd import EodhdClient

        return EodhdClient
    if name == "SimulatorSource":
        from hedgeflow.sources.simulator_source import SimulatorSource

        return SimulatorSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
