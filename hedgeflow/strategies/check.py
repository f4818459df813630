"""``hedgeflow strategies check``: prove a strategy sound on generated bars.

For each asset class (synthetic stock, forex and crypto bars, a seeded market):

- **batch = streaming = sweep**, bit for bit: the batch signals and indicators equal
  the live streaming update's on every bar, and the sweep kernel's statistics equal
  the engine's on the batch signal;
- **no look-ahead**: a bar's signal and indicators never change when the bars after
  it change or are cut off (the first offending bar is named);
- **the declared warm-up is honest**: no signal before it, and every indicator is
  defined from it on;
- **deterministic**: a second run gives the same signals.

A strategy that declares ``shorts`` is checked twice: as it runs with shorts off
(where it must never return -1: ``long only when off``) and with shorts on (every
check above, named ``... (shorts)``, the sweep with ``allow_short``).

Pure: no Prefect, no warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hedgeflow.config import DEFAULT_MINIMUMS
from hedgeflow.engine import EngineConfig, engine_settings
from hedgeflow.errors import InvalidInputError
from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.strategies import resolve_strategy
from hedgeflow.strategies.base import Strategy
from hedgeflow.sweep import kernels as K

__all__ = ["CHECK_SYMBOLS", "CheckResult", "Finding", "check_strategy"]

CHECK_SYMBOLS: dict[str, str] = {
    "stock": "AAPL.US",
    "forex": "EURUSD.FOREX",
    "crypto": "BTC-USD.CC",
}
_START = pd.Timestamp("2025-03-03", tz="UTC")


@dataclass(frozen=True)
class Finding:
    check: str
    asset_class: str
    ok: bool
    detail: str


@dataclass
class CheckResult:
    ref: str
    params: Any
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def lines(self) -> list[str]:
        out = [f"strategy {self.ref} with {self.params}"]
        for f in self.findings:
            out.append(
                f"  {'ok  ' if f.ok else 'FAIL'} {f.check:<28} {f.asset_class:<7} {f.detail}"
            )
        out.append("sound" if self.ok else "NOT sound")
        return out


def _bars(asset_class: str, days: int, seed: int) -> pd.DataFrame:
    symbol = CHECK_SYMBOLS[asset_class]
    return SyntheticMarket(seed).fetch_bars(symbol, "5m", _START, _START + pd.Timedelta(days=days))


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _arrays(bars: pd.DataFrame) -> Arrays:
    o, h, lo, c = (
        np.ascontiguousarray(bars[x].to_numpy(np.float64)) for x in ("open", "high", "low", "close")
    )
    return o, h, lo, c


def _first_diff(a: np.ndarray, b: np.ndarray) -> int:
    """First index where two equal-length arrays differ (NaN equals NaN), or -1."""
    same = (a == b) | (np.isnan(a) & np.isnan(b)) if a.dtype.kind == "f" else a == b
    bad = np.flatnonzero(~same)
    return int(bad[0]) if bad.size else -1


def _first_diff_all(
    sig_a: np.ndarray, ind_a: dict[str, np.ndarray], sig_b: np.ndarray, ind_b: dict[str, np.ndarray]
) -> tuple[int, str]:
    first, what = _first_diff(sig_a, sig_b), "signal"
    for col in ind_a:
        i = _first_diff(ind_a[col], ind_b[col])
        if i >= 0 and (first < 0 or i < first):
            first, what = i, col
    return first, what


def _streaming(
    strategy: Strategy, params: Any, arrays: Arrays, shorts: bool = False
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    o, h, lo, c = arrays
    n = c.shape[0]
    sig = np.zeros(n, dtype=np.int8)
    ind = {col: np.empty(n) for col in strategy.indicators}
    stream = strategy.streaming(params, shorts=shorts)
    for i in range(n):
        s, values = stream.update(o[i], h[i], lo[i], c[i])
        sig[i] = s
        for col, v in values.items():
            ind[col][i] = v
    return sig, ind


def _check_class(
    strategy: Strategy,
    params: Any,
    asset_class: str,
    days: int,
    seed: int,
    cuts: int,
    shorts: bool = False,
) -> list[Finding]:
    bars = _bars(asset_class, days, seed)
    arrays = _arrays(bars)
    n = arrays[3].shape[0]
    ts = bars["ts"]
    out: list[Finding] = []

    def at(i: int) -> str:
        return f"bar {i} ({ts.iat[i]:%Y-%m-%d %H:%M}Z)"

    tag = " (shorts)" if shorts else ""

    def signals(o: Any, h: Any, lo: Any, c: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return strategy.signals(o, h, lo, c, params, shorts=shorts)

    o, h, lo, c = arrays
    sig, ind = signals(o, h, lo, c)
    if strategy.shorts and not shorts:
        shorted = np.flatnonzero(sig == -1)
        out.append(
            Finding(
                "long only when off",
                asset_class,
                shorted.size == 0,
                f"no -1 in {n} bars with shorts off" if shorted.size == 0
                else f"signal -1 at {at(int(shorted[0]))} with shorts off",
            )
        )  # fmt: skip
    # batch = streaming
    s_sig, s_ind = _streaming(strategy, params, arrays, shorts)
    i, what = _first_diff_all(sig, ind, s_sig, s_ind)
    out.append(
        Finding(
            "batch = streaming" + tag,
            asset_class,
            i < 0,
            f"{n} bars identical" if i < 0 else f"{what} differs at {at(i)}",
        )
    )
    # sweep = batch (the generated sweep kernel vs the engine on the batch signal)
    config = EngineConfig(
        stop_pct=0.005, take_profit_pct=0.01, fee_bps=1.0, slippage_bps=1.0,
        qty_step=DEFAULT_MINIMUMS[asset_class].qty_step,
        min_notional=DEFAULT_MINIMUMS[asset_class].min_notional, allow_short=shorts,
    )  # fmt: skip
    eng = engine_settings(config)
    empty = np.empty(0, dtype=np.float64)
    swept = strategy.kernels().sweep(
        *arrays, empty, eng, strategy.pack(params, shorts=shorts)[None, :].copy(),
        np.array([strategy.size(params)], dtype=np.int64), len(strategy.indicators),
        np.zeros(1, dtype=np.int64),
    )[0][0]  # fmt: skip
    direct = np.empty(K.N_STATS)
    K._combo(o, h, lo, c, sig, empty, eng, direct)
    same = bool(np.array_equal(swept, direct, equal_nan=True))
    out.append(
        Finding(
            "sweep = batch" + tag,
            asset_class,
            same,
            f"{int(direct[K.S_N_TRADES])} trades, statistics identical"
            if same
            else "the sweep kernel's statistics differ from the engine's on the batch signal",
        )
    )
    # no look-ahead: cut off, and change, everything after a bar
    rng = np.random.default_rng(seed)
    points = np.unique(np.linspace(1, n - 1, cuts).astype(int))
    first_bad = -1
    how = ""
    for t in points:
        cut_sig, cut_ind = signals(o[:t], h[:t], lo[:t], c[:t])
        i, what = _first_diff_all(sig[:t], {k: v[:t] for k, v in ind.items()}, cut_sig, cut_ind)
        if i >= 0 and (first_bad < 0 or i < first_bad):
            first_bad, how = i, f"{what} changes when the bars from {at(int(t))} on are cut off"
        changed = [a.copy() for a in arrays]
        factor = np.exp(rng.normal(0.0, 0.02, n - t)).cumprod()
        for a in changed:
            a[t:] = a[t:] * factor
        o2, h2, lo2, c2 = changed
        h2[t:] = np.maximum.reduce([o2[t:], h2[t:], lo2[t:], c2[t:]])
        lo2[t:] = np.minimum.reduce([o2[t:], h2[t:], lo2[t:], c2[t:]])
        ch_sig, ch_ind = signals(o2, h2, lo2, c2)
        head = {k: v[:t] for k, v in ind.items()}
        i, what = _first_diff_all(sig[:t], head, ch_sig[:t], {k: v[:t] for k, v in ch_ind.items()})
        if i >= 0 and (first_bad < 0 or i < first_bad):
            first_bad, how = i, f"{what} changes when the bars from {at(int(t))} on change"
    out.append(
        Finding(
            "no look-ahead" + tag,
            asset_class,
            first_bad < 0,
            f"{len(points)} cut-offs and changes of later bars" if first_bad < 0
            else f"{how}: first offending bar is {at(first_bad)}",
        )
    )  # fmt: skip
    # warm-up
    w = int(strategy.warmup(params))
    early = np.flatnonzero(sig[: max(w, 0)] != 0)
    undefined = [
        (int(np.flatnonzero(np.isnan(v[w:]))[0]) + w, col)
        for col, v in ind.items()
        if w < n and np.isnan(v[w:]).any()
    ]
    if early.size:
        ok, detail = (
            False,
            f"signal {int(sig[early[0]])} at {at(int(early[0]))}, before the warm-up of {w} bars",
        )
    elif undefined:
        i, col = min(undefined)
        ok, detail = False, f"{col} undefined at {at(i)}, after the declared warm-up of {w} bars"
    else:
        ok, detail = True, f"{w} bars: no signal before, every indicator defined from it on"
    out.append(Finding("warm-up honest" + tag, asset_class, ok, detail))
    # determinism
    again_sig, again_ind = signals(o, h, lo, c)
    i, what = _first_diff_all(sig, ind, again_sig, again_ind)
    out.append(
        Finding(
            "deterministic" + tag,
            asset_class,
            i < 0,
            "two runs identical" if i < 0 else f"{what} differs at {at(i)}",
        )
    )
    return out


def check_strategy(
    ref: str, params: Any | None = None, days: int = 20, seed: int = 7, cuts: int = 12
) -> CheckResult:
    """Check ``ref`` (with ``params`` or its defaults) on each asset class."""
    strategy = resolve_strategy(ref)
    if params is None:
        try:
            params = strategy.params()
        except InvalidInputError:
            raise
        except Exception as exc:
            raise InvalidInputError(
                f"strategy {ref}: its parameters have no valid defaults: {exc}"
            ) from None
    result = CheckResult(ref, params)
    for shorts in (False, True) if strategy.shorts else (False,):
        for asset_class in CHECK_SYMBOLS:
            result.findings.extend(
                _check_class(strategy, params, asset_class, days, seed, cuts, shorts)
            )
    return result
