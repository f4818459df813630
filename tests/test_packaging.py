"""hedgeflow as a user installs it: one wheel, one import name.

The wheel is built from the checkout, installed (without its dependencies, which the
test environment already has) into a fresh virtual environment, and run from a
project folder of the user's that has its own ``tasks``, ``flows``, ``schemas`` and
``warehouse`` packages: theirs stay theirs, ours live under ``hedgeflow``.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.e2e_helpers import Harness, assert_clean, cli_env, query

pytestmark = pytest.mark.flow

REPO = Path(__file__).resolve().parents[1]
# the Prefect-project folders at the top of the repository and their installed names
LAYERS = {"flows": "hedgeflow.flows", "tasks": "hedgeflow.tasks",
          "schemas": "hedgeflow.schemas", "warehouse": "hedgeflow.warehouse"}  # fmt: skip
USER_PACKAGES = tuple(LAYERS)
END = "2026-11-20"


def _source_packages() -> set[str]:
    """Every package of the checkout under its installed name."""
    roots = {REPO / "hedgeflow": "hedgeflow"} | {REPO / d: name for d, name in LAYERS.items()}
    found = set()
    for root, name in roots.items():
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            if any((root / rel).is_symlink() for rel in [rel, *rel.parents]):
                continue  # hedgeflow/flows etc.: the symlinks to the top-level folders
            found.add(".".join([name, *rel.parts]))
    return found


def _copy_checkout(dest: Path) -> Path:
    """The files git knows (tracked or new, not ignored): no stale build/ leftovers."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for rel in filter(None, listed):
        src = REPO / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel, follow_symlinks=False)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = _copy_checkout(tmp / "src")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
         "-q", str(src), "-w", str(tmp / "dist")],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (built,) = (tmp / "dist").glob("hedgeflow-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with the wheel, seeing this environment's packages
    (its dependencies) through a plain path .pth: no .pth of this environment runs
    there, so the editable install of the checkout is invisible."""
    # inside a git repository of its own: the installed hedgeflow's code version must
    # still be its package version, not that repository's git describe
    repo = tmp_path_factory.mktemp("venv")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "user"], check=True)
    env_dir = repo / "venv"
    venv.create(env_dir, with_pip=False, symlinks=True)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    outer = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    (Path(purelib) / "outer-environment.pth").write_text("\n".join(dict.fromkeys(outer)) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--disable-pip-version-check", "-q", str(wheel)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return python


def _marker(name: str) -> str:
    return f"the user's own {name}"


@pytest.fixture(scope="module")
def user_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's project folder with packages named like our layers; each records
    that it was imported (a file next to it) and names itself in MARKER."""
    project = tmp_path_factory.mktemp("user-project")
    for name in USER_PACKAGES:
        (project / name).mkdir()
        (project / name / "__init__.py").write_text(
            "from pathlib import Path\n"
            f"MARKER = {_marker(name)!r}\n"
            f"Path(__file__).parent.with_name('imported-{name}').touch()\n"
        )
    return project


def test_the_wheel_installs_one_import_name(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert whl.read(top_level).decode().split() == ["hedgeflow"]
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = whl.read(metadata).decode()
    importable = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert importable == {"hedgeflow"}, sorted(importable)
    for path in ("hedgeflow/flows/nightly.py", "hedgeflow/tasks/common.py",
                 "hedgeflow/schemas/bars.py", "hedgeflow/warehouse/db.py",
                 "hedgeflow/__main__.py", "hedgeflow/py.typed",
                 "hedgeflow/assets/plotly-basic.min.js",  # the tearsheet's chart library
                 "hedgeflow/assets/plotly-basic.LICENSE"):  # fmt: skip
        assert path in names, path
    packages = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert packages == _source_packages()
    import hedgeflow

    assert f"\nVersion: {hedgeflow.__version__}\n" in meta
    assert "License-Expression: MIT" in meta
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_a_users_own_packages_do_not_collide(
    installed: Path, user_project: Path, prefect_harness: Harness
) -> None:
    home = user_project / "data"
    env = cli_env(home)
    assert env.get("PREFECT_API_URL") == prefect_harness.api_url
    env.pop("PYTHONPATH", None)
    # the installed hedgeflow, not the checkout's
    where = subprocess.run(
        [str(installed), "-c", "import hedgeflow.flows.nightly as m; print(m.__file__)"],
        cwd=user_project, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr[-3000:]
    nightly_file = Path(where.stdout.strip()).resolve()
    assert nightly_file.is_relative_to(installed.parent.parent.resolve()), nightly_file
    assert nightly_file.parts[-3:] == ("hedgeflow", "flows", "nightly.py"), nightly_file

    # `python -m hedgeflow` from the user's folder: the folder is first on sys.path
    proc = subprocess.run(
        [str(installed), "-m", "hedgeflow", "nightly", "--days", "2", "--end", END],
        cwd=user_project, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert_clean(proc)
    assert "status: completed" in proc.stdout
    report = Path(proc.stdout.strip().splitlines()[-1].removeprefix("report: "))
    assert report.is_relative_to(home.resolve()) and "plotly.js (basic" in report.read_text()
    import hedgeflow

    assert query(home, "select flow, status, code_version from runs") == [
        ("nightly", "completed", f"hedgeflow {hedgeflow.__version__}")
    ]
    imported = sorted(p.name for p in user_project.glob("imported-*"))
    assert imported == [], f"hedgeflow imported the user's packages: {imported}"

    # and the user's packages are still theirs
    for name in USER_PACKAGES:
        mine = subprocess.run(
            [str(installed), "-c", f"import {name}; print({name}.MARKER)"],
            cwd=user_project, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert mine.returncode == 0, mine.stderr[-2000:]
        assert mine.stdout.strip() == _marker(name)
        assert (user_project / f"imported-{name}").exists()


def test_the_console_script_and_python_m_run_the_installed_package(installed: Path) -> None:
    """The console script runs the installed package (python -m hedgeflow does too)."""
    script = installed.parent / "hedgeflow"
    assert script.exists()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for args in ([str(script), "--version"], [str(installed), "-m", "hedgeflow", "--version"]):
        proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]
        import hedgeflow

        assert proc.stdout.strip() == f"hedgeflow {hedgeflow.__version__}"
