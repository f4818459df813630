"""Shared fixtures: a local EODHD simulator on a real socket and clients pointed at it."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from hedgeflow.config import NetworkSettings
from hedgeflow.sources.eodhd import EodhdClient
from hedgeflow.sources.simulator import Simulator
from hedgeflow.sources.synthetic import SyntheticMarket

SEED = 7
TOKEN = "tok-Secret-4f9a7c21-leakcheck"
MARKET = SyntheticMarket(SEED)  # shared so the anchor paths are computed once


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture(autouse=True)
def _quiet_numba() -> None:
    logging.getLogger("numba").setLevel(logging.WARNING)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(seed=SEED, tokens=(TOKEN, "demo-sim"), timeout_sleep=1.0, market=MARKET) as s:
        yield s


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def make_client(sim: Simulator) -> Iterator[Callable[..., tuple[EodhdClient, Sleeps]]]:
    clients: list[EodhdClient] = []

    def factory(
        token: str = TOKEN, max_request_days: dict[str, int] | None = None, **network: object
    ) -> tuple[EodhdClient, Sleeps]:
        settings = {"base_url": sim.base_url, "max_retries": 3, "rest_timeout": 5.0}
        settings.update(network)
        sleeps = Sleeps()
        client = EodhdClient(
            token,
            NetworkSettings(**settings),  # type: ignore[arg-type]
            max_request_days=max_request_days,
            sleep=sleeps,
            rng=random.Random(0),
        )
        clients.append(client)
        return client, sleeps

    yield factory
    for client in clients:
        client.close()
