"""Fixtures for browser tests: a throw-away Dagster instance and data root, `dagster dev` on
them, and Chromium driven by Playwright.

A test module typically prepares its data and starts the UI once:

    @pytest.fixture(scope="module")
    def ui(ui_env_factory, dagster_ui_factory):
        env = ui_env_factory()                      # DAGSTER_HOME + METERCLOSE_DATA_DIR
        env.run_cli("generate", "--month", "2026-09", "--events", "300", "--seed", "3",
                    "--out", str(env.data_dir))
        return dagster_ui_factory(env)              # ready: every code location LOADED

    @pytest.mark.browser
    def test_something(ui, page, screenshot):
        run = launch_and_wait(page, ui, "ingest_job", partition="2026-09-02")
        screenshot(page, "run")

Every test here is skipped, saying why, when Chromium (/usr/lib/chromium/chromium) or
Playwright is missing. Screenshots go to tests/browser/.screenshots/ (emptied per session).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.server import (
    DEFAULT_FIRST_DAY,
    DEFAULT_TODAY,
    DagsterUi,
    UiEnv,
    make_ui_env,
    start_dagster_ui,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/lib/chromium/chromium")
# As root, and with no outside network: no sandbox, no GPU, no /dev/shm, no background
# fetches or updates, and every host name but loopback unresolvable.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
VIEWPORT_WIDTH, VIEWPORT_HEIGHT = 1600, 1000
PAGE_TIMEOUT_MS = 30_000
SERVER_START_TIMEOUT_S = 90
SCREENSHOT_DIR = Path(__file__).resolve().parent / ".screenshots"

UiEnvFactory = Callable[..., UiEnv]
DagsterUiFactory = Callable[..., DagsterUi]
Screenshot = Callable[["Page", str], Path]


def browser_missing() -> str | None:
    """Why browser tests cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install -e '.[dev]')"
    if not CHROMIUM.exists():
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="session")
def browser_prerequisites() -> None:
    """Skip (before any server starts) when Chromium or Playwright is missing."""
    reason = browser_missing()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def ui_env_factory(
    browser_prerequisites: None, tmp_path_factory: pytest.TempPathFactory
) -> UiEnvFactory:
    """``ui_env_factory(today=..., first_day=..., extra_env={...})``: a fresh UiEnv — its own
    DAGSTER_HOME (telemetry and the new-user pop-up off) and an empty data root; prepare
    data with ``env.run_cli(...)`` or by writing under ``env.data_dir``."""

    def make(
        *,
        today: str = DEFAULT_TODAY,
        first_day: str = DEFAULT_FIRST_DAY,
        extra_env: dict[str, str] | None = None,
    ) -> UiEnv:
        root = tmp_path_factory.mktemp("ui")
        return make_ui_env(root, today=today, first_day=first_day, extra_env=extra_env)

    return make


@pytest.fixture(scope="module")
def dagster_ui_factory(browser_prerequisites: None) -> Iterator[DagsterUiFactory]:
    """``dagster_ui_factory(env, daemon=True, timeout=90)``: start `dagster dev -w
    workspace.yaml` on a free loopback port with ``env``; returns once /graphql reports every
    code location LOADED. Every UI started is stopped (its whole process group) when the
    module ends, or earlier with ``ui.stop()``."""
    started: list[DagsterUi] = []

    def start(
        env: UiEnv, *, daemon: bool = True, timeout: float = SERVER_START_TIMEOUT_S
    ) -> DagsterUi:
        ui = start_dagster_ui(env, daemon=daemon, timeout=timeout)
        started.append(ui)
        print(f"dagster UI at {ui.base_url} ready in {ui.started_in:.1f}s (log {ui.log_path})")
        return ui

    yield start
    for ui in started:
        ui.stop()


@pytest.fixture(scope="session")
def browser(browser_prerequisites: None) -> Iterator[Browser]:
    """Debian's Chromium, headless, through Playwright (never ``playwright install``).
    Playwright gives it a fresh temporary profile (user-data dir)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def _screenshot_dir() -> Path:
    SCREENSHOT_DIR.mkdir(exist_ok=True)
    for old in SCREENSHOT_DIR.glob("*.png"):
        old.unlink()
    return SCREENSHOT_DIR


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:120]


@pytest.fixture
def screenshot(request: pytest.FixtureRequest, _screenshot_dir: Path) -> Screenshot:
    """``screenshot(page, "label")``: a full-page PNG in tests/browser/.screenshots/, named
    after the test and numbered in order; its path."""
    counter = [0]
    test_name = _slug(f"{Path(request.node.path).stem}__{request.node.name}")

    def take(page: Page, label: str) -> Path:
        counter[0] += 1
        path = _screenshot_dir / f"{test_name}-{counter[0]:02d}-{_slug(label)}.png"
        page.screenshot(path=str(path), full_page=True, timeout=PAGE_TIMEOUT_MS)
        return path

    return take


@pytest.fixture
def page(browser: Browser, screenshot: Screenshot) -> Iterator[Page]:
    """A page in a fresh browser context (its own storage: no launchpad sessions or graph
    settings carried over between tests), 1600x1000, 30 s default timeout. Its final state
    is saved as a screenshot, and its console errors are printed (shown when a test
    fails)."""
    context = browser.new_context(viewport={"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    context.set_default_navigation_timeout(PAGE_TIMEOUT_MS)
    new_page = context.new_page()
    problems: list[str] = []
    new_page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def on_console(message: Any) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text[:500]}")

    new_page.on("console", on_console)
    try:
        yield new_page
    finally:
        try:
            screenshot(new_page, "final")
        except Exception as exc:
            print(f"no final screenshot: {exc}")
        for problem in problems:
            print(problem)
        context.close()
