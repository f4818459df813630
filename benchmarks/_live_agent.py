"""Per-bar cost of the live agent (streaming strategy + paper broker).

``per_bar_seconds`` feeds synthetic bars one by one to a warmed-up
:class:`~hedgeflow.live.agent.LiveAgent` and returns the median seconds per
``on_bar`` call (strategy update + broker + the step record, no I/O).
``article_per_bar_seconds`` times the article's ``on_bar`` for comparison: per
bar, ``pd.concat`` the new bar onto a frame of the last 5,000 bars and run its
strategy function over all of them.

Not a timed test: run ``python -m benchmarks._live_agent`` (``python -m benchmarks live``
reports it too).
"""

from __future__ import annotations

import statistics
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from hedgeflow.config import AgentSettings, load_settings
from hedgeflow.live.agent import LiveAgent
from hedgeflow.sources.synthetic import SyntheticMarket

__all__ = ["article_per_bar_seconds", "per_bar_seconds"]


def _bars(symbol: str, days: int, seed: int) -> pd.DataFrame:
    start = pd.Timestamp("2024-03-04", tz="UTC")
    return SyntheticMarket(seed).fetch_bars(symbol, "5m", start, start + pd.Timedelta(days=days))


def _agent_settings(name: str) -> AgentSettings:
    settings = load_settings(env={})
    return next(a for a in settings.agents if a.name == name)


def per_bar_seconds(
    agent: str = "crypto",
    days: int = 30,
    warmup_bars: int = 500,
    repeats: int = 5,
    seed: int = 7,
) -> dict[str, Any]:
    """Median and best seconds per ``LiveAgent.on_bar`` over ``days`` of 5m bars
    (the first ``warmup_bars`` go to ``warm_up``); each repeat uses a fresh agent."""
    settings = load_settings(env={})
    a = _agent_settings(agent)
    bars = _bars(a.symbol, days, seed)
    history, live = bars.iloc[:warmup_bars], bars.iloc[warmup_bars:]
    # Bars as plain attribute objects, like the aggregator's Bar (built outside the timing).
    objs = [
        SimpleNamespace(ts=r.ts, open=r.open, high=r.high, low=r.low, close=r.close)
        for r in live.itertuples(index=False)
    ]
    # compile (or load from numba's cache) the agent's per-bar kernel outside the timing
    warm = LiveAgent.from_settings(a, settings.costs_for(a), 100_000.0)
    warm.warm_up(history)
    for bar in objs[:5]:
        warm.on_bar(bar)

    def timed(read: bool) -> list[float]:
        """Seconds per bar of each repeat (a fresh agent each); ``read``: then read what
        the live record stores of each step (its events, the broker state, the
        indicators: built from the bar's record when read)."""
        out = []
        for _ in range(repeats):
            live_agent = LiveAgent.from_settings(a, settings.costs_for(a), 100_000.0)
            live_agent.warm_up(history)
            on_bar = live_agent.on_bar
            t0 = time.perf_counter()
            if read:
                for bar in objs:
                    step = on_bar(bar)
                    step.events, step.state, step.indicators  # noqa: B018
            else:
                for bar in objs:
                    on_bar(bar)
            out.append((time.perf_counter() - t0) / len(objs))
        return out

    per_bar, read = timed(read=False), timed(read=True)
    return {
        "agent": agent,
        "strategy": a.strategy,
        "bars": len(objs),
        "median_s": statistics.median(per_bar),
        "best_s": min(per_bar),
        "read_median_s": statistics.median(read),
    }


# -- the article's on_bar, faithfully (its indicator and strategy functions; its
# undefined ``rsi_wilder`` is its ``rsi``) -------------------------------------------


def _a_sma(series: pd.Series, n: int) -> pd.Series:
    return series.rolling(n, min_periods=n).mean()


def _a_rsi(close: pd.Series, n: int = 14) -> pd.Series:
    delta = close.diff()
    gain = delta.clip(lower=0.0)
    loss = -delta.clip(upper=0.0)
    avg_gain = gain.ewm(alpha=1 / n, adjust=False).mean()
    avg_loss = loss.ewm(alpha=1 / n, adjust=False).mean()
    rs = avg_gain / avg_loss.replace(0, np.nan)
    return (100 - (100 / (1 + rs))).fillna(50.0)


def _a_hold(long_cond: pd.Series, exit_cond: pd.Series, index: pd.Index) -> pd.Series:
    signal = pd.Series(0, index=index)
    in_pos = False
    for i in range(len(index)):
        if not in_pos and long_cond.iat[i]:
            signal.iat[i] = 1
            in_pos = True
        elif in_pos and exit_cond.iat[i]:
            in_pos = False
        elif in_pos:
            signal.iat[i] = 1
    return signal


def _a_signals(df: pd.DataFrame, strategy: str, p: dict[str, Any]) -> pd.Series:
    if strategy == "sma_cross":
        fast, slow = _a_sma(df["close"], p["fast"]), _a_sma(df["close"], p["slow"])
        signal = (fast > slow).astype(int)
        if p["confirm_above_fast"]:
            signal &= df["close"] > fast
        return signal
    if strategy == "rsi_mean_revert":
        r = _a_rsi(df["close"], p["period"])
        return _a_hold(r < p["entry_rsi"], r >= p["exit_rsi"], df.index)
    upper = df["high"].rolling(p["window"], min_periods=p["window"]).max()
    lower = df["low"].rolling(p["window"], min_periods=p["window"]).min()
    return _a_hold(df["close"] > upper, df["close"] < (upper + lower) / 2.0, df.index)


def article_per_bar_seconds(
    agent: str = "crypto", window: int = 5_000, bars: int = 30, seed: int = 7
) -> float:
    """The article's ``Agent.on_bar`` signal path per bar: a one-row DataFrame,
    ``pd.concat`` onto the history, ``.iloc[-5000:]``, then its strategy function
    over all 5,000 bars (Python loops with ``.iat`` for RSI and Donchian)."""
    a = _agent_settings(agent)
    frame = _bars(a.symbol, 120, seed)
    if len(frame) < window + bars:
        raise ValueError(f"{a.symbol}: {len(frame)} bars, need {window + bars}")
    hist = frame.iloc[:window].set_index("ts")
    new = frame.iloc[window : window + bars]
    params = dict(a.params)
    t0 = time.perf_counter()
    for r in new.itertuples(index=False):
        row = pd.DataFrame(
            {"open": [r.open], "high": [r.high], "low": [r.low], "close": [r.close],
             "volume": [r.volume]},
            index=pd.DatetimeIndex([r.ts], name="ts"),
        )  # fmt: skip
        hist = pd.concat([hist, row]).iloc[-window:]
        _ = _a_signals(hist, a.strategy, params).iloc[-1]
    return (time.perf_counter() - t0) / len(new)


def main() -> None:  # pragma: no cover - manual benchmark
    for name in ("stocks", "forex", "crypto"):
        r = per_bar_seconds(name)
        article = article_per_bar_seconds(name)
        print(
            f"{name:7s} {r['strategy']:18s} live {r['median_s'] * 1e6:6.2f} us/bar "
            f"(best {r['best_s'] * 1e6:.2f}, {r['bars']} bars); article on_bar "
            f"{article * 1e3:8.2f} ms/bar -> {article / r['median_s']:,.0f}x cheaper"
        )


if __name__ == "__main__":  # pragma: no cover
    main()
