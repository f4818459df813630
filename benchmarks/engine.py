"""Engine: hedgeflow's compiled event loop vs vectorbt ``from_signals`` and backtesting.py.

For each built-in strategy (default parameters) the signals are computed once with
hedgeflow on the same ~1M synthetic 5-minute bars; then, interleaved in one process:

* hedgeflow ``run_arrays`` (arrays in, trade arrays out) and ``backtest`` (bars frame
  in, trades and equity frames out);
* vectorbt ``Portfolio.from_signals`` with the same orders: entries on 0 -> 1
  changes and exits on 1 -> 0 changes, shifted one bar and filled at ``price=open``
  (hedgeflow fills at the next bar's open), ``sl_stop``/``tp_stop`` measured from the
  fill price (``StopEntryPrice.FillPrice``), stop exits at the stop level with
  slippage (``StopExitPrice.StopMarket``, the open when gapped through), the same
  fee and slippage rates;
* backtesting.py ``Backtest(...).run()`` following the same precomputed signal, on the
  first 100k bars (it is slow), next to hedgeflow on the same 100k bars.

Trades must equal vectorbt's (entry bar, exit bar, entry and exit price) except
where the two rule sets differ by design; those exceptions are counted by kind
and every other trade is asserted equal.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._common import (
    CompileTimes,
    Timing,
    compile_table,
    compile_times,
    fmt_ns,
    fmt_ratio,
    fmt_seconds,
    interleaved,
    machine_info,
    machine_line,
    synthetic_bars,
    table,
    utc,
)

NAME = "engine"
STRATEGIES: tuple[str, ...] = ("sma_cross", "rsi_mean_revert", "donchian_breakout")
SYMBOL = "BTC-USD.CC"
INTERVAL = "5m"
START = utc(2015, 1, 1)
FULL_DAYS = 3473  # ~1.0M five-minute crypto bars (24x7)
QUICK_DAYS = 120
BT_BARS = 100_000
QUICK_BT_BARS = 5_000
TARGET_RATIO = 50.0
REL_TOL = 1e-12  # prices are computed with the same float operations: expect exact

HF_RUN = "hedgeflow run_arrays"
HF_BT = "hedgeflow backtest()"
VBT_NP = "vectorbt (numpy)"
VBT_PD = "vectorbt (pandas)"
BTPY = "backtesting.py"
HF_RUN_SMALL = "hedgeflow run_arrays (bt.py bars)"
HF_BEFORE = "hedgeflow run_arrays before rules.py"
HF_RUN_PAIR = "hedgeflow run_arrays (paired with the frozen loop)"
# The rules against the frozen loop: their own interleaved pair, more repeats, away
# from the peers' allocations (which decide whether a call's fresh output arrays
# fault on every page, a few ns/bar of noise that would fall on one side or the other).
PAIR_REPEAT = 11
BEFORE_LIMIT = 1.2  # the shared rules may cost at most 20 % over the fused loop

# hedgeflow exit reasons (engine.EXIT_REASONS)
R_SIGNAL, R_STOP, R_TAKE_PROFIT, R_END = 0, 1, 2, 3


def engine_config() -> Any:
    """The engine defaults with the crypto cost defaults (5 bps fee, 2 bps slippage).

    With risk_per_trade == stop_pct (both 1%), risk sizing gives qty = equity / fill,
    which is exactly the 1x leverage cap: every entry puts the whole equity in.
    """
    from hedgeflow.config import DEFAULT_COSTS
    from hedgeflow.engine import EngineConfig

    costs = DEFAULT_COSTS["crypto"]
    return EngineConfig(fee_bps=costs.fee_bps, slippage_bps=costs.slippage_bps)


def order_arrays(signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """vectorbt entries/exits for a 0/1 signal: its 0 -> 1 / 1 -> 0 changes (the signal
    before the first bar counts as 0), shifted one bar so they fill at the next open."""
    sig = np.asarray(signal, dtype=np.int8)
    prev = np.r_[np.int8(0), sig[:-1]]
    rise = (sig == 1) & (prev == 0)
    fall = (sig == 0) & (prev == 1)
    entries = np.r_[False, rise[:-1]]
    exits = np.r_[False, fall[:-1]]
    return entries, exits


def order_arrays_both(
    signal: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """vectorbt (entries, exits, short_entries, short_exits) for a -1/0/1 signal, shifted
    one bar like :func:`order_arrays`: an entry where the signal turns to a side, an exit
    where it leaves a side for 0. A 1 <-> -1 change is only the opposite entry: vectorbt
    reverses the position at that order (``upon_opposite_entry='Reverse'``), as
    hedgeflow exits and enters at one open."""
    sig = np.asarray(signal, dtype=np.int8)
    prev = np.r_[np.int8(0), sig[:-1]]
    changes = (
        (sig == 1) & (prev != 1),
        (sig == 0) & (prev == 1),
        (sig == -1) & (prev != -1),
        (sig == 0) & (prev == -1),
    )
    entries, exits, short_entries, short_exits = (np.r_[False, x[:-1]] for x in changes)
    return entries, exits, short_entries, short_exits


def run_vbt_both(o, h, lo, c, orders: tuple[np.ndarray, ...], cfg: Any) -> Any:
    """vectorbt ``from_signals`` with long and short signals (:func:`order_arrays_both`)."""
    import vectorbt as vbt

    kw = vbt_kwargs(cfg)
    del kw["direction"]  # direction-aware signals
    entries, exits, short_entries, short_exits = orders
    return vbt.Portfolio.from_signals(
        c, entries, exits, short_entries=short_entries, short_exits=short_exits,
        upon_opposite_entry="Reverse", price=o, open=o, high=h, low=lo, **kw,
    )  # fmt: skip


def vbt_kwargs(cfg: Any) -> dict[str, Any]:
    from vectorbt.portfolio.enums import StopEntryPrice, StopExitPrice

    return {
        "sl_stop": cfg.stop_pct,
        "tp_stop": cfg.take_profit_pct,
        "stop_entry_price": StopEntryPrice.FillPrice,
        "stop_exit_price": StopExitPrice.StopMarket,
        "fees": cfg.fee_bps / 1e4,
        "slippage": cfg.slippage_bps / 1e4,
        # one unit per trade with unlimited cash: vectorbt's trade bars and prices then
        # never depend on the equity path (see the Method notes on sizing)
        "size": 1.0,
        "size_type": "amount",
        "init_cash": "auto",
        "direction": "longonly",
    }


def run_vbt(o, h, lo, c, entries, exits, cfg, index: pd.DatetimeIndex | None = None) -> Any:
    import vectorbt as vbt

    kw = vbt_kwargs(cfg)
    if index is None:
        return vbt.Portfolio.from_signals(c, entries, exits, price=o, open=o, high=h, low=lo, **kw)

    def s(x: np.ndarray) -> pd.Series:
        return pd.Series(x, index=index)

    return vbt.Portfolio.from_signals(
        s(c), s(entries), s(exits), price=s(o), open=s(o), high=s(h), low=s(lo), **kw
    )


# ------------------------------------------------------------------ agreement


@dataclass
class Agreement:
    hf_trades: int
    vbt_trades: int
    identical: int = 0
    open_at_end: int = 0  # hedgeflow's `end` exit == vectorbt's open trade at the last close
    fill_bar: int = 0  # hedgeflow stop/target inside the fill bar (vectorbt: not checked)
    signal_vs_stop: int = 0  # our signal exit at the open; vectorbt: a stop in that bar
    # shorts on: an entry of ours in a bar where vectorbt left its position by a stop
    # (after (a) or (b), or at an open beyond a level): vectorbt takes no entry in a bar
    # whose stop fired, so that trade of ours has no twin
    reversal_entry: int = 0
    other: int = 0
    shorts: int = 0  # of hf_trades (the shorts-on comparison)
    examples: list[dict[str, Any]] = field(default_factory=list)
    max_rel_diff: float = 0.0  # over the trades counted identical

    @property
    def exceptions(self) -> int:
        return self.fill_bar + self.signal_vs_stop + self.reversal_entry


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b))


def compare_with_vbt(out: dict[str, np.ndarray], pf: Any, o, h, lo, c, exits, cfg) -> Agreement:
    """Match trades by entry bar and classify every difference; ``exits``: the bars
    with an order at the open (long only: the exits). Shorts mirror every level and
    the slippage (a short sells to open, buys to cover)."""
    rec = pf.exit_trades.records
    v = {k: np.asarray(rec[k]) for k in ("entry_idx", "exit_idx", "entry_price", "exit_price")}
    v_status = np.asarray(rec["status"])  # 0 open, 1 closed
    v_short = np.asarray(rec["direction"]) == 1
    sides = out.get("side")
    n = len(c)
    slip = cfg.slippage_bps / 1e4
    res = Agreement(hf_trades=len(out["entry_idx"]), vbt_trades=len(v["entry_idx"]))
    by_entry = {int(e): k for k, e in enumerate(v["entry_idx"])}
    seen_vbt: set[int] = set()
    b_exits: set[int] = set()  # bars of our (b) signal exits
    for j in range(res.hf_trades):
        e = int(out["entry_idx"][j])
        x = int(out["exit_idx"][j])
        ep = float(out["entry_price"][j])
        xp = float(out["exit_price"][j])
        reason = int(out["reason"][j])
        k = by_entry.get(e)
        sgn = 1.0 if sides is None else float(sides[j])
        if k is None and e in b_exits:
            res.reversal_entry += 1
            continue
        if k is None or bool(v_short[k]) != (sgn < 0):
            res.other += 1
            _example(res, "no vectorbt trade with this entry bar and side", e, x, ep, xp, reason)
            continue
        seen_vbt.add(k)
        vx, vep, vxp = int(v["exit_idx"][k]), float(v["entry_price"][k]), float(v["exit_price"][k])
        if not _close(ep, vep):
            res.other += 1
            _example(res, f"entry price differs (vectorbt {vep!r})", e, x, ep, xp, reason)
            continue
        stop = ep * (1.0 - sgn * cfg.stop_pct)
        tp = ep * (1.0 + sgn * cfg.take_profit_pct)
        exit_slip = 1.0 - sgn * slip  # a long sells, a short buys to cover
        if sgn > 0:
            inside, hit_stop, hit_tp = stop < o[x] < tp, lo[x] <= stop, h[x] >= tp
        else:
            inside, hit_stop, hit_tp = tp < o[x] < stop, h[x] >= stop, lo[x] <= tp
        if vx == x and _close(xp, vxp):
            res.identical += 1
            if reason == R_SIGNAL and not inside:
                b_exits.add(x)  # at an open beyond a level: vectorbt's stop, same price
            res.max_rel_diff = max(
                res.max_rel_diff, abs(xp - vxp) / abs(vxp), abs(ep - vep) / abs(vep)
            )
        elif (
            reason == R_END
            and v_status[k] == 0
            and vx == x == n - 1
            and _close(vxp, c[-1])
            and _close(xp, c[-1] * exit_slip)
        ):
            res.open_at_end += 1
        elif reason in (R_STOP, R_TAKE_PROFIT) and x == e and vx > x:
            res.fill_bar += 1
            b_exits.add(vx)  # vectorbt still holds it: its exit bar may drop our next entry
        elif (
            reason == R_SIGNAL
            and vx == x
            and bool(exits[x])
            and _close(xp, o[x] * exit_slip)
            and inside
            and (
                (hit_stop and _close(vxp, stop * exit_slip))
                or (not hit_stop and hit_tp and _close(vxp, tp * exit_slip))
            )
        ):
            res.signal_vs_stop += 1
            b_exits.add(x)
        else:
            res.other += 1
            _example(res, f"exit differs (vectorbt bar {vx}, price {vxp!r})", e, x, ep, xp, reason)
    unmatched = res.vbt_trades - len(seen_vbt)
    if unmatched:
        res.other += unmatched
        extra = sorted(set(range(res.vbt_trades)) - seen_vbt)[:3]
        for k in extra:
            res.examples.append({"what": "vectorbt trade without hedgeflow twin", "vbt_index": k})
    return res


def _example(res: Agreement, what: str, e: int, x: int, ep: float, xp: float, r: int) -> None:
    if len(res.examples) < 5:
        res.examples.append(
            {"what": what, "entry": e, "exit": x, "entry_px": ep, "exit_px": xp, "reason": r}
        )


def compare_shorts(name: str, o, h, lo, c, cfg: Any) -> Agreement:
    """The strategy with shorts on (its -1/0/1 signal, ``allow_short``) against vectorbt
    with long and short signals; anything beyond the documented cases fails."""
    from dataclasses import replace

    from hedgeflow.engine import run_arrays
    from hedgeflow.strategies import get_strategy

    spec = get_strategy(name)
    signal, _ = spec.signals(o, h, lo, c, spec.params_type(), shorts=True)
    both = replace(cfg, allow_short=True)
    orders = order_arrays_both(signal)
    out = run_arrays(o, h, lo, c, signal, both)
    at_open = orders[0] | orders[1] | orders[2] | orders[3]
    res = compare_with_vbt(out, run_vbt_both(o, h, lo, c, orders, both), o, h, lo, c, at_open, both)
    assert res.other == 0, (
        f"{name} with shorts: {res.other} trades differ from vectorbt beyond the documented "
        f"exceptions, e.g. {res.examples}"
    )
    assert (out["side"] < 0).any(), f"{name} with shorts made no short trade"
    res.shorts = int((out["side"] < 0).sum())
    return res


# -------------------------------------------------------------- backtesting.py


def run_backtesting_py(bars: pd.DataFrame, signal: np.ndarray, cfg: Any) -> pd.Series:
    """backtesting.py following the precomputed signal with the same order rules.

    Orders sent at bar i's close fill at bar i+1's open (``trade_on_close=False``);
    the fill carries SL/TP set from the fill price (``NextOpen x (1 + slippage)``, known
    here because the signal is precomputed) and backtesting.py checks them from the
    fill bar on, like hedgeflow. ``spread`` = slippage (applied at entry only by
    backtesting.py), ``commission`` = fee rate. Cash is large so that whole-unit sizing
    (``size=0.99`` of equity) is not coarse.
    """
    from backtesting import Backtest, Strategy

    slip = cfg.slippage_bps / 1e4
    stop_pct, tp_pct = cfg.stop_pct, cfg.take_profit_pct
    data = pd.DataFrame(
        {
            "Open": bars["open"].to_numpy(),
            "High": bars["high"].to_numpy(),
            "Low": bars["low"].to_numpy(),
            "Close": bars["close"].to_numpy(),
            "Volume": bars["volume"].fillna(0.0).to_numpy(),
            "Signal": np.asarray(signal, dtype=np.float64),
            "NextOpen": np.r_[bars["open"].to_numpy()[1:], np.nan],
        },
        index=pd.DatetimeIndex(bars["ts"]).tz_localize(None),
    )

    class FollowSignal(Strategy):
        def init(self) -> None:
            self._pending_levels: tuple[float, float] | None = None

        def next(self) -> None:
            sig = self.data.Signal
            s = sig[-1]
            p = sig[-2] if len(sig) > 1 else 0.0
            if self._pending_levels is not None and self.trades:
                sl, tp = self._pending_levels  # levels the order could not carry
                for t in self.trades:
                    t.sl, t.tp = sl, tp
                self._pending_levels = None
            if self.position:
                if s == 0.0 and p == 1.0:
                    self.position.close()
            elif s == 1.0 and p == 0.0:
                nxt = self.data.NextOpen[-1]
                if nxt != nxt:  # no next bar
                    return
                fill = nxt * (1.0 + slip)
                sl, tp = fill * (1.0 - stop_pct), fill * (1.0 + tp_pct)
                ref = self.data.Close[-1] * (1.0 + slip)
                if sl < ref < tp:  # backtesting.py checks SL < price < TP at order time
                    self.buy(size=0.99, sl=sl, tp=tp)
                else:
                    self._pending_levels = (sl, tp)
                    self.buy(size=0.99)

    import backtesting.backtesting as btmod

    progress = btmod._tqdm
    btmod._tqdm = _no_progress  # no progress bar on stderr (also saves the peer its cost)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bt = Backtest(
                data,
                FollowSignal,
                cash=1e9,
                spread=slip,
                commission=cfg.fee_bps / 1e4,
                finalize_trades=True,
            )
            return bt.run()
    finally:
        btmod._tqdm = progress


def _no_progress(seq: Any, **_: Any) -> Any:
    return seq


def compare_with_backtesting_py(out: dict[str, np.ndarray], stats: pd.Series) -> dict[str, int]:
    trades = stats["_trades"]
    theirs = set(zip(trades["EntryBar"].tolist(), trades["ExitBar"].tolist(), strict=True))
    ours = set(zip(out["entry_idx"].tolist(), out["exit_idx"].tolist(), strict=True))
    return {"hf": len(ours), "btpy": len(theirs), "same_bars": len(ours & theirs)}


# ------------------------------------------------------------------------ run


@dataclass
class StrategyResult:
    name: str
    n_bars: int
    n_bt_bars: int
    signal_seconds: float
    timings: dict[str, Timing]
    bt_timings: dict[str, Timing]
    agreement: Agreement
    btpy_agreement: dict[str, int]
    trades: int
    short_agreement: Agreement | None = None  # shorts on: vectorbt long and short signals
    pair_timings: dict[str, Timing] = field(default_factory=dict)  # rules vs frozen loop

    def ns(self, who: str, stat: str = "median") -> float:
        if who in self.pair_timings:
            return getattr(self.pair_timings[who], stat) / self.n_bars * 1e9
        t = self.timings[who] if who in self.timings else self.bt_timings[who]
        n = self.n_bars if who in self.timings else self.n_bt_bars
        return getattr(t, stat) / n * 1e9

    def ratio(self, peer: str, ours: str) -> float:
        return self.ns(peer) / self.ns(ours)


@dataclass
class EngineResult:
    n_bars: int
    n_bt_bars: int
    repeat: int
    bt_repeat: int
    strategies: list[StrategyResult]
    compile: CompileTimes
    data_seconds: float
    machine: dict[str, str]
    command: str
    notes: list[str] = field(default_factory=list)


def run(
    *,
    days: int = FULL_DAYS,
    bt_bars: int = BT_BARS,
    repeat: int = 5,
    bt_repeat: int | None = None,
    strategies: tuple[str, ...] = STRATEGIES,
    command: str = "",
    quick: bool = False,
    measure_compile: bool = True,
) -> EngineResult:
    from benchmarks._engine_before import run_arrays_before
    from hedgeflow.engine import backtest, run_arrays
    from hedgeflow.strategies import get_strategy

    bt_repeat = bt_repeat if bt_repeat is not None else min(repeat, 3)
    compile_res = (
        compile_times(("engine", *(f"signals:{s}" for s in strategies)))
        if measure_compile
        else None
    )
    t0 = time.perf_counter()
    bars = synthetic_bars(SYMBOL, INTERVAL, START, days)
    data_seconds = time.perf_counter() - t0
    n = len(bars)
    o, h, lo, c = (bars[k].to_numpy(np.float64) for k in ("open", "high", "low", "close"))
    index = pd.DatetimeIndex(bars["ts"])
    cfg = engine_config()
    nb = min(bt_bars, n)
    small = bars.iloc[:nb].reset_index(drop=True)
    so, sh, slo, sc = (a[:nb] for a in (o, h, lo, c))

    results = []
    for name in strategies:
        spec = get_strategy(name)
        params = spec.params_type()
        spec.signals(o[:100], h[:100], lo[:100], c[:100], params)  # load compiled kernels
        t1 = time.perf_counter()
        signal, _ = spec.signals(o, h, lo, c, params)
        signal_seconds = time.perf_counter() - t1
        entries, exits = order_arrays(signal)

        timings = interleaved(
            {
                HF_RUN: lambda _, s=signal: run_arrays(o, h, lo, c, s, cfg),
                HF_BT: lambda _, s=signal: backtest(bars, s, cfg),
                VBT_NP: lambda _, en=entries, ex=exits: run_vbt(o, h, lo, c, en, ex, cfg),
                VBT_PD: lambda _, en=entries, ex=exits: run_vbt(o, h, lo, c, en, ex, cfg, index),
            },
            repeat=repeat,
        )
        pair_timings = interleaved(
            {
                HF_RUN_PAIR: lambda _, s=signal: run_arrays(o, h, lo, c, s, cfg),
                HF_BEFORE: lambda _, s=signal: run_arrays_before(o, h, lo, c, s, cfg),
            },
            repeat=max(repeat, PAIR_REPEAT) if not quick else repeat,
        )
        out = run_arrays(o, h, lo, c, signal, cfg)
        assert run_arrays_before(o, h, lo, c, signal, cfg) == len(out["pnl"])
        agreement = compare_with_vbt(
            out, run_vbt(o, h, lo, c, entries, exits, cfg), o, h, lo, c, exits, cfg
        )
        assert agreement.other == 0, (
            f"{name}: {agreement.other} trades differ from vectorbt beyond the documented "
            f"exceptions, e.g. {agreement.examples}"
        )
        short_agreement = compare_shorts(name, o, h, lo, c, cfg)
        # the pandas flavour must give vectorbt's same trades
        pd_rec = run_vbt(o, h, lo, c, entries, exits, cfg, index).exit_trades.records
        np_rec = run_vbt(o, h, lo, c, entries, exits, cfg).exit_trades.records
        assert np.array_equal(pd_rec["exit_idx"].to_numpy(), np_rec["exit_idx"].to_numpy())

        small_signal = signal[:nb]
        bt_timings = interleaved(
            {
                HF_RUN_SMALL: lambda _, s=small_signal: run_arrays(so, sh, slo, sc, s, cfg),
                BTPY: lambda _, s=small_signal: run_backtesting_py(small, s, cfg),
            },
            repeat=bt_repeat,
        )
        stats = run_backtesting_py(small, small_signal, cfg)
        btpy_agreement = compare_with_backtesting_py(
            run_arrays(so, sh, slo, sc, small_signal, cfg), stats
        )
        results.append(
            StrategyResult(
                name=name,
                n_bars=n,
                n_bt_bars=nb,
                signal_seconds=signal_seconds,
                timings=timings,
                bt_timings=bt_timings,
                agreement=agreement,
                btpy_agreement=btpy_agreement,
                trades=len(out["entry_idx"]),
                short_agreement=short_agreement,
                pair_timings=pair_timings,
            )
        )
    return EngineResult(
        n_bars=n,
        n_bt_bars=nb,
        repeat=repeat,
        bt_repeat=bt_repeat,
        strategies=results,
        compile=compile_res,  # type: ignore[arg-type]
        data_seconds=data_seconds,
        machine=machine_info(("vectorbt", "backtesting")),
        command=command,
        notes=["quick run (small data): not the reference numbers"] if quick else [],
    )


# --------------------------------------------------------------------- report


def _geo_mean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def render(res: EngineResult) -> str:
    strategies = res.strategies
    vbt_run = [s.ratio(VBT_NP, HF_RUN) for s in strategies]
    vbt_run_best = [s.ns(VBT_NP, "best") / s.ns(HF_RUN, "best") for s in strategies]
    vbt_bt = [s.ratio(VBT_NP, HF_BT) for s in strategies]
    vbt_pd_bt = [s.ratio(VBT_PD, HF_BT) for s in strategies]
    btpy = [s.ratio(BTPY, HF_RUN_SMALL) for s in strategies]
    target_ok = min(vbt_run) >= TARGET_RATIO
    before = [s.ratio(HF_RUN_PAIR, HF_BEFORE) for s in strategies]
    pair_repeats = len(strategies[0].pair_timings[HF_BEFORE].times)
    before_ok = max(before) <= BEFORE_LIMIT

    speed_rows = []
    for s in strategies:
        speed_rows.append(
            [
                f"`{s.name}`",
                f"{s.trades:,}",
                fmt_ns(s.ns(HF_RUN)),
                fmt_ns(s.ns(HF_BT)),
                fmt_ns(s.ns(VBT_NP)),
                fmt_ns(s.ns(VBT_PD)),
                fmt_ratio(s.ratio(VBT_NP, HF_RUN)),
                fmt_ratio(s.ratio(VBT_NP, HF_BT)),
                fmt_ratio(s.ratio(VBT_PD, HF_BT)),
            ]
        )
    speed = table(
        [
            "strategy",
            "trades",
            "hf `run_arrays`",
            "hf `backtest()`",
            "vbt numpy",
            "vbt pandas",
            "vbt numpy / `run_arrays`",
            "vbt numpy / `backtest()`",
            "vbt pandas / `backtest()`",
        ],
        speed_rows,
    )
    best_rows = [
        [
            f"`{s.name}`",
            fmt_ns(s.ns(HF_RUN, "best")),
            fmt_ns(s.ns(HF_BT, "best")),
            fmt_ns(s.ns(VBT_NP, "best")),
            fmt_ns(s.ns(VBT_PD, "best")),
            fmt_ns(s.signal_seconds / s.n_bars * 1e9),
        ]
        for s in strategies
    ]
    best = table(
        [
            "strategy",
            "hf `run_arrays` best",
            "hf `backtest()` best",
            "vbt numpy best",
            "vbt pandas best",
            "hf signals (once)",
        ],
        best_rows,
    )
    bt_rows = [
        [
            f"`{s.name}`",
            fmt_ns(s.ns(BTPY)),
            fmt_ns(s.ns(HF_RUN_SMALL)),
            fmt_ratio(s.ratio(BTPY, HF_RUN_SMALL)),
            f"{s.btpy_agreement['same_bars']:,} of {s.btpy_agreement['hf']:,} "
            f"({s.btpy_agreement['btpy']:,} bt.py trades)",
        ]
        for s in strategies
    ]
    bt = table(
        [
            "strategy",
            "backtesting.py ns/bar",
            "hf `run_arrays` ns/bar",
            "bt.py / hf",
            "trades with the same entry and exit bar",
        ],
        bt_rows,
    )
    agree_rows = [
        [
            f"`{s.name}`",
            f"{s.agreement.hf_trades:,}",
            f"{s.agreement.vbt_trades:,}",
            f"{s.agreement.identical:,}",
            f"{s.agreement.open_at_end}",
            f"{s.agreement.fill_bar}",
            f"{s.agreement.signal_vs_stop}",
            f"{s.agreement.other}",
            f"{s.agreement.max_rel_diff:.0e}" if s.agreement.max_rel_diff else "0",
        ]
        for s in strategies
    ]
    short_rows = [
        [
            f"`{s.name}`",
            f"{a.hf_trades:,} ({a.shorts:,} short)",
            f"{a.vbt_trades:,}",
            f"{a.identical:,}",
            f"{a.open_at_end}",
            f"{a.fill_bar}",
            f"{a.signal_vs_stop} (+{a.reversal_entry} reversal entries)",
            f"{a.other}",
            f"{a.max_rel_diff:.0e}" if a.max_rel_diff else "0",
        ]
        for s in strategies
        if (a := s.short_agreement) is not None
    ]
    short_agree = table(
        [
            "strategy",
            "hf trades",
            "vbt trades",
            "identical",
            "open at end",
            "(a) stop/target in fill bar",
            "(b) signal exit vs intrabar stop",
            "other (asserted 0)",
            "max rel. price diff",
        ],
        short_rows,
    )
    agree = table(
        [
            "strategy",
            "hf trades",
            "vbt trades",
            "identical",
            "open at end",
            "(a) stop/target in fill bar",
            "(b) signal exit vs intrabar stop",
            "other (asserted 0)",
            "max rel. price diff",
        ],
        agree_rows,
    )
    ct = res.compile
    labels = {
        "engine": "`run_arrays` (`engine._event_loop`)",
        **{f"signals:{s.name}": f"`{s.name}` signals (indicators + kernel)" for s in strategies},
    }
    first_calls = ", ".join(
        f"{who} {fmt_seconds(strategies[0].timings[who].first_call)}"
        for who in (HF_RUN, HF_BT, VBT_NP, VBT_PD)
    )
    lines = [
        "## Engine: hedgeflow vs vectorbt `from_signals` and backtesting.py",
        "",
        *(f"> {note}" for note in res.notes),
        *([""] if res.notes else []),
        f"On {res.n_bars:,} bars, hedgeflow's `run_arrays` is **{fmt_ratio(min(vbt_run))} to "
        f"{fmt_ratio(max(vbt_run))}** faster per bar than vectorbt `from_signals` on numpy "
        f"arrays (geometric mean {fmt_ratio(_geo_mean(vbt_run))} of medians, "
        f"{fmt_ratio(_geo_mean(vbt_run_best))} of best-of times); the full `backtest()` "
        f"wrapper (frames in and out) is {fmt_ratio(_geo_mean(vbt_bt))} (numpy vectorbt) and "
        f"{fmt_ratio(_geo_mean(vbt_pd_bt))} (vectorbt on tz-aware pandas Series, as our bars "
        f"frames are). backtesting.py costs {fmt_ratio(_geo_mean(btpy))} hedgeflow's time per "
        f"bar. Target >= {TARGET_RATIO:.0f}x vectorbt (`run_arrays` vs numpy vectorbt, every "
        f"strategy): **{'met' if target_ok else 'NOT met'}**.",
        "",
        "The rules written once (`hedgeflow/rules.py`: `step_bar` over a `State` value, "
        "shared with the paper broker and the sweep) against the hand-fused loop they "
        "replaced (frozen in `benchmarks/_engine_before.py`), same run, same trades, ns/bar "
        f"(medians of their own interleaved pair, {pair_repeats} repeats; best-of and "
        "minor page faults per call in brackets): "
        + ", ".join(
            f"`{s.name}` {fmt_ns(s.ns(HF_RUN_PAIR))} vs {fmt_ns(s.ns(HF_BEFORE))} "
            f"(**{s.ratio(HF_RUN_PAIR, HF_BEFORE):.2f}x**; best-of "
            f"{s.ns(HF_RUN_PAIR, 'best') / s.ns(HF_BEFORE, 'best'):.2f}x; faults "
            f"{s.pair_timings[HF_RUN_PAIR].median_faults:,.0f} vs "
            f"{s.pair_timings[HF_BEFORE].median_faults:,.0f})"
            for s in strategies
        )
        + f". Limit <= {BEFORE_LIMIT}x: **{'met' if before_ok else 'NOT met'}**.",
        "",
        f"Nanoseconds per bar (median of {res.repeat} interleaved repeats, "
        f"{res.n_bars:,} bars) and ratios (peer time / hedgeflow time, > 1 = hedgeflow faster):",
        "",
        speed,
        "",
        "Minor page faults per call (median; first touches of freshly mapped memory, "
        "which the allocator hands out or not depending on the process's history): "
        + "; ".join(
            f"`{s.name}` "
            + ", ".join(
                f"{who} {s.timings[who].median_faults:,.0f}"
                for who in (HF_RUN, HF_BT, VBT_NP, VBT_PD)
            )
            for s in strategies
        )
        + f". {res.n_bars:,} bars of float64 output is {res.n_bars * 8 / 4096:,.0f} pages "
        "per array: a call that faults on `equity` and `position` pays ~3-10 ns/bar more "
        "than one that reuses warm memory.",
        "",
        "Best-of times (ns/bar) and the one-off signal computation:",
        "",
        best,
        "",
        f"backtesting.py on the first {res.n_bt_bars:,} bars, interleaved with hedgeflow on the "
        f"same bars (median of {res.bt_repeat} repeats):",
        "",
        bt,
        "",
        "### Trade agreement with vectorbt (asserted on every run)",
        "",
        agree,
        "",
        "Trades are matched by entry bar; 'identical' = same entry bar, exit bar, entry and "
        "exit price (relative tolerance 1e-12; the max column shows the largest difference "
        "seen). The exceptions, each checked against its exact condition:",
        "",
        "- open at end: hedgeflow closes the last position at the last close (reason `end`, "
        "with slippage); vectorbt leaves it open and values it at the same close.",
        "- (a) the stop or target lies inside the fill bar: hedgeflow exits in that bar (the "
        "rest of the bar follows the open fill); vectorbt checks stops only from the next "
        "bar. DESIGN's documented exception.",
        "- (b) a 1 -> 0 exit fills at a bar's open while the same bar's low (high) reaches "
        "the stop (target): hedgeflow exits at the open, first; vectorbt assumes every stop "
        "comes before any user signal in the bar (its docs: 'we assume that any stop signal "
        "comes before any other signal in time', which holds for orders at the close, not "
        "at `price=open`) and exits at the stop level. Not listed in DESIGN; it only changes "
        "that exit's price (same bar).",
        "- anything else fails the benchmark.",
        "",
        "### Trade agreement with vectorbt, shorts on (asserted on every run)",
        "",
        short_agree,
        "",
        'Each strategy with `allow_short` (its mirrored short signals, DESIGN.md "Short '
        'selling") against vectorbt `from_signals` with `entries`/`exits` and '
        "`short_entries`/`short_exits` (the signal's changes to and from each side, shifted "
        "one bar), `upon_opposite_entry='Reverse'` (a 1 <-> -1 change is one reversal "
        "order: hedgeflow exits and enters at one open) and the same stop settings "
        "(`stop_entry_price` = the fill). Matched by entry bar and side; the exceptions are "
        "the same two documented cases, mirrored for shorts (stop above, target below the "
        "fill; a cover pays the slippage upwards). Case (b) has one consequence of its own "
        "at a reversal: vectorbt, already out at the stop, does not take that bar's "
        "opposite entry, so the entry our reversal makes at that open has no vectorbt "
        "twin; counted as '+N reversal entries' and checked (it must enter in a bar where "
        "vectorbt's previous position ended by its stop and vectorbt enters nothing). The "
        "same holds when that open gaps beyond the old position's stop or target (both "
        "exit at the open at the same price, the trade counts as identical, but for "
        "vectorbt it is the stop), and after case (a): vectorbt still holds the position "
        "we closed in its fill bar, and its stop at our next entry's open drops that "
        "entry.",
        "",
        "### Compile time (numba, reported separately, never inside the timings above)",
        "",
        compile_table(ct, labels),
        "",
        f"Fresh interpreters with a private `NUMBA_CACHE_DIR`: first with it empty (cold "
        f"compile, which also writes the cache), then again (load from cache). LLVM's "
        f"one-time start-up (compiling a trivial function) is measured first and excluded: "
        f"{fmt_seconds(ct.numba_init_cold)} / {fmt_seconds(ct.numba_init_cached)}. "
        f"In this process the first (warm-up) calls on the full data took: {first_calls} "
        f"(`{strategies[0].name}`; hedgeflow loads its kernels from the on-disk cache, "
        "vectorbt's from its own).",
        "",
        "### Method",
        "",
        f"- Bars: synthetic `{SYMBOL}` {INTERVAL} bars (24x7, fat-tailed), {res.n_bars:,} bars "
        f"from {START:%Y-%m-%d}, seed 7 (generated in {fmt_seconds(res.data_seconds)}, not "
        "timed). Same bars for every strategy and contestant.",
        "- Strategies with default parameters (`sma_cross` 20/50 confirming, "
        "`rsi_mean_revert` 14 30/50, `donchian_breakout` 20 midline); signals computed once "
        "with hedgeflow (not timed in the ratios).",
        "- Engine config: the defaults (100k equity, risk 1%, stop 1%, take-profit 2%, "
        "leverage 1) with the crypto costs (fee 5 bps, slippage 2 bps).",
        "- vectorbt `Portfolio.from_signals(close, entries, exits, price=open, open=, high=, "
        "low=, sl_stop=0.01, tp_stop=0.02, stop_entry_price=StopEntryPrice.FillPrice, "
        "stop_exit_price=StopExitPrice.StopMarket, fees=0.0005, slippage=0.0002, size=1.0, "
        "size_type='amount', init_cash='auto', direction='longonly')`; entries = the "
        "signal's 0 -> 1 changes, exits = its 1 -> 0 changes, both shifted one bar (they "
        "fill at the next bar's open, as in hedgeflow). 'numpy' passes plain arrays "
        "(vectorbt's fastest path); 'pandas' passes Series on the bars' tz-aware UTC "
        "DatetimeIndex.",
        "- Sizing: hedgeflow uses its own risk sizing (with risk_per_trade = stop_pct it "
        "is qty = equity / fill, the 1x leverage cap: all-in). vectorbt gets a fixed "
        "`size=1.0, size_type='amount'` with `init_cash='auto'` (unlimited cash), so its "
        "trade bars and prices never depend on the equity path; neither do hedgeflow's. "
        "Equity-relative sizing in vectorbt (`size_type='percent'`, tried first) does not "
        "work here: 14 bps of costs per round trip over `sma_cross`'s ~36k trades take the "
        "equity from 100k to ~1e-17, vectorbt stops filling once a size falls under its "
        "1e-8 precision (after ~14k trades) while hedgeflow keeps trading tiny quantities, "
        "so the trade lists part ways for a reason that has nothing to do with the rules. "
        "vectorbt's time is the same either way (within noise).",
        "- backtesting.py: `Backtest(data, FollowSignal, cash=1e9, spread=slippage, "
        "commission=fee, finalize_trades=True).run()`; the strategy reads the precomputed "
        "signal and buys (`size=0.99`) on a 0 -> 1 change with SL/TP set from the next open's "
        "fill price, closes on 1 -> 0. Its time includes building the `Backtest` and its "
        "statistics (what `run()` does). Its agreement is informational (it applies the "
        "spread at entry only and sizes in whole units).",
        f"- Timing: one warm-up call each, then {res.repeat} repeats ({res.bt_repeat} for "
        "backtesting.py), interleaved in rotating order, `gc.collect()` before and the "
        "collector disabled during every call; medians unless marked best. The rules "
        "against the frozen loop are timed as their own interleaved pair (at least "
        f"{PAIR_REPEAT} repeats) after the peers' round: the peers' large allocations "
        "decide whether a later call's fresh output arrays fault on every page (a few "
        "ns/bar), which in the five-way round fell on one side or the other by turn. "
        "`run_arrays` includes its input checks; `backtest()` also builds the trades and "
        "equity frames; vectorbt's time is the `from_signals` call (its trades/equity are "
        "computed lazily later and not timed).",
        "",
        f"Machine: {machine_line(res.machine)}.",
        "",
        f"Reproduce: `{res.command}`",
    ]
    return "\n".join(lines)
