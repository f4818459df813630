"""Issue 15: a reader never breaks a writer, and `hedgeflow sql` is bounded and literal.

`hedgeflow sql` queries an in-memory snapshot (``hedgeflow.warehouse.snapshot``): the
warehouse file is locked only while the snapshot is copied. These tests hold slow
queries, huge results, markup-looking values and file-reading tricks against it, and
hold a raw DuckDB read-only connection (a notebook's) open past the writers' old 30 s
give-up while `ingest` and `nightly` run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from hedgeflow.cli import main
from hedgeflow.warehouse import Warehouse
from hedgeflow.warehouse.db import read_write
from tests.e2e_helpers import cli_env, query, read_line
from tests.reliability.conftest import Tally

pytestmark = pytest.mark.reliability

CATEGORY = "second campaign"
END = "2026-11-20"
MARKUP = ("[/x]", "[x]", "list[int]", ":smile:", "[bold red]b[/]", "\\[x]")


def _bars(n: int) -> pd.DataFrame:
    ts = pd.date_range("2026-11-02 14:30", periods=n, freq="5min", tz="UTC").as_unit("us")
    close = 100.0 + pd.Series(range(n), dtype="float64") * 0.01
    return pd.DataFrame(
        {
            "ts": ts,
            "open": close,
            "high": close + 0.5,
            "low": close - 0.5,
            "close": close,
            "volume": 1000.0,
        }
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "wh"
    wh = Warehouse(home)
    bars = _bars(30)
    wh.write_bars(
        bars, "AAPL.US", "5m", bars["ts"].iloc[0], bars["ts"].iloc[-1] + pd.Timedelta("5min"), "t"
    )
    wh.start_run("run-read-1", "ingest", {}, "test")
    wh.finish_run("run-read-1", "completed", {})
    return home


def _sql(
    home: Path, *args: str, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[str], int]:
    """`hedgeflow sql` in a child process; (result, the child's peak RSS in MB)."""
    probe = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, file=sys.stderr)\n"
        "sys.exit(r.returncode)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, sys.executable, "-m", "hedgeflow.cli", "sql", *args],
        env=cli_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=home.parent,
    )
    *err, rss = proc.stderr.rstrip("\n").split("\n")
    return (
        subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, "\n".join(err)),
        int(rss),
    )


def test_a_slow_query_holds_no_lock_and_stops_at_its_timeout(home: Path, tally: Tally) -> None:
    """While `hedgeflow sql` runs a query far longer than its --timeout, another process
    opens the warehouse read-write at once (the old reader held it for the whole
    query); the query then stops with a one-line message."""
    tally.describe(CATEGORY, "slow `hedgeflow sql` vs a writer: no lock held, --timeout")
    slow = "select count(*) from range(1000000000) a, range(1000000000) b"
    child = subprocess.Popen(
        [sys.executable, "-m", "hedgeflow.cli", "sql", slow, "--timeout", "8"],
        env=cli_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=home.parent,
    )
    writes = 0
    try:
        time.sleep(3)  # the snapshot is taken in ~1 s; the query runs from then on
        assert child.poll() is None, child.communicate()
        db = Warehouse(home).db_path
        while child.poll() is None and writes < 3:
            started = time.monotonic()
            with read_write(db, timeout=2.0) as con:  # fails if the reader held the file
                con.execute(
                    "UPDATE store.runs SET summary = ? WHERE run_id = 'run-read-1'", [str(writes)]
                )
            assert time.monotonic() - started < 2.0
            writes += 1
            tally.trial()
        assert child.poll() is None, "the query ended before the writes (not slow enough)"
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert writes == 3
    assert child.returncode == 2, err
    assert err.strip() == (
        "hedgeflow: error: query stopped after 8 s (--timeout): narrow it, or raise --timeout"
    )
    assert query(home, "select summary from runs") == [("2",)]
    tally.outcome("writer opened the file while the query ran", writes)
    tally.outcome("query stopped at --timeout, one line")


