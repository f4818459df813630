"""Suite-wide guard: no test leaves a process behind.

Every process the suite starts inherits ``PYTEST_SESSION_TAG`` (a fresh tag per
session) through the environment, also when a test builds its own environment from
``os.environ`` and also when the process is reparented after its parent died (a
Prefect worker's flow run, an ephemeral Prefect server orphaned by a SIGKILL). At the
end of the session any such process still alive after a short grace is killed and
the session fails, naming it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e_helpers import SHARED_PREFECT_API_ENV, Harness

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

SESSION_TAG_ENV = "PYTEST_SESSION_TAG"  # no HEDGEFLOW_/PREFECT_ prefix: tests strip those
LEFTOVER_GRACE_S = 15.0


def tagged_processes(tag: str) -> dict[int, str]:
    """pid -> command line of every live process (not this one) carrying ``tag``."""
    needle = f"{SESSION_TAG_ENV}={tag}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie has exited; its parent just has not reaped it
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        found[int(entry.name)] = cmdline.strip()[:200]
    return found


def _stop_interpreter_helpers() -> None:
    """multiprocessing's resource tracker (and forkserver, if used) are helpers of this
    interpreter that live until it exits (a Dask LocalCluster starts one): stop them
    the way CPython's own tests do, so the check sees only what a test left behind."""
    from multiprocessing import forkserver, resource_tracker

    for helper in (resource_tracker._resource_tracker, forkserver._forkserver):
        with contextlib.suppress(Exception):
            helper._stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    if not Path("/proc/self/environ").exists():  # no procfs: nothing to check with
        yield
        return
    tag = uuid.uuid4().hex
    os.environ[SESSION_TAG_ENV] = tag
    yield
    _stop_interpreter_helpers()
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while (left := tagged_processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if left:
        lines = "\n".join(f"  pid {pid}: {cmd}" for pid, cmd in sorted(left.items()))
        pytest.fail(f"{len(left)} process(es) outlived the test session (killed):\n{lines}")


# --------------------------------------------------------------------------- prefect


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[Harness]:
    """One Prefect test server for the whole session: in-process flows use it through
    the harness settings, ``hedgeflow`` subprocesses through its URL (tests.e2e_helpers
    ``cli_env``), and its SQLite files can be searched (for leaked secrets)."""
    import prefect.settings as ps
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        url = str(ps.PREFECT_API_URL.value())
        db_url = str(ps.PREFECT_SERVER_DATABASE_CONNECTION_URL.value())
        db = Path(db_url.split("///", 1)[1])
        os.environ[SHARED_PREFECT_API_ENV] = url
        try:
            yield Harness(url, (db,), db.parent)
        finally:
            os.environ.pop(SHARED_PREFECT_API_ENV, None)


# --------------------------------------------------------------------------- timeouts

# pyproject's 300 s per test is for the default suite; the opt-in campaigns run longer
LONG_TIMEOUTS = {"slow": 3600, "soak": 7200}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is not None:
            continue
        for marker, seconds in LONG_TIMEOUTS.items():
            if item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.timeout(seconds))
                break


# --------------------------------------------------------------------------- no skips in CI

NO_SKIPS_ENV = "CI_NO_SKIPS"  # .ci/run sets it (not HEDGEFLOW_*: those are settings)


def _fail_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if report.skipped and os.environ.get(NO_SKIPS_ENV) and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, but {NO_SKIPS_ENV} is set (CI runs every test): {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    _fail_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    report = yield
    _fail_skip(report)
    return report
