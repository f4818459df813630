"""``make_source(name, network, seed, token)``: the one place that picks a source."""

from __future__ import annotations

import atexit
import dataclasses
import os
import threading

from hedgeflow.config import NetworkSettings
from hedgeflow.errors import InvalidInputError
from hedgeflow.secrets import load_eodhd_token
from hedgeflow.sources.base import MarketSource
from hedgeflow.sources.eodhd import EodhdClient
from hedgeflow.sources.simulator.server import Simulator
from hedgeflow.sources.synthetic import SyntheticMarket

SOURCE_NAMES: tuple[str, ...] = ("synthetic", "eodhd", "simulator")
SIMULATOR_TOKEN = "demo-sim"


class SimulatorSource(EodhdClient):
    """The real EODHD client talking to a private local simulator (same seed).

    ``close()`` (or leaving a ``with`` block, or interpreter exit) stops the server.
    """

    name = "simulator"

    def __init__(self, network: NetworkSettings, seed: int) -> None:
        self.simulator = Simulator(
            seed=seed, tokens=(SIMULATOR_TOKEN,), timeout_sleep=network.rest_timeout + 1.0
        ).start()
        network = dataclasses.replace(network, base_url=self.simulator.base_url)
        super().__init__(SIMULATOR_TOKEN, network)
        self._closed = threading.Event()
        atexit.register(self.close)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        super().close()
        self.simulator.stop()
        atexit.unregister(self.close)

    def __enter__(self) -> SimulatorSource:
        return self


def make_source(
    name: str, network: NetworkSettings, seed: int, token: str | None = None
) -> MarketSource:
    """``synthetic`` (seed only), ``eodhd`` (token from the argument or EODHD_API_TOKEN)
    or ``simulator`` (a local server with synthetic data behind the real client)."""
    if name == "synthetic":
        return SyntheticMarket(seed)
    if name == "eodhd":
        return EodhdClient(token or load_eodhd_token(os.environ), network)
    if name == "simulator":
        return SimulatorSource(network, seed)
    raise InvalidInputError(f"unknown source {name!r}: expected one of {', '.join(SOURCE_NAMES)}")
