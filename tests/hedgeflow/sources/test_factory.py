from __future__ import annotations

import pandas as pd
import pytest
import requests

from hedgeflow.config import NetworkSettings
from hedgeflow.errors import ConfigError, InvalidInputError
from hedgeflow.sources import (
    EodhdClient,
    MarketSource,
    SimulatorSource,
    SyntheticMarket,
    make_source,
)

from .conftest import MARKET, utc


def test_synthetic() -> None:
    src = make_source("synthetic", NetworkSettings(), seed=11)
    assert isinstance(src, SyntheticMarket) and src.name == "synthetic" and src.seed == 11
    assert isinstance(src, MarketSource)


def test_eodhd_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EODHD_API_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="EODHD_API_TOKEN"):
        make_source("eodhd", NetworkSettings(), seed=7)
    monkeypatch.setenv("EODHD_API_TOKEN", "env-token-abc")
    src = make_source("eodhd", NetworkSettings(), seed=7)
    assert isinstance(src, EodhdClient) and src.name == "eodhd"
    assert "env-token-abc" not in repr(src)
    src2 = make_source("eodhd", NetworkSettings(), seed=7, token="arg-token-def")
    assert "arg-token-def" not in repr(src2)
    with pytest.raises(InvalidInputError, match="EODHD_API_TOKEN"):
        EodhdClient("  ", NetworkSettings())


def test_simulator_source_serves_the_synthetic_market() -> None:
    src = make_source("simulator", NetworkSettings(), seed=7)
    assert isinstance(src, SimulatorSource) and src.name == "simulator"
    with src:
        got = src.fetch_bars("EURUSD.FOREX", "5m", utc(2024, 5, 1), utc(2024, 5, 3))
        expected = MARKET.fetch_bars("EURUSD.FOREX", "5m", utc(2024, 5, 1), utc(2024, 5, 3))
        pd.testing.assert_frame_equal(got, expected)
        url = src.simulator.base_url
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/intraday/AAPL.US", timeout=2)
    src.close()  # idempotent


def test_unknown_source() -> None:
    with pytest.raises(InvalidInputError, match="unknown source"):
        make_source("bloomberg", NetworkSettings(), seed=7)
