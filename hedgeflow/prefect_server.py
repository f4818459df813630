"""hedgeflow's resident local Prefect server.

Prefect's ephemeral mode starts a temporary server for every command (15-20 s on two
cores), loses task-run records past about 20 tasks, and dies first on a terminal's
Ctrl-C (the whole process group gets SIGINT), which leaves the flow hanging while it
reports its state. So when no ``PREFECT_API_URL`` is set (neither in the environment nor
in the active Prefect profile), hedgeflow starts one ``prefect server`` on 127.0.0.1 on
first use and every later command reuses it:

- it runs in its own session (``start_new_session``): a Ctrl-C in the terminal never
  reaches it, and a SIGKILL of the command leaves nothing half-owned behind;
- its state (pid, port, Prefect version) is ``hedgeflow-server.json`` under the
  Prefect home (``PREFECT_HOME``, default ``~/.prefect``), next to Prefect's own
  database, with its log in ``hedgeflow-server.log``; a lock file serialises starts;
- a command checks it is the process it started (pid and start time) and healthy
  (``/api/health``) before it reuses it, and restarts it otherwise;
- ``hedgeflow server status`` and ``hedgeflow server stop`` manage it, and the setting
  ``prefect_server = "ephemeral"`` keeps Prefect's own temporary server instead.

No Prefect import here: the command decides the API URL before Prefect reads its settings.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import TextIO

import psutil

from hedgeflow.errors import HedgeflowError

STATE_FILE = "hedgeflow-server.json"
LOCK_FILE = "hedgeflow-server.lock"
LOG_FILE = "hedgeflow-server.log"
HOST = "127.0.0.1"
PREFERRED_PORT = 4200
START_TIMEOUT = 180.0  # seconds for a first start (database migrations) on a busy machine
STOP_TIMEOUT = 20.0


class ServerError(HedgeflowError):
    """The resident Prefect server could not be started or reached."""


@dataclass(frozen=True)
class ServerState:
    pid: int
    port: int
    prefect_version: str
    created: float  # the process's start time (psutil), so a reused pid is not taken for it
    started_at: float

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"


def prefect_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("PREFECT_HOME") or "~/.prefect").expanduser()


def configured_api_url(env: Mapping[str, str] | None = None) -> str | None:
    """``PREFECT_API_URL`` from the environment, else from the active Prefect profile
    (``prefect config set PREFECT_API_URL=...``): the user's own server wins."""
    env = os.environ if env is None else env
    if env.get("PREFECT_API_URL"):
        return env["PREFECT_API_URL"]
    path = Path(env.get("PREFECT_PROFILES_PATH") or prefect_home(env) / "profiles.toml")
    try:
        with path.expanduser().open("rb") as fh:
            profiles = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = env.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    profile = (profiles.get("profiles") or {}).get(active) or {}
    url = profile.get("PREFECT_API_URL") if isinstance(profile, dict) else None
    return str(url) if url else None


def _prefect_version() -> str:
    try:
        return metadata.version("prefect")
    except metadata.PackageNotFoundError:  # pragma: no cover - prefect is a dependency
        return "unknown"


