"""The live benchmark's per-bar helper (benchmarks._live_agent) runs and measures."""

from __future__ import annotations

from benchmarks._live_agent import per_bar_seconds


def test_per_bar_seconds_helper_runs() -> None:
    out = per_bar_seconds("forex", days=2, warmup_bars=100, repeats=1)
    assert out["strategy"] == "rsi_mean_revert" and out["bars"] > 100
    assert 0 < out["best_s"] <= out["median_s"] < 1e-3
    # reading the steps (events, state, indicators) costs more than producing them
    assert out["median_s"] < out["read_median_s"] < 1e-2
