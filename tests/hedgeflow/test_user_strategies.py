"""Users' own strategies: the README example from a file outside the repository, by
reference, through `strategies check` and `backtest`; broken variants give one error
line naming the strategy; the registry's references (module, file, entry point)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hedgeflow.cli import main
from hedgeflow.engine import EngineConfig, backtest
from hedgeflow.errors import InvalidInputError
from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.strategies import BUILTIN, resolve_strategy, strategy_names
from hedgeflow.strategies.check import check_strategy
from tests.user_strategy import write_example, write_variant

REPO = Path(__file__).resolve().parents[2]


def cli(cwd: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hedgeflow.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("user")
    assert REPO not in folder.parents
    return folder


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return SyntheticMarket(7).fetch_bars(
        "EURUSD.FOREX", "5m", datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 15, tzinfo=UTC)
    )


def test_readme_example_checks_sound_from_the_cli(outside: Path) -> None:
    ref = write_example(outside)
    proc = cli(outside, "strategies", "check", ref)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "sound"
    for check in ("batch = streaming", "sweep = batch", "no look-ahead", "warm-up honest"):
        rows = [ln for ln in lines if check in ln]
        assert len(rows) == 3 and all(ln.strip().startswith("ok") for ln in rows), rows


def test_look_ahead_variant_fails_and_names_the_bar(outside: Path) -> None:
    ref = write_variant(outside, "centred.py", "look_ahead")
    proc = cli(outside, "strategies", "check", ref)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "NOT sound"
    rows = [ln for ln in proc.stdout.splitlines() if "no look-ahead" in ln]
    assert rows and all(ln.strip().startswith("FAIL") for ln in rows), rows
    assert "first offending bar is bar " in rows[0]
    # and in the API: the bar named is a real bar whose value moved
    result = check_strategy(str(outside / ref))
    finding = next(f for f in result.findings if f.check == "no look-ahead" and not f.ok)
    assert "changes when the bars from" in finding.detail
    assert not result.ok


def test_readme_example_backtests_from_the_cli(outside: Path, bars: pd.DataFrame) -> None:
    ref = write_example(outside)
    path = outside / "eurusd.csv"
    bars.to_csv(path, index=False)
    out = outside / "out"
    proc = cli(
        outside, "backtest", "--bars", str(path), "--strategy", ref, "--param", "window=30",
        "--asset-class", "forex", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trades = pd.read_csv(out / "trades.csv")
    metrics = json.loads((out / "metrics.json").read_text())
    # the same trades as the engine on the strategy's own signals
    strategy = resolve_strategy(str(outside / ref))
    params = strategy.params(window=30)
    arrays = [bars[c].to_numpy(np.float64) for c in ("open", "high", "low", "close")]
    signal, _ = strategy.signals(*arrays, params)
    expected = backtest(bars, signal, EngineConfig(qty_step=1000.0))  # forex lots
    assert len(trades) == len(expected.trades) > 0
    np.testing.assert_allclose(trades["pnl"], expected.trades["pnl"], rtol=1e-12)
    assert metrics["n_trades"] == len(expected.trades)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("import_error", "importing centred.py failed: ModuleNotFoundError"),
        ("raises", "update failed"),
        ("bad_return", "expected -1, 0 or 1"),
        ("no_compile", "undefined_name"),
        ("not_a_strategy", "int is not a hedgeflow Strategy"),
    ],
)
def test_broken_strategies_give_one_line_naming_them(
    tmp_path: Path,
    bars: pd.DataFrame,
    kind: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In-process ``hedgeflow backtest`` (a traceback would fail the test): one
    error line on stderr naming the strategy, exit 2, nothing written."""
    ref = write_variant(tmp_path, "centred.py", kind)
    path = tmp_path / "bars.csv"
    bars.to_csv(path, index=False)
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    code = main(["backtest", "--bars", str(path), "--strategy", ref, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2, captured.out + captured.err
    err = captured.err.strip().splitlines()
    assert len(err) == 1, captured.err
    assert err[0].startswith(f"hedgeflow: error: strategy {ref}"), err[0]
    assert message in err[0], err[0]
    assert not out.exists() or not any(out.iterdir())  # nothing stored


def test_a_parameter_the_strategy_does_not_have(
    outside: Path,
    bars: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ref = write_example(outside)
    path = outside / "p.csv"
    bars.to_csv(path, index=False)
    monkeypatch.chdir(outside)
    args = ["backtest", "--bars", str(path), "--strategy", ref, "--param", "speed=3"]
    assert main([*args, "--out", str(outside / "none")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"hedgeflow: error: speed is not a parameter of {ref} (parameters: k, window)"
    )


def test_references_by_module_and_unknown_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "my_strategies"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    write_example(pkg, "bands.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    by_module = resolve_strategy("my_strategies.bands:Bollinger")
    assert by_module.name == "bollinger_revert"
    assert by_module.source == "module my_strategies.bands"
    assert by_module.ref == "my_strategies.bands:Bollinger"
    with pytest.raises(InvalidInputError, match="unknown strategy 'nope'"):
        resolve_strategy("nope")
    with pytest.raises(InvalidInputError, match="no such file"):
        resolve_strategy("missing.py:X")
    with pytest.raises(InvalidInputError, match="has no attribute Nope"):
        resolve_strategy("my_strategies.bands:Nope")


def test_entry_point_strategies_are_listed_and_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed distribution registering ``bands = my_ep.bands:Bollinger`` under
    the ``hedgeflow.strategies`` group."""
    pkg = tmp_path / "my_ep"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    write_example(pkg, "bands.py")
    dist = tmp_path / "my_ep-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-ep\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[hedgeflow.strategies]\nbands = my_ep.bands:Bollinger\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert strategy_names() == tuple(sorted({*BUILTIN, "bands"}))
    spec = resolve_strategy("bands")
    assert spec.name == "bollinger_revert"
    assert spec.source == "entry point my_ep.bands:Bollinger"


def test_strategies_lists_the_builtins_with_parameters_and_warm_up(tmp_path: Path) -> None:
    proc = cli(tmp_path, "strategies")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "sma_cross  (built-in)" in out
    assert "parameters: fast=20, slow=50, confirm_above_fast=True" in out
    assert "warm-up: 49 bars; indicators: sma_fast, sma_slow" in out
    assert "parameters: window=20, exit_rule='midline'" in out
