from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pandas as pd
import pytest
import requests

from hedgeflow.errors import InvalidInputError
from hedgeflow.sources.eodhd_format import parse_intraday_json
from hedgeflow.sources.simulator import FaultController, Simulator
from tests.e2e_helpers import read_line

from .conftest import MARKET, TOKEN, utc


def _get(sim: Simulator, ticker: str = "BTC-USD.CC", **params: object) -> requests.Response:
    query = {"api_token": TOKEN, "interval": "5m", "fmt": "json", **params}
    return requests.get(f"{sim.base_url}/intraday/{ticker}", params=query, timeout=5)


def test_from_to_are_inclusive(sim: Simulator) -> None:
    lo, hi = int(utc(2024, 5, 1).timestamp()), int(utc(2024, 5, 1, 1).timestamp())
    resp = _get(sim, **{"from": lo, "to": hi})
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    rows = resp.json()
    assert rows[0]["timestamp"] == lo and rows[-1]["timestamp"] == hi and len(rows) == 13
    assert set(rows[0]) == {
        "timestamp", "gmtoffset", "datetime", "open", "high", "low", "close", "volume",
    }  # fmt: skip
    expected = MARKET.fetch_bars("BTC-USD.CC", "5m", utc(2024, 5, 1), utc(2024, 5, 1, 1, 0, 1))
    pd.testing.assert_frame_equal(parse_intraday_json(resp.content), expected)


def test_default_range_is_last_120_days(sim: Simulator) -> None:
    rows = _get(sim, interval="1h").json()
    now = time.time()
    assert now - 120 * 86_400 - 3600 <= rows[0]["timestamp"] and rows[-1]["timestamp"] <= now
    assert len(rows) >= 120 * 24 - 2


def test_vendor_errors(sim: Simulator) -> None:
    assert _get(sim, api_token="").status_code == 401
    assert _get(sim, api_token="wrong").status_code == 401
    assert _get(sim, ticker="NOT A TICKER").status_code == 404
    assert _get(sim, interval="2m").status_code == 422
    too_long = _get(sim, interval="1m", **{"from": 0, "to": 121 * 86_400})
    assert too_long.status_code == 422 and "maximum period" in too_long.text
    assert _get(sim, **{"from": "yesterday"}).status_code == 422
    assert _get(sim, **{"from": 10, "to": 5}).status_code == 422
    assert [r.status for r in sim.request_log] == [401, 401, 404, 422, 422, 422, 422]


def test_fault_kinds_on_the_wire(sim: Simulator) -> None:
    sim.faults.inject("429", retry_after=3)
    resp = _get(sim)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "3"
    sim.faults.inject("html")
    resp = _get(sim)
    assert resp.status_code == 200 and resp.text.lstrip().startswith("<!DOCTYPE html>")
    sim.faults.inject("html502")
    assert _get(sim).status_code == 502
    sim.faults.inject("truncated")
    resp = _get(sim, **{"from": 1714521600, "to": 1714607999})
    assert resp.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.content)
    sim.faults.inject("empty")
    assert _get(sim).content == b"[]"
    sim.faults.inject("drop")
    with pytest.raises(requests.ConnectionError):
        _get(sim)
    assert [r.fault for r in sim.request_log] == [
        "429", "html", "html502", "truncated", "empty", "drop",
    ]  # fmt: skip


def test_control_endpoint_drives_faults(sim: Simulator) -> None:
    url = sim.control_url
    resp = requests.post(f"{url}/faults", json={"inject": "503", "count": 2}, timeout=5)
    assert resp.json() == {"pending": 2}
    assert [_get(sim).status_code for _ in range(3)] == [503, 503, 200]
    requests.post(f"{url}/faults", json={"random": {"rate": 1.0, "kinds": ["500"]}}, timeout=5)
    assert _get(sim).status_code == 500
    requests.post(f"{url}/faults", json={"clear": True}, timeout=5)
    assert _get(sim).status_code == 200
    bad = requests.post(f"{url}/faults", json={"inject": "meteor"}, timeout=5)
    assert bad.status_code == 400 and "unknown fault kind" in bad.text
    assert requests.get(f"{url}/requests", timeout=5).json() == {"count": 5}


def test_fault_controller_rules() -> None:
    faults = FaultController()
    faults.inject("500", count=2)
    faults.random(0.5, kinds=["503"], seed=3)
    assert [faults.next().kind for _ in range(2)] == ["500", "500"]  # type: ignore[union-attr]
    drawn = [faults.next() for _ in range(200)]
    hits = [f for f in drawn if f is not None]
    assert 60 < len(hits) < 140 and {f.kind for f in hits} == {"503"}
    faults.clear()
    assert faults.next() is None
    with pytest.raises(InvalidInputError):
        faults.inject("nope")
    with pytest.raises(InvalidInputError):
        faults.random(1.5)


def test_context_manager_and_stop() -> None:
    with Simulator(market=MARKET) as sim:
        url = sim.base_url
        assert url.startswith("http://127.0.0.1:") and url.endswith("/api")
        assert "Simulator(seed=7, http://127.0.0.1" in repr(sim)
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/intraday/AAPL.US", timeout=2)


def test_cli_serves_and_can_be_driven() -> None:
    # without PYTHONUNBUFFERED (most users' machines) the address line must still
    # arrive at once through a pipe
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hedgeflow.sources.simulator", "--port", "0", "--seed", "7"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = read_line(proc.stdout, timeout=60)
        assert " on http://127.0.0.1:" in line, line
        base = line.split(" on ", 1)[1].split()[0]
        resp = requests.get(
            f"{base}/intraday/BTC-USD.CC",
            params={"api_token": "demo-sim", "from": 1714521600, "to": 1714525200},
            timeout=10,
        )
        assert resp.status_code == 200 and len(resp.json()) == 13
    finally:
        proc.terminate()
        proc.wait(timeout=10)
