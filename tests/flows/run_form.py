"""The Prefect UI's "Custom run" form of a deployment, in headless Debian chromium.

``python -m tests.flows.run_form [docs/prefect-run-form.png]`` starts a Prefect server on
a free loopback port in a temporary PREFECT_HOME, creates the process work pool, deploys
prefect.yaml (as the README says), takes the screenshots of the nightly-backtest form
the README shows (as Prefect builds it: every parameter on its default; and with one
agent filled in, ``-agents`` before the suffix) and stops the server. The slow
tests/flows/test_deployment.py reads the same page's DOM.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.e2e_helpers import CHROMIUM_FLAGS, stop_group

REPO = Path(__file__).resolve().parents[2]
PREFECT = [sys.executable, "-m", "prefect"]
POOL = "hedgeflow-pool"
# one agent of the nightly form, filled in through the page's ``parameters`` search
# parameter (the v2 UI's way to prefill a custom run)
EXAMPLE_AGENTS = [
    {"name": "stocks", "symbol": "AAPL.US", "strategy": "sma_cross",
     "params": {"fast": 20, "slow": 50}},
]  # fmt: skip


def null_choice(prop: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in prop.get("anyOf", []) if c.get("type") == "null"), None)


def enum_of(prop: dict[str, Any]) -> list[Any]:
    if "enum" in prop:
        return list(prop["enum"])
    (choice,) = [c for c in prop.get("anyOf", []) if "enum" in c]
    return list(choice["enum"])


def form_problems(schema: dict[str, Any]) -> list[str]:
    """What the UI would show bare: a parameter without a one-line description, or an
    optional one whose only default is None without saying what None means (the UI
    then puts its type toggle on an unlabelled "None")."""
    problems = []
    for name, prop in schema["properties"].items():
        text = prop.get("description") or ""
        if not text.strip():
            problems.append(f"{name}: no description")
        elif "\n" in text or len(text) > 240:
            problems.append(f"{name}: description is not one line: {text!r}")
        if name in schema.get("required", []) or prop.get("default") is not None:
            continue
        choice = null_choice(prop)
        if "default" not in prop or choice is None:
            problems.append(f"{name}: optional without a default or a None choice")
            continue
        if choice.get("title") in (None, "None", "null"):
            problems.append(f"{name}: its None choice is not named")
        if "; empty: " not in text:
            problems.append(f"{name}: the description does not say what empty does")
    return problems


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(tmp: Path, api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HEDGEFLOW_"))}
    env.update(
        PREFECT_HOME=str(tmp / "prefect"),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
        HEDGEFLOW_HOME=str(tmp / "data"),
        PYTHONUNBUFFERED="1",
    )
    return env


def api(api_url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        api_url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def deployment(api_url: str, name: str) -> dict[str, Any]:
    """The stored deployment (its ``parameter_openapi_schema`` is what the form draws)."""
    (found,) = api(api_url, "/deployments/filter", {"deployments": {"name": {"any_": [name]}}})
    return dict(found)


def run_form_url(api_url: str, deployment_id: str, parameters: dict[str, Any] | None = None) -> str:
    """The deployment's "Custom run" page in the default (v2) UI."""
    url = api_url.removesuffix("/api") + f"/v2/deployments/deployment/{deployment_id}/run"
    if parameters:
        url += "?parameters=" + urllib.parse.quote(json.dumps(parameters, separators=(",", ":")))
    return url


def chromium(
    url: str, profile: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Debian's ``chromium`` on a page of the local server, with a fresh profile; the
    page gets 20 s of virtual time to load and render."""
    exe = shutil.which("chromium")
    if exe is None:
        import pytest

        pytest.skip("chromium is not installed (.ci/run installs it: apt-get install chromium)")
    return subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000",
         *args, url],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@contextlib.contextmanager
def deployed_server(tmp: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A Prefect server on a free loopback port with prefect.yaml deployed; stopped
    (its whole process group) on exit."""
    api_url = f"http://127.0.0.1:{free_port()}/api"
    env = server_env(tmp, api_url)
    with (tmp / "server.log").open("w") as log:
        server = subprocess.Popen(
            [*PREFECT, "server", "start", "--host", "127.0.0.1",
             "--port", api_url.split(":")[-1].removesuffix("/api"), "--analytics-off"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(OSError):
                if api(api_url, "/health") is True:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "prefect server did not start:\n" + (tmp / "server.log").read_text()[-3000:]
                )
            time.sleep(0.5)
        for args in (["work-pool", "create", POOL, "--type", "process"],
                     ["--no-prompt", "deploy", "--all"]):  # fmt: skip
            proc = subprocess.run(
                [*PREFECT, *args], env=env, cwd=REPO, capture_output=True, text=True,
                timeout=300, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(
                    f"prefect {' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
                )
        yield api_url, env
    finally:
        stop_group(server, (signal.SIGTERM, signal.SIGKILL), grace=30)


def shrink_png(path: Path) -> None:
    """A 256-colour palette PNG: the UI's flat colours survive, the file is a third."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256)
    small.save(path, optimize=True)


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs/prefect-run-form.png").resolve()
    with tempfile.TemporaryDirectory(prefix="hedgeflow-run-form-") as name:
        tmp = Path(name)
        with deployed_server(tmp) as (api_url, _):
            nightly = deployment(api_url, "nightly-backtest")
            shots = {
                out: (run_form_url(api_url, nightly["id"]), "1400,2080"),
                out.with_name(out.stem + "-agents" + out.suffix): (
                    run_form_url(api_url, nightly["id"], {"agents": EXAMPLE_AGENTS}),
                    "1400,2700",
                ),
            }
            for i, (path, (url, size)) in enumerate(shots.items()):
                proc = chromium(url, tmp / f"profile{i}", f"--window-size={size}",
                                f"--screenshot={path}")  # fmt: skip
                if proc.returncode != 0 or not path.exists():
                    raise RuntimeError(f"chromium failed on {url}:\n{proc.stderr[-3000:]}")
                shrink_png(path)
                print(f"wrote {path} ({path.stat().st_size // 1024} KB): {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
