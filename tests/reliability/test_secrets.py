"""Secrets: the EODHD token never appears in a log line, an exception, a Prefect log or
artifact, a report, the DuckDB file or a Parquet file.

A unique token (with characters that URL-encode, so the encoded forms are searched too)
is given to the real CLI in subprocesses with Prefect logging at DEBUG (``-v``,
``PREFECT_LOGGING_LEVEL=DEBUG``, the root logger at DEBUG so urllib3 logs every request
URL): a run the simulator refuses (401), a nightly run the simulator serves through
retried faults (429, 500, truncated JSON, an HTML page), and a run whose token comes from
a Prefect Secret block. Then every output, every file under HEDGEFLOW_HOME and
PREFECT_HOME, the Prefect server's SQLite files (raw bytes), its logs and artifacts (API),
every string in DuckDB and in every Parquet file are searched for the token.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import traceback
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, quote_plus

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hedgeflow.config import NetworkSettings
from hedgeflow.errors import PermanentSourceError, TransientSourceError
from hedgeflow.sources.simulator import Simulator
from hedgeflow.tasks.ingest import SourceSpec, ingest_symbol_body
from hedgeflow.warehouse import Warehouse
from tests.reliability.conftest import Harness, Tally

pytestmark = [pytest.mark.reliability, pytest.mark.flow]

REPO = Path(__file__).resolve().parents[2]
_ID = uuid.uuid4().hex
TOKEN = f"hfTok/{_ID[:12]}+{_ID[12:24]}="
BLOCK_TOKEN = f"hfBlk/{_ID[24:]}+{_ID[:8]}="
END = "2026-11-20"


def _variants(token: str) -> list[bytes]:
    forms = {token, quote(token, safe=""), quote_plus(token), token.replace("/", "\\/")}
    return sorted(f.encode() for f in forms)


def _grep_bytes(data: bytes, token: str) -> list[str]:
    return [v.decode() for v in _variants(token) if v in data]


class Search:
    """Collects where the token was looked for and where it was found."""

    def __init__(self, tally: Tally, token: str) -> None:
        self.tally, self.token, self.found = tally, token, []
        self.places: dict[str, int] = {}

    def text(self, where: str, text: str) -> None:
        self.bytes(where, text.encode("utf-8", errors="replace"))

    def bytes(self, where: str, data: bytes) -> None:
        kind = where.split(":", 1)[0]
        self.places[kind] = self.places.get(kind, 0) + 1
        hits = _grep_bytes(data, self.token)
        if hits:
            self.found.append(f"{where}: {hits}")

    def tree(self, kind: str, root: Path) -> None:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                self.bytes(f"{kind}:{path.relative_to(root)}", path.read_bytes())

    def assert_clean(self) -> None:
        self.tally.note("places searched", dict(sorted(self.places.items())))
        self.tally.outcome("places searched, token absent", sum(self.places.values()))
        assert not self.found, "token leaked:\n" + "\n".join(self.found)


@pytest.fixture(scope="module")
def good_sim() -> Iterator[Simulator]:
    with Simulator(seed=7, tokens=(TOKEN, BLOCK_TOKEN), timeout_sleep=1.0) as sim:
        yield sim


@pytest.fixture(scope="module")
def refusing_sim() -> Iterator[Simulator]:
    with Simulator(seed=7, tokens=("somebody-else",)) as sim:
        yield sim


def _env(harness: Harness, tmp: Path, base_url: str, token: str | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HEDGEFLOW_", "PREFECT_", "EODHD_"))
    }
    env.update(
        HEDGEFLOW_HOME=str(tmp / "home"),
        PREFECT_HOME=str(tmp / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="DEBUG",
        PREFECT_LOGGING_ROOT_LEVEL="DEBUG",
        HEDGEFLOW_NETWORK__BASE_URL=base_url,
        HEDGEFLOW_NETWORK__RETRY_BACKOFF_SEC="0",
        PYTHONUNBUFFERED="1",
        COLUMNS="200",
        **harness.env(),
    )
    if token is not None:
        env["EODHD_API_TOKEN"] = token
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hedgeflow.cli", "-v", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _search_warehouse(search: Search, home: Path) -> None:
    search.tree("file under HEDGEFLOW_HOME", home)
    db = home / "hedgeflow.duckdb"
    if db.exists():
        con = duckdb.connect(str(db), read_only=True)
        try:
            columns = con.execute(
                "select schema_name, table_name, column_name from duckdb_columns() "
                "where data_type = 'VARCHAR' and schema_name = 'store'"
            ).fetchall()
            for schema, table, column in columns:
                values = con.execute(f'select "{column}" from {schema}."{table}"').fetchall()
                text = "\n".join(str(v[0]) for v in values)
                search.text(f"duckdb column:{table}.{column}", text)
        finally:
            con.close()
    for path in sorted((home / "lake").rglob("*.parquet")):
        table = pq.read_table(path)
        meta = b"".join(k + v for k, v in (table.schema.metadata or {}).items())
        search.bytes(f"parquet metadata:{path.name}", meta)
        for name in table.column_names:
            col = table.column(name)
            if pa.types.is_string(col.type) or pa.types.is_dictionary(col.type):
                search.text(f"parquet column:{name}", "\n".join(map(str, col.to_pylist())))


def _search_prefect(search: Search, harness: Harness) -> None:
    from prefect.client.orchestration import get_client

    for path in harness.files():
        search.bytes(f"prefect database file:{path.name}", path.read_bytes())
    con = sqlite3.connect(f"file:{harness.database_files[0]}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            rows = con.execute(f'select * from "{table}"').fetchall()
            search.text(f"prefect table:{table}", "\n".join(map(repr, rows)))
    finally:
        con.close()
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            logs = client.read_logs(limit=200, offset=offset)
            for entry in logs:
                search.text("prefect log (API)", entry.message)
            if len(logs) < 200:
                break
            offset += 200
        for artifact in client.read_artifacts():
            search.text("prefect artifact (API)", f"{artifact.data} {artifact.description}")
        for run in client.read_flow_runs():
            search.text("prefect flow run (API)", f"{run.parameters} {run.state}")


def test_token_never_leaks_from_cli_runs(
    prefect_harness: Harness,
    good_sim: Simulator,
    refusing_sim: Simulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    tally: Tally,
) -> None:
    tally.describe(
        "secrets", "EODHD_API_TOKEN through the CLI at DEBUG: 401 run, faulty nightly, all stores"
    )
    caplog.set_level(logging.DEBUG)
    search = Search(tally, TOKEN)

    refused = _cli(
        _env(prefect_harness, tmp_path / "refused", refusing_sim.base_url, TOKEN),
        "ingest", "--source", "eodhd", "--symbols", "AAPL.US", "--days", "2", "--end", END,
    )  # fmt: skip
    tally.trial()
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert "hedgeflow: error:" in refused.stderr and "HTTP 401" in refused.stderr
    tally.outcome("401 run failed with a clear error")

    for kind in ("429", "500", "truncated", "html", "drop"):
        good_sim.faults.inject(kind, 1, retry_after=0)
    served = _cli(
        _env(prefect_harness, tmp_path / "served", good_sim.base_url, TOKEN),
        "nightly", "--source", "eodhd", "--days", "2", "--end", END,
    )  # fmt: skip
    tally.trial()
    tally.fault("retried faults injected", 5)
    assert served.returncode == 0, served.stdout[-3000:] + served.stderr[-3000:]
    assert not good_sim.faults.pending
    tally.outcome("nightly through faults completed")

    for name, proc in (("refused", refused), ("served", served)):
        search.text(f"stdout:{name}", proc.stdout)
        search.text(f"stderr:{name}", proc.stderr)
    # the search has material: request URLs and retry warnings were logged, redacted
    output = served.stdout + served.stderr
    assert "/api/intraday/" in output and "api_token=***" in output, output[-3000:]
    assert "retry 1/" in output
    assert (tmp_path / "served" / "home" / "reports").is_dir()
    for case in ("refused", "served"):
        _search_warehouse(search, tmp_path / case / "home")
        search.tree("file under PREFECT_HOME", tmp_path / case / "prefect-home")
    _search_prefect(search, prefect_harness)
    # control: the run logs really are in the database files searched byte by byte
    assert any(b"bars fetched" in p.read_bytes() for p in prefect_harness.files())
    search.text("pytest log records", "\n".join(r.getMessage() for r in caplog.records))
    search.assert_clean()


def test_token_never_in_exceptions(
    good_sim: Simulator, refusing_sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, tally: Tally,
) -> None:  # fmt: skip
    """The task body in-process: the exception, its chain and traceback text, log records."""
    tally.describe("secrets", "exceptions of failing fetches (401, 5xx exhausted): text and chain")
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("EODHD_API_TOKEN", TOKEN)
    search = Search(tally, TOKEN)
    home = tmp_path / "home"
    start, end = datetime(2026, 11, 18, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC)
    cases = [
        (refusing_sim, None, PermanentSourceError),
        (good_sim, "500", TransientSourceError),
        (good_sim, "truncated", TransientSourceError),
        (good_sim, "html502", TransientSourceError),
    ]
    for sim, fault, expected in cases:
        if fault:
            sim.faults.inject(fault, 4)
        network = NetworkSettings(
            base_url=sim.base_url, max_retries=3, retry_backoff_sec=0, max_backoff_sec=0
        )
        with pytest.raises(expected) as info:
            ingest_symbol_body(
                "AAPL.US", "5m", start, end, SourceSpec("eodhd", network, 7), home, "run-sec-1"
            )
        sim.faults.clear()
        tally.trial()
        if fault:
            tally.fault(fault, 4)
        exc = info.value
        text = "".join(traceback.format_exception(exc))
        chain = [exc.__cause__, exc.__context__]
        search.text("exception text", f"{exc} {exc!r} {exc.args}")
        search.text("exception traceback", text)
        search.text("exception chain", repr(chain))
        assert exc.__cause__ is None and exc.__context__ is None
        tally.outcome(f"{type(exc).__name__} raised, clean")
    search.text("pytest log records", "\n".join(r.getMessage() for r in caplog.records))
    search.text("pytest log text", caplog.text)
    search.assert_clean()


def test_secret_block_path(
    prefect_harness: Harness,
    good_sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tally: Tally,
) -> None:
    """Secret(value=token).save('eodhd-api-token'): the task loads it; a CLI run without
    EODHD_API_TOKEN uses it; it is found nowhere but (encrypted) in the block store."""
    from prefect.blocks.system import Secret

    from hedgeflow.tasks.secrets import eodhd_token

    tally.describe("secrets", "token from a Prefect Secret block: loaded, used, never leaked")
    monkeypatch.delenv("EODHD_API_TOKEN", raising=False)
    Secret(value=BLOCK_TOKEN).save("eodhd-api-token", overwrite=True)
    try:
        assert eodhd_token(NetworkSettings()) == BLOCK_TOKEN
        tally.trial()
        tally.outcome("hedgeflow.tasks.secrets.eodhd_token loaded the block")
        proc = _cli(
            _env(prefect_harness, tmp_path / "block", good_sim.base_url, None),
            "ingest", "--source", "eodhd", "--symbols", "EURUSD.FOREX", "--days", "2",
            "--end", END,
        )  # fmt: skip
        tally.trial()
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        rows = Warehouse(tmp_path / "block" / "home").query("select count(*) as n from bars")
        assert int(rows.at[0, "n"]) > 0
        tally.outcome("CLI run with the block token completed")
        search = Search(tally, BLOCK_TOKEN)
        search.text("stdout", proc.stdout)
        search.text("stderr", proc.stderr)
        _search_warehouse(search, tmp_path / "block" / "home")
        search.tree("file under PREFECT_HOME", tmp_path / "block" / "prefect-home")
        for path in prefect_harness.files():  # block documents are stored encrypted
            search.bytes(f"prefect database file:{path.name}", path.read_bytes())
        search.assert_clean()
    finally:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            block = client.read_block_document_by_name("eodhd-api-token", "secret")
            client.delete_block_document(block.id)


@pytest.mark.slow
def test_token_never_leaks_when_retries_exhaust(
    prefect_harness: Harness, good_sim: Simulator, tmp_path: Path, tally: Tally
) -> None:
    """HTTP 500 on every request: the client's retries and Prefect's task retries run
    out (warnings, retry logs, the failed task and flow states), nothing shows the token."""
    tally.describe(
        "secrets", "EODHD_API_TOKEN through the CLI at DEBUG: 500s until retries exhaust"
    )
    good_sim.faults.inject("500", 10_000)
    try:
        env = _env(prefect_harness, tmp_path / "exhausted", good_sim.base_url, TOKEN)
        env["HEDGEFLOW_NETWORK__MAX_RETRIES"] = "2"
        proc = _cli(
            env, "ingest", "--source", "eodhd", "--symbols", "BTC-USD.CC", "--days", "2",
            "--end", END,
        )  # fmt: skip
    finally:
        served = 10_000 - good_sim.faults.pending
        good_sim.faults.clear()
    tally.trial()
    tally.fault("500", served)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "failed after 3 attempt(s)" in proc.stderr and "HTTP 500" in proc.stderr
    assert served == 9  # 3 attempts per task run, 3 task runs (Prefect retries twice)
    tally.outcome("failed with a clear error after every retry")
    search = Search(tally, TOKEN)
    search.text("stdout", proc.stdout)
    search.text("stderr", proc.stderr)
    _search_warehouse(search, tmp_path / "exhausted" / "home")
    search.tree("file under PREFECT_HOME", tmp_path / "exhausted" / "prefect-home")
    _search_prefect(search, prefect_harness)
    search.assert_clean()
