"""``calendars``: the session calendar of each stock exchange suffix, checked against the
exchange-calendars library when settings load; the nightly's trading-day check and the
live session filter follow it."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hedgeflow.config import settings_from_mapping
from hedgeflow.errors import ConfigError
from hedgeflow.exchange_calendar import closed_day_reason
from hedgeflow.live.hours import SessionFilter
from hedgeflow.sources.tick import Tick

# 2025-11-03 is a Monday: a session in New York (XNYS), a Bank Holiday in Tokyo (XTKS)
MONDAY = datetime(2025, 11, 3, 15, tzinfo=UTC)


def test_the_default_is_xnys_and_an_override_is_kept() -> None:
    assert settings_from_mapping({}).calendars == {"US": "XNYS"}
    assert settings_from_mapping({"calendars": {"US": "xtks"}}).calendars == {"US": "XTKS"}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"US": "NOPE"}, "calendars.US must name a known calendar: unknown exchange calendar"),
        ({"US": ""}, "calendars.US must name a known calendar: invalid exchange calendar"),
        ({"U-S": "XNYS"}, "calendars is invalid: exchange suffix 'U-S'"),
    ],
)
def test_a_calendar_the_library_does_not_know_is_refused(value: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        settings_from_mapping({"calendars": value})


def test_the_cli_says_so_in_one_line_and_stores_nothing(tmp_path: Path) -> None:
    config = tmp_path / "hedgeflow.toml"
    config.write_text('[calendars]\nUS = "XNYZ"\n')
    home = tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "hedgeflow", "--home", str(home), "--config", str(config), "runs"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "hedgeflow: error: setting 'calendars.US': calendars.US must name a known calendar: "
        "unknown exchange calendar 'XNYZ': expected a calendar name of the exchange-calendars "
        "library, such as XNYS, XNAS, XLON or XTKS"
    ]
    assert not home.exists()


def test_the_trading_day_check_and_the_session_filter_follow_it() -> None:
    assert closed_day_reason(MONDAY, ["AAPL.US"]) is None
    tokyo = {"US": "XTKS"}
    reason = closed_day_reason(MONDAY, ["AAPL.US"], calendars=tokyo)
    assert reason is not None and reason.startswith("2025-11-03 is not a trading day of XTKS")
    tick = Tick("AAPL.US", int(MONDAY.timestamp() * 1000), 100.0, 1.0, feed="us", ms="market")
    assert SessionFilter(["AAPL.US"]).admit(tick)
    assert not SessionFilter(["AAPL.US"], calendars=tokyo).admit(tick)
