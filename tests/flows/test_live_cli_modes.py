"""``hedgeflow live --mode poll`` and ``hedgeflow live --source eodhd`` for real, in
subprocesses reporting to the session's Prefect server:

* poll mode against the local simulator records every bar of the simulated market
  (REST bars, no ticks), and one signal per bar and agent equal to the batch
  strategy's signal on the same bars;
* ``--source eodhd`` without a token is one clear error line, before any flow runs;
* ``--source eodhd`` with a token and ``network.base_url`` pointing at a local
  EODHD-compatible simulator runs on the wall clock (poll mode): the bars its warm-up
  download missed (a vendor publishing late) come from the first poll, and are
  recorded with their signals.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hedgeflow.config import load_settings
from hedgeflow.sources.simulator import Simulator
from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.strategies import get_strategy, parse_params
from hedgeflow.warehouse import Warehouse
from tests.e2e_helpers import assert_clean, assert_live_bars_are_the_market, cli_env, query_frame
from tests.flows.harness_cli import harness_api_url, run_cli_on

__all__ = ["harness_api_url"]

pytestmark = pytest.mark.flow

SEED = 7
TOKEN = "live-eodhd-test-token"


def recorded(home: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(live_bars, live_signals, the live run's row) of the only live run."""
    runs = query_frame(home, "SELECT run_id, status, params FROM runs WHERE flow = 'live'")
    assert len(runs) == 1, runs
    run = runs.iloc[0].to_dict()
    run["params"] = json.loads(run["params"])
    bars = query_frame(home, "SELECT * FROM live_bars ORDER BY symbol, ts")
    signals = query_frame(home, "SELECT * FROM live_signals ORDER BY agent, ts")
    assert set(bars["run_id"]) == set(signals["run_id"]) == {run["run_id"]}
    return bars, signals, run


def assert_bars_are_the_market(bars: pd.DataFrame) -> None:
    """Each symbol's recorded bars are the synthetic market's, without gaps or repeats."""
    assert_live_bars_are_the_market(bars, SEED)


def assert_signals_are_the_strategies(
    home: Path, bars: pd.DataFrame, signals: pd.DataFrame, run: dict, agents: set[str]
) -> None:
    """One signal per bar and agent, equal to the batch strategy's signal on the agent's
    whole history: its warm-up bars from the lake, then the recorded live bars."""
    settings = load_settings(env={})
    wh = Warehouse(home)
    checked = set()
    for agent in settings.agents:
        if agent.name not in agents:
            continue
        window = run["params"]["agents"][agent.name]
        w_start, w_end = (pd.Timestamp(window[k]) for k in ("warmup_start", "live_start"))
        warm = wh.read_bars(agent.symbol, "5m", w_start, w_end)
        live = bars[bars["symbol"] == agent.symbol]
        got = signals[signals["agent"] == agent.name]
        assert list(got["ts"]) == list(live["ts"]), f"{agent.name}: not one signal per bar"
        assert set(got["symbol"]) == {agent.symbol}
        history = pd.concat([warm, live[warm.columns]], ignore_index=True)
        spec = get_strategy(agent.strategy)
        sig, _ = spec.signals(
            history["open"], history["high"], history["low"], history["close"],
            parse_params(agent.strategy, agent.params),
        )  # fmt: skip
        np.testing.assert_array_equal(
            got["signal"].to_numpy(), sig[len(warm) :], err_msg=f"{agent.name} signals"
        )
        np.testing.assert_array_equal(got["close"], live["close"])
        checked.add(agent.name)
    assert checked == agents


def feed_line(stdout: str) -> dict[str, int]:
    """The numbers of the summary's feed line ('... N ticks, M bars (K from REST) ...')."""
    line = next((x for x in stdout.splitlines() if x.startswith("market time")), None)
    assert line is not None, stdout
    match = re.search(r"([\d,]+) ticks, ([\d,]+) bars \(([\d,]+) from REST\)", line)
    assert match, line
    ticks, n_bars, rest = (int(g.replace(",", "")) for g in match.groups())
    return {"ticks": ticks, "bars": n_bars, "rest_bars": rest}


