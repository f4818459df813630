"""Hostile input, second campaign (issue 15): bounded inputs and one-line errors.

- settings files that never end (``/dev/zero``), block (a FIFO) or are huge;
- a home that is not a usable directory (``/dev/null``, ``/proc/self``, a file);
- output paths that are files where a directory is needed, or the reverse;
- epoch integer times in every unit (s, ms, us, ns) and datetime columns of every unit;
- a full disk at every stage: simulated ENOSPC in-process (the lake, DuckDB, the
  report, the backtest outputs, the start of a run) and a real, nearly full tmpfs.

Every refusal is one ``hedgeflow: error: ...`` line with exit code 2, never a
traceback, and nothing stored changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow.csv as pa_csv
import pytest

from hedgeflow.cli import main
from hedgeflow.config import MAX_CONFIG_BYTES
from hedgeflow.warehouse import Warehouse
from tests.e2e_helpers import assert_clean, cli_env, run_cli
from tests.reliability.conftest import Harness, Tally, full_campaign
from tests.reliability.enospc_driver import STAGES, enospc

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "hedgeflow.cli"]
ERR = "hedgeflow: error: "
STRATEGY = ["--strategy", "sma_cross", "--param", "fast=3", "--param", "slow=8"]
# a fixed window, so that reruns store the same bars
WINDOW = ["--days", "3", "--end", "2026-11-20"]


def _assert_one_line(code: int, err: str, expected: str, *, after_progress: bool = False) -> None:
    """Exit 2 and exactly ``hedgeflow: error: <expected>`` on stderr; with
    ``after_progress`` (a run that stopped part-way) the progress lines of the stages
    that finished may come first, and none of them is an error."""
    assert "Traceback" not in err, err
    assert code == 2, (code, err)
    if after_progress:
        lines = err.splitlines()
        assert lines and lines[-1] == f"{ERR}{expected}", err
        assert not [ln for ln in lines[:-1] if "error" in ln.lower() or "fail" in ln.lower()], err
    else:
        assert err == f"{ERR}{expected}\n", err


def _digest(folder: Path) -> dict[str, str]:
    """Every stored file's bytes (lock files are empty markers and may be created)."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


# --------------------------------------------------------------------------- settings files


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _huge(path: Path) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(MAX_CONFIG_BYTES + 1)  # sparse: 1 MiB + 1 of zeros
    return path


CONFIG_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "/dev/zero": (lambda d: Path("/dev/zero"), "is a character device, not a regular file"),
    "FIFO": (lambda d: _fifo(d / "settings.toml"), "is a FIFO (named pipe), not a regular file"),
    "directory": (lambda d: d, "is a directory, not a regular file"),
    "1 MiB + 1": (
        lambda d: _huge(d / "big.toml"),
        f"is larger than the 1 MiB limit for a settings file ({MAX_CONFIG_BYTES + 1:,} bytes)",
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_that_is_not_a_small_regular_file(case: str, tmp_path: Path, tally: Tally) -> None:
    """The real command, in a fresh interpreter: instant refusal (a FIFO used to block
    forever, /dev/zero grew to 15 GB), one line, nothing created."""
    tally.describe("hostile input", "--config /dev/zero, a FIFO, a directory, > 1 MiB")
    make, problem = CONFIG_CASES[case]
    config = make(tmp_path)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEFLOW_")}
    env["HEDGEFLOW_HOME"] = str(home)
    proc = subprocess.run(
        [*CLI, "--config", str(config), "ingest", *WINDOW],
        capture_output=True,
        text=True,
        timeout=60,  # a blocked read would hang here
        cwd=tmp_path,
        env=env,
    )
    _assert_one_line(
        proc.returncode, proc.stderr, f"setting 'config': config file {str(config)!r} {problem}"
    )
    assert not home.exists()
    tally.trial()
    tally.outcome("refused at once, before I/O")


def test_default_hedgeflow_toml_fifo_is_refused(
    hedgeflow_home: Path, capsys: pytest.CaptureFixture[str], tally: Tally
) -> None:
    """./hedgeflow.toml is read without --config: a FIFO there is refused, not opened."""
    tally.describe("hostile input", "./hedgeflow.toml that is a FIFO")
    _fifo(hedgeflow_home.parent / "hedgeflow.toml")
    code = main(["runs"])
    _assert_one_line(
        code,
        capsys.readouterr().err,
        "setting 'config': config file 'hedgeflow.toml' is a FIFO (named pipe), not a regular file",
    )
    assert not hedgeflow_home.exists()
    tally.trial()
    tally.outcome("refused before I/O")


# --------------------------------------------------------------------------- homes

HOME_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "/dev/null": (lambda d: Path("/dev/null"), "is a character device, not a directory"),
    "/proc/self": (lambda d: Path("/proc/self"), "is not writable"),
    "a file": (lambda d: _touch(d / "file"), "is a regular file, not a directory"),
    "under a file": (
        lambda d: _touch(d / "file") / "home",
        "is not usable: Not a directory",
    ),
    "under /dev/null": (lambda d: Path("/dev/null/home"), "is not usable: Not a directory"),
}
HOME_COMMANDS = [
    ["ingest", *WINDOW],
    ["nightly", *WINDOW],
    ["sweep", "--strategy", "sma_cross", *WINDOW],
]


