"""``python -m tests.reliability.report``: run the reliability campaign and write RELIABILITY.md.

Runs every test marked ``reliability`` (the slow full campaigns included: 20 + 20
SIGKILL trials, 30 seeds of random faults, more hypothesis examples) in a pytest
subprocess whose results collector (tests/reliability/conftest.py) writes per-test
counts to a JSON file, then renders the table of what was tried and what happened.

Options: ``--quick`` runs the default-suite subset only; ``--out FILE`` (default
RELIABILITY.md at the repository root); ``--json FILE`` keeps the raw results;
``--from-json FILE`` re-renders kept results without running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CATEGORIES = (
    "faults",
    "crash",
    "hostile input",
    "secrets",
    "second campaign",
    "lake heals",
    "runs that always end",
    "delivery faults",
    "soak",
)

# Bugs the campaign found, and what was changed (kept with the report that shows them).
FINDINGS: list[tuple[str, str, str]] = [
    (
        "The 600 s soak's memory grew from 568 to 751 MiB (2nd- to last-quarter median) "
        "and its end waited 540 s: the live writer stored one journaled step per DuckDB "
        "transaction, validating five frames each, slower than x3000 produced them, so "
        "the in-memory backlog grew (tests/reliability/test_live_soak.py)",
        "hedgeflow/live/sink.py, warehouse/__init__.py",
        "the writer takes every queued step (up to 256) at once; each table's rows are "
        "validated together and upserted in one transaction, the last row per key winning "
        "(the same rows as one step at a time, tested); the soak then held 440 / 441 MiB",
    ),
    (
        "SIGTERM to `hedgeflow live` printed a Prefect TerminationSignal traceback from "
        "inside the event loop; Ctrl-C of `nightly` marked the run `failed`, its Prefect "
        "flow run `Crashed`; a SIGKILLed run stayed `running` for ever "
        "(tests/reliability/test_interrupts.py)",
        "hedgeflow/cli.py, flows/live.py, tasks/common.py, warehouse/runs.py",
        "SIGTERM stops like Ctrl-C; the run is `cancelled` with the reason, the Prefect "
        "flow run and its subflow runs `Cancelled`, exit 130 / 143 with one line; every "
        "run records its process (`runs.process`) and the next command marks a dead "
        "one `crashed`",
    ),
    (
        "`hedgeflow sql` under `ulimit -v` failed with a traceback (\"can't start new "
        'thread") once the start of every command opened the warehouse to look for '
        "crashed runs: a second DuckDB instance took the query's address space",
        "hedgeflow/cli.py, warehouse/snapshot.py",
        "sql opens no second database: its snapshot shows runs whose process died as "
        "`crashed`; the commands that write the warehouse record it",
    ),
    (
        "One truncated lake partition made every `select` on `bars` fail and every ingest "
        "(and so every nightly) over its range fail, until someone deleted the file by "
        "hand; a garbled data page was read silently as wrong prices (no page checksums) "
        "(tests/reliability/test_lake_heals.py)",
        "warehouse/lake.py",
        "files are written with page checksums and read with them verified; an unreadable "
        "partition is moved to `lake/quarantine/` with a record (`lake_quarantine` view): "
        "reads go on without that month, re-ingesting the range rewrites it, "
        "`Warehouse.heal_lake` checks the whole lake",
    ),
    (
        "`hedgeflow sql` could write files and read any file although the database is "
        "opened read-only: `COPY (...) TO '/any/path'` succeeded, `read_csv('/etc/passwd')` "
        "answered, `INSTALL` tried the network",
        "hedgeflow/cli.py",
        "statements other than SELECT / EXPLAIN / PRAGMA / CALL are refused before the "
        "warehouse is opened (COPY, EXPORT, ATTACH, INSTALL/LOAD, SET, DDL, DML); the "
        "read-only session is then sandboxed: file access limited to the lake "
        "(`allowed_directories`, `enable_external_access = false`), configuration locked",
    ),
    (
        "`hedgeflow.flows.ingest.ingest(days=0)`, `hedgeflow.flows.nightly.nightly(days=0)` "
        "(and the sweep flow) silently ran the default 30-day window instead of refusing 0 "
        "(`days or default`)",
        "flows/ingest.py, flows/nightly.py, flows/sweep.py",
        "`settings.lookback_days if days is None else days`, so 0 reaches the validation",
    ),
    (
        "a binary (non-UTF-8) `hedgeflow.toml`, or `--config` naming a directory, ended in a "
        "traceback (UnicodeDecodeError / IsADirectoryError)",
        "hedgeflow/config.py",
        "`_read_toml` turns both into `ConfigError('config', ...)` (exit 2, one line)",
    ),
    (
        "`hedgeflow backtest --bars`: a Parquet time column of bytes and epoch numbers out of "
        "range (1e200, -1e30) ended in tracebacks; infinite prices passed the reader and "
        "failed later with a message not naming the file; unparsable times printed a pandas "
        "UserWarning; a parser error outside (ValueError, OSError) would escape",
        "hedgeflow/backtest_io.py",
        "bytes decoded for parsing, out-of-range epochs reported with their row, prices "
        "must be finite and positive, infinite volume refused, the format warning silenced, "
        "any reader failure is `cannot be read (...)`",
    ),
    (
        "`hedgeflow live` killed during its startup (after its first `runs` row, before the "
        "agents' warm-up windows were recorded) left a run the next restart could not "
        "continue: it reused the run id, restored no agent, replayed from the session open "
        "and rewrote `live_positions` back in time (tests/reliability/test_live_crash.py)",
        "flows/live.py",
        "the first `runs` row of a continued run keeps each agent's recorded windows",
    ),
    (
        "a slow `hedgeflow sql` (a cross join of `bars`) held its read-only connection for "
        "the whole query; writers gave up after 30 s: `hedgeflow live` died with rc 2 and lost "
        "bars and a fill, `nightly` ended with its results hidden",
        "warehouse/snapshot.py, warehouse/db.py, hedgeflow/cli.py",
        "`hedgeflow sql` copies the tables its query names into an in-memory snapshot (the "
        "file is locked for the copy only) and runs the query there; flows' writes wait up to "
        "`lock_timeout` (3,600 s) saying every 10 s which PID holds the file; measured in "
        "docs/readers.md",
    ),
    (
        "`hedgeflow sql`: no time limit; `select * from range(20000000)` took 2 GB to print "
        "200 rows; `--max-rows -1` accepted; under a memory limit an empty `query failed:`",
        "hedgeflow/cli.py, hedgeflow/console.py",
        "`--timeout` (60 s), `--memory-limit` (2GB, DuckDB spills past it), rows streamed in "
        "batches (the table reads only `--max-rows`), `--max-rows` in [1, 100000]; out of "
        "memory (Python's or DuckDB's) is one line",
    ),
    (
        "`hedgeflow sql` printed values as rich markup: `'[/x]'` crashed, `'[x]'` printed "
        "empty, `'list[int]'` printed `list`, `duckdb_settings()` crashed",
        "hedgeflow/console.py",
        "cells and headers are `rich.text.Text` (never parsed as markup); csv and json unchanged",
    ),
    (
        "`read_blob` in `hedgeflow sql` read the whole `hedgeflow.duckdb` through "
        "`lake/../` and by absolute path (DuckDB allows the attached database's own file)",
        "warehouse/snapshot.py",
        "the warehouse file is detached before the query runs: only the lake is readable "
        "(its WAL, temporary files and the snapshot's spill folder are denied too)",
    ),
    (
        "DuckDB drew its progress bar on stdout for queries over ~2 s, into pipes too "
        "(a `--format csv` export of a long query got progress lines in it)",
        "warehouse/db.py, warehouse/snapshot.py",
        "`enable_progress_bar = false` on every connection",
    ),
    (
        "`--home /typo sql ...` silently created an empty warehouse",
        "hedgeflow/cli.py",
        "a home with neither the database file nor the lake is refused; nothing is created",
    ),
]

KNOWN_LIMITS = [
    "DuckDB does not verify Parquet page checksums: a garbled page (valid footer) can "
    "reach `hedgeflow sql` as wrong values until a pyarrow read of that month (any "
    "ingest, backtest or `Warehouse.heal_lake(full=True)`) moves it away. Files written "
    "before page checksums were turned on have none, so a garbled page in them is found "
    "only when it fails to decode.",
    "Re-ingesting part of a month whose partition was quarantined rewrites only that "
    "part: the month's other bars are missing until they are ingested too (the old file "
    "is kept in `lake/quarantine/`, never read back).",
    "An EODHD answer of `[]` (HTTP 200) for a chunk is taken as 'no bars there' (it is what "
    "EODHD sends for a holiday or a weekend), so a vendor glitch that answers `[]` for a "
    "range that has bars replaces the stored bars of that chunk with nothing. The campaign "
    "counts these runs as 'completed with vendor gap' and checks that exactly that chunk "
    "is missing and that a re-run restores it.",
    "A SIGKILLed run keeps status `running` in the `runs` table forever (its results stay "
    "hidden); nothing marks it `crashed`.",
    "The hypothesis strategies for raw bars are hedgeflow's own: pandera's "
    "`BarsFrame.strategy()` cannot draw frames here (its dataframe-level checks have no "
    "strategy, and filtering fails Hypothesis' health check).",
]


def _run(quick: bool, results: Path) -> tuple[int, float, str]:
    env = dict(os.environ)
    env["RELIABILITY_RESULTS_JSON"] = str(results)
    marker = "reliability and not slow" if quick else "reliability"
    if not quick:
        env["RELIABILITY_FULL_CAMPAIGN"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "tests/reliability",
        "-m",
        marker,
        "-p",
        "no:cacheprovider",
        "-q",
        "-ra",
    ]
    began = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, text=True, capture_output=True, check=False)
    took = time.monotonic() - began
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    return proc.returncode, took, tail


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _fmt_counter(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v:,}" for k, v in counts.items()) or "-"


def _group(tests: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for t in tests:
        key = (t.get("category") or "other", t.get("what") or t["nodeid"])
        g = groups.setdefault(
            key,
            {"tests": 0, "passed": 0, "failed": 0, "skipped": 0, "trials": 0,
             "faults": Counter(), "outcomes": Counter(), "seconds": 0.0, "notes": []},
        )  # fmt: skip
        g["tests"] += 1
        g[t["outcome"]] = g.get(t["outcome"], 0) + 1
        g["trials"] += t.get("trials", 0)
        g["faults"].update(t.get("faults", {}))
        g["outcomes"].update(t.get("outcomes", {}))
        g["seconds"] += t.get("duration", 0.0)
        if t.get("notes"):
            g["notes"].append(t["notes"])
    return groups


def render(data: dict[str, Any], command: str, took: float, exit_code: int, quick: bool) -> str:
    tests = data["tests"]
    run = data.get("run", {})
    code = run.get("code") or _git("describe", "--always", "--dirty")
    ran = [t for t in tests if t["outcome"] != "skipped"]
    status = Counter(t["outcome"] for t in tests)
    groups = _group(ran)
    lines = [
        "# RELIABILITY",
        "",
        "What was tried against hedgeflow, how often, and what happened — generated by "
        "`python -m tests.reliability.report` from the latest run of the reliability suite "
        "(`tests/reliability/`).",
        "",
        f"- run finished: {data['finished_at']} (code `{code}`)",
        f"- command: `{command}`" + (" (quick subset)" if quick else " (full campaign)"),
        f"- wall time: {took:.0f} s; pytest exit status {exit_code}; tests: "
        + _fmt_counter(dict(sorted(status.items()))),
        "- the default test suite runs the same modules with fewer trials (a 2+1 SIGKILL "
        "sample, 1 random-fault seed, fewer hypothesis examples); `-m slow` adds the full "
        "campaigns",
        "",
        "## Summary",
        "",
        "| area | tests | passed | trials | faults injected | outcomes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    categories = [*CATEGORIES, *sorted({c for c, _ in groups} - set(CATEGORIES))]
    for cat in categories:
        rows = [g for (c, _), g in groups.items() if c == cat]
        if not rows:
            continue
        outcomes: Counter[str] = Counter()
        for g in rows:
            outcomes.update(g["outcomes"])
        lines.append(
            f"| {cat} | {sum(g['tests'] for g in rows)} | {sum(g['passed'] for g in rows)} "
            f"| {sum(g['trials'] for g in rows):,} | "
            f"{sum(sum(g['faults'].values()) for g in rows):,} | "
            f"{_fmt_counter(dict(outcomes.most_common()))} |"
        )
    titles = {
        "faults": "Fault campaign (real EodhdClient + ingest task body vs the simulator)",
        "crash": "Crash safety (SIGKILL of real CLI processes, then restart)",
        "hostile input": "Hostile input",
        "lake heals": "Lake heals (truncated / garbled partition files of an ingested lake)",
        "secrets": "Secrets (unique EODHD token searched everywhere)",
        "soak": "Soak (live runtime vs the WebSocket simulator, faults on; `-m soak`, run apart)",
        "second campaign": "Second campaign: readers and writers, bounded inputs, a lake that "
        "heals, honest live status",
    }
    for cat in categories:
        rows = sorted((w, g) for (c, w), g in groups.items() if c == cat)
        if not rows:
            continue
        lines += ["", f"## {titles.get(cat, cat.capitalize())}", ""]
        lines += [
            "| what | tests | result | trials | faults injected (by kind) | outcomes | s |",
            "|---|---:|---|---:|---|---|---:|",
        ]
        for what, g in rows:
            result = "pass" if g["failed"] == 0 else f"**{g['failed']} FAILED**"
            faults = dict(sorted(g["faults"].items()))
            total = sum(faults.values())
            fault_text = f"{total:,} ({_fmt_counter(faults)})" if total else "-"
            lines.append(
                f"| {what} | {g['tests']} | {result} | {g['trials']:,} | {fault_text} "
                f"| {_fmt_counter(dict(g['outcomes'].most_common()))} | {g['seconds']:.1f} |"
            )
        detailed = cat in ("crash", "secrets", "soak", "second campaign")
        details = [(w, n) for w, g in rows for n in g["notes"] if detailed]
        details += [(w, n) for w, g in rows for n in g["notes"] if cat == "faults" and "rate" in n]
        for what, notes in details:
            shown = {k: v for k, v in notes.items() if k != "kinds"}
            if "kill delays (s)" in shown:
                d = shown.pop("kill delays (s)")
                if all(isinstance(x, int | float) for x in d):
                    shown["kill delays (s)"] = f"{len(d)} delays, {min(d):.2f}..{max(d):.2f}"
                else:  # "2.23 after launch", ...
                    shown["kill delays (s)"] = f"{len(d)} delays: " + ", ".join(map(str, d))
            lines.append(f"\n- {what}: " + "; ".join(f"{k}: {v}" for k, v in shown.items()))
    failed = [t for t in tests if t["outcome"] == "failed"]
    if failed:
        lines += ["", "## Failures", ""]
        for t in failed:
            lines += [f"- `{t['nodeid']}`", "", "```", t.get("error", "")[-1200:], "```"]
    lines += ["", "## Bugs found and fixed", "", "| problem | file | fix |", "|---|---|---|"]
    lines += [f"| {p} | `{f}` | {x} |" for p, f, x in FINDINGS]
    lines += ["", "## Known limits (not changed)", ""]
    lines += [f"- {item}" for item in KNOWN_LIMITS]
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        "python -m tests.reliability.report            # full campaign, rewrites RELIABILITY.md",
        "python -m tests.reliability.report --quick    # the default-suite subset only",
        "python -m pytest -m 'reliability and not slow'  # default-suite subset (also in CI)",
        "python -m pytest -m 'reliability and slow'    # the full campaigns only",
        "python -m tests.reliability.report --from-json results.json  # re-render a run",
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.report")
    parser.add_argument("--quick", action="store_true", help="default-suite subset only")
    parser.add_argument("--out", type=Path, default=REPO / "RELIABILITY.md")
    parser.add_argument("--json", type=Path, help="keep the raw per-test results here")
    parser.add_argument(
        "--from-json", type=Path, nargs="+", help="re-render kept runs (tests merged), run nothing"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json[0].read_text(encoding="utf-8"))
        for extra in args.from_json[1:]:  # e.g. a soak run kept apart
            data["tests"] += json.loads(extra.read_text(encoding="utf-8"))["tests"]
        run = data["run"]
        text = render(data, run["command"], run["wall_seconds"], run["pytest_exit"], run["quick"])
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out} from {', '.join(map(str, args.from_json))}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        results = args.json or Path(tmp) / "results.json"
        code, took, tail = _run(args.quick, results)
        if not results.exists():
            print(tail, file=sys.stderr)
            print("no results were written: pytest did not run the suite", file=sys.stderr)
            return 2
        data = json.loads(results.read_text(encoding="utf-8"))
        command = "python -m tests.reliability.report" + (" --quick" if args.quick else "")
        data["run"] = {
            "command": command,
            "wall_seconds": round(took, 1),
            "pytest_exit": code,
            "quick": args.quick,
            "code": _git("describe", "--always", "--dirty"),
        }
        results.write_text(json.dumps(data, indent=2), encoding="utf-8")
    args.out.write_text(render(data, command, took, code, args.quick), encoding="utf-8")
    print(tail)
    print(f"wrote {args.out} ({len(data['tests'])} tests, {took:.0f} s, pytest exit {code})")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
