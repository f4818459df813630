"""Live path == backtest, exactly: signals, indicators, trades and equity on every bar.

The nightly path is ``research.run_agent`` (batch signals + the compiled engine);
the live path is a ``LiveAgent`` fed bar by bar, then ``close_out("end")``.
Floats are compared with ``==`` (bit for bit), not with a tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hedgeflow.config import AgentSettings, RiskSettings, Settings, load_settings
from hedgeflow.engine import EngineConfig, _event_loop, backtest, engine_settings
from hedgeflow.indicators import atr
from hedgeflow.live.agent import LiveAgent, LiveStep
from hedgeflow.live.broker import Fill, PaperBroker
from hedgeflow.live.record import trades_frame
from hedgeflow.research import compute_signals, run_agent
from hedgeflow.rules import T_PNL
from hedgeflow.sources.synthetic import SyntheticMarket

START = pd.Timestamp("2024-03-04", tz="UTC")
END = pd.Timestamp("2024-03-14", tz="UTC")  # ten days of 5m bars
EQUITY0 = 100_000.0


@dataclass
class LiveRun:
    steps: list[LiveStep]
    final: LiveStep | None

    @property
    def signals(self) -> np.ndarray:
        return np.array([s.signal for s in self.steps], dtype=np.int8)

    def equity(self) -> np.ndarray:
        """Equity at each close; the last point after the end close-out (like the engine)."""
        eq = np.array([s.equity for s in self.steps])
        if self.final is not None and len(eq):
            eq[-1] = self.final.equity
        return eq

    @property
    def position(self) -> np.ndarray:
        return np.array([s.position for s in self.steps])

    @property
    def fills(self) -> list[Fill]:
        steps = [*self.steps, *([self.final] if self.final else [])]
        return [e for s in steps for e in s.events if isinstance(e, Fill)]

    def trades(self) -> pd.DataFrame:
        return trades_frame(self.fills)


def run_live(agent: LiveAgent, bars: pd.DataFrame, close_out: bool = True) -> LiveRun:
    steps = []
    for bar in bars.itertuples(index=False):
        step = agent.on_bar(bar)
        assert step is not None
        steps.append(step)
    return LiveRun(steps, agent.close_out() if close_out else None)


@pytest.fixture(scope="module")
def settings_() -> Settings:
    return load_settings(env={})


@pytest.fixture(scope="module")
def market_bars(settings_: Settings) -> dict[str, pd.DataFrame]:
    market = SyntheticMarket(7)
    return {a.name: market.fetch_bars(a.symbol, "5m", START, END) for a in settings_.agents}


# Tight levels, leverage and a trailing stop: the synthetic data then hits stops,
# gaps and take-profits often (the default 1 % stop is rarely hit on 5m bars).
TIGHT = RiskSettings(
    risk_per_trade=0.05,
    max_leverage=2.0,
    stop_pct=0.002,
    take_profit_pct=0.004,
    use_trailing_atr=True,
    atr_period=10,
    atr_mult=2.0,
)


def _agent(settings_: Settings, name: str, risk: str = "default") -> AgentSettings:
    """``risk``: default, tight, and each with short selling (``...-shorts``)."""
    a = next(a for a in settings_.agents if a.name == name)
    base = TIGHT if risk.startswith("tight") else a.risk
    return replace(a, risk=replace(base, allow_short=risk.endswith("shorts")))


def _live(settings_: Settings, name: str, risk: str = "default") -> LiveAgent:
    a = _agent(settings_, name, risk)
    return LiveAgent.from_settings(a, settings_.costs_for(a), EQUITY0)


AGENTS = ["stocks", "forex", "crypto"]


def assert_same_indicators(run: LiveRun, signals: pd.DataFrame) -> None:
    for col in signals.columns.drop(["ts", "close", "signal"]):
        live = np.array([s.indicators[col] for s in run.steps])
        np.testing.assert_array_equal(live, signals[col].to_numpy(), err_msg=col)


def test_default_agents_are_the_article_agents(settings_: Settings) -> None:
    got = {a.name: (a.symbol, a.strategy) for a in settings_.agents}
    assert got == {
        "stocks": ("AAPL.US", "sma_cross"),
        "forex": ("EURUSD.FOREX", "rsi_mean_revert"),
        "crypto": ("BTC-USD.CC", "donchian_breakout"),
    }


@pytest.mark.parametrize("risk", ["default", "tight", "default-shorts", "tight-shorts"])
@pytest.mark.parametrize("name", AGENTS)
def test_live_equals_nightly_on_every_bar(
    settings_: Settings, market_bars: dict[str, pd.DataFrame], name: str, risk: str
) -> None:
    bars = market_bars[name]
    a = _agent(settings_, name, risk)
    nightly = run_agent(bars, a, settings_.costs_for(a), EQUITY0)
    run = run_live(_live(settings_, name, risk), bars)

    assert len(bars) > 500
    np.testing.assert_array_equal(run.signals, nightly.signals["signal"].to_numpy())
    assert_same_indicators(run, nightly.signals)
    assert len(nightly.result.trades) >= 10  # the comparison has something to compare
    sides = set(nightly.result.trades["side"])
    assert sides == ({"long", "short"} if risk.endswith("shorts") else {"long"})
    pd.testing.assert_frame_equal(run.trades(), nightly.result.trades, check_exact=True)
    np.testing.assert_array_equal(run.equity(), nightly.result.equity["equity"].to_numpy())
    np.testing.assert_array_equal(run.position, nightly.result.equity["position"].to_numpy())
    assert [s.ts for s in run.steps] == list(bars["ts"])


def test_the_parity_data_exercises_every_exit_reason(
    settings_: Settings, market_bars: dict[str, pd.DataFrame]
) -> None:
    reasons: set[str] = set()
    short_reasons: set[str] = set()
    reversals = 0
    lower = replace(_agent(settings_, "crypto", "default-shorts"), params={"exit_rule": "lower"})
    for name in [*AGENTS, "crypto-lower"]:
        risks = (
            ("default-shorts",) if name == "crypto-lower" else ("default", "tight", "tight-shorts")
        )
        for risk in risks:
            if name == "crypto-lower":  # the short's exit is the long's entry: reversals
                agent = LiveAgent.from_settings(lower, settings_.costs_for(lower), EQUITY0)
                trades = run_live(agent, market_bars["crypto"]).trades()
                nightly = run_agent(
                    market_bars["crypto"], lower, settings_.costs_for(lower), EQUITY0
                )
                pd.testing.assert_frame_equal(trades, nightly.result.trades, check_exact=True)
            else:
                trades = run_live(_live(settings_, name, risk), market_bars[name]).trades()
            reasons |= set(trades["exit_reason"])
            short_reasons |= set(trades.loc[trades["side"] == "short", "exit_reason"])
            # a reversal: a trade entered where the previous one exited, on the other side
            after = trades.iloc[1:].reset_index(drop=True)
            before = trades.iloc[:-1].reset_index(drop=True)
            reversals += int(
                ((after["entry_ts"] == before["exit_ts"]) & (after["side"] != before["side"])).sum()
            )
    assert reasons == {"signal", "stop", "take_profit", "end"}
    assert short_reasons >= {"signal", "stop", "take_profit"}
    assert reversals > 0


@pytest.mark.parametrize("risk", ["default", "tight", "tight-shorts"])
@pytest.mark.parametrize("name", AGENTS)
@pytest.mark.parametrize("k_kind", ["one", "warmup", "middle", "last"])
def test_shadow_warm_up_continues_the_backtest(
    settings_: Settings, market_bars: dict[str, pd.DataFrame], name: str, k_kind: str, risk: str
) -> None:
    """Warm-up (shadow) on bars [0, K) + live on [K, N) == the backtest over [0, N):
    live signals and equity equal the backtest's from bar K, every trade exiting
    at or after bar K is identical (also one entered during the history), and the
    trades exiting before K are the warm-up's shadow trades."""
    bars = market_bars[name]
    a = _agent(settings_, name, risk)
    nightly = run_agent(bars, a, settings_.costs_for(a), EQUITY0)
    agent = _live(settings_, name, risk)
    k = {"one": 1, "warmup": agent.warmup_bars, "middle": len(bars) // 2, "last": len(bars) - 1}[
        k_kind
    ]
    report = agent.warm_up(bars.iloc[:k])
    assert report.bars == k and report.last_ts == bars["ts"].iat[k - 1]
    run = run_live(agent, bars.iloc[k:])

    np.testing.assert_array_equal(run.signals, nightly.signals["signal"].to_numpy()[k:])
    np.testing.assert_array_equal(run.equity(), nightly.result.equity["equity"].to_numpy()[k:])
    trades = nightly.result.trades
    k_ts = bars["ts"].iat[k]
    later = trades[trades["exit_ts"] >= k_ts].reset_index(drop=True)
    later["trade_id"] = np.arange(1, len(later) + 1, dtype=np.int64)
    pd.testing.assert_frame_equal(run.trades(), later, check_exact=True)
    assert report.shadow_trades == int((trades["exit_ts"] < k_ts).sum())


