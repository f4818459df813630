"""The nightly deployment's schedule in prefect.yaml (README: "runs on a cron schedule
after the US close (17:30 America/New_York, weekdays)"): the exact entry, converted
the way ``prefect deploy`` converts it, and the run times Prefect's scheduler computes
from it across both 2025 DST changes in New York. No server: fast."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule
from prefect.client.schemas.schedules import CronSchedule as ClientCronSchedule
from prefect.server.schemas.schedules import CronSchedule as ServerCronSchedule

REPO = Path(__file__).resolve().parents[2]
NEW_YORK = ZoneInfo("America/New_York")


def deployments() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return {d["name"]: d for d in config["deployments"]}


def nightly_schedule() -> ServerCronSchedule:
    """The nightly schedule as ``prefect deploy`` builds it, as the scheduler sees it."""
    (entry,) = deployments()["nightly-backtest"]["schedules"]
    schedule = _schedule_config_to_deployment_schedule(entry)["schedule"]
    assert isinstance(schedule, ClientCronSchedule)
    return ServerCronSchedule(**schedule.model_dump())


def next_runs(n: int, start: datetime) -> list[datetime]:
    dates = asyncio.run(nightly_schedule().get_dates(n, start=start))
    return [d.astimezone(UTC) for d in dates]


def test_nightly_schedule_entry_is_exact() -> None:
    found = deployments()
    nightly = found["nightly-backtest"]
    assert nightly["entrypoint"] == "flows/nightly.py:nightly"
    assert nightly["schedules"] == [{"cron": "30 17 * * 1-5", "timezone": "America/New_York"}]
    schedule = nightly_schedule()
    assert (schedule.cron, schedule.timezone, schedule.day_or) == (
        "30 17 * * 1-5",
        "America/New_York",
        True,
    )
    # only the nightly backtest is scheduled; the others are started on demand
    assert {name for name, d in found.items() if d.get("schedules")} == {"nightly-backtest"}


def test_nightly_description_shows_its_cron() -> None:
    """The UI shows a schedule only as prose ("At 05:30 PM, Monday through Friday",
    no time zone): the deployment's description carries the cron and the zone, equal
    to the schedule's."""
    nightly = deployments()["nightly-backtest"]
    (entry,) = nightly["schedules"]
    description = " ".join(nightly["description"].split())
    assert f'cron "{entry["cron"]}" in {entry["timezone"]}' in description
    assert "weekdays at 17:30" in description  # the prose matches the cron
    schedule = nightly_schedule()
    assert schedule.cron.split()[:2] == ["30", "17"] and schedule.cron.endswith("1-5")


def z(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        # spring forward (Sun 9 March 2025): 17:30 EST = 22:30Z, then 17:30 EDT = 21:30Z;
        # the weekend has no run
        (
            z(2025, 3, 7, 12),
            [z(2025, 3, 7, 22, 30), z(2025, 3, 10, 21, 30), z(2025, 3, 11, 21, 30)],
        ),
        # fall back (Sun 2 November 2025): 21:30Z, then 22:30Z
        (
            z(2025, 10, 31, 0),
            [z(2025, 10, 31, 21, 30), z(2025, 11, 3, 22, 30), z(2025, 11, 4, 22, 30)],
        ),
        # a start just after a run: the next weekday's close, a whole week of five runs
        (
            z(2025, 6, 2, 21, 31),  # Monday, after the 21:30Z run
            [z(2025, 6, d, 21, 30) for d in (3, 4, 5, 6, 9)],
        ),
    ],
)
def test_prefect_computes_the_next_nightly_runs(start: datetime, expected: list[datetime]) -> None:
    runs = next_runs(len(expected), start)
    assert runs == expected
    for run in runs:
        local = run.astimezone(NEW_YORK)
        assert (local.hour, local.minute, local.second) == (17, 30, 0)
        assert local.weekday() < 5
        assert local.utcoffset() in (timedelta(hours=-5), timedelta(hours=-4))