def _touch(path: Path) -> Path:
    path.write_text("not a directory\n")
    return path


@pytest.mark.parametrize("case", list(HOME_CASES))
@pytest.mark.parametrize("argv", HOME_COMMANDS, ids=[c[0] for c in HOME_COMMANDS])
def test_home_that_is_not_a_usable_directory(
    case: str,
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tally: Tally,
) -> None:
    tally.describe("hostile input", "HEDGEFLOW_HOME=/dev/null, /proc/self, a file, ...")
    make, problem = HOME_CASES[case]
    home = make(tmp_path)
    before = _digest(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEDGEFLOW_HOME", str(home))
    code = main(argv)
    _assert_one_line(
        code,
        capsys.readouterr().err,
        f"setting 'home': {home} {problem} (HEDGEFLOW_HOME or --home)",
    )
    assert _digest(tmp_path) == before
    tally.trial()
    tally.outcome("refused before any work")


def test_home_dev_null_for_reading_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tally: Tally
) -> None:
    """``runs`` / ``report`` / ``sql`` only read, but still need a directory."""
    tally.describe("hostile input", "--home /dev/null for runs, report, sql")
    for argv in (["runs"], ["report", "abc"], ["sql", "select 1"]):
        code = main(["--home", "/dev/null", *argv])
        _assert_one_line(
            code,
            capsys.readouterr().err,
            "setting 'home': /dev/null is a character device, not a directory "
            "(HEDGEFLOW_HOME or --home)",
        )
        tally.trial()
        tally.outcome("refused before I/O")


# --------------------------------------------------------------------------- --out

EQUITY = 100_000.0


def _bars(n: int = 120, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    return pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-02 14:30", periods=n, freq="5min", tz="UTC").as_unit("us"),
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": rng.integers(100, 1000, n).astype(float),
        }
    )


def _backtest(bars: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["backtest", "--bars", str(bars), *STRATEGY, "--out", str(out)])
    return code, capsys.readouterr().err


OUT_CASES: dict[str, Callable[[Path], Path]] = {
    "an existing file": lambda d: _touch(d / "results"),
    "/dev/null": lambda d: Path("/dev/null"),
    "under a file": lambda d: _touch(d / "results") / "sub",
    "trades.csv is a directory": lambda d: _mkdir(d / "results" / "trades.csv").parent,
    "metrics.json is a FIFO": lambda d: _fifo(_mkdir(d / "results") / "metrics.json").parent,
}
OUT_MESSAGES = {
    "an existing file": "--out '{out}' is a regular file, not a directory",
    "/dev/null": "--out '{out}' is a character device, not a directory",
    "under a file": "--out '{out}' is not usable: Not a directory",
    "trades.csv is a directory": (
        "--out '{out}': trades.csv there is a directory, not a file hedgeflow can replace"
    ),
    "metrics.json is a FIFO": (
        "--out '{out}': metrics.json there is a FIFO (named pipe), not a file hedgeflow can replace"
    ),
}


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