def read_state(home: Path) -> ServerState | None:
    try:
        raw = json.loads((home / STATE_FILE).read_text())
        return ServerState(**{k: raw[k] for k in ServerState.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(home: Path, state: ServerState) -> None:
    tmp = home / f"{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(asdict(state)))
    os.replace(tmp, home / STATE_FILE)


def is_running(state: ServerState) -> bool:
    """The process hedgeflow started is still there (not a new process with its pid)."""
    try:
        proc = psutil.Process(state.pid)
        return (
            abs(proc.create_time() - state.created) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.Error:
        return False


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/health", timeout=timeout) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    home.mkdir(parents=True, exist_ok=True)
    with (home / LOCK_FILE).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _server_env(env: Mapping[str, str], home: Path) -> dict[str, str]:
    out = {
        k: v
        for k, v in env.items()
        # the server is nobody's client, and no test's coverage run
        if k not in {"PREFECT_API_URL", "COVERAGE_PROCESS_START", "PREFECT_UI_ENABLED"}
    }
    out.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL=env.get("PREFECT_SERVER_LOGGING_LEVEL", "WARNING"),
        PYTHONUNBUFFERED="1",
    )
    return out


def _log_tail(home: Path, lines: int = 5) -> str:
    try:
        text = (home / LOG_FILE).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


def _spawn(home: Path, env: Mapping[str, str]) -> ServerState:
    port = PREFERRED_PORT if _port_free(PREFERRED_PORT) else _free_port()
    cmd = [
        sys.executable,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        HOST,
        "--port",
        str(port),
        "--analytics-off",
    ]
    with (home / LOG_FILE).open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_server_env(env, home),
            cwd=home,
            start_new_session=True,  # out of the terminal's process group: Ctrl-C spares it
            close_fds=True,
        )
    proc.returncode = 0  # detached on purpose: no "still running" warning at exit
    return ServerState(
        pid=proc.pid,
        port=port,
        prefect_version=_prefect_version(),
        created=psutil.Process(proc.pid).create_time(),
        started_at=time.time(),
    )


def _wait_healthy(state: ServerState, home: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(state.url):
            return
        if not is_running(state):
            tail = _log_tail(home)
            raise ServerError(
                f"the Prefect server exited while starting (log {home / LOG_FILE}"
                + (f": {tail}" if tail else "")
                + "); set PREFECT_API_URL to your own server, or prefect_server = "
                '"ephemeral" in hedgeflow.toml'
            )
        time.sleep(0.25)
    _terminate(state)
    raise ServerError(
        f"the Prefect server did not answer within {timeout:.0f} s (log {home / LOG_FILE})"
    )


def _terminate(state: ServerState, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the server's process group (its session: uvicorn and its services),
    then SIGKILL what is left after ``timeout``."""
    if not is_running(state):
        return
    try:
        members = [psutil.Process(state.pid), *psutil.Process(state.pid).children(recursive=True)]
    except psutil.Error:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(state.pid, signal.SIGTERM)
    _gone, alive = psutil.wait_procs(members, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(state.pid, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=5)


def ensure_server(
    env: MutableMapping[str, str] | None = None, announce: TextIO | None = None
) -> tuple[ServerState, bool]:
    """The resident server, started if needed (then announced once on ``announce``);
    ``env["PREFECT_API_URL"]`` points at it afterwards. Returns (state, started)."""
    env = os.environ if env is None else env
    home = prefect_home(env)
    with _locked(home):
        state = read_state(home)
        if state is not None and is_running(state):
            if state.prefect_version == _prefect_version():
                # a server another command is still starting gets the time it needs
                wait = max(10.0, START_TIMEOUT - (time.time() - state.started_at))
                with contextlib.suppress(ServerError):
                    _wait_healthy(state, home, wait)
                    env["PREFECT_API_URL"] = state.api_url
                    return state, False
            _terminate(state)  # another Prefect version, or not answering: replace it
        state = _spawn(home, env)
        _write_state(home, state)
        _wait_healthy(state, home, START_TIMEOUT)
    env["PREFECT_API_URL"] = state.api_url
    if announce is not None:
        print(
            f"hedgeflow: started a local Prefect server, UI at {state.url} "
            "(it keeps running for the next commands; `hedgeflow server stop` stops it)",
            file=announce,
        )
    return state, True


def server_status(env: Mapping[str, str] | None = None) -> tuple[ServerState | None, bool]:
    """(state of a running resident server or None, healthy)."""
    home = prefect_home(env)
    state = read_state(home)
    if state is None or not is_running(state):
        return None, False
    return state, healthy(state.url)


def stop_server(env: Mapping[str, str] | None = None) -> ServerState | None:
    """Stop the resident server; the state it had, or None when none was running."""
    home = prefect_home(env)
    if not (home / STATE_FILE).exists():
        return None
    with _locked(home):
        state = read_state(home)
        running = state is not None and is_running(state)
        if state is not None and running:
            _terminate(state)
        with contextlib.suppress(FileNotFoundError):
            (home / STATE_FILE).unlink()
    return state if running else None
