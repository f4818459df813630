"""The tearsheet builder (hedgeflow.tearsheet): pure, from frames to one HTML page."""

from __future__ import annotations

import json
import re
from functools import cache

import numpy as np
import pandas as pd
import pytest

from hedgeflow import columns as C
from hedgeflow.config import load_settings
from hedgeflow.metrics import compute_metrics
from hedgeflow.portfolio import combine
from hedgeflow.research import run_agent
from hedgeflow.sources.synthetic import SyntheticMarket
from hedgeflow.tearsheet import (
    CHART_LIBRARY_BANNER,
    MAX_CHART_POINTS,
    SHORT_WINDOW_DAYS,
    AgentSection,
    PortfolioSection,
    market_gaps,
    monthly_returns,
    nightly_tearsheet,
    plotly_js,
    rolling_sharpe,
    thin,
    worst_drawdowns,
)

END = pd.Timestamp("2026-11-20", tz="UTC")
SPEC_RE = re.compile(r'<script type="application/json" id="spec-(\d+)">(.*?)</script>', re.S)


@cache
def sections(days: int, only: str | None = None) -> tuple[list[AgentSection], PortfolioSection]:
    """The default agents (or one of them) on the synthetic market over ``days``."""
    settings = load_settings(env={})
    market = SyntheticMarket(settings.seed)
    agents = []
    for agent in settings.agents:
        if only and agent.name != only:
            continue
        bars = market.fetch_bars(agent.symbol, "5m", END - pd.Timedelta(days=days), END)
        costs = settings.costs_for(agent)
        out = run_agent(bars, agent, costs, settings.portfolio.initial_equity)
        agents.append(
            AgentSection(
                name=agent.name,
                symbol=agent.symbol,
                strategy=agent.strategy,
                asset_class=agent.asset_class,
                params=out.params,
                risk=agent.risk,
                costs=costs,
                prices=bars[[C.TS, C.CLOSE]],
                trades=out.result.trades,
                equity=out.result.equity[[C.TS, "equity"]],
                metrics=out.metrics,
                minimums=settings.minimums_for(agent),
                skipped=out.result.skipped,
            )
        )
    curves = {a.name: a.equity for a in agents}
    metrics, weights, equity = {}, {}, None
    for method in ("equal", "inverse_vol", "risk_parity"):
        result = combine(curves, method=method)
        e = result.equity
        metrics[method] = compute_metrics(e["equity"].to_numpy(), e[C.TS], None, "crypto")
        weights[method] = dict(result.weights)
        if method == "inverse_vol":
            equity = e[[C.TS, "equity"]]
    assert equity is not None
    port = PortfolioSection(
        "inverse_vol", "daily", 0.0, 100_000.0, "crypto", equity, metrics, weights
    )
    return agents, port


@cache
def page(days: int = 30, only: str | None = None) -> str:
    agents, port = sections(days, only)
    quality = {a.symbol: {"stored": len(a.prices), "quarantined": 0} for a in agents}
    return nightly_tearsheet(
        "run-1", f"{days} days to {END:%Y-%m-%d}", agents, port, {"bad": "ValueError: x"}, quality
    )


def visible(html: str) -> str:
    """The page without its scripts (the library and the chart specs)."""
    return re.sub(r"<script.*?</script>", "", html, flags=re.S)


def test_every_section_is_there() -> None:
    html = page()
    text = visible(html)
    for name, symbol, strategy in (
        ("stocks", "AAPL.US", "sma_cross"),
        ("forex", "EURUSD.FOREX", "rsi_mean_revert"),
        ("crypto", "BTC-USD.CC", "donchian_breakout"),
    ):
        section = text[text.index(f'id="agent-{name}"') :]
        section = section[: section.find("</section>")]
        assert f"{symbol}, {strategy}" in section
        for heading in ("Trades (", "Monthly returns", "Worst drawdowns", "Settings"):
            assert heading in section, (name, heading)
        assert f"buy and hold {symbol}" in section
        assert "stop / take-profit" in section and "fees / slippage" in section
    assert "sma_cross (fast=20, slow=50" in text
    # the portfolio: its method named, the drawn one marked, weights per method
    assert "Portfolio: inverse volatility" in text
    assert "inverse volatility (drawn)" in text and "risk parity" in text
    assert "rebalanced daily" in text
    assert '<h3 id="failed">Failed agents</h3>' in text and "ValueError: x" in text
    # price charts carry entries, exits, stops and targets
    specs = {int(k): json.loads(v) for k, v in SPEC_RE.findall(html)}
    names = {t["name"] for s in specs.values() for t in s["data"]}
    assert {"entry (long)", "exit", "stop (initial)", "take-profit"} <= names
    assert {"buy and hold AAPL.US", "portfolio (inverse volatility)"} <= names


