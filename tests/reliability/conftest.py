"""Reliability suite fixtures and its results collector.

``tally`` (fixture): a per-test record of what was tried (trials, faults injected by
kind, outcomes by name, free-form notes). When ``RELIABILITY_RESULTS_JSON`` names a
file, the collector writes every reliability test's record there at the end of the
session, with its pytest outcome and duration; ``python -m tests.reliability.report``
turns that into RELIABILITY.md.

``prefect_harness`` (session, tests/conftest.py): one Prefect test server for the whole
suite. In-process flows use it through the harness settings; subprocesses (the real
``hedgeflow`` CLI) reach it through ``PREFECT_API_URL`` (see ``Harness.env``), so no
process pays for an ephemeral server, and its SQLite files can be searched for leaked
secrets.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_helpers import Harness

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

RESULTS_ENV = "RELIABILITY_RESULTS_JSON"
FULL_ENV = "RELIABILITY_FULL_CAMPAIGN"  # set by the report: run the full campaigns


def full_campaign() -> bool:
    return os.environ.get(FULL_ENV, "") not in ("", "0")


# --------------------------------------------------------------------------- tally


@dataclass
class Tally:
    """What one reliability test tried and what happened."""

    category: str = ""
    what: str = ""
    trials: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    notes: dict[str, Any] = field(default_factory=dict)

    def describe(self, category: str, what: str) -> None:
        self.category, self.what = category, what

    def trial(self, n: int = 1) -> None:
        self.trials += n

    def fault(self, kind: str, n: int = 1) -> None:
        if n:
            self.faults[str(kind)] += n

    def outcome(self, name: str, n: int = 1) -> None:
        self.outcomes[name] += n

    def note(self, key: str, value: Any) -> None:
        self.notes[key] = value

    def as_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "what": self.what,
            "trials": self.trials,
            "faults": dict(sorted(self.faults.items())),
            "faults_total": sum(self.faults.values()),
            "outcomes": dict(sorted(self.outcomes.items())),
            "notes": self.notes,
        }


_TALLIES: dict[str, Tally] = {}
_REPORTS: dict[str, dict[str, Any]] = {}


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Tally:
    record = Tally()
    _TALLIES[request.node.nodeid] = record
    return record


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "tests/reliability/" not in report.nodeid.replace("\\", "/"):
        return
    entry = _REPORTS.setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0})
    entry["duration"] += report.duration
    if report.when == "call" or report.outcome != "passed":
        if report.skipped:
            entry["outcome"] = "skipped"
        elif report.failed:
            entry["outcome"] = "failed"
            entry["error"] = str(report.longrepr)[-1500:]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get(RESULTS_ENV)
    if not target:
        return
    tests = []
    for nodeid, entry in _REPORTS.items():
        tally = _TALLIES.get(nodeid)
        tests.append({"nodeid": nodeid, **entry, **(tally.as_dict() if tally else {})})
    payload = {
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "exitstatus": int(exitstatus),
        "tests": tests,
    }
    Path(target).write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")


# --------------------------------------------------------------------------- prefect


# ``Harness`` and the session ``prefect_harness`` fixture live in tests/conftest.py and
# tests/e2e_helpers.py: one Prefect test server for the whole session.
__all__ = ["Harness", "Tally", "full_campaign"]


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    """``hedgeflow.cli.main`` exports --home / --config to os.environ: undo it."""
    saved = dict(os.environ)
    yield
    for key in [k for k in os.environ if k not in saved]:
        del os.environ[key]
    os.environ.update(saved)


@pytest.fixture
def hedgeflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("HEDGEFLOW_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home
