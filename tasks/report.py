"""Publish a run: charts on disk, Prefect artifacts (markdown, tables, images)."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from hedgeflow.errors import out_of_space_as
from hedgeflow.report import METRIC_ORDER, render_charts, summary_html, summary_markdown
from hedgeflow.tasks.common import run_logger


def _data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def publish_report_body(
    run_id: str,
    window: str,
    curves: Mapping[str, pd.DataFrame],
    agent_rows: Sequence[tuple[str, Mapping[str, Any]]],
    portfolio_rows: Sequence[tuple[str, Mapping[str, Any]]],
    failed: Mapping[str, str],
    data_quality: Mapping[str, Mapping[str, int]],
    out_dir: Path,
) -> Path:
    with out_of_space_as(out_dir):  # a full disk: "no space left on <report folder>"
        return _publish(
            run_id, window, curves, agent_rows, portfolio_rows, failed, data_quality, out_dir
        )


def _publish(
    run_id: str,
    window: str,
    curves: Mapping[str, pd.DataFrame],
    agent_rows: Sequence[tuple[str, Mapping[str, Any]]],
    portfolio_rows: Sequence[tuple[str, Mapping[str, Any]]],
    failed: Mapping[str, str],
    data_quality: Mapping[str, Mapping[str, int]],
    out_dir: Path,
) -> Path:
    charts = render_charts(curves, out_dir)
    links = {name: path.resolve().as_uri() for name, path in charts.items()}
    markdown = summary_markdown(
        run_id, window, agent_rows, portfolio_rows, failed, data_quality, links
    )
    report_path = out_dir / "summary.md"
    report_path.write_text(markdown, encoding="utf-8")
    html = summary_html(run_id, window, agent_rows, portfolio_rows, failed, data_quality, charts)
    (out_dir / "report.html").write_text(html, encoding="utf-8")
    create_markdown_artifact(markdown, key="nightly-summary", description=f"nightly run {run_id}")
    create_table_artifact(
        [
            {"agent": name, **{k: metrics.get(k) for k in METRIC_ORDER}}
            for name, metrics in agent_rows
        ],
        key="agent-metrics",
        description="per-agent metrics",
    )
    create_table_artifact(
        [
            {"method": name, **{k: metrics.get(k) for k in METRIC_ORDER}}
            for name, metrics in portfolio_rows
        ],
        key="portfolio-metrics",
        description="portfolio metrics per allocation method",
    )
    for name, path in charts.items():
        create_image_artifact(
            _data_url(path), key=f"{name}-chart", description=f"{name} chart, {path}"
        )
    run_logger().info("report written to %s", report_path)
    return report_path


publish_report = task(name="publish-report", cache_policy=NO_CACHE)(publish_report_body)
