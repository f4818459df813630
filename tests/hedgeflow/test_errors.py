"""OutOfSpaceError: every library's way of saying ENOSPC becomes one message."""

from __future__ import annotations

import errno
import pickle

import duckdb
import pyarrow as pa
import pytest

from hedgeflow.errors import HedgeflowError, OutOfSpaceError, is_out_of_space, out_of_space_as

NO_SPACE = "No space left on device"


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENOSPC, NO_SPACE),
        OSError(errno.ENOSPC, "whatever the text"),
        pa.lib.ArrowIOError(f"error writing bytes to file. Detail: [errno 28] {NO_SPACE}"),
        duckdb.IOException(f'IO Error: Could not write file "x.duckdb": {NO_SPACE}'),
        duckdb.TransactionException(
            "TransactionContext Error: Failed to commit: could not write to file "
            f'"x.wal": {NO_SPACE}'
        ),
        RuntimeError(f"wrapped: {NO_SPACE.lower()}"),
    ],
    ids=["errno", "errno-only", "arrow", "duckdb-io", "duckdb-commit", "text"],
)
def test_every_form_of_enospc_is_recognised(exc: BaseException) -> None:
    assert is_out_of_space(exc)
    with pytest.raises(OutOfSpaceError) as info, out_of_space_as("/data/home/lake"):
        raise exc
    assert str(info.value) == "no space left on /data/home/lake"
    assert info.value.__cause__ is exc


def test_a_cause_deeper_in_the_chain_counts() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, NO_SPACE)
        except OSError as inner:
            raise RuntimeError("write failed") from inner
    except RuntimeError as outer:
        assert is_out_of_space(outer)


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.EACCES, "Permission denied"),
        duckdb.IOException('IO Error: Cannot open file "x": No such file or directory'),
        ValueError("no space for this value"),
    ],
)
def test_other_errors_pass_through(exc: BaseException) -> None:
    assert not is_out_of_space(exc)
    with pytest.raises(type(exc)) as info, out_of_space_as("/x"):
        raise exc
    assert info.value is exc


def test_the_innermost_path_wins_and_the_error_pickles() -> None:
    with (
        pytest.raises(OutOfSpaceError) as info,
        out_of_space_as("/outer"),
        out_of_space_as("/outer/inner.duckdb"),
    ):
        raise OSError(errno.ENOSPC, NO_SPACE)
    assert str(info.value) == "no space left on /outer/inner.duckdb"
    assert isinstance(info.value, HedgeflowError)  # the CLI prints it as one line, exit 2
    copy = pickle.loads(pickle.dumps(info.value))  # Dask workers hand it back
    assert type(copy) is OutOfSpaceError and str(copy) == str(info.value)
    assert copy.path == "/outer/inner.duckdb"
