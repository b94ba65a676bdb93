"""A throw-away Dagster instance and data root, and `dagster dev` (or the webserver alone)
serving this project's code location on a free loopback port.

Nothing here needs Playwright: data preparation and the GraphQL helpers work without a
browser.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

# The product's clock and the first landing day the tests run with, unless a test says
# otherwise: partitions then end where the test expects, whatever the wall clock says.
DEFAULT_TODAY = "2026-12-06"
DEFAULT_FIRST_DAY = "2026-09-01"

# What a throw-away instance needs for the UI to be usable by a robot: no telemetry and no
# "new user experience" pop-up covering the page.
DAGSTER_YAML = """\
telemetry:
  enabled: false
nux:
  enabled: false
"""

# Only with daemon=False: no daemon dequeues runs, so the webserver launches them itself.
DEFAULT_RUN_COORDINATOR_YAML = """\
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
"""

LOCATIONS_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


class GraphQLError(AssertionError):
    """The webserver answered a GraphQL request with errors."""


def post_graphql(
    base_url: str, query: str, variables: dict[str, Any] | None = None, *, timeout: float = 30
) -> dict[str, Any]:
    """POST one GraphQL request to the webserver; the ``data`` of the answer."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{base_url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.load(response)
    if answer.get("errors"):
        raise GraphQLError(f"GraphQL errors: {json.dumps(answer['errors'])[:2000]}")
    data: dict[str, Any] = answer["data"]
    return data


@dataclass
class UiEnv:
    """A Dagster instance (DAGSTER_HOME) and a data root (METERCLOSE_DATA_DIR), with the
    environment that the UI, its runs and the ``meterclose`` CLI share."""

    root: Path
    dagster_home: Path
    data_dir: Path
    env: dict[str, str]

    def run_cli(
        self, *args: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``meterclose <args>`` in a subprocess with this instance and data root, e.g.
        ``env.run_cli("generate", "--month", "2026-09", "--events", "300", "--seed", "3",
        "--out", str(env.data_dir))``. Fails the test with its output when it fails."""
        script = Path(sys.executable).with_name("meterclose")
        command = (
            [str(script)]
            if script.exists()
            else [sys.executable, "-c", "from dagster_project.cli import main; main()"]
        )
        done = subprocess.run(
            [*command, *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"meterclose {' '.join(args)} exited {done.returncode}\n"
                f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
            )
        return done


def make_ui_env(
    root: Path,
    *,
    today: str = DEFAULT_TODAY,
    first_day: str = DEFAULT_FIRST_DAY,
    extra_env: dict[str, str] | None = None,
) -> UiEnv:
    """Create ``root/dagster_home`` (with dagster.yaml) and an empty ``root/data``."""
    home = root / "dagster_home"
    data = root / "data"
    home.mkdir(parents=True)
    data.mkdir(parents=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    # The parent's settings must not leak into the instance under test.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METERCLOSE_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(home),
        METERCLOSE_DATA_DIR=str(data),
        METERCLOSE_STATE_DIR=str(root / "state"),
        METERCLOSE_TODAY=today,
        METERCLOSE_FIRST_DAY=first_day,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra_env or {})
    return UiEnv(root=root, dagster_home=home, data_dir=data, env=env)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class DagsterUi:
    """A running `dagster dev` (webserver + daemon + code server) for one UiEnv."""

    env: UiEnv
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    daemon: bool
    started_in: float = 0.0
    locations: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """An absolute URL for a UI route such as ``/asset-groups``."""
        return self.base_url + (path if path.startswith("/") else f"/{path}")

    def graphql(
        self, query: str, variables: dict[str, Any] | None = None, *, timeout: float = 30
    ) -> dict[str, Any]:
        return post_graphql(self.base_url, query, variables, timeout=timeout)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_until_loaded(self, timeout: float) -> None:
        """Block until /graphql reports every code location LOADED (HTTP answering is not
        enough: the code server loads the definitions after the webserver is up)."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"dagster exited with {self.process.returncode} before it was ready\n"
                    f"{self.log_tail()}"
                )
            try:
                data = self.graphql(LOCATIONS_QUERY, timeout=5)
            except (OSError, urllib.error.URLError, GraphQLError, ValueError) as exc:
                last = repr(exc)
            else:
                workspace = data["workspaceOrError"]
                entries = workspace.get("locationEntries") or []
                last = json.dumps(entries)[:1000]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    broken = [
                        e
                        for e in entries
                        if e["locationOrLoadError"]
                        and e["locationOrLoadError"]["__typename"] == "PythonError"
                    ]
                    if broken:
                        error = broken[0]["locationOrLoadError"]
                        raise AssertionError(
                            f"code location {broken[0]['name']} failed to load: "
                            f"{error['message']}\n{error.get('stack') or ''}"
                        )
                    self.locations = [e["name"] for e in entries]
                    return
            time.sleep(0.5)
        raise AssertionError(
            f"dagster UI not ready after {timeout:.0f}s (last answer: {last})\n{self.log_tail()}"
        )

    def stop(self, grace: float = 10) -> None:
        """Stop the whole process group (webserver, daemon, code server, run workers)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)
        # Whatever is left of the group (a run still going, a code server) goes now.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


def start_dagster_ui(env: UiEnv, *, daemon: bool = True, timeout: float = 90) -> DagsterUi:
    """Start the UI on ``workspace.yaml`` with ``env`` and wait until its code location is
    loaded. ``daemon=True`` runs `dagster dev` as ``make ui`` does (runs queue and the
    daemon starts them; backfills work); ``daemon=False`` runs the webserver alone and
    configures the instance to launch runs directly (lighter; no backfills, schedules or
    sensors)."""
    started = time.monotonic()
    attempts = 3
    for attempt in range(attempts):
        port = free_port()
        log_path = env.root / f"dagster-ui-{port}.log"
        if daemon:
            command = [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml"]
            command += ["-h", "127.0.0.1", "-p", str(port)]
        else:
            config = env.dagster_home / "dagster.yaml"
            if "run_coordinator" not in config.read_text():
                config.write_text(config.read_text() + DEFAULT_RUN_COORDINATOR_YAML)
            command = [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml"]
            command += ["-h", "127.0.0.1", "-p", str(port)]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=env.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as one
            )
        ui = DagsterUi(env=env, port=port, process=process, log_path=log_path, daemon=daemon)
        try:
            ui.wait_until_loaded(timeout=max(1.0, timeout - (time.monotonic() - started)))
        except AssertionError:
            ui.stop(grace=2)
            # Someone took the port between free_port() and the bind: try another one.
            if "address already in use" in ui.log_tail().lower() and attempt < attempts - 1:
                continue
            raise
        ui.started_in = time.monotonic() - started
        return ui
    raise AssertionError("unreachable")
