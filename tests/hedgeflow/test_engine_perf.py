"""Engine speed on 1M bars (excluded by default: run with ``-m slow``).

Target: <= 28 ns per bar (>= 50x faster than vectorbt's from_signals, ~1.4 us/bar),
compile time excluded (kernels are cached on disk).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from hedgeflow.engine import EngineConfig, run_arrays
from hedgeflow.strategies import get_strategy, strategy_names

N = 1_000_000


@pytest.mark.slow
@pytest.mark.parametrize("strategy", strategy_names())
def test_engine_ns_per_bar(strategy):
    rng = np.random.default_rng(1)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, N)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * 1.001
    low = np.minimum(open_, close) * 0.999
    spec = get_strategy(strategy)
    signal, _ = spec.signals(open_, high, low, close, spec.params_type())
    cfg = EngineConfig(fee_bps=5.0, slippage_bps=2.0)
    run_arrays(open_[:100], high[:100], low[:100], close[:100], signal[:100], cfg)  # warm-up
    best = np.inf
    for _ in range(5):
        start = time.perf_counter()
        run_arrays(open_, high, low, close, signal, cfg)
        best = min(best, time.perf_counter() - start)
    ns_per_bar = best / N * 1e9
    print(f"{strategy}: {ns_per_bar:.2f} ns/bar")
    assert ns_per_bar <= 28.0