@pytest.mark.parametrize("case", list(OUT_CASES))
def test_backtest_out_that_is_not_a_directory(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], tally: Tally
) -> None:
    """Checked before the bars file is read: nothing is written or replaced."""
    tally.describe("hostile input", "backtest --out: an existing file, a device, ...")
    bars = tmp_path / "bars.csv"
    _bars().to_csv(bars, index=False)
    out = OUT_CASES[case](tmp_path)
    before = _digest(tmp_path)
    code, err = _backtest(bars, out, capsys)
    _assert_one_line(code, err, OUT_MESSAGES[case].format(out=out))
    assert _digest(tmp_path) == before
    tally.trial()
    tally.outcome("refused before any work, nothing written")


# --------------------------------------------------------------------------- epoch times

UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _encode(bars: pd.DataFrame, how: str) -> pd.DataFrame:
    """The same bars with ``ts`` as epoch integers of a unit, or a datetime unit."""
    out = bars.copy()
    kind, unit = how.split(":")
    if kind == "epoch":
        micros = bars["ts"].dt.as_unit("us").astype("int64")
        per_us = UNITS[unit] / 1_000_000
        out["ts"] = micros * int(per_us) if per_us >= 1 else micros // round(1 / per_us)
    elif kind == "naive":
        out["ts"] = bars["ts"].dt.tz_localize(None).dt.as_unit(unit)
    else:
        out["ts"] = bars["ts"].dt.tz_convert("America/New_York").dt.as_unit(unit)
    return out


ENCODINGS = [f"{k}:{u}" for k in ("epoch", "naive", "aware") for u in UNITS]


def test_epoch_and_datetime_units_give_identical_backtests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tally: Tally
) -> None:
    """Epoch s / ms / us / ns (Parquet int64 and CSV) and datetime64[s|ms|us|ns] naive
    (taken as UTC) or aware: the same bars, the same outputs byte for byte. Epoch
    microseconds were read as milliseconds (year 57984) and crashed in strftime."""
    tally.describe("hostile input", "backtest --bars: epoch s/ms/us/ns, datetime units")
    bars = _bars()
    reference = tmp_path / "reference.csv"
    bars.assign(ts=bars["ts"].map(lambda t: t.isoformat())).to_csv(reference, index=False)
    code, err = _backtest(reference, tmp_path / "ref", capsys)
    assert code == 0, err
    expected = _digest(tmp_path / "ref")
    assert json.loads((tmp_path / "ref" / "metrics.json").read_text())["n_trades"] > 0
    for how in ENCODINGS:
        frame = _encode(bars, how)
        for fmt in ("parquet", "csv"):
            if fmt == "csv" and not how.startswith("epoch"):
                continue  # CSV has no datetime dtype: text times are covered elsewhere
            path = tmp_path / f"{how.replace(':', '-')}.{fmt}"
            if fmt == "parquet":
                frame.to_parquet(path, index=False)
            else:
                frame.to_csv(path, index=False)
            out = tmp_path / f"out-{path.name}"
            code, err = _backtest(path, out, capsys)
            assert code == 0, (how, fmt, err)
            assert _digest(out) == expected, (how, fmt)
            tally.trial()
            tally.outcome("accepted, outputs identical to ISO times")


EPOCH_REFUSED: list[tuple[str, Callable[[pd.DataFrame], pd.DataFrame], str]] = [
    (
        "between s and ms (5e10)",
        lambda b: b.assign(ts=np.arange(len(b), dtype=np.int64) + 50_000_000_000),
        "time column 'ts' holds numbers of magnitude 5e+10 (50000000119 in row 120): not "
        "epoch seconds, milliseconds, microseconds or nanoseconds of a date in 1970-2199",
    ),
    (
        "seconds after 2200",
        lambda b: b.assign(ts=np.arange(len(b), dtype=np.int64) + 8_000_000_000),
        "time column 'ts' holds numbers of magnitude 8e+09 (8000000119 in row 120): not "
        "epoch seconds, milliseconds, microseconds or nanoseconds of a date in 1970-2199",
    ),
    (
        "a negative microsecond",
        lambda b: _set(_encode(b, "epoch:us"), 4, -5),
        "time -5 in row 5 of column 'ts' is out of range for epoch microseconds (the "
        "column's magnitude, 1.7e+15): expected a date in 1970-2199",
    ),
    (
        "datetime64[ms] in the year 55974 (us read as ms)",
        lambda b: b.assign(
            ts=(b["ts"].dt.as_unit("us").astype("int64").to_numpy()).astype("datetime64[ms]")
        ),
        "time 55974-02-18T04:00:00+00:00 in row 1 is outside 1900-2199",
    ),
]


