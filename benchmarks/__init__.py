"""hedgeflow benchmarks against named peers: ``python -m benchmarks [ingest|engine|all]``.

Each benchmark module exposes ``run(...) -> result`` (numbers plus the agreement
checks it asserts) and ``render(result) -> str`` (its markdown section). The
command runs the chosen benchmarks in one process and rewrites only their own
sections of ``BENCHMARKS.md`` (see ``benchmarks.report``).
"""

from __future__ import annotations

BENCHMARKS: tuple[str, ...] = (
    "ingest",
    "engine",
    "backtest",
    "sweep",
    "universe",
    "live",
    "commands",
    "notify",
    "overfit",
    "walkforward",
)