def test_one_copy_of_the_chart_library_and_one_spec_per_chart() -> None:
    html = page()
    assert html.count(CHART_LIBRARY_BANNER) == 1
    assert html.count(plotly_js()) == 1
    divs = re.findall(r'<div class="plot" id="plot-(\d+)" data-spec="spec-(\d+)">', html)
    specs = SPEC_RE.findall(html)
    # per agent: price, equity, rolling Sharpe; the portfolio: equity, rolling Sharpe
    assert len(divs) == len(specs) == 3 * 3 + 2
    for _, raw in specs:
        spec = json.loads(raw)
        assert spec["data"] and all(len(t["x"]) == len(t["y"]) for t in spec["data"])
        assert all(len(t["x"]) <= MAX_CHART_POINTS + 1 for t in spec["data"] if t["mode"] == "lines"
                   and "stop" not in t["name"] and "take" not in t["name"])  # fmt: skip


def test_default_report_stays_under_5_mb() -> None:
    size = len(page().encode("utf-8"))
    assert size <= 5_000_000, size
    # most of it is the library, once
    assert len(plotly_js()) < size < len(plotly_js()) + 3_000_000


def test_numbers_are_formatted() -> None:
    html = page()
    text = visible(html)
    assert not re.search(r"\d\.\d{7,}", text), re.search(r".{40}\d\.\d{7,}.{20}", text)
    # metrics as percentages and 2 decimals, trade pnl signed with thousands separators
    agents, _ = sections(30)
    stocks = agents[0]
    assert f"{stocks.metrics['total_return']:.2%}" in text
    assert f"{stocks.metrics['sharpe']:.2f}" in text
    pnl = stocks.trades["pnl"].iloc[0]
    assert f"{pnl:+,.2f}" in text
    # chart data rounded to 7 significant digits
    numbers = [m for _, raw in SPEC_RE.findall(html) for m in re.findall(r"\d+\.\d+", raw)]
    assert numbers
    assert max(len(n.replace(".", "").lstrip("0")) for n in numbers) <= 7


def test_wide_tables_scroll_inside_their_box() -> None:
    text = visible(page())
    n_tables = text.count("<table")
    assert n_tables == text.count('<div class="table-wrap"><table'), "a table outside its box"
    assert ".table-wrap{max-width:100%;overflow-x:auto" in text
    assert "main{max-width:1320px" in text  # fits a 1,400 px window


def test_caution_on_annualised_figures_from_short_windows_only() -> None:
    short = visible(page(30))
    assert 'id="short-window-caveat"' in short
    assert "cagr&#8201;†" in short and "sharpe&#8201;†" in short
    long_ = visible(page(SHORT_WINDOW_DAYS + 30, only="crypto"))
    assert "short-window-caveat" not in long_ and "†" not in long_
    assert "sharpe</th>" in long_


def test_monthly_returns_compound_per_calendar_month() -> None:
    ts = pd.to_datetime(["2026-01-10", "2026-01-31", "2026-02-15", "2026-02-28", "2026-04-02"],
                        utc=True)  # fmt: skip
    frame = pd.DataFrame({C.TS: ts, "equity": [100.0, 110.0, 99.0, 121.0, 133.1]})
    table = monthly_returns(frame)
    assert list(table.index) == [2026]
    row = table.loc[2026]
    assert row[1] == pytest.approx(0.10)
    assert row[2] == pytest.approx(0.10)  # 110 -> 121
    assert np.isnan(row[3])  # no point in March
    assert row[4] == pytest.approx(0.10)  # 121 -> 133.1
    assert row["year"] == pytest.approx(0.331)


