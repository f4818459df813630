"""The backtest engine: the batch driver of the rules (DESIGN.md "Exact rules").

The rules themselves live once in :mod:`hedgeflow.rules`; ``_event_loop`` calls
``step_bar`` for each bar and ``end_close`` after the last. The paper broker and
the sweep kernels call the same functions. What they do:

Order of events in bar ``i`` (open ``o``, high ``h``, low ``l``, close ``c``):

1. A pending order from bar ``i-1`` fills at ``o``: a buy at ``o * (1 + slip)``,
   a sell at ``o * (1 - slip)``; fee = ``fee_bps / 1e4 * qty * fill``. An entry
   sets ``stop = fill * (1 - stop_pct)`` and ``take_profit = fill * (1 + tp_pct)``.
2. An open position (also one filled at this open) exits at ``o`` if
   ``o <= stop`` (reason ``stop``) or ``o >= take_profit`` (``take_profit``), else
   at the stop if ``l <= stop``, else at the take-profit if ``h >= take_profit``
   (the stop wins when both lie inside the bar). Exits pay slippage and fee.
3. At the close the signal is read. A 0 -> 1 change while flat queues an entry
   for bar ``i+1``; a 1 -> 0 change while long queues an exit (reason
   ``signal``). The signal before the first bar counts as 0. After a stop or
   take-profit exit the agent waits for the next 0 -> 1 change. With
   ``use_trailing_atr`` the stop of an open position then becomes
   ``max(stop, c - atr_mult * ATR[i])`` (Wilder ATR of ``atr_period``; no change
   while the ATR is undefined).
4. Equity = cash + qty x c. A position still open after the last bar is closed
   at its close with reason ``end`` (slippage and fee apply); the last equity
   point is after that close.

Sizing equity: entries fill only while flat, so the equity used for sizing is
the cash at the fill (which equals the equity at the previous close: cash + 0 x
close). ``qty = equity * risk_per_trade / (fill * stop_pct)``, capped at
``equity * max_leverage / fill`` (fees not included), floored to a whole multiple of
the venue's ``qty_step`` (``floor(qty / step + 1e-9)`` so that an exact multiple
computed as ``999.9999999999`` is not lost to rounding; 0: any quantity). An entry
below one step, or whose notional ``qty * fill`` is below ``min_notional``, or with
no equity left, is skipped and recorded with its reason (``SKIP_REASONS``;
``BacktestResult.skipped``); the agent waits for the next signal change.

Trade pnl = ``qty * (exit - entry) - entry fee - exit fee``;
``return_pct = pnl / (qty * entry)``; so final equity = initial equity + sum of
trade pnl (up to float rounding).

The ``position`` column of the equity frame is the quantity held through the
bar's close (on the last bar it is the quantity that the ``end`` exit closed),
negative while short.

Short selling (``allow_short``, DESIGN.md "Short selling"): the signal is -1
(short), 0 or 1 (long); with shorts off -1 reads as 0 and everything above holds
unchanged. A signal change exits a held side it no longer asks for and enters the
side it asks for, both at the next open (the exit first: a reversal, the entry
sized on the cash after the exit). A short sells at ``o * (1 - slip)`` and covers
at ``price * (1 + slip)``; its stop is ``fill * (1 + stop_pct)`` and take-profit
``fill * (1 - tp_pct)``, with the gap and stop-first order mirrored and the ATR
trail ``min(stop, c + atr_mult * ATR)``. Equity = cash + side x qty x c; trade
pnl = side x qty x (exit - entry) - fees; ``trades.side`` is ``long`` or
``short``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import pandas as pd

from hedgeflow import rules
from hedgeflow.config import DEFAULT_MINIMUMS, CostSettings, OrderMinimums, RiskSettings
from hedgeflow.errors import InvalidInputError
from hedgeflow.indicators import atr as atr_indicator
from hedgeflow.market import validate_asset_class

__all__ = [
    "EQUITY_COLUMNS",
    "EXIT_REASONS",
    "SKIPPED_COLUMNS",
    "SKIP_REASONS",
    "TRADE_COLUMNS",
    "BacktestResult",
    "EngineConfig",
    "backtest",
    "engine_settings",
    "run_arrays",
]

EXIT_REASONS = rules.EXIT_REASONS

TRADE_COLUMNS: tuple[str, ...] = (
    "trade_id",
    "side",
    "qty",
    "entry_ts",
    "entry_price",
    "exit_ts",
    "exit_price",
    "exit_reason",
    "fees",
    "pnl",
    "return_pct",
)
EQUITY_COLUMNS: tuple[str, ...] = ("ts", "equity", "drawdown", "position")
SKIPPED_COLUMNS: tuple[str, ...] = ("ts", "side", "reason")
SKIP_REASONS = rules.SKIP_REASONS


@dataclass(frozen=True)
class EngineConfig:
    initial_equity: float = 100_000.0
    risk_per_trade: float = 0.01
    stop_pct: float = 0.01
    take_profit_pct: float = 0.02
    max_leverage: float = 1.0
    fee_bps: float = 0.0
    slippage_bps: float = 0.0
    # order minimums: the venue's quantity step (0: any quantity) and minimum notional
    qty_step: float = 0.0
    min_notional: float = 0.0
    use_trailing_atr: bool = False
    atr_period: int = 14
    atr_mult: float = 3.0
    allow_short: bool = False

    def __post_init__(self) -> None:
        def positive(name: str, upper: float | None = None, strict_upper: bool = False) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InvalidInputError(f"{name} must be a finite number, got {v!r}")
            if v <= 0 or (upper is not None and (v >= upper if strict_upper else v > upper)):
                bound = f"(0, {upper}{')' if strict_upper else ']'}" if upper else "> 0"
                raise InvalidInputError(f"{name} must be in {bound}, got {v!r}")

        positive("initial_equity")
        positive("risk_per_trade", 1.0)
        positive("stop_pct", 1.0, strict_upper=True)
        positive("take_profit_pct")
        positive("max_leverage")
        positive("atr_mult")
        for name in ("qty_step", "min_notional"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1e12:
                raise InvalidInputError(f"{name} must be a number in [0, 1e12), got {v!r}")
        for name in ("fee_bps", "slippage_bps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 10_000:
                raise InvalidInputError(f"{name} must be in [0, 10000) bps, got {v!r}")
        if isinstance(self.atr_period, bool) or not isinstance(self.atr_period, int):
            raise InvalidInputError(f"atr_period must be an integer, got {self.atr_period!r}")
        if self.atr_period < 1:
            raise InvalidInputError(f"atr_period must be >= 1, got {self.atr_period}")

    @classmethod
    def from_settings(
        cls,
        risk: RiskSettings,
        costs: CostSettings,
        asset_class: str,
        initial_equity: float,
        minimums: OrderMinimums | None = None,
    ) -> EngineConfig:
        """Engine settings for one agent; ``minimums`` default to its asset class's
        (``DEFAULT_MINIMUMS``)."""
        ac = validate_asset_class(asset_class)
        mins = minimums if minimums is not None else DEFAULT_MINIMUMS[ac]
        return cls(
            initial_equity=float(initial_equity),
            risk_per_trade=risk.risk_per_trade,
            stop_pct=risk.stop_pct,
            take_profit_pct=risk.take_profit_pct,
            max_leverage=risk.max_leverage,
            fee_bps=costs.fee_bps,
            slippage_bps=costs.slippage_bps,
            qty_step=mins.qty_step,
            min_notional=mins.min_notional,
            use_trailing_atr=risk.use_trailing_atr,
            atr_period=risk.atr_period,
            atr_mult=risk.atr_mult,
            allow_short=risk.allow_short,
        )


@dataclass(frozen=True)
class BacktestResult:
    trades: pd.DataFrame  # TRADE_COLUMNS
    equity: pd.DataFrame  # EQUITY_COLUMNS
    config: EngineConfig
    # SKIPPED_COLUMNS: entries the order minimums skipped (ts of the open they were
    # due at, side, reason)
    skipped: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame(columns=list(SKIPPED_COLUMNS))
    )

    @property
    def final_equity(self) -> float:
        return float(self.equity["equity"].iat[-1]) if len(self.equity) else math.nan


def engine_settings(config: EngineConfig) -> rules.Settings:
    """The settings the rules read (:class:`hedgeflow.rules.Settings`)."""
    return rules.Settings(
        float(config.initial_equity),
        float(config.risk_per_trade),
        float(config.stop_pct),
        float(config.take_profit_pct),
        float(config.max_leverage),
        float(config.fee_bps) / 1e4,
        float(config.slippage_bps) / 1e4,
        float(config.qty_step),
        float(config.min_notional),
        bool(config.use_trailing_atr),
        float(config.atr_mult),
        True if config.allow_short else None,
    )


# --------------------------------------------------------------------------- kernel


@numba.njit(cache=True)
def _signal_changes(signal: np.ndarray) -> int:
    """How many bars' signal differs from the bar before (the first bar's from 0)."""
    changes = 0
    prev = 0
    for i in range(signal.shape[0]):
        s = signal[i]
        changes += s != prev
        prev = s
    return changes


@numba.njit(cache=True)
def _event_loop(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    signal: np.ndarray,
    atr: np.ndarray,
    p: rules.Settings,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
    """The batch driver of :mod:`hedgeflow.rules`: ``step_bar`` for every bar, the
    end-of-data close after the last. Returns (equity, position, trades, n_trades,
    skipped): ``skipped`` has a row (bar index, ``S_*`` reason x side) per entry the
    order minimums skipped. ``atr`` is read only with the trailing stop on (it may be
    empty otherwise)."""
    n = close.shape[0]
    equity = np.empty(n, dtype=np.float64)
    position = np.empty(n, dtype=np.float64)
    # Every trade and every skipped entry begins with an entry queued when the signal
    # read at a close changed (rules.read_signal; a protective exit does not re-enter
    # before the next change), so their number is at most the signal's changes. The
    # bound keeps the buffers small (sma_cross on 1M bars: 5 MB, not 36 MB for n / 2
    # round trips, which the allocator maps afresh on every call and which then
    # faults on every page the trades touch). A write past it raises (write_trade
    # checks its matrix) rather than going unchecked.
    cap = _signal_changes(signal) + 1
    trades = np.empty((cap, rules.N_TRADE), dtype=np.float64)
    nt = 0
    skipped = np.empty((cap, 2), dtype=np.int64)
    ns = 0
    st = rules.flat_state(p)
    for i in range(n):
        c = close[i]
        a = atr[i] if p.use_trailing_atr else np.nan
        o = open_[i]
        # step_bar in two halves, each round trip written as soon as it closes
        pending = st.pending
        st, _, skip, closed = rules.open_bar(st, p, i, o)
        if skip != rules.S_NONE:
            if ns == cap:
                raise RuntimeError("engine: more skipped entries than signal changes")
            skipped[ns, 0] = i
            skipped[ns, 1] = skip * rules.entry_side(pending)
            ns += 1
        if closed.reason != rules.R_NONE:
            nt = rules.write_trade(trades, nt, i, closed)
        st, closed = rules.close_bar(st, p, o, high[i], low[i], c, signal[i], a)
        if closed.reason != rules.R_NONE:
            nt = rules.write_trade(trades, nt, i, closed)
        if i == n - 1:
            st, closed = rules.end_close(st, p, c)
            if closed.reason != rules.R_NONE:
                nt = rules.write_trade(trades, nt, i, closed)
        equity[i] = rules.equity(st, c)
        position[i] = st.held
    return equity, position, trades[:nt], nt, skipped[:ns]


# --------------------------------------------------------------------------- wrappers


def _f64(name: str, x: Any, n: int | None = None) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be one-dimensional")
    if n is not None and arr.shape[0] != n:
        raise InvalidInputError(f"{name} has {arr.shape[0]} values, expected {n}")
    return arr


def _signal_array(signal: Any, n: int) -> np.ndarray:
    raw = np.asarray(signal)
    if raw.ndim != 1 or raw.shape[0] != n:
        raise InvalidInputError(f"signal must be a 1-D array of {n} values, got shape {raw.shape}")
    if raw.dtype.kind == "f" and np.isnan(raw).any():
        bad = int(np.flatnonzero(np.isnan(raw))[0])
        raise InvalidInputError(f"signal is NaN at position {bad}")
    if raw.dtype.kind not in "biuf":
        raise InvalidInputError(f"signal must be numeric -1/0/1, got dtype {raw.dtype}")
    bad_mask = (raw != 0) & (raw != 1) & (raw != -1)
    if bad_mask.any():
        bad = int(np.flatnonzero(bad_mask)[0])
        raise InvalidInputError(
            f"signal must be -1, 0 or 1 (short, flat, long), got {raw[bad]!r} at position {bad}"
        )
    return np.ascontiguousarray(raw.astype(np.int8))


def run_arrays(
    open_: Any,
    high: Any,
    low: Any,
    close: Any,
    signal: Any,
    config: EngineConfig,
) -> dict[str, np.ndarray]:
    """Run the compiled loop on plain arrays.

    Returns ``equity``, ``position`` (one value per bar) and the trade arrays
    ``entry_idx``, ``exit_idx``, ``qty`` (> 0), ``side`` (1 long, -1 short),
    ``entry_price``, ``exit_price``, ``reason`` (index into EXIT_REASONS), ``fees``,
    ``pnl``; and the skipped entries ``skip_idx`` (bar index), ``skip_side`` (1, -1),
    ``skip_reason`` (index into SKIP_REASONS).
    """
    c = _f64("close", close)
    n = c.shape[0]
    o = _f64("open", open_, n)
    h = _f64("high", high, n)
    lo = _f64("low", low, n)
    sig = _signal_array(signal, n)
    if config.use_trailing_atr:
        atr_values = atr_indicator(h, lo, c, config.atr_period)
    else:
        atr_values = np.empty(0, dtype=np.float64)
    equity, position, trades, _, skipped = _event_loop(
        o, h, lo, c, sig, atr_values, engine_settings(config)
    )
    return {
        "equity": equity,
        "position": position,
        "entry_idx": trades[:, rules.T_ENTRY_I].astype(np.int64),
        "exit_idx": trades[:, rules.T_EXIT_I].astype(np.int64),
        "qty": np.abs(trades[:, rules.T_QTY]),
        "side": np.sign(trades[:, rules.T_QTY]).astype(np.int8),
        "entry_price": trades[:, rules.T_ENTRY_PX],
        "exit_price": trades[:, rules.T_EXIT_PX],
        "reason": trades[:, rules.T_REASON].astype(np.int8),
        "fees": trades[:, rules.T_FEES],
        "pnl": trades[:, rules.T_PNL],
        "skip_idx": skipped[:, 0].copy(),
        "skip_side": np.sign(skipped[:, 1]).astype(np.int8),
        "skip_reason": (np.abs(skipped[:, 1]) - 1).astype(np.int8),
    }


def backtest(bars: pd.DataFrame, signal: Any, config: EngineConfig) -> BacktestResult:
    """Backtest one agent: ``bars`` (ts, open, high, low, close[, volume]) and a -1/0/1
    signal per bar (computed at each bar's close; -1 reads as 0 unless
    ``allow_short``) -> trades and equity frames."""
    missing = [col for col in ("ts", "open", "high", "low", "close") if col not in bars.columns]
    if missing:
        raise InvalidInputError(f"bars frame is missing columns: {', '.join(missing)}")
    if len(bars) == 0:
        raise InvalidInputError("bars frame is empty")
    out = run_arrays(
        bars["open"].to_numpy(np.float64),
        bars["high"].to_numpy(np.float64),
        bars["low"].to_numpy(np.float64),
        bars["close"].to_numpy(np.float64),
        signal,
        config,
    )
    ts = bars["ts"].reset_index(drop=True)
    equity = out["equity"]
    peak = np.maximum.accumulate(equity)
    equity_frame = pd.DataFrame(
        {
            "ts": ts,
            "equity": equity,
            "drawdown": equity / peak - 1.0,
            "position": out["position"],
        },
        copy=False,  # the arrays are the loop's own: no consolidating copy
    )
    qty = out["qty"]
    entry_price = out["entry_price"]
    pnl = out["pnl"]
    k = qty.shape[0]
    reasons = [EXIT_REASONS[r] for r in out["reason"].tolist()]
    trades = pd.DataFrame(
        {
            "trade_id": np.arange(1, k + 1, dtype=np.int64),
            "side": pd.Series(np.where(out["side"] < 0, "short", "long"), dtype="str"),
            "qty": qty,
            "entry_ts": ts.take(out["entry_idx"]).reset_index(drop=True),
            "entry_price": entry_price,
            "exit_ts": ts.take(out["exit_idx"]).reset_index(drop=True),
            "exit_price": out["exit_price"],
            "exit_reason": pd.Series(reasons, dtype="str"),
            "fees": out["fees"],
            "pnl": pnl,
            "return_pct": pnl / (qty * entry_price) if k else np.empty(0),
        },
        columns=list(TRADE_COLUMNS),
    )
    skipped = pd.DataFrame(
        {
            "ts": ts.take(out["skip_idx"]).reset_index(drop=True),
            "side": pd.Series(np.where(out["skip_side"] < 0, "short", "long"), dtype="str"),
            "reason": pd.Series(
                [SKIP_REASONS[r] for r in out["skip_reason"].tolist()], dtype="str"
            ),
        },
        columns=list(SKIPPED_COLUMNS),
    )
    return BacktestResult(trades=trades, equity=equity_frame, config=config, skipped=skipped)
