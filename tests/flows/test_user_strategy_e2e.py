"""The README's strategy example, saved outside the repository, runs unchanged through
`nightly` (an agent in hedgeflow.toml), `sweep` and `live` (real Prefect flow runs on
the session's test server, real DuckDB, the live simulator)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hedgeflow.config import load_settings
from hedgeflow.engine import EngineConfig, backtest
from hedgeflow.strategies import resolve_strategy
from tests.e2e_helpers import assert_clean, query, run_cli
from tests.user_strategy import write_example

pytestmark = pytest.mark.flow

END = "2026-11-20T00:00:00Z"
OFF = {f"HEDGEFLOW_AGENTS__{name}": "false" for name in ("STOCKS", "CRYPTO")}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A user's folder: the strategy file and a hedgeflow.toml naming it."""
    folder = tmp_path_factory.mktemp("project")
    ref = write_example(folder)
    (folder / "hedgeflow.toml").write_text(
        "[agents.bands]\n"
        'symbol = "EURUSD.FOREX"\n'
        f'strategy = "{ref}"\n'
        "params = { window = 30, k = 2.5 }\n",
        encoding="utf-8",
    )
    return folder, ref


def test_nightly_runs_the_user_strategy_as_an_agent(
    project: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, ref = project
    home = folder / "data"
    proc = run_cli(home, "nightly", "--days", "3", "--end", END, **OFF)
    assert_clean(proc)
    rows = query(home, "SELECT agent, strategy, params, n_trades FROM agent_metrics ORDER BY 1")
    by_agent = {r[0]: r for r in rows}
    assert set(by_agent) == {"bands", "forex"}
    _, strategy, params, n_trades = by_agent["bands"]
    assert strategy == ref and json.loads(params) == {"k": 2.5, "window": 30}
    # the same trades as the engine on the stored bars with the strategy's own signals
    bars = pd.DataFrame(
        query(home, "SELECT ts, open, high, low, close FROM bars WHERE symbol = 'EURUSD.FOREX' "
              "ORDER BY ts"),
        columns=["ts", "open", "high", "low", "close"],
    )  # fmt: skip
    monkeypatch.chdir(folder)  # the settings name the file relative to the project
    settings = load_settings(config_file=folder / "hedgeflow.toml", env=OFF)
    agent = next(a for a in settings.agents if a.name == "bands")
    spec = resolve_strategy(str(folder / ref))  # the test runs elsewhere
    arrays = [bars[c].to_numpy(np.float64) for c in ("open", "high", "low", "close")]
    signal, ind = spec.signals(*arrays, spec.params(window=30, k=2.5))
    config = EngineConfig.from_settings(agent.risk, settings.costs_for(agent), "forex", 1e5)
    expected = backtest(bars, signal, config)
    assert n_trades == len(expected.trades) > 0
    exits = query(home, "SELECT exit_ts FROM trades WHERE agent = 'bands' ORDER BY exit_ts")
    assert [r[0] for r in exits] == list(expected.trades["exit_ts"])
    # its own indicators are stored as JSON next to the built-in columns
    stored = query(
        home, "SELECT indicators FROM signals WHERE agent = 'bands' ORDER BY ts"
    )  # fmt: skip
    last = json.loads(stored[-1][0])
    assert set(last) == {"bb_mid", "bb_lower"}
    assert last["bb_mid"] == ind["bb_mid"][-1]
    assert json.loads(stored[0][0]) == {"bb_mid": None, "bb_lower": None}  # warm-up


def test_sweep_runs_the_user_strategy(project: tuple[Path, str]) -> None:
    folder, ref = project
    home = folder / "sweep-data"
    proc = run_cli(
        home, "sweep", "--strategy", ref, "--symbols", "EURUSD.FOREX",
        "--grid", "window=10,20,40", "--grid", "k=1.5,2.5", "--days", "3", "--end", END,
    )  # fmt: skip
    assert_clean(proc)
    rows = query(home, "SELECT params, rank FROM sweep_results ORDER BY rank")
    assert len(rows) == 6 and [r[1] for r in rows] == list(range(1, 7))
    grid = {(json.loads(p)["window"], json.loads(p)["k"]) for p, _ in rows}
    assert grid == {(w, k) for w in (10, 20, 40) for k in (1.5, 2.5)}


def test_live_runs_the_user_strategy(project: tuple[Path, str]) -> None:
    folder, _ = project
    home = folder / "live-data"
    # `hedgeflow live --duration 30` as the README says, shortened here: 12 wall seconds
    # at 1500x are 5 market hours, 60 bars per symbol
    proc = run_cli(home, "live", "--duration", "12", "--speed", "1500", timeout=240, **OFF)
    assert_clean(proc)
    assert "bands" in proc.stdout and "status: completed" in proc.stdout
    rows = query(
        home,
        "SELECT count(*), count(indicators) FROM live_signals WHERE agent = 'bands'",
    )
    n, with_json = rows[0]
    assert n >= 20 and with_json == n
    assert query(home, "SELECT count(*) FROM live_positions WHERE agent = 'bands'") == [(1,)]