def test_worst_drawdowns_are_deepest_first_with_recovery() -> None:
    ts = pd.date_range("2026-01-01", periods=9, freq="D", tz="UTC")
    equity = [100, 90, 95, 101, 80, 70, 85, 102, 99]
    table = worst_drawdowns(pd.DataFrame({C.TS: ts, "equity": equity}), n=5)
    assert list(table["depth"].round(4)) == [round(70 / 101 - 1, 4), -0.1, round(99 / 102 - 1, 4)]
    first = table.iloc[0]
    assert (first.peak, first.trough, first.recovered) == (ts[3], ts[5], ts[7])
    assert first.days == pytest.approx(4.0)
    assert pd.isna(table.iloc[2].recovered)  # still under water at the end
    assert worst_drawdowns(pd.DataFrame({C.TS: ts, "equity": range(1, 10)})).empty


def test_rolling_sharpe_uses_about_a_week_of_bars() -> None:
    ts = pd.date_range("2026-01-01", periods=5000, freq="5min", tz="UTC")
    rng = np.random.default_rng(1)
    equity = 100 * np.cumprod(1 + rng.normal(0.0001, 0.001, 5000))
    frame, window = rolling_sharpe(pd.DataFrame({C.TS: ts, "equity": equity}), "crypto")
    assert window == round(365 * 288 / 52)
    assert len(frame) == 5000 - 1 - window + 1
    r = pd.Series(equity[1:] / equity[:-1] - 1)
    last = r.iloc[-window:]
    assert frame["sharpe"].iloc[-1] == pytest.approx(
        last.mean() / last.std(ddof=1) * np.sqrt(365 * 288)
    )


def test_thin_keeps_the_last_point_and_the_bound() -> None:
    assert list(thin(5, 10)) == [0, 1, 2, 3, 4]
    idx = thin(10_001, 2_000)
    assert idx[0] == 0 and idx[-1] == 10_000 and len(idx) <= 2_001


def test_market_gaps_hide_nights_and_weekends_of_stocks_only() -> None:
    agents, _ = sections(30)
    stocks, _, crypto = agents
    gaps = market_gaps(stocks.prices[C.TS])
    # one closed stretch between consecutive sessions (weekends merge two nights)
    sessions = stocks.prices[C.TS].dt.date.nunique()
    assert len(gaps) == sessions - 1
    assert all(len(g["bounds"]) == 2 for g in gaps)
    assert market_gaps(crypto.prices[C.TS]) == []


def test_sweep_tearsheet() -> None:
    from hedgeflow.config import CostSettings, RiskSettings
    from hedgeflow.sweep import expand_grid
    from hedgeflow.sweep.report import heatmap_matrix
    from hedgeflow.tearsheet import SweepSection, sweep_tearsheet

    grid = expand_grid("sma_cross", {"fast": [5, 10], "slow": [20, 50]})
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        [{"fast": f, "slow": s, "params": json.dumps({"fast": f, "slow": s})}
         for f in (5, 10) for s in (20, 50)]
    )  # fmt: skip
    for key in ("total_return", "cagr", "ann_vol", "sharpe", "sortino", "max_drawdown"):
        frame[key] = rng.normal(0, 0.1, len(frame))
    frame["max_drawdown"] = -frame["max_drawdown"].abs()
    frame["calmar"], frame["n_trades"], frame["win_rate"] = 1.0, 7, 0.5
    frame["profit_factor"], frame["exposure"] = 1.2, 0.3
    frame["rank"] = frame["sharpe"].rank(ascending=False).astype(int)
    found = heatmap_matrix(frame, grid, "sharpe")
    assert found is not None
    section = SweepSection("sma_cross", "sharpe", grid.describe(), ("fast", "slow"),
                           {"BTC-USD.CC": found}, {"BTC-USD.CC": frame}, RiskSettings(),
                           {"crypto": CostSettings(fee_bps=10, slippage_bps=2)})  # fmt: skip
    best = [{"symbol": "BTC-USD.CC", **frame[frame["rank"] == 1].iloc[0].to_dict()}]
    html = sweep_tearsheet("run-2", "window", section, best, {"AAPL.US": "no bars"}, days=30)
    text = visible(html)
    assert html.count(CHART_LIBRARY_BANNER) == 1
    top = frame[frame["rank"] == 1].iloc[0]
    assert f"fast={top.fast}, slow={top.slow}" in text  # the best parameters, readable
    assert text.count('class="heatmap"') == 1 and "fast \\ slow" in text
    assert "Top 4 of 4 combinations" in text and "crypto: 10 bp fee, 2 bp slippage" in text
    assert "AAPL.US" in text and "no bars" in text
    assert 'id="short-window-caveat"' in text
    (spec,) = [json.loads(raw) for _, raw in SPEC_RE.findall(html)]
    assert len(spec["data"][0]["x"]) == 4 and spec["data"][0]["text"][0] == "fast=5, slow=20"
    long_ = sweep_tearsheet("run-2", "window", section, best, {}, days=SHORT_WINDOW_DAYS)
    assert "short-window-caveat" not in long_


