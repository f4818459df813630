"""`hedgeflow ingest` end to end: a real Prefect flow run (ephemeral mode), real Parquet,
a real DuckDB file, and clean output."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e_helpers import assert_clean, query, run_cli

pytestmark = pytest.mark.flow

COUNTS = "select symbol, count(*) from bars group by 1 order by 1"


def test_ingest_is_clean_and_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "data"
    first = run_cli(home, "ingest", "--days", "30", "--end", "2026-11-20")
    assert_clean(first)
    assert "ingest summary" in first.stdout
    counts = query(home, COUNTS)
    symbols = [s for s, _ in counts]
    assert symbols == ["AAPL.US", "BTC-USD.CC", "EURUSD.FOREX"]
    by_symbol = dict(counts)
    # 30 days of 5m bars: crypto 24x7, forex 24x5, stocks ~21 sessions x 78 bars
    assert by_symbol["BTC-USD.CC"] == 30 * 288
    assert 20 * 288 <= by_symbol["EURUSD.FOREX"] <= 23 * 288
    assert 19 * 78 <= by_symbol["AAPL.US"] <= 23 * 78

    second = run_cli(home, "ingest", "--days", "30", "--end", "2026-11-20")
    assert_clean(second)
    assert query(home, COUNTS) == counts
    assert query(
        home, "select count(*) from (select symbol, ts from bars group by all having count(*) > 1)"
    ) == [(0,)]
    runs = query(home, "select flow, status from runs order by started_at")
    assert runs == [("ingest", "completed"), ("ingest", "completed")]

    shown = run_cli(home, "sql", "select symbol, count(*) from bars group by 1 order by 1")
    assert shown.returncode == 0, shown.stderr
    assert "BTC-USD.CC" in shown.stdout and f"{by_symbol['BTC-USD.CC']}" in shown.stdout


def test_ingest_from_simulator_matches_synthetic(tmp_path: Path) -> None:
    """The real EODHD client against the local simulator gives the synthetic bars."""
    sim_home = tmp_path / "sim"
    syn_home = tmp_path / "syn"
    args = (
        "ingest",
        "--days",
        "3",
        "--end",
        "2026-11-20",
        "--symbols",
        "BTC-USD.CC",
        "EURUSD.FOREX",
    )
    assert_clean(run_cli(sim_home, *args, "--source", "simulator"))
    assert_clean(run_cli(syn_home, *args))
    sql = (
        "select symbol, ts, open, high, low, close, "
        "case when volume is null then -1 when isnan(volume) then -2 else volume end "
        "from bars order by symbol, ts"
    )
    from_simulator = query(sim_home, sql)
    assert from_simulator == query(syn_home, sql)
    # Tue 17 - Thu 19 Nov 2026: three full days of 5m bars for both 24h markets
    assert len(from_simulator) == 2 * 3 * 288