@pytest.mark.parametrize("name", AGENTS)
def test_shadow_warm_up_carries_an_open_position_into_the_record(
    settings_: Settings, market_bars: dict[str, pd.DataFrame], name: str
) -> None:
    """Switch to live while the backtest holds a position: the first live step's
    events start with that position's entry order and fill (from the history)."""
    bars = market_bars[name]
    a = _agent(settings_, name)
    pos = run_agent(bars, a, settings_.costs_for(a), EQUITY0).result.equity["position"]
    k = int(np.flatnonzero(pos.to_numpy() > 0)[len(pos) // 50]) + 1  # held at K-1's close
    agent = _live(settings_, name)
    report = agent.warm_up(bars.iloc[:k])
    assert agent.broker.state.qty > 0
    fill = report.carried_events[1]
    assert isinstance(fill, Fill) and fill.side == "buy"
    assert fill.ts == agent.broker.state.entry_ts and fill.qty == agent.broker.state.qty
    step = agent.on_bar(next(bars.iloc[k:].itertuples(index=False)))
    assert step is not None and step.events[: len(report.carried_events)] == report.carried_events


@pytest.mark.parametrize("name", AGENTS)
@pytest.mark.parametrize("k", [60, 333])
def test_flat_warm_up_equals_engine_on_live_bars_with_leading_ones_masked(
    settings_: Settings, market_bars: dict[str, pd.DataFrame], name: str, k: int
) -> None:
    """Flat warm-up: signals still equal the full-history batch signals; the broker
    starts flat and waits for a fresh 0 -> 1 change, i.e. it equals the engine on
    [K, N) fed those signals with their leading run of 1s set to 0."""
    bars = market_bars[name]
    a = _agent(settings_, name)
    full = compute_signals(bars, a.strategy, _live(settings_, name).params)["signal"].to_numpy()
    agent = _live(settings_, name)
    agent.warm_up(bars.iloc[:k], mode="flat")
    assert agent.broker.state.qty == 0 and agent.broker.state.cash == EQUITY0
    run = run_live(agent, bars.iloc[k:])

    sig = full[k:].copy()
    if full[k - 1] == 1:
        zeros = np.flatnonzero(sig == 0)
        sig[: zeros[0] if len(zeros) else len(sig)] = 0
    expected = backtest(bars.iloc[k:].reset_index(drop=True), sig, agent.config)
    np.testing.assert_array_equal(run.signals, full[k:])
    pd.testing.assert_frame_equal(run.trades(), expected.trades, check_exact=True)
    np.testing.assert_array_equal(run.equity(), expected.equity["equity"].to_numpy())


def test_aggregated_ticks_through_the_live_agent_equal_the_nightly(settings_: Settings) -> None:
    """The whole live path: synthetic ticks -> BarAggregator -> LiveAgent."""
    from hedgeflow.live.aggregator import BarAggregator
    from hedgeflow.sources.tick import Tick

    start = datetime(2024, 3, 4, tzinfo=UTC)
    end = start + timedelta(days=2)
    a = _agent(settings_, "crypto")
    market = SyntheticMarket(7)
    t = market.ticks(a.symbol, start, end)
    agg = BarAggregator(300, grace_seconds=10)
    agent = LiveAgent.from_settings(a, settings_.costs_for(a), EQUITY0)
    steps = []
    for ts, p, s in zip(t.ts_ms.tolist(), t.price.tolist(), t.size.tolist(), strict=True):
        for bar in agg.add(Tick(a.symbol, ts, p, s)):
            steps.append(agent.on_bar(bar))
    for bar in agg.close_all():
        steps.append(agent.on_bar(bar))
    final = agent.close_out()
    run = LiveRun([s for s in steps if s is not None], final)
    nightly = run_agent(
        market.fetch_bars(a.symbol, "5m", start, end), a, settings_.costs_for(a), EQUITY0
    )
    assert len(run.steps) == len(steps) == len(nightly.signals)
    np.testing.assert_array_equal(run.signals, nightly.signals["signal"].to_numpy())
    pd.testing.assert_frame_equal(run.trades(), nightly.result.trades, check_exact=True)
    np.testing.assert_array_equal(run.equity(), nightly.result.equity["equity"].to_numpy())


# -- the broker against the compiled loop on random inputs ---------------------------------


def _bars_from(returns: list[float], spreads: list[tuple[float, float, float]]) -> pd.DataFrame:
    close = 100.0 * np.exp(np.cumsum(returns))
    prev = np.concatenate([[100.0], close[:-1]])
    gap, up, down = (np.array(x) for x in zip(*spreads, strict=True))
    open_ = prev * np.exp(gap)
    high = np.maximum(open_, close) * (1.0 + up)
    low = np.minimum(open_, close) * (1.0 - down)
    ts = pd.date_range("2024-01-02", periods=len(close), freq="5min", tz="UTC", unit="us")
    return pd.DataFrame({"ts": ts, "open": open_, "high": high, "low": low, "close": close})


def _broker_run(bars: pd.DataFrame, signal: np.ndarray, config: EngineConfig) -> dict:
    broker = PaperBroker(config, "a", "X.US")
    equity, position, fills = [], [], []
    for i, row in enumerate(bars.itertuples(index=False)):
        events = broker.on_bar(row.ts, row.open, row.high, row.low, row.close, int(signal[i]))
        equity.append(broker.state.equity)
        position.append(broker.held)
        fills += [e for e in events if isinstance(e, Fill)]
    end = broker.close_out()
    fills += [e for e in end if isinstance(e, Fill)]
    equity[-1] = broker.state.equity
    return {"equity": np.array(equity), "position": np.array(position), "fills": fills}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    n=st.integers(1, 120),
    whole=st.sampled_from([0.0, 1.0, 1e-5, 1000.0]),
    trailing=st.booleans(),
    fee=st.sampled_from([0.0, 0.5, 5.0, 37.0]),
    slip=st.sampled_from([0.0, 1.0, 2.5]),
    risk=st.sampled_from([0.001, 0.01, 0.2, 1.0]),
    stop=st.sampled_from([0.002, 0.01, 0.05]),
    tp=st.sampled_from([0.004, 0.02, 0.1]),
    lev=st.sampled_from([0.5, 1.0, 3.0]),
    equity=st.sampled_from([1_000.0, 100_000.0, 37.5]),
)
def test_broker_equals_compiled_loop_on_random_bars(
    data, n, whole, trailing, fee, slip, risk, stop, tp, lev, equity
) -> None:
    returns = data.draw(st.lists(st.floats(-0.03, 0.03), min_size=n, max_size=n))
    spreads = data.draw(
        st.lists(
            st.tuples(st.floats(-0.02, 0.02), st.floats(0, 0.02), st.floats(0, 0.02)),
            min_size=n,
            max_size=n,
        )
    )
    shorts = data.draw(st.booleans())
    signal = np.array(data.draw(st.lists(st.integers(-1, 1), min_size=n, max_size=n)), np.int8)
    bars = _bars_from(returns, spreads)
    config = EngineConfig(
        initial_equity=equity,
        risk_per_trade=risk,
        stop_pct=stop,
        take_profit_pct=tp,
        max_leverage=lev,
        fee_bps=fee,
        slippage_bps=slip,
        qty_step=whole,
        min_notional=10.0 if whole == 1e-5 else 0.0,
        use_trailing_atr=trailing,
        atr_period=data.draw(st.integers(1, 20)),
        atr_mult=data.draw(st.sampled_from([0.5, 3.0])),
        allow_short=shorts,
    )
    got = _broker_run(bars, signal, config)
    expected = backtest(bars, signal, config)
    np.testing.assert_array_equal(got["equity"], expected.equity["equity"].to_numpy())
    np.testing.assert_array_equal(got["position"], expected.equity["position"].to_numpy())
    pd.testing.assert_frame_equal(trades_frame(got["fills"]), expected.trades, check_exact=True)


def test_flat_warm_up_with_trailing_atr_uses_the_full_history_atr(
    settings_: Settings, market_bars: dict[str, pd.DataFrame]
) -> None:
    """With an ATR trailing stop the flat warm-up also warms the ATR: live on [K, N)
    equals the compiled loop on [K, N) given the ATR computed over [0, N)."""
    bars = market_bars["crypto"]
    a = _agent(settings_, "crypto")
    base = _live(settings_, "crypto")
    cfg = EngineConfig(**{**base.config.__dict__, "use_trailing_atr": True, "atr_mult": 1.5})
    agent = LiveAgent(a.name, a.symbol, a.strategy, base.params, cfg)
    k = 200
    full = compute_signals(bars, a.strategy, base.params)["signal"].to_numpy()
    agent.warm_up(bars.iloc[:k], mode="flat")
    run = run_live(agent, bars.iloc[k:])
    o, h, lo, c = (
        np.ascontiguousarray(bars[x].to_numpy()[k:]) for x in ("open", "high", "low", "close")
    )
    sig = full[k:].copy()
    if full[k - 1] == 1:
        sig[: np.flatnonzero(sig == 0)[0]] = 0
    a_full = atr(bars["high"], bars["low"], bars["close"], cfg.atr_period)[k:]
    out = _event_loop(o, h, lo, c, sig, np.ascontiguousarray(a_full), engine_settings(cfg))
    np.testing.assert_array_equal(run.equity(), out[0])
    assert len(run.trades()) == out[3] > 0
    np.testing.assert_array_equal(run.trades()["pnl"].to_numpy(), out[2][:, T_PNL])