def _set(frame: pd.DataFrame, row: int, value: Any) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[row, "ts"] = value
    return frame


@pytest.mark.parametrize("case", range(len(EPOCH_REFUSED)), ids=[c[0] for c in EPOCH_REFUSED])
def test_implausible_epoch_times_refused(
    case: int, tmp_path: Path, capsys: pytest.CaptureFixture[str], tally: Tally
) -> None:
    tally.describe("hostile input", "backtest --bars: implausible epoch / datetime magnitudes")
    _, make, problem = EPOCH_REFUSED[case]
    path = tmp_path / "bars.parquet"
    make(_bars()).to_parquet(path, index=False)
    code, err = _backtest(path, tmp_path / "out", capsys)
    _assert_one_line(code, err, f"bars file {str(path)!r}: {problem}")
    assert not (tmp_path / "out").exists()
    tally.trial()
    tally.outcome("refused naming the column and magnitude")


# --------------------------------------------------------------------------- memory ceilings

WINDOW_CEILING = (
    "20000 days of 1m bars is up to 28,800,000 bars per symbol, more than the limit of "
    "10,000,000: use at most 6944 days at 1m"
)
CEILING_CASES: list[tuple[list[str], dict[str, str], str]] = [
    (["ingest", "--days", "20000", "--interval", "1m"], {}, WINDOW_CEILING),
    (["nightly", "--days", "20000"], {"HEDGEFLOW_INTERVAL": "1m"}, WINDOW_CEILING),
    (["sweep", "--strategy", "sma_cross", "--days", "20000"], {"HEDGEFLOW_INTERVAL": "1m"},
     WINDOW_CEILING),
    (["ingest"], {"HEDGEFLOW_INTERVAL": "1m", "HEDGEFLOW_LOOKBACK_DAYS": "20000"},
     WINDOW_CEILING),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "env", "message"), CEILING_CASES, ids=[" ".join(c[0])[:30] for c in CEILING_CASES]
)
def test_windows_beyond_the_memory_ceiling(
    argv: list[str],
    env: dict[str, str],
    message: str,
    hedgeflow_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tally: Tally,
) -> None:
    """A window is held in memory per symbol: 20000 days of 1-minute bars is refused."""
    tally.describe("hostile input", "memory ceilings: days x interval per symbol")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = main(argv)
    _assert_one_line(code, capsys.readouterr().err, message)
    assert not hedgeflow_home.exists()
    tally.trial()
    tally.outcome("refused before I/O")


@pytest.mark.flow
def test_flow_window_beyond_the_memory_ceiling(
    prefect_harness: Harness, hedgeflow_home: Path, tally: Tally
) -> None:
    from hedgeflow.errors import InvalidInputError
    from hedgeflow.flows.ingest import ingest

    tally.describe("hostile input", "memory ceilings: flow parameters days x interval")
    with pytest.raises(InvalidInputError) as info:
        ingest(days=20000, interval="1m")
    assert str(info.value) == WINDOW_CEILING
    assert not hedgeflow_home.exists()
    tally.trial()
    tally.outcome("refused before I/O")


def test_strategy_state_beyond_the_memory_ceiling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tally: Tally
) -> None:
    """``window=999999999`` asked numba for 32 GB; now one line and nothing written."""
    tally.describe("hostile input", "memory ceilings: strategy parameters (state size)")
    bars = tmp_path / "bars.csv"
    _bars().to_csv(bars, index=False)
    argv = ["backtest", "--bars", str(bars), "--strategy", "donchian_breakout"]
    code = main([*argv, "--param", "window=999999999", "--out", str(tmp_path / "out")])
    _assert_one_line(
        code,
        capsys.readouterr().err,
        "strategy donchian_breakout: these parameters need 4,000,000,006 floats of state, "
        "more than the limit of 1,000,000: use shorter windows",
    )
    assert not (tmp_path / "out").exists()
    tally.trial()
    tally.outcome("refused, nothing written")


# --------------------------------------------------------------------------- full disk, simulated


