"""The layer rules of DESIGN.md "Layout" that import-linter cannot see.

- ``hedgeflow.tasks`` holds no SQL: a task asks the warehouse for what it needs by a
  named method (SQL lives in ``hedgeflow.warehouse``);
- the import contract on the core (``[tool.importlinter]`` in pyproject.toml, run by
  ``lint-imports`` in .ci/run) names every core module, so a new one is checked too.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SQL_TEXT = re.compile(
    r"\bselect\s.*\bfrom\b|\binsert\s+(or\s+\w+\s+)?into\b|\bcreate\s+(or\s+replace\s+)?"
    r"(temp\w*\s+)?(table|view|schema|index)\b|\bdelete\s+from\b|\bupdate\s+\S+\s+set\b"
    r"|\bdrop\s+(table|view|schema)\b|\balter\s+table\b",
    re.IGNORECASE | re.DOTALL,
)
# connection.execute / executemany / sql, and Warehouse.query (it takes SQL text)
SQL_CALLS = {"execute", "executemany", "sql", "query"}
# the Prefect-project layers and the command: everything else in hedgeflow/ is the core
# the command (cli and its walkforward_cli part) may start flows, lazily
NOT_CORE = {
    "__init__", "__main__", "cli", "walkforward_cli", "flows", "tasks", "schemas", "warehouse",
}  # fmt: skip


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def sql_in(source: str, filename: str) -> Iterator[str]:
    """``file:line: what`` for every SQL text or SQL call in ``source``."""
    tree = ast.parse(source, filename)
    docstrings = _docstrings(tree)
    in_fstring = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            # the literal parts of an f-string, with a placeholder for each value
            text = "".join(v.value if isinstance(v, ast.Constant) else " x " for v in node.values)
            in_fstring.update(id(v) for v in node.values)
            if SQL_TEXT.search(text):
                yield f"{filename}:{node.lineno}: SQL in an f-string: {text.strip()[:60]!r}"
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and id(node) not in in_fstring
            and SQL_TEXT.search(node.value)
        ):
            yield f"{filename}:{node.lineno}: SQL in a string: {node.value.strip()[:60]!r}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SQL_CALLS
        ):
            yield f"{filename}:{node.lineno}: SQL call .{node.func.attr}(...)"


def test_the_tasks_hold_no_sql() -> None:
    files = sorted((REPO / "tasks").glob("*.py"))
    assert len(files) >= 5, files
    found = [hit for f in files for hit in sql_in(f.read_text(), str(f.relative_to(REPO)))]
    assert not found, "SQL belongs in hedgeflow.warehouse:\n" + "\n".join(found)


def test_the_sql_scanner_finds_sql() -> None:
    """The scanner is not vacuous: each kind of SQL a task could hold is reported."""
    source = '''
"""Module docstring: select the bars from the lake (prose, not SQL)."""
def a(wh, con, name):
    wh.query("SELECT * FROM live_positions WHERE agent = ?", [name])
    con.execute("insert into runs values (?)", [1])
    table = "trades"
    sql = f"DELETE FROM {table} WHERE run_id = ?"
    more = f"select {name} from {table}"
    return 'Create Or Replace Table t AS SELECT 1', "UPDATE runs SET status = 'x'"
'''
    hits = list(sql_in(source, "t.py"))
    lines = sorted(int(h.split(":")[1]) for h in hits)
    assert lines == [4, 4, 5, 5, 7, 8, 9, 9], hits


def test_the_core_contract_names_every_core_module() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (core,) = [c for c in config["contracts"] if c["type"] == "forbidden"]
    root = REPO / "hedgeflow"
    children = {
        p.stem
        for p in root.iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").exists()) and p.stem not in NOT_CORE
    }
    assert set(core["source_modules"]) == {f"hedgeflow.{c}" for c in children}
    assert {"prefect", "duckdb", "hedgeflow.schemas", "hedgeflow.warehouse"} <= set(
        core["forbidden_modules"]
    )
