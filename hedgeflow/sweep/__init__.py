"""Parameter sweeps: a grid per strategy, run as one compiled batch per symbol.

>>> grid = expand_grid("sma_cross", {"fast": [5, 10, 20], "slow": [20, 50]})
>>> grid.size, grid.skipped          # (20, 20) is refused: fast must be < slow
(5, 1)
>>> frame = sweep_bars(bars, grid, config, "stock", metric="sharpe")  # doctest: +SKIP

``frame`` has one row per valid combination: the grid parameters, ``params``
(JSON text), the metrics of DESIGN convention 6 and ``rank`` (1 = best by the
metric). Every metric equals, exactly, what ``strategy.signals`` ->
``engine.run_arrays`` -> ``metrics.compute_metrics`` gives for that combination.
"""

from __future__ import annotations

from hedgeflow.sweep.core import (
    RANK_METRICS,
    RankMetric,
    SymbolResult,
    best_rows,
    params_json,
    rank_results,
    sweep_arrays,
    sweep_bars,
    sweep_returns,
    sweep_symbol_bars,
)
from hedgeflow.sweep.grid import (
    MAX_COMBINATIONS,
    SweepGrid,
    expand_grid,
    grid_from_strings,
)

__all__ = [
    "MAX_COMBINATIONS",
    "RANK_METRICS",
    "RankMetric",
    "SweepGrid",
    "SymbolResult",
    "best_rows",
    "expand_grid",
    "grid_from_strings",
    "params_json",
    "rank_results",
    "sweep_arrays",
    "sweep_bars",
    "sweep_returns",
    "sweep_symbol_bars",
]
