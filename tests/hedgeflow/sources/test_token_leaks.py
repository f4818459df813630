"""The token never appears in exceptions, tracebacks, reprs or logs (urllib3's included)."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from urllib.parse import quote

import pytest

from hedgeflow.errors import SourceError
from hedgeflow.sources.eodhd import EodhdClient
from hedgeflow.sources.simulator import Simulator

from .conftest import TOKEN, Sleeps, utc

Factory = Callable[..., tuple[EodhdClient, Sleeps]]
START, END = utc(2024, 5, 1), utc(2024, 5, 2)


def _assert_clean(text: str) -> None:
    assert TOKEN not in text
    assert quote(TOKEN, safe="") not in text


def _check(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    _assert_clean(str(exc))
    _assert_clean(repr(exc))
    _assert_clean("".join(traceback.format_exception(exc)))
    assert exc.__cause__ is None and exc.__context__ is None
    _assert_clean(caplog.text)
    for record in caplog.records:
        _assert_clean(record.getMessage())


@pytest.mark.parametrize(
    ("fault", "count", "network"),
    [
        ("401", 1, {}),
        ("403", 1, {}),
        ("404", 1, {}),
        ("429", 5, {"max_retries": 2}),
        ("500", 5, {"max_retries": 2}),
        ("503", 5, {"max_retries": 2}),
        ("html", 5, {"max_retries": 1}),
        ("html502", 5, {"max_retries": 1}),
        ("truncated", 5, {"max_retries": 1}),
        ("drop", 5, {"max_retries": 1}),
        ("timeout", 5, {"max_retries": 1, "rest_timeout": 0.2}),
    ],
)
def test_no_leak_on_fault(
    sim: Simulator,
    make_client: Factory,
    caplog: pytest.LogCaptureFixture,
    fault: str,
    count: int,
    network: dict[str, object],
) -> None:
    caplog.set_level(logging.DEBUG)
    client, _ = make_client(**network)
    _assert_clean(repr(client))
    sim.faults.inject(fault, count=count, retry_after=0)
    with pytest.raises(SourceError) as info:
        client.fetch_bars("BTC-USD.CC", "5m", START, END)
    _check(info.value, caplog)
    assert any(r.name.startswith("urllib3") for r in caplog.records)  # it did log URLs


def test_no_leak_on_422_connection_refused_and_success(
    sim: Simulator, make_client: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client, _ = make_client(max_request_days={"1m": 500}, max_retries=1)
    client.fetch_bars("BTC-USD.CC", "5m", START, END)
    with pytest.raises(SourceError) as info:
        client.fetch_bars("BTC-USD.CC", "1m", utc(2023, 1, 1), utc(2024, 1, 1))
    _check(info.value, caplog)
    sim.stop()
    with pytest.raises(SourceError) as info:
        client.fetch_bars("BTC-USD.CC", "5m", START, END)
    assert "connection failed" in str(info.value)
    _check(info.value, caplog)


def test_simulator_logs_are_scrubbed(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    import requests

    caplog.set_level(logging.DEBUG)
    other = "unregistered-token-xyz"
    requests.get(f"{sim.base_url}/intraday/AAPL.US?api_token={other}&interval=5m", timeout=5)
    assert other not in caplog.text