def _stored_state(home: Path) -> dict[str, Any]:
    """What must survive a failed run: the lake's bytes, and every finished run's rows."""
    state: dict[str, Any] = {"lake": _digest(home / "lake")}
    con = duckdb.connect(str(home / "hedgeflow.duckdb"), read_only=True)
    try:
        queries = {
            table: f"SELECT * FROM {table} ORDER BY ALL"
            for table in ("agent_metrics", "trades", "equity", "portfolio_metrics")
        }
        # a run that stopped after its ingest stored the same bars again (a new
        # ingested_at): the bars' values must be the same
        queries["bars"] = "SELECT * EXCLUDE (ingested_at) FROM bars ORDER BY ALL"
        queries["runs"] = (
            "SELECT run_id, status, finished_at FROM runs WHERE status = 'completed' ORDER BY 1"
        )
        for name, sql in queries.items():  # repr: NaN equals NaN
            state[name] = repr(con.execute(sql).fetchall())
    finally:
        con.close()
    return state


def _assert_intact(before: dict[str, Any], after: dict[str, Any], *, same_bytes: bool) -> None:
    """Everything stored before reads back the same (bars by value: a run that failed
    part-way may have stored some symbols' same bars again, with a new ingested_at);
    with ``same_bytes``, no lake file changed at all."""
    if same_bytes:
        assert after == before, "stored data changed"
    else:
        assert {k: v for k, v in after.items() if k != "lake"} == {
            k: v for k, v in before.items() if k != "lake"
        }, "stored data changed"


def _failed_run(home: Path) -> str:
    con = duckdb.connect(str(home / "hedgeflow.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT run_id FROM runs WHERE status <> 'completed'").fetchall()
    finally:
        con.close()
    assert len(rows) == 1, rows
    return str(rows[0][0])


@pytest.fixture(scope="module")
def good_home(tmp_path_factory: pytest.TempPathFactory, prefect_harness: Harness) -> Path:
    """A warehouse after one good nightly (copied per test)."""
    home = tmp_path_factory.mktemp("good") / "home"
    proc = run_cli(home, "nightly", *WINDOW)
    assert_clean(proc)
    return home


@contextlib.contextmanager
def _patched(target: Any, name: str, value: Any) -> Iterator[None]:
    saved = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, saved)


