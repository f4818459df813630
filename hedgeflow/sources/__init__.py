"""Market data sources: the MarketSource protocol, a synthetic market, the EODHD REST
client and a local EODHD-compatible simulator."""

from hedgeflow.sources.base import MarketSource
from hedgeflow.sources.eodhd import EodhdClient
from hedgeflow.sources.factory import SOURCE_NAMES, SimulatorSource, make_source
from hedgeflow.sources.synthetic import SyntheticMarket, Ticks, aggregate_ticks

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