def test_live_poll_mode_against_the_simulator(harness_api_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = run_cli_on(
        harness_api_url, home, "live", "--mode", "poll", "--duration", "4", "--speed", "600",
        HEDGEFLOW_LOOKBACK_DAYS="3",
    )  # fmt: skip
    assert_clean(proc)
    assert "(simulator, poll, x600)" in proc.stdout
    bars, signals, run = recorded(home)
    assert run["status"] == "completed"
    assert (run["params"]["source"], run["params"]["mode"]) == ("simulator", "poll")
    assert set(bars["symbol"]) == {"AAPL.US", "EURUSD.FOREX", "BTC-USD.CC"}
    assert bars.groupby("symbol").size().min() >= 5
    assert set(bars["n_ticks"]) == {0}  # polled REST bars, not built from ticks
    feed = feed_line(proc.stdout)
    assert feed["ticks"] == 0 and feed["bars"] == feed["rest_bars"] == len(bars)
    assert_bars_are_the_market(bars)
    assert_signals_are_the_strategies(home, bars, signals, run, {"stocks", "forex", "crypto"})


def test_live_eodhd_without_a_token_is_one_clear_error(
    harness_api_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = cli_env(home, PREFECT_API_URL=harness_api_url)
    env.pop("EODHD_API_TOKEN", None)
    proc = subprocess.run(
        [sys.executable, "-m", "hedgeflow.cli", "live", "--source", "eodhd", "--duration", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        "hedgeflow: error: setting 'EODHD_API_TOKEN': no EODHD API token: set "
        "EODHD_API_TOKEN or save a Prefect Secret block named 'eodhd-api-token'\n"
    )
    assert not home.exists()  # refused before any flow, warehouse or download


class LatePublisher(SyntheticMarket):
    """A vendor whose bulk history lags: an answer spanning more than 6 hours stops
    half an hour before ``now``; shorter (recent) ranges are complete."""

    def fetch_bars(
        self,
        symbol: str,
        interval: str,
        start: datetime | pd.Timestamp,
        end: datetime | pd.Timestamp,
    ) -> pd.DataFrame:
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        if end - start > pd.Timedelta(hours=6):
            end = min(end, pd.Timestamp.now(tz="UTC").floor("5min") - pd.Timedelta(minutes=30))
        return super().fetch_bars(symbol, interval, start, end)


def test_live_eodhd_source_polls_the_configured_base_url(
    harness_api_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    with Simulator(seed=SEED, tokens=(TOKEN,), market=LatePublisher(SEED)) as sim:
        proc = run_cli_on(
            harness_api_url, home, "live", "--source", "eodhd", "--mode", "poll",
            "--duration", "3",
            EODHD_API_TOKEN=TOKEN,
            HEDGEFLOW_NETWORK__BASE_URL=sim.base_url,
            HEDGEFLOW_LOOKBACK_DAYS="1",
            HEDGEFLOW_AGENTS__STOCKS="false",  # crypto trades at any hour of the test
            HEDGEFLOW_AGENTS__FOREX="false",
        )  # fmt: skip
        served = sim.request_log
    assert_clean(proc)
    assert TOKEN not in proc.stdout + proc.stderr
    assert "(eodhd, poll)" in proc.stdout
    # the warm-up download, then the polls (one per bar boundary passed)
    assert len(served) >= 2 and {r.ticker for r in served} == {"BTC-USD.CC"}
    assert {r.status for r in served} == {200}
    bars, signals, run = recorded(home)
    assert run["status"] == "completed"
    assert (run["params"]["source"], run["params"]["mode"]) == ("eodhd", "poll")
    assert set(bars["symbol"]) == {"BTC-USD.CC"}
    # The warm-up missed the last half hour before the start; the first poll brought
    # those bars, from the one after the last warm-up bar to the last closed bar.
    window = run["params"]["agents"]["crypto"]
    live_start = pd.Timestamp(window["live_start"])
    last_warm = (
        Warehouse(home)
        .read_bars("BTC-USD.CC", "5m", pd.Timestamp(window["warmup_start"]), live_start)["ts"]
        .iloc[-1]
    )
    five = pd.Timedelta(minutes=5)
    assert last_warm <= live_start - 6 * five
    assert bars["ts"].iloc[0] == last_warm + five
    assert bars["ts"].iloc[-1] >= live_start - five
    assert bars["ts"].iloc[-1] + five <= pd.Timestamp.now(tz="UTC")
    assert_bars_are_the_market(bars)
    assert_signals_are_the_strategies(home, bars, signals, run, {"crypto"})