def _overfit_sweep_page() -> tuple[str, dict[str, object]]:
    """A sweep page with overfitting statistics: BTC's winner is noise, ETH's has an edge."""
    from hedgeflow.config import CostSettings, RiskSettings
    from hedgeflow.overfit import overfit_stats
    from hedgeflow.sweep import expand_grid
    from hedgeflow.tearsheet import SweepSection, sweep_tearsheet

    grid = expand_grid("sma_cross", {"fast": [5, 10, 15], "slow": [20, 50]})
    rng = np.random.default_rng(8)
    frames, stats, best = {}, {}, []
    for symbol, edge in (("BTC-USD.CC", 0.0), ("ETH-USD.CC", 0.003)):
        r = rng.normal(0.0, 0.01, size=(3000, grid.size))
        r[:, 4] += edge
        stats[symbol] = overfit_stats(r, 16)
        frame = pd.DataFrame([{"fast": p.fast, "slow": p.slow} for p in grid.params])
        frame["params"] = [json.dumps({"fast": p.fast, "slow": p.slow}) for p in grid.params]
        frame["sharpe"] = r.mean(axis=0) / r.std(axis=0, ddof=1)
        for key in ("total_return", "cagr", "ann_vol", "sortino", "calmar", "win_rate"):
            frame[key] = 0.1
        frame["max_drawdown"], frame["n_trades"], frame["profit_factor"] = -0.1, 9, 1.1
        frame["exposure"] = 0.5
        frame["rank"] = frame["sharpe"].rank(ascending=False, method="first").astype(int)
        frames[symbol] = frame
        best.append({"symbol": symbol, **frame[frame["rank"] == 1].iloc[0].to_dict()})
    section = SweepSection("sma_cross", "sharpe", grid.describe(), ("fast", "slow"), {},
                           frames, RiskSettings(), {"crypto": CostSettings()}, stats)  # fmt: skip
    return sweep_tearsheet("run-3", "window", section, best, {}, days=120), stats


def test_sweep_tearsheet_says_when_the_winner_is_probably_overfit() -> None:
    from hedgeflow.overfit import overfit_verdict

    html, stats = _overfit_sweep_page()
    text = visible(html)
    noise, edge = stats["BTC-USD.CC"], stats["ETH-USD.CC"]
    assert overfit_verdict(noise.pbo, noise.dsr)[0]  # type: ignore[attr-defined]
    assert not overfit_verdict(edge.pbo, edge.dsr)[0]  # type: ignore[attr-defined]
    # the rank-1 rows, in words: BTC probably overfit, ETH not
    rows = re.findall(r"<tr><th>([A-Z-]+\.CC)</th><td>([^<]*)</td><td class=\"verdict (\w+)\">"
                      r"<b>([^<]+)</b></td><td>([^<]+)</td><td>([^<]+)</td>", text)  # fmt: skip
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("BTC-USD.CC", "neg", "probably overfit"),
        ("ETH-USD.CC", "pos", "no sign of overfitting"),
    ]
    assert rows[0][4] == f"{noise.pbo:.3f}" and rows[0][5] == f"{noise.dsr:.3f}"  # type: ignore[attr-defined]
    assert "ETH-USD.CC</b>: No sign of overfitting: PBO" in text
    assert "BTC-USD.CC</b>: Probably overfit:" in text
    # per symbol: the statistics, the logit histogram and the in/out-of-sample scatter
    assert text.count("<h3>Overfitting statistics</h3>") == 2
    specs = [json.loads(raw) for _, raw in SPEC_RE.findall(html)]
    hists = [s for s in specs if s["data"][0]["type"] == "bar"]
    assert len(hists) == 2
    for hist, st in zip(hists, (noise, edge), strict=True):
        assert sum(hist["data"][0]["y"]) == st.n_splits == 12_870  # type: ignore[attr-defined]
        xs = np.array(hist["data"][0]["x"])
        below = sum(y for x, y in zip(xs, hist["data"][0]["y"], strict=True) if x < 0)
        assert below == int(np.sum(st.logits < 0))  # type: ignore[attr-defined]
    scatters = [s for s in specs if "Sharpe of n*" in s["layout"]["title"]["text"]]
    assert len(scatters) == 2
    points, line = scatters[1]["data"]
    assert len(points["x"]) <= 2_001
    x0, x1 = line["x"]
    slope = (line["y"][1] - line["y"][0]) / (x1 - x0)
    assert slope == pytest.approx(edge.degradation_slope, rel=1e-5)  # type: ignore[attr-defined]