def test_a_20m_row_select_streams_in_bounded_memory(home: Path, tally: Tally) -> None:
    tally.describe(CATEGORY, "`hedgeflow sql` of 20 M rows: streamed, bounded memory")
    proc, rss = _sql(home, "select * from range(20000000)")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "200 rows shown, more not read (--max-rows, or --format csv for all)"
    assert sum(1 for line in lines if line.startswith("│")) == 200
    assert rss < 600, f"peak RSS {rss} MB"
    tally.trial()
    tally.note("table, 20 M rows: peak RSS (MB)", rss)
    proc, rss = _sql(
        home, "select range, range * 2 as twice from range(2000000)", "--format", "csv"
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2_000_001 and lines[0] == "range,twice" and lines[-1] == "1999999,3999998"
    assert rss < 600, f"peak RSS {rss} MB"
    tally.trial()
    tally.note("csv, 2 M rows: peak RSS (MB)", rss)
    tally.outcome("streamed, RSS under 600 MB", 2)


def test_sql_limits_are_validated_and_reached_with_one_line(
    home: Path, capsys: pytest.CaptureFixture[str], tally: Tally
) -> None:
    tally.describe(CATEGORY, "`hedgeflow sql` --max-rows / --timeout / --memory-limit")
    cases = [
        (["--max-rows", "-1"], "--max-rows must be in [1, 100000], got -1"),
        (["--max-rows", "0"], "--max-rows must be in [1, 100000], got 0"),
        (["--max-rows", "1000000000"], "--max-rows must be in [1, 100000], got 1000000000"),
        (["--timeout", "0"], "--timeout must be in (0, 86400] seconds, got 0"),
        (["--timeout", "-5"], "--timeout must be in (0, 86400] seconds, got -5"),
        (
            ["--memory-limit", "lots"],
            "--memory-limit must be a size such as 512MB or 4GB, got 'lots'",
        ),
        (
            ["--memory-limit", "0GB"],
            "--memory-limit must be a size such as 512MB or 4GB, got '0GB'",
        ),
    ]
    for extra, message in cases:
        assert main(["--home", str(home), "sql", "select 1", *extra]) == 2
        assert capsys.readouterr().err == f"hedgeflow: error: {message}\n"
        tally.trial()
        tally.outcome("refused (exit 2, one line)")
    code = main(
        [
            "--home",
            str(home),
            "sql",
            "select list(range) from range(300000000)",
            "--memory-limit",
            "100MB",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("hedgeflow: error: query ran out of memory (--memory-limit 100MB,")
    assert err.count("\n") == 1
    tally.trial()
    tally.outcome("memory limit reached (exit 2, one line)")


def test_sql_prints_values_literally(
    home: Path, capsys: pytest.CaptureFixture[str], tally: Tally
) -> None:
    tally.describe(CATEGORY, "`hedgeflow sql` prints markup-looking values literally")
    select = "SELECT " + ", ".join(f"'{v}' AS c{i}" for i, v in enumerate(MARKUP))
    assert main(["--home", str(home), "sql", select]) == 0
    out = capsys.readouterr().out
    for value in MARKUP:
        assert f" {value} " in out, (value, out)
    assert main(["--home", str(home), "sql", select, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == ",".join(MARKUP)
    assert main(["--home", str(home), "sql", select, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{f"c{i}": v for i, v in enumerate(MARKUP)}]
    tally.trial(3)
    tally.outcome("printed literally", 3)
    for sql in (
        "select * from duckdb_settings()",
        "select '[' || name || ']' from duckdb_settings()",
    ):
        assert main(["--home", str(home), "sql", sql, "--max-rows", "1000"]) == 0
        out = capsys.readouterr().out
        assert "[threads]" in out or "threads" in out
        tally.trial()
        tally.outcome("printed literally")


def test_sandbox_denies_the_warehouse_file_and_its_temp_files(
    home: Path, capsys: pytest.CaptureFixture[str], tally: Tally
) -> None:
    tally.describe(CATEGORY, "`hedgeflow sql` sandbox: the warehouse file, WAL and temp files")
    db = Warehouse(home).db_path
    wal = db.with_name(db.name + ".wal")
    wal.write_bytes(b"")  # present, as during a write
    lake = home / "lake"
    before = db.read_bytes()
    targets = [
        f"{lake.as_posix()}/../{db.name}",  # relative, through the lake
        db.as_posix(),  # absolute
        f"{lake.as_posix()}/../{wal.name}",
        wal.as_posix(),
        f"{lake.as_posix()}/../{db.name}.tmp/*",
        "/tmp/hedgeflow-sql-*/*",  # the snapshot's own spill folder
    ]
    for target in targets:
        for reader in ("read_blob", "read_text"):
            code = main(["--home", str(home), "sql", f"select * from {reader}('{target}')"])
            err = capsys.readouterr().err
            assert code == 2, (target, err)
            assert err.startswith("hedgeflow: error: query failed: Permission Error"), err
            assert err.count("\n") == 1
            tally.trial()
            tally.outcome("denied (exit 2, one line)")
    assert db.read_bytes() == before
    # the lake itself stays readable (the bars view reads it)
    assert main(["--home", str(home), "sql", "select count(*) from bars", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "30"


def test_snapshot_sees_committed_data_only(home: Path, tally: Tally) -> None:
    """The snapshot is one commit: a run finished after it was taken is not in it,
    a run finished before is; runs still `running` stay hidden from result views."""
    tally.describe(CATEGORY, "snapshot consistency: one commit, finished runs only")
    wh = Warehouse(home)
    wh.start_run("run-read-2", "nightly", {}, "test")
    with wh.snapshot("select * from runs, agent_metrics") as con:
        got = con.execute("select run_id, status from runs order by run_id").fetchall()
        wh.finish_run("run-read-2", "completed", {})  # a writer commits meanwhile
        again = con.execute("select run_id, status from runs order by run_id").fetchall()
    assert got == again == [("run-read-1", "completed"), ("run-read-2", "running")]
    with wh.snapshot("select * from runs") as con:
        assert con.execute("select count(*) from runs where status = 'completed'").fetchall() == [
            (2,)
        ]
    tally.trial(2)
    tally.outcome("consistent", 2)


def _hold_reader(db: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process that keeps a read-only DuckDB connection open (a notebook)."""
    script = (
        "import duckdb, sys, time\n"
        "for _ in range(6000):\n"
        "    try:\n"
        "        con = duckdb.connect(sys.argv[1], read_only=True); break\n"
        "    except duckdb.Error:\n"
        "        time.sleep(0.01)\n"
        "print('holding', flush=True)\n"
        "time.sleep(float(sys.argv[2]))\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", ["ingest", "nightly"])
def test_writers_wait_for_a_reader_held_past_the_old_give_up(
    command: str, tmp_path: Path, tally: Tally, prefect_harness: object
) -> None:
    """A read-only connection held 40 s (longer than the writers' old 30 s give-up)
    while `ingest` / `nightly` write: the writer waits, says for whom, and then stores
    everything once; the run ends completed."""
    tally.describe(CATEGORY, f"`hedgeflow {command}` under a reader held 40 s")
    home = tmp_path / "data"
    first = subprocess.run(
        [sys.executable, "-m", "hedgeflow.cli", "ingest", "--end", END, "--days", "2"],
        env=cli_env(home),
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    reader = _hold_reader(home / "hedgeflow.duckdb", 40)
    try:
        assert read_line(reader.stdout, 60).strip() == "holding"  # type: ignore[arg-type]
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "hedgeflow.cli", command, "--end", END, "--days", "4"],
            env=cli_env(home),
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
        took = time.monotonic() - started
    finally:
        reader.kill()
        reader.wait()
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert took > 30, f"{command} took {took:.0f} s: it never waited for the reader"
    assert f"held by PID {reader.pid}" in proc.stderr and "waiting" in proc.stderr, proc.stderr[
        -3000:
    ]
    runs = query(home, "select flow, status from runs order by started_at")
    assert runs == [("ingest", "completed"), (command, "completed")]
    dupes = query(
        home, "select count(*) from (select symbol, ts from bars group by all having count(*) > 1)"
    )
    assert dupes == [(0,)]
    per_symbol = dict(query(home, "select symbol, count(*) from bars group by 1"))
    assert set(per_symbol) == {"AAPL.US", "EURUSD.FOREX", "BTC-USD.CC"}
    for symbol, n in per_symbol.items():
        assert f"{n:,}" in proc.stdout or command == "nightly", (symbol, n, proc.stdout)
    if command == "nightly":
        assert query(home, "select count(*) from agent_metrics") == [(3,)]
    tally.trial()
    tally.note(f"{command}: wall time (s)", round(took, 1))
    tally.outcome("waited, stored once, completed")


def test_lock_timeout_is_a_checked_setting(tmp_path: Path, tally: Tally) -> None:
    tally.describe(CATEGORY, "`lock_timeout` setting: how long writers wait, validated")
    from hedgeflow.config import settings_from_mapping
    from hedgeflow.errors import HedgeflowError

    assert settings_from_mapping({}).lock_timeout == 3600.0
    assert settings_from_mapping({"lock_timeout": 5}).lock_timeout == 5.0
    for bad in (0, -1, 100_000):
        with pytest.raises(HedgeflowError, match=r"lock_timeout must be in \[1, 86400\] seconds"):
            settings_from_mapping({"lock_timeout": bad})
        tally.trial()
        tally.outcome("refused")


def test_sql_under_a_process_memory_limit_fails_with_one_line(home: Path, tally: Tally) -> None:
    """Under an address-space limit (ulimit -v 1.5 GB) a big result ends with one line
    naming the problem (it printed an empty "query failed:" before)."""
    import resource

    tally.describe(CATEGORY, "`hedgeflow sql` under ulimit -v 1.5 GB")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))

    proc = subprocess.run(
        [sys.executable, "-m", "hedgeflow.cli", "sql", "--format", "json",
         "select repeat('x', 100000) as s from range(200000)"],
        env=cli_env(home),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=home.parent,
        preexec_fn=limit,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith(
        ("hedgeflow: error: out of memory (", "hedgeflow: error: query ran out of memory (")
    ), proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    tally.trial()
    tally.outcome("refused (exit 2, one line)")


def test_sql_on_a_home_that_does_not_exist_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tally: Tally
) -> None:
    tally.describe(CATEGORY, "`hedgeflow sql` on a mistyped --home")
    home = tmp_path / "typo"
    assert main(["--home", str(home), "sql", "select 1"]) == 2
    assert capsys.readouterr().err == (
        f"hedgeflow: error: no warehouse at {home}: check --home / HEDGEFLOW_HOME, or run "
        "`hedgeflow ingest` or `hedgeflow nightly` first\n"
    )
    assert not home.exists()
    tally.trial()
    tally.outcome("refused, nothing created")


def test_sql_table_formats_floats_and_csv_keeps_them_exact(
    home: Path, capsys: pytest.CaptureFixture[str], tally: Tally
) -> None:
    tally.describe(CATEGORY, "`hedgeflow sql` floats: 8 digits in the table, exact in csv")
    tally.trial(2)
    tally.outcome("as specified", 2)
    sql = "select 0.03488235911084914::double as x, 43251.37::double as price, 7 as n"
    assert main(["--home", str(home), "sql", sql]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "43251.37" in line)
    assert row.split("│")[1:4] == [" 0.034882359 ", " 43251.37 ", " 7 "]
    assert main(["--home", str(home), "sql", sql, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "0.03488235911084914,43251.37,7"


@pytest.mark.slow  # .ci/run step 3 runs this file's slow tests; keeps the suite < 10 min
def test_ctrl_c_stops_a_running_query_with_one_line(home: Path, tally: Tally) -> None:
    """SIGINT to the process group during a long query, as a terminal's Ctrl-C sends it:
    exit 130 and one line (DuckDB's "Query interrupted" was a traceback and exit 1)."""
    import os
    import signal

    tally.describe(CATEGORY, "Ctrl-C during a long `hedgeflow sql` query")
    slow = "select count(*) from range(1000000000) a, range(1000000000) b"
    child = subprocess.Popen(
        [sys.executable, "-m", "hedgeflow.cli", "sql", slow, "--timeout", "300"],
        env=cli_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=home.parent,
        start_new_session=True,
    )
    try:
        time.sleep(4)  # the snapshot is taken; the query runs
        assert child.poll() is None, child.communicate()
        os.killpg(child.pid, signal.SIGINT)
        _, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
    assert child.returncode == 130, err
    assert err == "hedgeflow: stopped by SIGINT (Ctrl-C)\n"
    tally.trial()
    tally.fault("SIGINT")
    tally.outcome("stopped: exit 130, one line")
