"""Where the compute stages run: the Dask scheduler address comes from the argument, the
environment or Dask's own configuration, which is read only when there is some."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from hedgeflow.flows import runners


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("DASK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    return tmp_path


def test_no_dask_configuration_means_no_address_and_no_import(bare: Path) -> None:
    assert not runners._dask_configured()
    assert runners.configured_dask_address() is None
    assert runners.configured_dask_address("tcp://10.0.0.1:8786") == "tcp://10.0.0.1:8786"


def test_a_dask_config_file_names_the_scheduler(
    bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = bare / "dask-config"
    folder.mkdir()
    (folder / "dask.yaml").write_text("scheduler-address: tcp://127.0.0.1:8786\n")
    monkeypatch.setenv("DASK_CONFIG", str(folder))
    assert runners._dask_configured()
    import dask.config

    found = dask.config.collect([str(folder)], env={})["scheduler-address"]
    with dask.config.set({"scheduler-address": found}):  # what dask read at its import
        assert runners.configured_dask_address() == "tcp://127.0.0.1:8786"