@pytest.mark.slow  # a headless browser: about 10 s
def test_sweep_overfit_charts_render_in_chromium(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.e2e_helpers import console_messages, run_chromium

    html, _ = _overfit_sweep_page()
    page_ = tmp_path / "report.html"
    page_.write_text(html)
    n_plots = html.count('<div class="plot"')
    assert n_plots == 5  # every combination's scatter; per symbol histogram and scatter
    proc = run_chromium(
        page_, tmp_path / "profile", "--window-size=1400,2400", "--virtual-time-budget=30000",
        "--dump-dom",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_messages(proc.stderr) == []
    assert f'data-charts-rendered="{n_plots}"' in proc.stdout


def test_a_short_selling_agent_shows_both_sides() -> None:
    from dataclasses import replace

    agents, port = sections(10, "crypto")
    a = agents[0]
    settings = load_settings(env={})
    agent = next(x for x in settings.agents if x.name == "crypto")
    agent = replace(agent, risk=replace(agent.risk, allow_short=True))
    market = SyntheticMarket(settings.seed)
    bars = market.fetch_bars(agent.symbol, "5m", END - pd.Timedelta(days=10), END)
    out = run_agent(bars, agent, settings.costs_for(agent), 100_000.0)
    trades = out.result.trades
    both = replace(a, risk=agent.risk, trades=trades, equity=out.result.equity[[C.TS, "equity"]])
    html = nightly_tearsheet("run-2", "10 days", [both], port, {}, {})
    text = visible(html)
    assert "<th>short selling</th><td class='left'>on</td>" in text
    # the per-side table: each side's count and pnl as the trades frame has them
    table = text[text.index('class="sides"') :]
    table = table[: table.index("</table>")]
    for side in ("long", "short"):
        part = trades[trades["side"] == side]
        assert len(part) > 0
        row = table[table.index(f"<th>{side}</th>") :]
        row = row[: row.index("</tr>")]
        assert row.startswith(f"<th>{side}</th><td>{len(part):,}</td>")
        assert f"{part['pnl'].sum():+,.2f}" in row
    specs = {int(k): json.loads(v) for k, v in SPEC_RE.findall(html)}
    names = {t["name"] for s in specs.values() for t in s["data"]}
    assert {"entry (long)", "entry (short)"} <= names


def test_an_agent_whose_entries_the_minimums_skipped_says_how_many_and_why() -> None:
    from dataclasses import replace

    from hedgeflow.config import OrderMinimums

    agents, port = sections(10, "crypto")
    a = agents[0]
    settings = load_settings(env={})
    agent = next(x for x in settings.agents if x.name == "crypto")
    market = SyntheticMarket(settings.seed)
    bars = market.fetch_bars(agent.symbol, "5m", END - pd.Timedelta(days=10), END)
    # 5 of equity cannot place a 10-unit minimum order: every entry is skipped
    mins = OrderMinimums(qty_step=1e-5, min_notional=10.0)
    out = run_agent(bars, agent, settings.costs_for(agent), 5.0, mins)
    skipped = out.result.skipped
    assert out.result.trades.empty and len(skipped) > 0
    assert set(skipped["reason"]) == {"below_min_notional"}
    tiny = replace(
        a, trades=out.result.trades, equity=out.result.equity[[C.TS, "equity"]],
        metrics=out.metrics, minimums=mins, skipped=skipped,
    )  # fmt: skip
    text = visible(nightly_tearsheet("run-3", "10 days", [tiny], port, {}, {}))
    n = len(skipped)
    assert f"Trades (0; {n:,} entries skipped by the order minimums)" in text
    assert (
        "<th>order minimums</th><td class='left'>quantity step 1e-05, notional &gt;= 10; "
        f"{n:,} entries skipped (below_min_notional {n})</td>"
    ) in text
    # the default page's crypto agent: its minimums, nothing skipped
    assert "quantity step 1e-05, notional &gt;= 10</td>" in visible(page())
