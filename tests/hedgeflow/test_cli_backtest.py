"""`hedgeflow backtest --bars FILE`: a user's own data in, trades/equity/metrics out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hedgeflow.cli import main
from hedgeflow.config import CostSettings, RiskSettings
from hedgeflow.engine import EngineConfig, backtest
from hedgeflow.metrics import compute_metrics
from hedgeflow.research import compute_signals
from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.strategies import parse_params

TRADE_HEADER = (
    "trade_id,side,qty,entry_ts,entry_price,exit_ts,exit_price,exit_reason,fees,pnl,return_pct"
)
METRIC_KEYS = {
    "total_return", "cagr", "ann_vol", "sharpe", "sortino", "max_drawdown",
    "calmar", "n_trades", "win_rate", "profit_factor", "exposure",
}  # fmt: skip


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return SyntheticMarket(7).fetch_bars(
        "BTC-USD.CC", "5m", datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 15, tzinfo=UTC)
    )


def test_backtest_csv_matches_the_engine(
    bars: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a user's file: upper-case columns, naive "Datetime" times, no volume
    user = (
        bars.rename(columns=str.upper).drop(columns=["VOLUME"]).rename(columns={"TS": "Datetime"})
    )
    user["Datetime"] = user["Datetime"].dt.tz_localize(None).dt.strftime("%Y-%m-%d %H:%M:%S")
    path = tmp_path / "btc.csv"
    user.to_csv(path, index=False)
    out = tmp_path / "out"
    args = ["backtest", "--bars", str(path), "--strategy", "donchian_breakout"]
    args += ["--param", "window=30", "--param", "exit_rule=lower", "--asset-class", "crypto"]
    args += ["--fee-bps", "5", "--slippage-bps", "2", "--out", str(out)]
    assert main(args) == 0
    assert "sharpe" in capsys.readouterr().out

    trades = (out / "trades.csv").read_text().splitlines()
    assert trades[0] == TRADE_HEADER
    equity = pd.read_csv(out / "equity.csv")
    assert list(equity.columns) == ["ts", "equity", "drawdown"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == METRIC_KEYS

    # the same numbers as calling the engine directly
    params = parse_params("donchian_breakout", {"window": 30, "exit_rule": "lower"})
    signals = compute_signals(bars, "donchian_breakout", params)
    config = EngineConfig.from_settings(
        RiskSettings(), CostSettings(fee_bps=5, slippage_bps=2), "crypto", 100_000.0
    )
    expected = backtest(bars, signals["signal"].to_numpy(), config)
    assert len(trades) - 1 == len(expected.trades) > 0
    np.testing.assert_allclose(equity["equity"], expected.equity["equity"], rtol=1e-12)
    want = compute_metrics(
        expected.equity["equity"].to_numpy(),
        expected.equity["ts"],
        expected.trades,
        "crypto",
        expected.equity["position"].to_numpy(),
    )
    assert metrics["n_trades"] == want["n_trades"]
    assert metrics["sharpe"] == pytest.approx(want["sharpe"], rel=1e-12)
    assert metrics["total_return"] == pytest.approx(want["total_return"], rel=1e-12)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns=["close"]), "close"),
        (lambda f: f.assign(ts=["not a time", *list(f["ts"].iloc[1:])]), "not a time"),
        (lambda f: f.iloc[::-1], "sorted"),
        (lambda f: pd.concat([f.iloc[:5], f.iloc[4:]]), "duplicate"),
        (lambda f: f.assign(open=[-1.0, *list(f["open"].iloc[1:])]), "open"),
    ],
)
def test_bad_files_get_a_clear_error(
    bars: pd.DataFrame, mutate, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = bars.head(200).copy()
    frame["ts"] = frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    path = tmp_path / "bad.csv"
    mutate(frame).to_csv(path, index=False)
    out = tmp_path / "out"
    code = main(["backtest", "--bars", str(path), "--strategy", "sma_cross", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "bad.csv" in err and message in err.lower()
    assert "Traceback" not in err
    assert not out.exists()


def test_unknown_strategy_and_bad_param(bars: pd.DataFrame, tmp_path: Path, capsys) -> None:
    path = tmp_path / "b.parquet"
    bars.to_parquet(path)
    base = ["backtest", "--bars", str(path), "--out", str(tmp_path / "o")]
    assert main([*base, "--strategy", "magic"]) == 2
    assert "unknown strategy 'magic'" in capsys.readouterr().err
    assert main([*base, "--strategy", "sma_cross", "--param", "fast=abc"]) == 2
    assert "fast" in capsys.readouterr().err
    assert main([*base, "--strategy", "sma_cross", "--param", "fast=60", "--param", "slow=50"]) == 2
    assert "fast" in capsys.readouterr().err


def test_allow_short_trades_both_sides_as_the_engine(bars: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "b.parquet"
    bars.to_parquet(path)
    out = tmp_path / "out"
    args = ["backtest", "--bars", str(path), "--strategy", "donchian_breakout", "--allow-short"]
    args += ["--asset-class", "crypto", "--fee-bps", "5", "--slippage-bps", "2", "--out", str(out)]
    assert main(args) == 0
    trades = pd.read_csv(out / "trades.csv")
    assert set(trades["side"]) == {"long", "short"}

    params = parse_params("donchian_breakout", {})
    signals = compute_signals(bars, "donchian_breakout", params, shorts=True)
    config = EngineConfig.from_settings(
        RiskSettings(allow_short=True), CostSettings(fee_bps=5, slippage_bps=2), "crypto", 1e5
    )
    expected = backtest(bars, signals["signal"].to_numpy(), config)
    assert list(trades["side"]) == list(expected.trades["side"])
    np.testing.assert_allclose(trades["pnl"], expected.trades["pnl"], rtol=1e-12)
    # without the flag the same strategy stays long only
    long_args = [*[a for a in args if a != "--allow-short"][:-1], str(tmp_path / "long")]
    assert main(long_args) == 0
    assert set(pd.read_csv(tmp_path / "long" / "trades.csv")["side"]) == {"long"}


def test_allow_short_on_a_strategy_without_shorts_is_one_error_line(
    bars: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    from tests.user_strategy import write_example

    monkeypatch.chdir(tmp_path)
    ref = write_example(tmp_path)
    bars.head(300).to_parquet(tmp_path / "b.parquet")
    out = tmp_path / "out"
    base = ["backtest", "--bars", "b.parquet", "--strategy", ref, "--out", str(out)]
    assert main([*base, "--allow-short"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hedgeflow: error: ")
    assert "cannot produce a short signal" in err[0] and "Bollinger" in err[0]
    assert not out.exists()
    assert main(base) == 0  # long only it runs


def test_sweep_allow_short_on_a_strategy_without_shorts_fails_before_prefect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    from tests.user_strategy import write_example

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEDGEFLOW_HOME", str(tmp_path / "home"))
    ref = write_example(tmp_path)
    assert main(["sweep", "--strategy", ref, "--grid", "window=10,20", "--allow-short"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot produce a short signal" in err[0]
    assert not (tmp_path / "home").exists()  # nothing started, nothing written


def test_order_minimums_skip_and_count_entries_with_a_line(
    bars: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With 50 of equity and a 100 minimum notional every entry is skipped: no trade,
    and one line says how many and why; a bad value is one error line."""
    path = tmp_path / "b.parquet"
    bars.to_parquet(path)
    base = ["backtest", "--bars", str(path), "--strategy", "donchian_breakout"]
    base += ["--asset-class", "crypto", "--equity", "50"]
    assert main([*base, "--min-notional", "100", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert pd.read_csv(tmp_path / "o" / "trades.csv").empty
    line = [x for x in out.splitlines() if "skipped by the order minimums" in x]
    assert len(line) == 1 and "(below_min_notional " in line[0], out
    # the crypto default (1e-5 steps, 10 minimum): 50 of equity trades
    assert main([*base, "--out", str(tmp_path / "d")]) == 0
    trades = pd.read_csv(tmp_path / "d" / "trades.csv")
    assert len(trades) > 0 and "skipped" not in capsys.readouterr().out
    np.testing.assert_allclose(trades["qty"], np.round(trades["qty"], 5), rtol=0, atol=1e-12)
    assert main([*base, "--qty-step", "-1", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["hedgeflow: error: --qty-step must be in [0, 1e12), got -1.0"]
    assert not (tmp_path / "x").exists()