@pytest.mark.flow
@pytest.mark.parametrize("stage", STAGES)
def test_full_disk_at_each_stage_simulated(
    stage: str, good_home: Path, tmp_path: Path, tally: Tally
) -> None:
    """ENOSPC raised where the real write happens (pyarrow's write, DuckDB's commit, the
    report's charts), in the real command (tests/reliability/enospc_driver.py): the
    nightly ends with one line naming the file system being written, exit 2, and every
    earlier result and bar reads back identical."""
    tally.describe("hostile input", "full disk (simulated ENOSPC) at the lake, DuckDB, report")
    home = tmp_path / "home"
    shutil.copytree(good_home, home)
    before = _stored_state(home)
    env = cli_env(home, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.reliability.enospc_driver", stage, "nightly", *WINDOW],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    paths = Warehouse(home).paths
    where = {
        "lake": lambda: paths.lake,
        "duckdb": lambda: paths.db,
        "report": lambda: paths.reports_root / _failed_run(home),
    }[stage.split("-")[0]]()
    _assert_one_line(proc.returncode, proc.stderr, f"no space left on {where}", after_progress=True)
    # every lake write fails in the lake stages: not a byte of the lake changes
    _assert_intact(before, _stored_state(home), same_bytes=stage.startswith("lake"))
    assert not list(paths.lake.rglob("*.tmp")), "a temp file was left in the lake"
    tally.trial()
    tally.fault(stage)
    tally.outcome("one line, earlier data intact")


def test_full_disk_at_start_is_refused_before_work(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tally: Tally,
) -> None:
    """A file system with no block left (statvfs) is one line before any flow starts."""
    tally.describe("hostile input", "full disk when a run starts (statvfs: 0 blocks free)")
    home = tmp_path / "home"
    real = os.statvfs

    def full(path: Any) -> Any:
        result = real(path)
        fields = list(result)
        fields[4] = 0  # f_bavail
        return os.statvfs_result(fields)

    monkeypatch.setattr(os, "statvfs", full)
    monkeypatch.chdir(tmp_path)
    for argv in (["ingest", *WINDOW], ["nightly", *WINDOW], ["sweep", "--strategy", "sma_cross"]):
        code = main(["--home", str(home), *argv])
        _assert_one_line(code, capsys.readouterr().err, f"no space left on {home}")
        tally.trial()
        tally.outcome("refused before any work")
    assert not home.exists()


def test_full_disk_writing_backtest_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tally: Tally
) -> None:
    """The earlier outputs in --out stay as they were and no temp file is left."""
    tally.describe("hostile input", "full disk writing backtest --out files")
    bars = tmp_path / "bars.csv"
    _bars().to_csv(bars, index=False)
    out = tmp_path / "results"
    code, err = _backtest(bars, out, capsys)
    assert code == 0, err
    before = _digest(out)
    other = tmp_path / "other.csv"
    _bars(seed=9).to_csv(other, index=False)
    with _patched(pa_csv, "write_csv", enospc):
        code, err = _backtest(other, out, capsys)
    _assert_one_line(code, err, f"no space left on {out}")
    assert _digest(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["equity.csv", "metrics.json", "trades.csv"]
    tally.trial()
    tally.outcome("one line, earlier outputs intact")


# --------------------------------------------------------------------------- full disk, real

TMPFS_BYTES = 32 << 20  # room for the 5 levels of the full campaign (8 MiB ran out)


def _mount_tmpfs(where: Path) -> None:
    """A real, small file system. CI runs as root on machines that allow it (checked on
    the development machine); elsewhere the test skips, and CI_NO_SKIPS fails CI then."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir(parents=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, f"mount -t tmpfs refused: {proc.stderr.strip()}"


def _fill(mount: Path, leave: int) -> None:
    filler = mount / "filler"
    filler.unlink(missing_ok=True)
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    with open(filler, "wb") as fh:
        chunk = b"\0" * (1 << 20)
        left = max(free - leave, 0)
        while left > 0:
            fh.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))


# bytes left free before a run: 0 (refused at the start), then amounts at which the
# lake's, DuckDB's or the report's write runs out (measured; the stage reached is
# recorded, any of them is a correct outcome)
LEAVE = [0, 4096, 65_536, 400_000, 700_000] if full_campaign() else [0, 4096, 400_000]


@pytest.mark.flow
@pytest.mark.slow  # 30 s; .ci/run runs it in step 3
def test_full_disk_real_tmpfs(tmp_path: Path, prefect_harness: Harness, tally: Tally) -> None:
    """``hedgeflow ingest`` / ``nightly`` with HEDGEFLOW_HOME on a nearly full tmpfs after a
    good first run: one line naming the file system being written, exit 2, the earlier
    data reads back identical, and once space is freed the next run completes."""
    tally.describe("hostile input", "full disk (real tmpfs): ingest and nightly")
    mount = tmp_path / "fs"
    _mount_tmpfs(mount)
    try:
        home = mount / "home"
        assert_clean(run_cli(home, "nightly", *WINDOW))
        paths = Warehouse(home).paths
        allowed = {str(home), str(paths.lake), str(paths.db)}
        for leave in LEAVE:
            for command in ("ingest", "nightly"):
                before = _stored_state(home)
                _fill(mount, leave)
                proc = run_cli(home, command, *WINDOW)
                (mount / "filler").unlink()
                tally.trial()
                if proc.returncode == 0:  # enough space after all: a new baseline
                    tally.outcome(f"{command}: completed (enough space)")
                    continue
                last = proc.stderr.splitlines()[-1] if proc.stderr else ""
                where = last.removeprefix(ERR + "no space left on ")
                _assert_one_line(
                    proc.returncode, proc.stderr, f"no space left on {where}", after_progress=True
                )
                assert where in allowed or where.startswith(f"{paths.reports_root}/"), where
                stage = "report" if "/reports/" in where else Path(where).name
                _assert_intact(before, _stored_state(home), same_bytes=stage == "home")
                tally.fault(f"{command}: full at {stage}")
                tally.outcome("one line, earlier data intact")
        assert_clean(run_cli(home, "nightly", *WINDOW))  # the warehouse still works
        tally.outcome("next run after freeing space completed")
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)
