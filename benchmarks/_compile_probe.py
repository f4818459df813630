"""Child process for compile-time measurements (run by ``benchmarks.compile_times``).

``python -m benchmarks._compile_probe TARGET...`` times the first and the second call of
each target in a fresh interpreter and prints one JSON object. The parent sets
``NUMBA_CACHE_DIR`` to a temporary directory: empty for a cold compile, the same
directory again for a cache load. ``numba_init`` (compiling a trivial function) runs
first so that LLVM's one-time start-up is not charged to the first real target.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def _bars(n: int = 300) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * 1.002
    low = np.minimum(open_, close) * 0.998
    return open_, high, low, close


def _target(name: str) -> Callable[[], Any]:
    o, h, lo, c = _bars()
    if name == "engine":
        from hedgeflow.engine import EngineConfig, run_arrays

        sig = (np.arange(len(c)) // 7 % 2).astype(np.int8)
        cfg = EngineConfig(fee_bps=5.0, slippage_bps=2.0)
        return lambda: run_arrays(o, h, lo, c, sig, cfg)
    if name.startswith("signals:"):
        from hedgeflow.strategies import get_strategy

        spec = get_strategy(name.split(":", 1)[1])
        params = spec.params_type()
        return lambda: spec.signals(o, h, lo, c, params)
    if name == "parse_intraday_json":
        from hedgeflow.sources.eodhd_format import parse_intraday_json

        body = (
            b'[{"timestamp":1640995200,"gmtoffset":0,"datetime":"2022-01-01 00:00:00",'
            b'"open":1.5,"high":2,"low":1.25,"close":1.75,"volume":10}]'
        )
        return lambda: parse_intraday_json(body)
    raise SystemExit(f"unknown target {name!r}")


def main(argv: list[str]) -> None:
    import numba

    t0 = time.perf_counter()

    @numba.njit
    def _noop(x: float) -> float:
        return x + 1.0

    _noop(1.0)
    out: dict[str, Any] = {"numba_init": time.perf_counter() - t0, "targets": {}}
    for name in argv:
        fn = _target(name)  # imports happen here, outside the timed calls
        t1 = time.perf_counter()
        fn()
        t2 = time.perf_counter()
        fn()
        t3 = time.perf_counter()
        out["targets"][name] = {"first": t2 - t1, "second": t3 - t2}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
