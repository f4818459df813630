"""``make_source(name, network, seed, token)``: the one place that picks a source.

The EODHD client and the simulator (``requests`` and an HTTP server) are imported when
one of them is asked for: the synthetic source, every demo's, never loads them.
"""

from __future__ import annotations

import os

from hedgeflow.config import NetworkSettings
from hedgeflow.errors import InvalidInputError
from hedgeflow.secrets import load_eodhd_token
from hedgeflow.sources.base import MarketSource
from hedgeflow.sources.synthetic import SyntheticMarket

SOURCE_NAMES: tuple[str, ...] = ("synthetic", "eodhd", "simulator")
SIMULATOR_TOKEN = "demo-sim"


def make_source(
    name: str, network: NetworkSettings, seed: int, token: str | None = None
) -> MarketSource:
    """``synthetic`` (seed only), ``eodhd`` (token from the argument or EODHD_API_TOKEN)
    or ``simulator`` (a local server with synthetic data behind the real client)."""
    if name == "synthetic":
        return SyntheticMarket(seed)
    if name == "eodhd":
        from hedgeflow.sources.eodhd import EodhdClient

        return EodhdClient(token or load_eodhd_token(os.environ), network)
    if name == "simulator":
        from hedgeflow.sources.simulator_source import SimulatorSource

        return SimulatorSource(network, seed)
    raise InvalidInputError(f"unknown source {name!r}: expected one of {', '.join(SOURCE_NAMES)}")
