"""The ``hedgeflow`` command with one kind of write failing as on a full disk.

``python -m tests.reliability.enospc_driver STAGE ARGS...`` runs ``hedgeflow ARGS...``
in this process after making the real write call of STAGE raise what a full disk
raises there: ``OSError(ENOSPC)`` from pyarrow's Parquet write (the lake), Arrow's
``ArrowIOError`` text, DuckDB's ``TransactionException`` at commit (the warehouse),
``OSError(ENOSPC)`` from the report's chart rendering. Used by
tests/reliability/test_hostile_bounds.py, which checks the one-line error.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from typing import Any

NO_SPACE = "No space left on device"


def enospc(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.ENOSPC, NO_SPACE)


def _arrow_full(*args: Any, **kwargs: Any) -> Any:
    import pyarrow as pa

    raise pa.lib.ArrowIOError(f"error writing bytes to file. Detail: [errno 28] {NO_SPACE}")


def _duckdb_full(*args: Any, **kwargs: Any) -> Any:
    import duckdb

    raise duckdb.TransactionException(
        'TransactionContext Error: Failed to commit: could not write to file "hedgeflow.duckdb'
        f'.wal": {NO_SPACE}'
    )


def _targets() -> dict[str, tuple[Any, str, Callable[..., Any]]]:
    import pyarrow.parquet as pq

    import hedgeflow.tasks.report as report_task
    from hedgeflow.warehouse import results

    return {
        "lake-enospc": (pq, "write_table", enospc),
        "lake-arrow": (pq, "write_table", _arrow_full),
        "duckdb-commit": (results, "replace_rows", _duckdb_full),
        "report-enospc": (report_task, "render_charts", enospc),
    }


STAGES = ("lake-enospc", "lake-arrow", "duckdb-commit", "report-enospc")


def run(stage: str, argv: list[str]) -> int:
    from hedgeflow.cli import main, prepare_prefect

    prepare_prefect(verbose=False)  # before the targets import Prefect, as the CLI does
    target, name, fake = _targets()[stage]
    setattr(target, name, fake)
    return main(argv)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2:]))
