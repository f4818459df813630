"""``hedgeflow sql --format json``: the exact output for known queries (numbers,
DECIMAL, NULL, NaN and infinities, strings, booleans, dates, timestamps in UTC,
lists and structs), and that it is strict JSON (RFC 8259: no NaN / Infinity)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hedgeflow.cli import main
from hedgeflow.warehouse import Warehouse
from tests.e2e_helpers import run_cli


def strict_json(text: str) -> object:
    """Parse like a strict JSON parser: NaN, Infinity and -Infinity are errors."""

    def refuse(name: str) -> object:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A warehouse with three EURUSD.FOREX bars (forex: no volume, stored as NaN)."""
    home = tmp_path / "data"
    monkeypatch.setenv("HEDGEFLOW_HOME", str(home))
    bars = pd.DataFrame(
        {
            "ts": pd.date_range("2026-11-20 14:30", periods=3, freq="5min", tz="UTC").as_unit("us"),
            "open": [1.0625, 1.09375, 1.078125],
            "high": [1.125, 1.125, 1.09375],
            "low": [1.0, 1.0625, 1.0625],
            "close": [1.09375, 1.078125, 1.0625],
            "volume": [np.nan, np.nan, np.nan],
        }
    )
    Warehouse(home).write_bars(
        bars, "EURUSD.FOREX", "5m", "2026-11-20 14:30Z", "2026-11-20 14:45Z", source="test"
    )
    return home


def test_sql_json_of_stored_bars_is_exact(home: Path) -> None:
    """The real command in a subprocess: timestamps as UTC text, NaN volume as null."""
    proc = run_cli(
        home,
        "sql",
        "select symbol, interval, ts, open, close, volume, source from bars order by ts",
        "--format",
        "json",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    rows = [
        ("2026-11-20 14:30:00+00:00", 1.0625, 1.09375),
        ("2026-11-20 14:35:00+00:00", 1.09375, 1.078125),
        ("2026-11-20 14:40:00+00:00", 1.078125, 1.0625),
    ]
    expected = ", ".join(
        f'{{"symbol": "EURUSD.FOREX", "interval": "5m", "ts": "{ts}", "open": {o}, '
        f'"close": {c}, "volume": null, "source": "test"}}'
        for ts, o, c in rows
    )
    assert proc.stdout == f"[{expected}]\n"
    parsed = strict_json(proc.stdout)
    assert isinstance(parsed, list) and len(parsed) == 3
    assert [pd.Timestamp(r["ts"]) for r in parsed] == list(
        pd.date_range("2026-11-20 14:30", periods=3, freq="5min", tz="UTC")
    )


QUERY = """
select 42 as i, 2.50 as d, 0.1::double as f, 'nan'::double as nan, '-inf'::double as ninf,
       null as n, 'a"b\\c é' as s, true as b, date '2026-11-20' as day,
       timestamptz '2026-11-20 09:30:00-05' as tz, timestamp '2026-11-20 14:30:00' as naive,
       [1.5, 'inf'::double] as l, {'k': 'x', 'v': 'nan'::double} as st
"""
EXPECTED = (
    '[{"i": 42, "d": 2.5, "f": 0.1, "nan": null, "ninf": null, "n": null, '
    '"s": "a\\"b\\\\c \\u00e9", "b": true, "day": "2026-11-20", '
    '"tz": "2026-11-20 14:30:00+00:00", "naive": "2026-11-20 14:30:00", '
    '"l": [1.5, null], "st": {"k": "x", "v": null}}]\n'
)


def test_sql_json_types_nulls_and_timestamps(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sql", QUERY, "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert out == EXPECTED
    (row,) = strict_json(out)  # type: ignore[misc]
    assert type(row["i"]) is int and type(row["d"]) is float and row["n"] is None
    assert row["s"] == 'a"b\\c é'
    assert pd.Timestamp(row["tz"]) == pd.Timestamp("2026-11-20 14:30", tz="UTC")


def test_sql_json_of_no_rows_is_an_empty_array(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sql", "select * from bars where false", "--format", "json"]) == 0
    assert capsys.readouterr().out == "[]\n"
