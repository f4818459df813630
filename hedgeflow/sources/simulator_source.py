"""``SimulatorSource``: the real EODHD client against a private local simulator.

Its own module so that ``hedgeflow.sources`` and its factory load the EODHD client
(and ``requests``) only when a command asks for the ``eodhd`` or ``simulator`` source.
"""

from __future__ import annotations

import atexit
import dataclasses
import threading

from hedgeflow.config import NetworkSettings
from hedgeflow.sources.eodhd import EodhdClient
from hedgeflow.sources.factory import SIMULATOR_TOKEN
from hedgeflow.sources.simulator.server import Simulator


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
