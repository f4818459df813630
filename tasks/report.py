"""Publish a nightly run: the tearsheet (report.html), summary.md with its charts, and
the Prefect artifacts (a markdown summary with its charts embedded, metrics tables)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from hedgeflow.config import Settings
from hedgeflow.errors import out_of_space_as
from hedgeflow.report import (
    chart_data_urls,
    formatted_metrics_rows,
    render_charts,
    summary_markdown,
)
from hedgeflow.strategies import parse_params
from hedgeflow.tasks.common import run_logger
from hedgeflow.tasks.research import PORTFOLIO_AGENT, AgentSummary, PortfolioSummary
from hedgeflow.tearsheet import (
    SHORT_WINDOW_DAYS,
    AgentSection,
    PortfolioSection,
    nightly_tearsheet,
    window_days,
)
from hedgeflow.warehouse import REPORT_HTML, SUMMARY_MD


def tearsheet_sections(
    done: Sequence[AgentSummary], portfolio: PortfolioSummary | None, settings: Settings
) -> tuple[list[AgentSection], PortfolioSection | None]:
    """The tearsheet's inputs: each agent's results with the settings it ran with (every
    strategy parameter, the defaults of those not configured included)."""
    by_name = {a.name: a for a in settings.agents}
    agents = [
        AgentSection(
            name=s.agent,
            symbol=s.symbol,
            strategy=s.strategy,
            asset_class=s.asset_class,
            params=dataclasses.asdict(parse_params(s.strategy, by_name[s.agent].params)),
            risk=by_name[s.agent].risk,
            costs=settings.costs_for(by_name[s.agent]),
            minimums=settings.minimums_for(by_name[s.agent]),
            skipped=s.skipped,
            prices=s.prices,
            trades=s.trades,
            equity=s.equity,
            metrics=s.metrics,
        )
        for s in done
    ]
    port = None
    if portfolio is not None:
        port = PortfolioSection(
            method=portfolio.method,
            rebalance=settings.portfolio.rebalance,
            fee_bps=settings.portfolio.fee_bps,
            initial_equity=settings.portfolio.initial_equity,
            asset_class=portfolio.asset_class,
            equity=portfolio.equity,
            metrics_by_method=portfolio.metrics_by_method,
            weights_by_method=portfolio.weights_by_method,
        )
    return agents, port


def publish_report_body(
    run_id: str,
    window: str,
    done: Sequence[AgentSummary],
    portfolio: PortfolioSummary | None,
    settings: Settings,
    failed: Mapping[str, str],
    data_quality: Mapping[str, Mapping[str, int]],
    out_dir: Path,
) -> Path:
    """Write the run's report files under ``out_dir`` and publish its artifacts;
    returns the absolute path of report.html."""
    with out_of_space_as(out_dir):  # a full disk: "no space left on <report folder>"
        agents, port = tearsheet_sections(done, portfolio, settings)
        agent_rows = [(s.agent, s.metrics) for s in done]
        portfolio_rows: list[tuple[str, Mapping[str, Any]]] = (
            list(portfolio.metrics_by_method.items()) if portfolio else []
        )
        curves = {s.agent: s.equity for s in done}
        if portfolio is not None:
            curves[PORTFOLIO_AGENT] = portfolio.equity
        html_path = (out_dir / REPORT_HTML).resolve()
        run_settings = [
            ("source / interval", f"{settings.source} / {settings.interval}"),
            ("initial equity", f"{settings.portfolio.initial_equity:,.0f}"),
        ]
        html = nightly_tearsheet(run_id, window, agents, port, failed, data_quality, run_settings)
        html_path.write_text(html, encoding="utf-8")
        days = window_days(list(curves.values()))
        caution = (
            f"annualised figures (cagr, vol, sharpe, calmar) extrapolate {days:.0f} days to a year"
            if curves and days < SHORT_WINDOW_DAYS
            else None
        )
        charts = render_charts(curves, out_dir)
        markdown = summary_markdown(
            run_id,
            window,
            agent_rows,
            portfolio_rows,
            failed,
            data_quality,
            {name: path.name for name, path in charts.items()},
            str(html_path),
            caution,
        )
        (out_dir / SUMMARY_MD).write_text(markdown, encoding="utf-8")
        artifact = summary_markdown(
            run_id,
            window,
            agent_rows,
            portfolio_rows,
            failed,
            data_quality,
            chart_data_urls(curves),
            str(html_path),
            caution,
        )
        create_markdown_artifact(
            artifact, key="nightly-summary", description=f"nightly run {run_id}"
        )
        create_table_artifact(
            formatted_metrics_rows(agent_rows, "agent"),
            key="agent-metrics",
            description="per-agent metrics",
        )
        create_table_artifact(
            formatted_metrics_rows(portfolio_rows, "method"),
            key="portfolio-metrics",
            description="portfolio metrics per allocation method",
        )
        run_logger().info("report written to %s", html_path)
        return html_path


publish_report = task(name="publish-report", cache_policy=NO_CACHE)(publish_report_body)
