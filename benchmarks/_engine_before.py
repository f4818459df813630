"""The engine's event loop as it was before the rules were written once
(``hedgeflow/rules.py``, issue "each strategy and each trading rule written once"):
one hand-fused numba loop, frozen here verbatim (commit fa69268) so the engine
benchmark measures the shared-rules loop against it in the same run. Benchmark
code only: nothing in hedgeflow calls it.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from hedgeflow.engine import EngineConfig


@numba.njit(cache=True)
def _event_loop(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    signal: np.ndarray,
    atr: np.ndarray,
    initial_equity: float,
    risk_per_trade: float,
    stop_pct: float,
    take_profit_pct: float,
    max_leverage: float,
    fee_rate: float,
    slip_rate: float,
    whole_units: bool,
    use_trailing_atr: bool,
    atr_mult: float,
) -> tuple[
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    int,
]:
    n = close.shape[0]
    equity = np.empty(n, dtype=np.float64)
    position = np.empty(n, dtype=np.float64)
    cap = n // 2 + 2
    t_entry = np.empty(cap, dtype=np.int64)
    t_exit = np.empty(cap, dtype=np.int64)
    t_qty = np.empty(cap, dtype=np.float64)
    t_entry_px = np.empty(cap, dtype=np.float64)
    t_exit_px = np.empty(cap, dtype=np.float64)
    t_reason = np.empty(cap, dtype=np.int8)
    t_fees = np.empty(cap, dtype=np.float64)
    t_pnl = np.empty(cap, dtype=np.float64)
    nt = 0

    cash = initial_equity
    qty = 0.0
    entry_px = 0.0
    entry_fee = 0.0
    entry_i = -1
    stop = 0.0
    tp = 0.0
    pending = 0  # 1: entry at next open, -1: exit at next open
    prev_sig = 0
    buy_mult = 1.0 + slip_rate
    sell_mult = 1.0 - slip_rate

    for i in range(n):
        o = open_[i]
        # 1. pending order fills at the open
        if pending == 1:
            fill = o * buy_mult
            eq = cash  # flat: equity == cash
            q = eq * risk_per_trade / (fill * stop_pct)
            q_cap = eq * max_leverage / fill
            if q > q_cap:
                q = q_cap
            if whole_units:
                q = math.floor(q + 1e-9)
            if q > 0.0:
                fee = fee_rate * q * fill
                cash -= q * fill + fee
                qty = q
                entry_px = fill
                entry_fee = fee
                entry_i = i
                stop = fill * (1.0 - stop_pct)
                tp = fill * (1.0 + take_profit_pct)
        elif pending == -1 and qty > 0.0:
            px = o * sell_mult
            fee = fee_rate * qty * px
            cash += qty * px - fee
            t_entry[nt] = entry_i
            t_exit[nt] = i
            t_qty[nt] = qty
            t_entry_px[nt] = entry_px
            t_exit_px[nt] = px
            t_reason[nt] = 0
            t_fees[nt] = entry_fee + fee
            t_pnl[nt] = qty * (px - entry_px) - entry_fee - fee
            nt += 1
            qty = 0.0
        pending = 0

        held = qty  # quantity held during this bar (for `position`)
        # 2. protective exits
        if qty > 0.0:
            level = 0.0
            reason = -1
            if o <= stop:
                level = o
                reason = 1
            elif o >= tp:
                level = o
                reason = 2
            elif low[i] <= stop:
                level = stop
                reason = 1
            elif high[i] >= tp:
                level = tp
                reason = 2
            if reason >= 0:
                px = level * sell_mult
                fee = fee_rate * qty * px
                cash += qty * px - fee
                t_entry[nt] = entry_i
                t_exit[nt] = i
                t_qty[nt] = qty
                t_entry_px[nt] = entry_px
                t_exit_px[nt] = px
                t_reason[nt] = reason
                t_fees[nt] = entry_fee + fee
                t_pnl[nt] = qty * (px - entry_px) - entry_fee - fee
                nt += 1
                qty = 0.0
                held = 0.0

        # 3. signal at the close
        c = close[i]
        s = signal[i]
        if s == 1 and prev_sig == 0 and qty == 0.0:
            pending = 1
        elif s == 0 and prev_sig == 1 and qty > 0.0:
            pending = -1
        prev_sig = s
        if use_trailing_atr and qty > 0.0:
            a = atr[i]
            if a == a:
                trail = c - atr_mult * a
                if trail > stop:
                    stop = trail

        # 4. equity at the close (end-of-data close on the last bar)
        if i == n - 1 and qty > 0.0:
            px = c * sell_mult
            fee = fee_rate * qty * px
            cash += qty * px - fee
            t_entry[nt] = entry_i
            t_exit[nt] = i
            t_qty[nt] = qty
            t_entry_px[nt] = entry_px
            t_exit_px[nt] = px
            t_reason[nt] = 3
            t_fees[nt] = entry_fee + fee
            t_pnl[nt] = qty * (px - entry_px) - entry_fee - fee
            nt += 1
            qty = 0.0
        equity[i] = cash + qty * c
        position[i] = held

    return (
        equity,
        position,
        t_entry[:nt],
        t_exit[:nt],
        t_qty[:nt],
        t_entry_px[:nt],
        t_exit_px[:nt],
        t_reason[:nt],
        t_fees[:nt],
        t_pnl[:nt],
        nt,
    )


def run_arrays_before(o: Any, h: Any, lo: Any, c: Any, signal: Any, config: EngineConfig) -> int:
    """``run_arrays`` as it was: the same input checks and conversions (today's helpers,
    unchanged), then the frozen loop (no trailing stop in the benchmark's
    configuration); returns the number of trades."""
    from hedgeflow.engine import _f64, _signal_array

    c = _f64("close", c)
    n = c.shape[0]
    o, h, lo = _f64("open", o, n), _f64("high", h, n), _f64("low", lo, n)
    sig = _signal_array(signal, n)
    out = _event_loop(
        o, h, lo, c, sig, np.empty(0, dtype=np.float64),
        float(config.initial_equity), float(config.risk_per_trade), float(config.stop_pct),
        float(config.take_profit_pct), float(config.max_leverage), float(config.fee_bps) / 1e4,
        float(config.slippage_bps) / 1e4, config.qty_step == 1.0,
        bool(config.use_trailing_atr), float(config.atr_mult),
    )  # fmt: skip
    keys = ("equity", "position", "entry_idx", "exit_idx", "qty", "entry_price",
            "exit_price", "reason", "fees", "pnl")  # fmt: skip
    return len(dict(zip(keys, out[:-1], strict=True))["pnl"])
